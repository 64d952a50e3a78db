// Types for the statehold client helpers (index.js).
import type { IncomingMessage, ServerResponse } from 'node:http';

export const BODY_FIELD: string;
export const HEADER_CLEAR: string;
export const HEADER_KEY: string;
export const HEADER_STATE: string;
export const HEADER_STATUS: string;
export const HEADER_VERIFIED: string;
export const HEADER_STATE_IN: string;
export const HEADER_VERSION: string;

export class ContractError extends Error {}

export function decodeState(value: string | undefined | null): unknown;
export function encodeState(state: unknown): string;

export class Conversation {
  key?: string;
  version: number;
  status?: 'restored' | 'new' | 'degraded';
  verified?: string;
  /** This turn's token (X-Statehold-Turn), for a late report. */
  turn?: string;
  state: unknown;
  readonly id?: string;
  set(state: unknown): void;
  clear(): void;
  reportHeaders(): Record<string, string>;
  reportMember(): { state: unknown } | { clear: true } | undefined;
}

export type ConversationStates = Record<string | number, any> & {
  get(id: string | number): any;
  set(id: string | number, state: unknown): ConversationStates;
  has(id: string | number): boolean;
  delete(id: string | number): boolean;
};

export function conversationStates(options?: { checkIds?: boolean }): ConversationStates;
export function current(): Conversation;
export function middleware(options?: { bodyMode?: boolean; bodyField?: string }):
  (req: IncomingMessage & { body?: any }, res: ServerResponse, next: (err?: unknown) => void) => void;
export function wrap(handler: (req: IncomingMessage, res: ServerResponse) => unknown):
  (req: IncomingMessage, res: ServerResponse) => unknown;
export function grammySessionStorage<T = unknown>(): {
  read(key: string): T | undefined;
  write(key: string, value: T): void;
  delete(key: string): void;
};

/** Where late reports go (default STATEHOLD_REPORT_URL, else http://127.0.0.1:9090). */
export function configure(options: { reportUrl?: string }): void;
/** Counts a promise as the current conversation's work: an answer that
 * starts before it settles defers the report (X-Statehold-Deferred), and
 * the report is posted to POST /v1/turns/<token> when the work is done. */
export function track<T>(work: Promise<T> | T): Promise<T>;
/** grammY: `bot.use(grammyMiddleware())`, first. */
export function grammyMiddleware(): (ctx: unknown, next: () => Promise<void>) => Promise<void>;
/** Slack Bolt: `bolt(app)`: each event's processing defers the ack's report until its listeners are done. */
export function bolt<A extends { processEvent(event: any): Promise<void> }>(app: A): A;
export const HEADER_TURN: 'x-statehold-turn';
export const HEADER_DEFERRED: 'x-statehold-deferred';
