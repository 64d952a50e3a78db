'use strict';
// The web chat backend behind statehold in body mode: a pizza order, the
// backend killed (kill -9) mid-order, and the order completes; the legacy
// backend forgets it. Two sessions never see each other's order.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { startApp, startStatehold, postJson } = require('../../../clients/node/test/harness.js');

const HERE = path.resolve(__dirname, '..');
const ROUTES = '[[route]]\npath = "/chat"\nnamespace = "web"\nkey = "header:x-session-id"\non_missing_key = "reject"\n';

const STEPS = [
  ['hi', 'Hi! Which size: small, medium or large?'],
  ['huge', 'Small, medium or large?'],
  ['large', 'Toppings? (comma separated, or none)'],
  // kill -9 of the backend here
  ['olives, basil', 'Delivery address?'],
  ['Rua Augusta 1, Lisbon', 'A large pizza with olives, basil to Rua Augusta 1, Lisbon. Confirm? (yes/no)'],
  ['yes', 'Ordered! It goes to Rua Augusta 1, Lisbon.'],
];
const KILL_AFTER = 3;

async function runFlow(script) {
  let app = await startApp(script);
  const proxy = await startStatehold(app.port, { mode: 'body', routes: ROUTES });
  const answers = [];
  try {
    const say = (session, text) => postJson(`${proxy.url}/chat`, { text }, { 'x-session-id': session });
    for (const [i, [text]] of STEPS.entries()) {
      if (i === KILL_AFTER) app = await app.crashAndRestart();
      const r = await say('s-ann', text);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.ok(!('_statehold' in r.body), JSON.stringify(r.body));
      answers.push(r.body.reply);
      if (i === 1) {
        // Another session, in between, starts its own order.
        assert.equal((await say('s-bob', 'medium')).body.reply, 'Hi! Which size: small, medium or large?');
      }
    }
    // Without a session header statehold refuses: no anonymous state.
    assert.equal((await postJson(`${proxy.url}/chat`, { text: 'hi' })).status, 400);
  } finally {
    await app.kill9();
    await proxy.kill9();
  }
  return answers;
}

test('the migrated backend survives kill -9 mid-order', async () => {
  assert.deepEqual(await runFlow(path.join(HERE, 'server.js')), STEPS.map(([, expected]) => expected));
});

test('the legacy backend forgets the order', async () => {
  const answers = await runFlow(path.join(HERE, 'legacy', 'server.js'));
  assert.equal(answers[KILL_AFTER], 'Hi! Which size: small, medium or large?');
});

test('the migration is at most five changed lines', () => {
  const legacy = fs.readFileSync(path.join(HERE, 'legacy', 'server.js'), 'utf8').split('\n');
  const migrated = fs.readFileSync(path.join(HERE, 'server.js'), 'utf8').split('\n');
  // Lines only in one of the two files (the files share every other line, in order).
  const onlyIn = (a, b) => a.filter((line) => !b.includes(line));
  const changed = onlyIn(legacy, migrated).length + onlyIn(migrated, legacy).length;
  assert.ok(changed > 0 && changed <= 5, `changed lines: ${changed}`);
});
