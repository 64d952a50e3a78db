'use strict';
// The helper against the real statehold binary and real apps: each app is
// killed (kill -9) mid-flow and restarted with an empty memory, and the
// flow goes on where it was.
const test = require('node:test');
const assert = require('node:assert/strict');
const { startApp, startStatehold, postJson, tgUpdate } = require('./harness.js');

const CASES = [
  ['express_app.js', false],
  ['express_app.js', true],
  ['plain_app.js', false],
];

for (const [script, bodyMode] of CASES) {
  test(`${script} (${bodyMode ? 'body' : 'header'} mode) survives kill -9 mid-flow`, async () => {
    let app = await startApp(script, { bodyMode });
    const proxy = await startStatehold(app.port, { mode: bodyMode ? 'body' : 'header' });
    try {
      const say = (n, text) => postJson(`${proxy.url}/telegram`, tgUpdate(n, 4242, text));
      let r = await say(1, '/start');
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.text, "Welcome! What's your name?");
      r = await say(2, 'Ann');
      assert.equal(r.body.text, 'Nice to meet you, Ann. Your email?');
      assert.ok(!Object.keys(r.headers).some((h) => h.startsWith('x-statehold')), JSON.stringify(r.headers));
      assert.ok(!('_statehold' in r.body));

      app = await app.crashAndRestart(); // its memory is gone
      r = await say(3, 'ann@example.com');
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.text, 'Registered Ann <ann@example.com>. Done!');
      r = await say(4, 'hello');
      assert.equal(r.body.text, "Welcome! What's your name?", 'the finished flow was cleared');
      assert.ok(await proxy.metric('statehold_state_saves_total{result="ok"}') >= 2);
      assert.equal(await proxy.metric('statehold_unreported_total{route="tg"}'), 0);
    } finally {
      await app.kill9();
      await proxy.kill9();
    }
  });
}

// Issue 20, item 11: header mode, a snapshot of ~20 KB as base64, over
// Node's 16 KiB header limit. Before: every later request was refused by
// Node's HTTP server (431), /start included. Now it travels in the JSON
// body's member (X-Statehold-State-In: body) and the middleware reads it.
test('express_app.js (header mode) gets a snapshot too large for a header in the body', async () => {
  const app = await startApp('express_app.js', { bodyMode: false });
  const proxy = await startStatehold(app.port, { mode: 'header' });
  try {
    const say = (n, text) => postJson(`${proxy.url}/telegram`, tgUpdate(n, 4343, text));
    const name = 'Ann' + 'n'.repeat(15000);
    assert.equal((await say(1, '/start')).status, 200);
    let r = await say(2, name);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    r = await say(3, 'ann@example.com');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.text, `Registered ${name} <ann@example.com>. Done!`);
    assert.equal(await proxy.metric('statehold_state_saves_total{result="rejected"}'), 0);
  } finally {
    await app.kill9();
    await proxy.kill9();
  }
});
