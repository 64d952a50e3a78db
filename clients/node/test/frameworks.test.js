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
