'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const statehold = require('../index.js');

test('decodes unpadded base64url, padded base64url and raw JSON', () => {
  const snapshot = { step: 'email', name: 'Zoë', n: [1, 2.5, null] };
  const unpadded = Buffer.from(JSON.stringify(snapshot)).toString('base64url');
  assert.ok(!unpadded.endsWith('='));
  assert.deepEqual(statehold.decodeState(unpadded), snapshot);
  assert.deepEqual(statehold.decodeState(unpadded + '='.repeat((4 - (unpadded.length % 4)) % 4)), snapshot);
  assert.deepEqual(statehold.decodeState('{"raw":true}'), { raw: true });
  assert.equal(statehold.decodeState(undefined), undefined);
  assert.equal(statehold.decodeState(''), undefined);
  for (const bad of ['not base64!', 'ew', '_-_-']) {
    assert.throws(() => statehold.decodeState(bad), statehold.ContractError, bad);
  }
});

test('encodes header-safe text that round-trips', () => {
  const value = { line: 'a\nb', emoji: '🚀', quote: '"' };
  const encoded = statehold.encodeState(value);
  assert.match(encoded, /^[A-Za-z0-9_-]+$/);
  assert.deepEqual(statehold.decodeState(encoded), value);
});

test('conversationStates stands in for an object inside a request', () => {
  const states = statehold.conversationStates();
  const { Conversation } = statehold;
  const c = new Conversation({ key: 'tg:42', version: 3, status: 'restored', state: { step: 'name' } });
  const storage = require('node:async_hooks');
  assert.ok(storage);
  // Run as the middleware does.
  statehold.middleware()({ headers: { 'x-statehold-key': 'tg:42', 'x-statehold-state': statehold.encodeState({ step: 'name' }) } },
    { writeHead() {}, setHeader() {} }, () => {
      assert.ok(42 in states);
      assert.ok(!(7 in states));
      states[42].step = 'email';
      assert.equal(states[7], undefined);
      assert.throws(() => { states[7] = {}; });
      const conv = statehold.current();
      assert.deepEqual(conv.reportHeaders(), { 'x-statehold-state': statehold.encodeState({ step: 'email' }) });
      delete states[42];
      assert.deepEqual(conv.reportHeaders(), { 'x-statehold-clear': '1' });
    });
  assert.deepEqual(c.reportHeaders(), {}, 'unchanged state is not reported');
  assert.throws(() => states[42], /no statehold conversation/);
  assert.ok(!(42 in states));
});

test('grammY storage reads and writes the current conversation', () => {
  const storage = statehold.grammySessionStorage();
  statehold.middleware()({ headers: { 'x-statehold-key': 'tg:42' } }, { writeHead() {}, setHeader() {} }, () => {
    assert.equal(storage.read('42'), undefined);
    storage.write('42', { count: 1 });
    assert.deepEqual(statehold.current().reportMember(), { state: { count: 1 } });
  });
});

test('a change after the answer left is never silent: one error per conversation', () => {
  const statehold = require('../index.js');
  const errors = [];
  const original = console.error;
  console.error = (msg) => errors.push(String(msg));
  try {
    for (let i = 0; i < 2; i++) {
      const c = new statehold.Conversation({ key: 'tg:77', version: 1, status: 'restored', state: { step: 'name' } });
      assert.deepEqual(c.reportHeaders(), {}, 'nothing changed when the answer starts: reported inline');
      c.release(); // the request is over
      c.set({ step: 'email' }); // too late: a background task with no turn token to defer with
    }
  } finally {
    console.error = original;
  }
  assert.equal(errors.length, 1, errors.join('\n'));
  assert.match(errors[0], /tg:77.*answer-first-work-later/);
});

test('work still going on when the answer starts defers the report', () => {
  const statehold = require('../index.js');
  const c = new statehold.Conversation({ key: 'tg:78', version: 1, status: 'restored', state: { step: 'name' }, turn: 'tok' });
  assert.ok(c.hold());
  assert.deepEqual(c.reportHeaders(), { 'x-statehold-deferred': '1' });
  assert.equal(c.reportMember(), undefined, 'said in a header');
});
