'use strict';
// The statehold console: signs in with the admin token (kept in this
// tab's sessionStorage, sent as the bearer header) and reads and acts
// through the admin API. Values are only ever set as text, never as markup.

const TOKEN = 'statehold-admin-token';
const $ = (id) => document.getElementById(id);
let current = null; // { ns, id } of the conversation shown

function token() { return sessionStorage.getItem(TOKEN); }

async function api(path, init = {}) {
  const headers = { ...(init.headers || {}), authorization: `Bearer ${token()}` };
  const r = await fetch(path, { ...init, headers, credentials: 'omit', cache: 'no-store' });
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  return { status: r.status, body };
}

function show(view) {
  for (const id of ['sign-in-view', 'find-view', 'conversation-view']) $(id).hidden = true;
  for (const id of view) $(id).hidden = false;
  $('sign-out').hidden = !token();
}

function element(tag, text, attrs = {}) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

async function signIn(event) {
  event.preventDefault();
  const value = $('token').value;
  sessionStorage.setItem(TOKEN, value);
  const r = await api('/v1/links/console/sign-in');
  if (r.status === 401 || r.status === 404) {
    sessionStorage.removeItem(TOKEN);
    $('sign-in-error').textContent = 'Invalid token';
    return;
  }
  $('token').value = '';
  $('sign-in-error').textContent = '';
  show(['find-view']);
  $('key').focus();
}

function signOut() {
  sessionStorage.removeItem(TOKEN);
  current = null;
  show(['sign-in-view']);
}

function parseKey(text) {
  const at = text.indexOf(':');
  if (at <= 0 || at === text.length - 1) return null;
  return { ns: text.slice(0, at), id: text.slice(at + 1) };
}

const statePath = (k, rest = '') => `/v1/state/${encodeURIComponent(k.ns)}/${encodeURIComponent(k.id)}${rest}`;

async function find(event) {
  event.preventDefault();
  const key = parseKey($('key').value.trim());
  if (!key) { $('find-error').textContent = 'A key is <namespace>:<id>, as in X-Statehold-Key'; return; }
  $('find-error').textContent = '';
  current = key;
  await openConversation();
}

async function openConversation() {
  const k = current;
  $('conversation-title').textContent = `${k.ns}:${k.id}`;
  $('state').hidden = true;
  $('diff').hidden = true;
  $('action-result').textContent = '';
  show(['find-view', 'conversation-view']);
  const [state, links] = await Promise.all([api(statePath(k)), api(`/v1/links/${encodeURIComponent(k.ns)}/${encodeURIComponent(k.id)}`)]);
  const facts = $('facts');
  facts.replaceChildren();
  const fact = (name, value) => { facts.append(element('dt', name), element('dd', value)); };
  let status = 'none stored';
  if (state.status === 200) status = 'stored';
  else if (state.status === 404 && state.body && state.body.version) status = 'cleared';
  fact('Status', status);
  fact('Version', state.body && state.body.version !== undefined ? state.body.version : '-');
  if (links.status === 200 && links.body) {
    if (links.body.member) fact('Member', links.body.member);
    if (links.body.channels && links.body.channels.length) fact('Channels', links.body.channels.join(', '));
  }
  await Promise.all([loadHistory(), loadTrail()]);
}

async function reveal() {
  const r = await api(statePath(current));
  const pre = $('state');
  pre.textContent = r.status === 200 ? JSON.stringify(r.body.state, null, 2) : (r.body && r.body.error) || `status ${r.status}`;
  pre.hidden = false;
}

async function loadHistory() {
  const tbody = $('history').tBodies[0];
  tbody.replaceChildren();
  const r = await api(statePath(current, '/history'));
  if (r.status !== 200 || !Array.isArray(r.body)) return;
  const newest = r.body.length ? r.body[0].version : 0;
  r.body.forEach((v, i) => {
    const row = element('tr');
    row.append(element('td', `v${v.version}`), element('td', new Date(v.at).toISOString()), element('td', v.kind), element('td', v.bytes));
    const actions = element('td');
    const older = r.body[i + 1];
    if (older) {
      const diff = element('button', 'Diff', { type: 'button' });
      diff.addEventListener('click', () => showDiff(older.version, v.version));
      actions.append(diff);
    }
    if (v.version < newest && v.bytes > 0) {
      const back = element('button', `Roll back to v${v.version}`, { type: 'button' });
      back.addEventListener('click', () => rollBack(v.version));
      actions.append(back);
    }
    row.append(actions);
    tbody.append(row);
  });
}

async function versionState(v) {
  const r = await api(statePath(current, `?version=${v}`));
  return r.status === 200 ? r.body.state : null;
}

async function showDiff(from, to) {
  const [a, b] = await Promise.all([versionState(from), versionState(to)]);
  const lines = [];
  const names = new Set([...Object.keys(a || {}), ...Object.keys(b || {})]);
  for (const name of [...names].sort()) {
    const before = a && name in a ? JSON.stringify(a[name]) : undefined;
    const after = b && name in b ? JSON.stringify(b[name]) : undefined;
    if (before === after) continue;
    if (before !== undefined) lines.push(`- ${name}: ${before}`);
    if (after !== undefined) lines.push(`+ ${name}: ${after}`);
  }
  const pre = $('diff');
  pre.textContent = `v${from} → v${to}\n${lines.length ? lines.join('\n') : '(no change)'}`;
  pre.hidden = false;
}

async function rollBack(version) {
  if (!window.confirm(`Roll back ${current.ns}:${current.id} to v${version}?`)) return;
  const r = await api(statePath(current, '/rollback'), {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ to: version }),
  });
  const message = r.status === 200 ? `Rolled back: now v${r.body.version}` : `Refused: ${(r.body && r.body.error) || r.status}`;
  await openConversation();
  $('action-result').textContent = message;
}

async function clearConversation() {
  if (!window.confirm(`Clear ${current.ns}:${current.id}?`)) return;
  const r = await api(statePath(current), { method: 'DELETE' });
  const message = r.status === 200 ? `Cleared: now v${r.body.version}` : `Refused: ${(r.body && r.body.error) || r.status}`;
  await openConversation();
  $('action-result').textContent = message;
}

async function loadTrail() {
  const list = $('trail');
  list.replaceChildren();
  const key = `${current.ns}:${current.id}`;
  const r = await api(`/v1/audit?key=${encodeURIComponent(key)}&limit=50`);
  if (r.status !== 200 || !Array.isArray(r.body)) return;
  for (const entry of r.body) {
    const e = entry.event || {};
    const when = e.at ? new Date(e.at).toISOString() : '';
    list.append(element('li', `${when} ${e.kind} v${e.from_version} → v${e.to_version}${e.request_id ? ` (${e.request_id})` : ''}`));
  }
}

// At a glance: the store, waiting turns, the spool and requests per second
// by outcome, from the listener's own /metrics, every 5 s.
let lastCounts = null;
async function glance() {
  try {
    const text = await (await fetch('/metrics', { cache: 'no-store', credentials: 'omit' })).text();
    const value = (name) => {
      const line = text.split('\n').find((l) => l.startsWith(`${name} `));
      return line ? Number(line.split(' ').pop()) : null;
    };
    const counts = {};
    for (const line of text.split('\n')) {
      const m = /^statehold_requests_total\{[^}]*outcome="([^"]+)"[^}]*\} (\S+)$/.exec(line);
      if (m) counts[m[1]] = (counts[m[1]] || 0) + Number(m[2]);
    }
    const now = Date.now();
    let rates = '';
    if (lastCounts) {
      const secs = (now - lastCounts.at) / 1000;
      rates = Object.entries(counts)
        .map(([o, n]) => [o, (n - (lastCounts.counts[o] || 0)) / secs])
        .filter(([, r]) => r > 0)
        .map(([o, r]) => `${o} ${r.toFixed(1)}/s`).join(', ');
    }
    lastCounts = { at: now, counts };
    const up = value('statehold_store_up');
    $('glance').textContent = `store ${up === 1 ? 'up' : 'down'} · turns waiting ${value('statehold_turns_waiting') ?? 0} · spool ${value('statehold_spool_depth') ?? 0}${rates ? ` · ${rates}` : ''}`;
  } catch (e) {
    $('glance').textContent = 'metrics unavailable';
  }
}

document.addEventListener('DOMContentLoaded', () => {
  $('sign-in').addEventListener('submit', signIn);
  $('find').addEventListener('submit', find);
  $('sign-out').addEventListener('click', signOut);
  $('reveal').addEventListener('click', reveal);
  $('clear').addEventListener('click', clearConversation);
  show(token() ? ['find-view'] : ['sign-in-view']);
  glance();
  setInterval(glance, 5000);
});
