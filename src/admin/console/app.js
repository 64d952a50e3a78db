'use strict';
// The statehold console: signs in with the admin token (kept in this
// tab's sessionStorage, sent as the bearer header) and reads and acts
// through the admin API (/v1/console/… for what shows values, each an
// audited `view`). Values are only ever set as text, never as markup.

const TOKEN = 'statehold-admin-token';
const $ = (id) => document.getElementById(id);
let current = null; // the key of the conversation shown, as typed or listed

function token() { return sessionStorage.getItem(TOKEN); }

async function api(path, init = {}) {
  const headers = { ...(init.headers || {}), authorization: `Bearer ${token()}` };
  const r = await fetch(path, { ...init, headers, credentials: 'omit', cache: 'no-store' });
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  return { status: r.status, body };
}

const why = (r) => (r.body && r.body.error) || `status ${r.status}`;

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

function button(text, onClick) {
  const b = element('button', text, { type: 'button' });
  b.addEventListener('click', onClick);
  return b;
}

async function signIn(event) {
  event.preventDefault();
  sessionStorage.setItem(TOKEN, $('token').value);
  const r = await api('/v1/console/recent?limit=1');
  if (r.status === 401 || r.status === 404) {
    sessionStorage.removeItem(TOKEN);
    $('sign-in-error').textContent = 'Invalid token';
    return;
  }
  $('token').value = '';
  $('sign-in-error').textContent = '';
  await showFind();
  $('key').focus();
}

function signOut() {
  sessionStorage.removeItem(TOKEN);
  current = null;
  show(['sign-in-view']);
}

async function showFind() {
  show(['find-view']);
  await loadRecent();
}

// A key is `<namespace>:<id>` as in X-Statehold-Key (or a stored key as
// the trail names it); the server checks it and hashes it if need be.
const q = (key) => `key=${encodeURIComponent(key)}`;
function statePath(key, rest = '') {
  const at = key.indexOf(':');
  return `/v1/state/${encodeURIComponent(key.slice(0, at))}/${encodeURIComponent(key.slice(at + 1))}${rest}`;
}

async function find(event) {
  event.preventDefault();
  const key = $('key').value.trim();
  const at = key.indexOf(':');
  if (at <= 0 || at === key.length - 1) {
    $('find-error').textContent = 'A key is <namespace>:<id>, as in X-Statehold-Key';
    return;
  }
  $('find-error').textContent = '';
  await open(key);
}

async function open(key) {
  current = key;
  await openConversation();
}

function lifetime(ms) {
  if (ms === null || ms === undefined) return '-';
  const s = Math.floor(ms / 1000);
  const [d, h, m] = [Math.floor(s / 86400), Math.floor((s % 86400) / 3600), Math.floor((s % 3600) / 60)];
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  return m ? `${m} min ${s % 60} s` : `${s} s`;
}

async function openConversation(message = '') {
  const key = current;
  $('conversation-title').textContent = key;
  $('state').hidden = true;
  $('diff').hidden = true;
  // Nothing of the previous view stays beside the new one: facts, history
  // and trail go now; the message comes with the new facts.
  const facts = $('facts');
  facts.replaceChildren();
  $('history').tBodies[0].replaceChildren();
  $('trail').replaceChildren();
  $('action-result').textContent = '';
  show(['find-view', 'conversation-view']);
  const r = await api(`/v1/console/conversation?${q(key)}`);
  $('action-result').textContent = message;
  const fact = (name, value) => {
    const dd = element('dd');
    if (value instanceof Node) dd.append(value); else dd.textContent = String(value);
    facts.append(element('dt', name), dd);
  };
  if (r.status !== 200) {
    fact('Error', why(r));
    return;
  }
  const s = r.body;
  if (s.stored_key !== s.key) fact('Stored as', s.stored_key);
  fact('Status', s.status);
  fact('Version', s.version);
  fact('Lifetime left', lifetime(s.ttl_ms));
  fact('Size', `${s.bytes} bytes`);
  if (s.member) fact('Member', button(s.member, () => open(s.member)));
  if (s.channels.length) {
    const list = element('span');
    for (const c of s.channels) list.append(button(c, () => open(c)));
    fact('Channels', list);
  }
  $('reveal').disabled = s.status !== 'stored';
  await Promise.all([loadHistory(), loadTrail(), loadRecent()]);
}

async function reveal() {
  const r = await api(`/v1/console/reveal?${q(current)}`, { method: 'POST' });
  const pre = $('state');
  pre.textContent = r.status === 200 ? JSON.stringify(r.body.state, null, 2) : why(r);
  pre.hidden = false;
  await loadTrail();
}

async function loadHistory() {
  const tbody = $('history').tBodies[0];
  tbody.replaceChildren();
  const r = await api(statePath(current, '/history'));
  if (r.status !== 200 || !Array.isArray(r.body)) return;
  const newest = r.body.length ? r.body[0].version : 0;
  r.body.forEach((v, i) => {
    const row = element('tr');
    row.append(element('td', `v${v.version}`), element('td', time(v.at)),
      element('td', v.kind), element('td', `${v.bytes} B`));
    const actions = element('td');
    if (r.body[i + 1]) {
      const diff = button('Diff', () => showDiff(v.version));
      diff.setAttribute('aria-label', `Diff v${r.body[i + 1].version} to v${v.version}`);
      actions.append(diff);
    }
    if (v.version < newest && v.bytes > 0) actions.append(button(`Roll back to v${v.version}`, () => rollBack(v.version)));
    row.append(actions);
    tbody.append(row);
  });
}

async function showDiff(version) {
  const r = await api(`/v1/console/diff?${q(current)}&version=${version}`, { method: 'POST' });
  const pre = $('diff');
  if (r.status !== 200) {
    pre.textContent = why(r);
  } else {
    const lines = [];
    for (const c of r.body.changes) {
      if (c.before !== null) lines.push(`- ${c.member}: ${JSON.stringify(c.before)}`);
      if (c.after !== null) lines.push(`+ ${c.member}: ${JSON.stringify(c.after)}`);
    }
    pre.textContent = `v${r.body.from} → v${r.body.to}\n${lines.length ? lines.join('\n') : '(no change)'}`;
  }
  pre.hidden = false;
  await loadTrail();
}

async function rollBack(version) {
  if (!window.confirm(`Roll back ${current} to v${version}?`)) return;
  const r = await api(statePath(current, '/rollback'), {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ to: version }),
  });
  await openConversation(r.status === 200 ? `Rolled back: now v${r.body.version}` : `Refused: ${why(r)}`);
}

async function clearConversation() {
  if (!window.confirm(`Clear ${current}?`)) return;
  const r = await api(statePath(current), { method: 'DELETE' });
  await openConversation(r.status === 200 ? `Cleared: now v${r.body.version}` : `Refused: ${why(r)}`);
}

// `2026-12-07 03:50:59 UTC`: to the second, in one zone for every operator.
const time = (ms) => `${new Date(ms).toISOString().slice(0, 19).replace('T', ' ')} UTC`;

function describe(e) {
  const when = e.at ? time(e.at) : '';
  return `${when} ${e.kind} v${e.from_version} → v${e.to_version}${e.request_id ? ` (${e.request_id})` : ''}`;
}

async function loadTrail() {
  const list = $('trail');
  list.replaceChildren();
  const r = await api(`/v1/audit?${q(current)}&limit=50`);
  if (r.status !== 200) { list.append(element('li', why(r))); return; }
  if (!r.body.length) list.append(element('li', 'No events (the audit trail is off, or nothing changed yet).'));
  for (const entry of r.body) list.append(element('li', describe(entry.event || {})));
}

async function loadRecent() {
  const list = $('recent');
  list.replaceChildren();
  const r = await api('/v1/console/recent?limit=20');
  if (r.status !== 200 || !r.body.length) {
    list.append(element('li', r.status === 200 ? 'None yet (or the audit trail is off).' : why(r)));
    return;
  }
  for (const c of r.body) {
    const item = element('li');
    item.append(button(c.key, () => open(c.key)),
      element('span', ` ${c.kind} v${c.version}, ${time(c.at)}`));
    list.append(item);
  }
}

// At a glance: the store, waiting turns, the spool and requests per second
// by outcome over the last five minutes, from the listener's own /metrics,
// every 5 s; drawn on a canvas, and said in words for screen readers.
const SAMPLES = 60;
const COLOURS = ['#1f6feb', '#2da44e', '#d29922', '#cf222e', '#8250df', '#57606a'];
const series = { at: [], rates: [] };
let lastCounts = null;

function metricValue(text, name) {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ').pop()) : null;
}

function outcomeCounts(text) {
  const counts = {};
  for (const line of text.split('\n')) {
    const m = /^statehold_requests_total\{[^}]*outcome="([^"]+)"[^}]*\} (\S+)$/.exec(line);
    if (m) counts[m[1]] = (counts[m[1]] || 0) + Number(m[2]);
  }
  return counts;
}

function draw() {
  $('rates').hidden = false;
  const canvas = $('chart');
  const ctx = canvas.getContext('2d');
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  const outcomes = [...new Set(series.rates.flatMap((r) => Object.keys(r)))].sort();
  const top = Math.max(1, ...series.rates.flatMap((r) => Object.values(r)));
  const legend = $('legend');
  legend.replaceChildren();
  outcomes.forEach((o, i) => {
    ctx.strokeStyle = COLOURS[i % COLOURS.length];
    ctx.lineWidth = 2;
    ctx.beginPath();
    series.rates.forEach((r, n) => {
      const x = (n / (SAMPLES - 1)) * width;
      const y = height - ((r[o] || 0) / top) * (height - 4) - 2;
      if (n) ctx.lineTo(x, y); else ctx.moveTo(x, y);
    });
    ctx.stroke();
    const item = element('li', `${o} ${(series.rates.at(-1)[o] || 0).toFixed(1)}/s`);
    item.className = `c${i % COLOURS.length}`;
    legend.append(item);
  });
  canvas.setAttribute('aria-label', `Requests per second by outcome, last 5 minutes, peak ${top.toFixed(1)}/s`);
}

async function glance() {
  try {
    const text = await (await fetch('/metrics', { cache: 'no-store', credentials: 'omit' })).text();
    const counts = outcomeCounts(text);
    const now = Date.now();
    if (lastCounts) {
      const secs = (now - lastCounts.at) / 1000;
      const rates = {};
      for (const [o, n] of Object.entries(counts)) rates[o] = Math.max(0, n - (lastCounts.counts[o] || 0)) / secs;
      series.rates.push(rates);
      if (series.rates.length > SAMPLES) series.rates.shift();
      draw();
    }
    lastCounts = { at: now, counts };
    const up = metricValue(text, 'statehold_store_up');
    $('glance').textContent = `store ${up === 1 ? 'up' : 'down'} · turns waiting ${metricValue(text, 'statehold_turns_waiting') ?? 0} · spool ${metricValue(text, 'statehold_spool_depth') ?? 0}`;
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
  if (token()) showFind(); else show(['sign-in-view']);
  glance();
  setInterval(glance, 5000);
});
