'use strict';
// statehold client helpers for Node >= 18, no dependencies: the wire
// contract (docs/contract.md, section 3), a drop-in for a bot's in-memory
// `conversationStates` object, Express/Connect middleware, a plain
// (req, res) wrapper and a grammY session storage.

const { AsyncLocalStorage, AsyncResource } = require('node:async_hooks');

const HEADER_KEY = 'x-statehold-key';
const HEADER_VERSION = 'x-statehold-version';
const HEADER_STATE = 'x-statehold-state';
const HEADER_STATUS = 'x-statehold-status';
const HEADER_CLEAR = 'x-statehold-clear';
const HEADER_VERIFIED = 'x-statehold-verified';
const BODY_FIELD = '_statehold';

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
  constructor({ key, version = 0, status, state, verified } = {}) {
    this.key = key;
    this.version = Number(version) || 0;
    this.status = status;
    this.verified = verified;
    this.incoming = state;
    this.original = canonical(state);
    this.state = state === undefined ? undefined : structuredClone(state);
    this.cleared = false;
  }

  get id() {
    return this.key && this.key.includes(':') ? this.key.slice(this.key.indexOf(':') + 1) : undefined;
  }

  set(state) { this.state = state; this.cleared = state === undefined || state === null; }

  clear() { this.state = undefined; this.cleared = true; }

  /** ['clear'] | ['state', value] | null (unchanged). */
  report() {
    if (this.cleared) return this.incoming === undefined ? null : ['clear'];
    if (this.state === undefined || canonical(this.state) === this.original) return null;
    return ['state', this.state];
  }

  reportHeaders() {
    const r = this.report();
    if (!r) return {};
    return r[0] === 'clear' ? { [HEADER_CLEAR]: '1' } : { [HEADER_STATE]: encodeState(r[1]) };
  }

  reportMember() {
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

/** Express/Connect middleware. In body mode, put it after the JSON body
 * parser (`app.use(express.json())`). */
function middleware({ bodyMode = false, bodyField = BODY_FIELD } = {}) {
  return function statehold(req, res, next) {
    let conversation;
    try {
      conversation = Conversation.fromHeaders(req.headers);
    } catch (e) {
      return next(e);
    }
    if (bodyMode && req.body && typeof req.body === 'object' && !Array.isArray(req.body) && bodyField in req.body) {
      conversation = conversation.withBodyMember(req.body[bodyField]);
      delete req.body[bodyField];
    }
    report(res, conversation, bodyMode, bodyField);
    storage.run(conversation, next);
  };
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
 * body mode as a member of a JSON answer when it is one, else in headers. */
function report(res, conversation, bodyMode, bodyField) {
  const writeHead = res.writeHead;
  let inBody = false;
  res.writeHead = function (...args) {
    if (!inBody) {
      for (const [name, value] of Object.entries(conversation.reportHeaders())) res.setHeader(name, value);
    }
    return writeHead.apply(this, args);
  };
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
  BODY_FIELD, HEADER_CLEAR, HEADER_KEY, HEADER_STATE, HEADER_STATUS, HEADER_VERIFIED, HEADER_VERSION,
  ContractError, Conversation, conversationStates, current, decodeState, encodeState,
  grammySessionStorage, middleware, wrap,
};
