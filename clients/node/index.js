'use strict';
// statehold client helpers for Node >= 18, no dependencies: the wire
// contract (docs/contract.md, section 3), a drop-in for a bot's in-memory
// `conversationStates` object, Express/Connect middleware, a plain
// (req, res) wrapper, a grammY session storage, and deferred turns for
// bots that answer first and work afterwards (grammY past its webhook
// timeout, Slack Bolt without processBeforeResponse): see `track`.

const { AsyncLocalStorage, AsyncResource } = require('node:async_hooks');

const HEADER_KEY = 'x-statehold-key';
const HEADER_VERSION = 'x-statehold-version';
const HEADER_STATE = 'x-statehold-state';
const HEADER_STATUS = 'x-statehold-status';
const HEADER_CLEAR = 'x-statehold-clear';
const HEADER_VERIFIED = 'x-statehold-verified';
const HEADER_TURN = 'x-statehold-turn';
const HEADER_DEFERRED = 'x-statehold-deferred';
// Header mode, request: `body` when the snapshot was too large for a header
// (contract.max_header_bytes) and travels in the JSON body's member.
const HEADER_STATE_IN = 'x-statehold-state-in';
const BODY_FIELD = '_statehold';
const GUIDE = 'docs/frameworks.md#answer-first-work-later';

const settings = { reportUrl: undefined };
/** Where late reports go: statehold's admin listener (default
 * STATEHOLD_REPORT_URL, else http://127.0.0.1:9090). */
function configure({ reportUrl } = {}) { settings.reportUrl = reportUrl; }
const reportUrl = () => (settings.reportUrl || process.env.STATEHOLD_REPORT_URL || 'http://127.0.0.1:9090').replace(/\/+$/, '');

const warned = new Set();
/** A state change that can no longer be reported: an error naming the
 * guide, once per conversation. */
function warnUnreportable(key, why) {
  if (warned.has(key)) return;
  warned.add(key);
  console.error(`statehold: the state of ${key} changed after the answer left and ${why}: this change is lost. Answer first and report later: see ${GUIDE}`);
}

class ContractError extends Error {}

/** The snapshot in an X-Statehold-State value (base64url, padding optional,
 * or a raw JSON object); undefined when there is none. */
function decodeState(value) {
  if (value === undefined || value === null) return undefined;
  const text = String(value).trim();
  if (!text) return undefined;
  let json = text;
  if (!text.startsWith('{')) {
    if (!/^[A-Za-z0-9_-]*={0,2}$/.test(text)) throw new ContractError('X-Statehold-State is not base64url');
    json = Buffer.from(text.replace(/=+$/, ''), 'base64url').toString('utf8');
  }
  try {
    return JSON.parse(json);
  } catch (e) {
    throw new ContractError('the snapshot is not JSON');
  }
}

/** An X-Statehold-State value for any JSON value: base64url without padding,
 * header-safe whatever the state holds. */
function encodeState(state) {
  return Buffer.from(JSON.stringify(state), 'utf8').toString('base64url');
}

const canonical = (v) => (v === undefined || v === null ? undefined : JSON.stringify(sortKeys(v)));
function sortKeys(v) {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') {
    return Object.keys(v).sort().reduce((o, k) => { o[k] = sortKeys(v[k]); return o; }, {});
  }
  return v;
}

/** One request's conversation: what statehold handed in, what the bot
 * makes of it. */
class Conversation {
  constructor({ key, version = 0, status, state, verified, turn } = {}) {
    this.key = key;
    this.version = Number(version) || 0;
    this.status = status;
    this.verified = verified;
    this.turn = turn;
    this.incoming = state;
    this.original = canonical(state);
    this.state = state === undefined ? undefined : structuredClone(state);
    this.cleared = false;
    // The conversation's work: the request, and what `track` was given.
    this.holds = 1;
    this.answered = undefined; // 'inline' | 'deferred', decided when the answer starts
    this.answeredState = undefined;
    this.settled = false; // the turn's report was made
  }

  /** One more piece of work; false once the report was made. */
  hold() {
    if (this.settled || this.holds <= 0) return false;
    this.holds += 1;
    return true;
  }

  /** A piece of work ended; the last one sends the late report. */
  release() {
    this.holds -= 1;
    if (this.holds === 0) this.workDone();
  }

  /** When the answer starts: report now, or defer while work goes on. */
  answer() {
    if (this.answered === undefined) {
      if (this.holds > 1 && this.turn && this.key) {
        this.answered = 'deferred';
      } else {
        this.answered = 'inline';
        this.answeredState = this.now();
      }
    }
    return this.answered;
  }

  now() { return this.cleared ? undefined : canonical(this.state); }

  workDone() {
    if (this.answered === 'deferred') {
      this.settled = true;
      const r = this.report();
      const body = !r ? { unchanged: true } : r[0] === 'clear' ? { clear: true } : { state: r[1] };
      const key = this.key;
      fetch(`${reportUrl()}/v1/turns/${this.turn}`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
      }).then((res) => {
        if (res.status !== 200) warnUnreportable(key, `its late report was refused (${res.status})`);
        return res.arrayBuffer();
      }, () => warnUnreportable(key, 'its late report found no statehold'));
    } else if (this.answered === 'inline') {
      this.settled = true;
      if (this.now() !== this.answeredState) {
        warnUnreportable(this.key, this.turn ? 'nothing told the helper the work went on (see the guide)' : 'the answer had no turn token to defer with');
      }
    }
  }

  get id() {
    return this.key && this.key.includes(':') ? this.key.slice(this.key.indexOf(':') + 1) : undefined;
  }

  set(state) { this.checkSettled(); this.state = state; this.cleared = state === undefined || state === null; }

  clear() { this.checkSettled(); this.state = undefined; this.cleared = true; }

  checkSettled() { if (this.settled) warnUnreportable(this.key, 'its turn was already reported'); }

  /** ['clear'] | ['state', value] | null (unchanged). */
  report() {
    if (this.cleared) return this.incoming === undefined ? null : ['clear'];
    if (this.state === undefined || canonical(this.state) === this.original) return null;
    return ['state', this.state];
  }

  reportHeaders() {
    if (this.answer() === 'deferred') return { [HEADER_DEFERRED]: '1' };
    const r = this.report();
    if (!r) return {};
    return r[0] === 'clear' ? { [HEADER_CLEAR]: '1' } : { [HEADER_STATE]: encodeState(r[1]) };
  }

  reportMember() {
    if (this.answer() === 'deferred') return undefined; // said in a header
    const r = this.report();
    if (!r) return undefined;
    return r[0] === 'clear' ? { clear: true } : { state: r[1] };
  }

  static fromHeaders(headers) {
    const h = (name) => headers[name];
    return new Conversation({
      key: h(HEADER_KEY),
      version: h(HEADER_VERSION),
      status: h(HEADER_STATUS),
      state: decodeState(h(HEADER_STATE)),
      verified: h(HEADER_VERIFIED),
      turn: h(HEADER_TURN),
    });
  }

  withBodyMember(member) {
    if (!member || typeof member !== 'object') return this;
    const c = new Conversation({
      key: member.key ?? this.key,
      version: member.version ?? this.version,
      status: member.status ?? this.status,
      state: member.state === null ? undefined : member.state,
      verified: this.verified,
      turn: member.turn ?? this.turn,
    });
    return c;
  }
}

const storage = new AsyncLocalStorage();

/** The current request's conversation; throws outside one. */
function current() {
  const c = storage.getStore();
  if (!c || !c.key) {
    throw new Error('no statehold conversation in this request: use the statehold middleware, and key the route in statehold\'s config');
  }
  return c;
}

/** A drop-in for `const conversationStates = {}` (or a Map). Inside a
 * request it holds one entry: the conversation statehold keyed it with.
 * Another id is not there (undefined), and setting another id throws.
 * `{ checkIds: false }` when the bot's ids differ from the route's key. */
function conversationStates({ checkIds = true } = {}) {
  const mine = (id) => {
    const c = current();
    return !checkIds || String(id) === c.id ? c : undefined;
  };
  const api = {
    get(id) { const c = mine(id); return c ? c.state : undefined; },
    has(id) { const c = storage.getStore(); if (!c || !c.key) return false; const m = mine(id); return !!m && m.state !== undefined; },
    set(id, state) {
      const c = mine(id);
      if (!c) throw new Error(`${id} is not this request's conversation (${current().key})`);
      c.set(state);
      return this;
    },
    delete(id) { const c = mine(id); if (!c || c.state === undefined) return false; c.clear(); return true; },
  };
  return new Proxy(api, {
    get(target, prop) {
      if (typeof prop === 'symbol' || prop in target) return target[prop];
      return target.get(prop);
    },
    set(target, prop, value) { target.set(prop, value); return true; },
    has(target, prop) { return typeof prop !== 'symbol' && target.has(prop); },
    deleteProperty(target, prop) { target.delete(prop); return true; },
  });
}

/** Express/Connect middleware. Put it after the JSON body parser
 * (`app.use(express.json())`): body mode needs it, and so does header mode
 * for a snapshot too large for a header (`X-Statehold-State-In: body`). */
function middleware({ bodyMode = false, bodyField = BODY_FIELD } = {}) {
  return function statehold(req, res, next) {
    let conversation;
    try {
      conversation = Conversation.fromHeaders(req.headers);
    } catch (e) {
      return next(e);
    }
    const inBody = bodyMode || String(req.headers[HEADER_STATE_IN] || '').trim().toLowerCase() === 'body';
    if (inBody && req.body && typeof req.body === 'object' && !Array.isArray(req.body) && bodyField in req.body) {
      conversation = conversation.withBodyMember(req.body[bodyField]);
      delete req.body[bodyField];
    }
    report(res, conversation, bodyMode, bodyField);
    storage.run(conversation, next);
  };
}

/** Counts `work` (a promise) as the current conversation's work: an answer
 * that starts before it settles says `X-Statehold-Deferred: 1`, and the
 * report is posted to statehold (`POST /v1/turns/<token>`) once the last
 * piece of work is done. Returns a promise settling like `work`. */
function track(work) {
  const c = storage.getStore();
  if (!c || !c.key || !c.hold()) return Promise.resolve(work);
  return Promise.resolve(work).finally(() => c.release());
}

/** Like `track`, for work that `start()` begins: held before it starts
 * (it may answer the request before its first await). */
function trackStart(start) {
  const c = storage.getStore();
  if (!c || !c.key || !c.hold()) return start();
  let work;
  try {
    work = start();
  } catch (e) {
    c.release();
    throw e;
  }
  return Promise.resolve(work).finally(() => c.release());
}

/** grammY: `bot.use(statehold.grammyMiddleware())` first. An update whose
 * handlers outlive webhookCallback's timeout keeps its conversation: the
 * timeout's answer defers the report instead of failing the update. */
function grammyMiddleware() {
  return (_ctx, next) => track(next());
}

/** Slack Bolt: `statehold.bolt(app)`. Bolt acknowledges an event before
 * its middleware and listeners run (without processBeforeResponse): each
 * event's processing is the conversation's work, so the ack defers the
 * report and the report follows when the listeners are done. */
function bolt(app) {
  const processEvent = app.processEvent.bind(app);
  app.processEvent = (event) => trackStart(() => processEvent(event));
  return app;
}

/** Wraps a plain `(req, res)` handler (node:http). Body mode needs the body
 * parsed by the handler, so the wrapper serves header mode only. */
function wrap(handler) {
  return (req, res) => {
    const conversation = Conversation.fromHeaders(req.headers);
    report(res, conversation, false, BODY_FIELD);
    return storage.run(conversation, () => {
      // The request's 'data' and 'end' events come from the socket, outside
      // this context: listeners added here are bound to it.
      for (const method of ['on', 'once', 'addListener']) {
        const original = req[method];
        req[method] = function (event, listener) {
          return original.call(this, event, AsyncResource.bind(listener));
        };
      }
      return handler(req, res);
    });
  };
}

/** Adds the report to the response just before its head is written: in
 * body mode as a member of a JSON answer when it is one, else in headers.
 * A deferred answer is a success: a framework's timeout error (grammY's
 * webhookCallback throws after 10 s) while the work goes on becomes 200,
 * or the platform would redeliver an update still being handled. The
 * request's own share of the work ends with the response. */
function report(res, conversation, bodyMode, bodyField) {
  const writeHead = res.writeHead;
  let inBody = false;
  res.writeHead = function (...args) {
    if (!inBody) {
      for (const [name, value] of Object.entries(conversation.reportHeaders())) res.setHeader(name, value);
    }
    if (conversation.answered === 'deferred' && (Number(args[0]) || res.statusCode) >= 500) {
      if (typeof args[0] === 'number') args[0] = 200;
      res.statusCode = 200;
    }
    return writeHead.apply(this, args);
  };
  let ended = false;
  const done = () => { if (!ended) { ended = true; conversation.release(); } };
  if (typeof res.once === 'function') {
    res.once('finish', done);
    res.once('close', done);
  }
  if (!bodyMode) return;
  const end = res.end;
  res.end = function (chunk, ...rest) {
    const member = conversation.reportMember();
    if (member && !res.headersSent && chunk !== undefined && typeof chunk !== 'function') {
      try {
        const parsed = JSON.parse(Buffer.isBuffer(chunk) ? chunk.toString('utf8') : String(chunk));
        if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) {
          parsed[bodyField] = member;
          const body = Buffer.from(JSON.stringify(parsed), 'utf8');
          res.setHeader('content-length', body.length);
          inBody = true;
          return end.call(this, body, ...rest);
        }
      } catch (e) { /* not JSON: reported in headers instead */ }
    }
    return end.call(this, chunk, ...rest);
  };
}

/** grammY session storage: `session({ initial, storage: grammySessionStorage() })`.
 * grammY's webhookCallback answers after the handlers ran, so the session
 * written by a handler is reported with that answer. */
function grammySessionStorage() {
  return {
    read: () => { const c = current(); return c.state; },
    write: (_key, value) => { current().set(value); },
    delete: () => { current().clear(); },
  };
}

module.exports = {
  BODY_FIELD, HEADER_CLEAR, HEADER_DEFERRED, HEADER_KEY, HEADER_STATE, HEADER_STATE_IN, HEADER_STATUS, HEADER_TURN,
  HEADER_VERIFIED, HEADER_VERSION,
  ContractError, Conversation, bolt, configure, conversationStates, current, decodeState,
  encodeState, grammyMiddleware, grammySessionStorage, middleware, track, wrap,
};
