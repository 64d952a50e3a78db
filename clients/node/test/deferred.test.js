'use strict';
// grammY at its defaults through the helper (issue 19): a handler slower
// than webhookCallback's 10 s timeout keeps its conversation (the timeout's
// answer defers the report, the report follows when the handler is done),
// the update is handled once (no redelivery loop), and a four-step flow
// survives kill -9 of the bot mid-flow.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { freePort, sleep, startApp, startStatehold, postJson } = require('./harness.js');

const update = (id, chat, text) => ({
  update_id: id,
  message: { message_id: id, date: 1700000000 + id, chat: { id: chat, type: 'private' }, from: { id: chat, is_bot: false, first_name: 'Ann' }, text },
});

async function until(what, check, within = 30000) {
  const deadline = Date.now() + within;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

const STEPS = [
  ['/start', "Welcome! What's your name?"],
  ['Ann', 'Nice to meet you, Ann. Your email?'],
  ['ann@example.com', 'Which plan: basic or pro?'],
  ['pro', 'Registered Ann <ann@example.com> on the pro plan. Done!'],
];

test('grammY with an 11 s handler behind webhookCallback keeps its flow across kill -9, without a loop', async () => {
  const adminPort = await freePort();
  const env = { STATEHOLD_REPORT_URL: `http://127.0.0.1:${adminPort}` };
  let app = await startApp('grammy_app.js', { env });
  let proxy;
  const awaiting = () => proxy.metric('statehold_turns_deferred');
  const sent = async () => (await (await fetch(`http://127.0.0.1:${app.port}/_sent`)).json()).map((m) => m.text);
  try {
    // Inside the try: if statehold cannot start, the app still goes.
    proxy = await startStatehold(app.port, { adminPort });
    for (const [i, [text, expected]] of STEPS.entries()) {
      const n = i + 1;
      const r = await postJson(`${proxy.url}/telegram`, update(n, 4242, text));
      assert.equal(r.status, 200, `step ${n}: ${JSON.stringify(r.body)}`);
      assert.ok(!Object.keys(r.headers).some((h) => h.startsWith('x-statehold')), JSON.stringify(r.headers));
      // Fast steps are reported with the answer; the slow one is deferred
      // by the timeout's answer and reported when its handler is done.
      await until(`the report of step ${n}`, async () => (await awaiting()) === 0);
      await until(`the answer to step ${n}`, async () => (await sent()).includes(expected));
      assert.equal((await sent()).filter((t) => t === expected).length, 1, 'handled once');
      if (n === 2) app = await app.crashAndRestart(); // mid-flow: its memory is gone
    }
    const deferred = (result) => proxy.metric(`statehold_deferred_reports_total{route="tg",result="${result}"}`);
    assert.equal(await deferred('saved'), 1, 'the slow step');
    assert.equal(await deferred('timeout'), 0);
    assert.equal(await proxy.metric('statehold_requests_total{route="tg",outcome="deferred",code="2xx"}'), 1);
    assert.equal(await proxy.metric('statehold_requests_total{route="tg",outcome="upstream_error",code="5xx"}'), 0);
  } finally {
    await app.kill9();
    if (proxy) await proxy.kill9();
  }
});

const SIGNING_SECRET = 'test-signing-secret';

/** A Slack Events API message event, signed as Slack signs it. */
function slackEvent(n, user, text) {
  const body = JSON.stringify({
    token: 'x', team_id: 'T1', api_app_id: 'A1', type: 'event_callback', event_id: `Ev${n}`, event_time: 1700000000 + n,
    event: { type: 'message', channel: 'D1', channel_type: 'im', user, text, ts: `${1700000000 + n}.000100` },
  });
  const ts = Math.floor(Date.now() / 1000);
  const signature = `v0=${crypto.createHmac('sha256', SIGNING_SECRET).update(`v0:${ts}:${body}`).digest('hex')}`;
  return { body, headers: { 'content-type': 'application/json', 'x-slack-request-timestamp': String(ts), 'x-slack-signature': signature } };
}

test('Slack Bolt without processBeforeResponse keeps its flow across kill -9', async () => {
  const adminPort = await freePort();
  const env = { STATEHOLD_REPORT_URL: `http://127.0.0.1:${adminPort}`, SLACK_SIGNING_SECRET: SIGNING_SECRET };
  let app = await startApp('bolt_app.js', { env });
  const routes = '[[route]]\npath = "/slack/events"\nnamespace = "sl"\npreset = "slack"\n';
  let proxy;
  const reports = async (result) => proxy.metric(`statehold_deferred_reports_total{route="sl",result="${result}"}`);
  const sent = async () => (await (await fetch(`http://127.0.0.1:${app.port}/_sent`)).json()).map((m) => m.text);
  try {
    proxy = await startStatehold(app.port, { adminPort, routes });
    for (const [i, [text, expected]] of STEPS.entries()) {
      const n = i + 1;
      const { body, headers } = slackEvent(n, 'U42', text);
      const r = await fetch(`${proxy.url}/slack/events`, { method: 'POST', headers, body });
      assert.equal(r.status, 200, `step ${n}: ${await r.text()}`);
      assert.ok(![...r.headers.keys()].some((h) => h.startsWith('x-statehold')));
      await until(`the late report of step ${n}`, async () => (await reports('saved')) + (await reports('cleared')) === n);
      await until(`the answer to step ${n}`, async () => (await sent()).includes(expected));
      if (n === 2) app = await app.crashAndRestart(); // mid-flow: its memory is gone
    }
    assert.equal(await reports('timeout'), 0);
    assert.equal(await proxy.metric('statehold_unreported_total{route="sl"}'), 0);
  } finally {
    await app.kill9();
    if (proxy) await proxy.kill9();
  }
});

test('adopting grammY or Bolt takes at most five lines', () => {
  for (const script of ['grammy_app.js', 'bolt_app.js']) {
    const lines = fs.readFileSync(path.join(__dirname, 'apps', script), 'utf8').split('\n');
    const marked = lines.filter((l) => l.includes('(statehold)'));
    assert.ok(marked.length >= 1 && marked.length <= 5, marked.join('\n'));
  }
});
