// Small internal helpers: ids, backoff, topic checks, JSON pointers, payload encoding.
import { randomBytes } from 'node:crypto';

import { InvalidParamsError } from '../errors.js';

/** Cheap ids unique per connection: a random prefix and a counter. */
export class IdGenerator {
  readonly #prefix = randomBytes(4).toString('hex') + '-';
  #next = 0;
  next(): string {
    return this.#prefix + String(++this.#next);
  }
}

/** A stable agent id for a display name: its allowed characters plus a random suffix. */
export function newAgentId(name: string): string {
  const stem = (name || 'agent').replace(/[^A-Za-z0-9_.:-]/g, '-').slice(0, 100);
  return `${stem}-${randomBytes(4).toString('hex')}`;
}

/** Jittered exponential backoff: initial * 2^attempt, capped, spread by +/- jitter. */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number, jitter: number): number {
  if (initialMs <= 0) return 0;
  const ms = Math.min(maxMs, initialMs * 2 ** Math.min(Math.max(attempt, 0), 30));
  const spread = Math.min(Math.max(jitter, 0), 1);
  return Math.max(0, ms * (1 + spread * (2 * Math.random() - 1)));
}

const TOKEN = /^[A-Za-z0-9_:-]+$/;

/** Validates a concrete topic (no wildcards); throws INVALID_PARAMS naming what is wrong. */
export function validateTopic(topic: string, what = 'topic', path = '/topic'): void {
  if (typeof topic !== 'string' || topic.length === 0)
    throw new InvalidParamsError(
      `The ${what} is empty; give dot-separated tokens such as 'orders.eu.created'.`,
      { path },
    );
  if (topic.length > 512)
    throw new InvalidParamsError(
      `The ${what} '${topic.slice(0, 40)}...' has ${topic.length} characters; at most 512 are allowed.`,
      { path },
    );
  const tokens = topic.split('.');
  if (tokens.length > 32)
    throw new InvalidParamsError(
      `The ${what} '${topic}' has ${tokens.length} tokens; at most 32 are allowed.`,
      { path },
    );
  tokens.forEach((token, i) => {
    if (token.length === 0)
      throw new InvalidParamsError(
        `The ${what} '${topic}' has an empty token at position ${i + 1}; remove the extra '.'.`,
        { path },
      );
    if (!TOKEN.test(token))
      throw new InvalidParamsError(
        `The ${what} '${topic}' has an invalid token '${token}'; tokens use A-Z a-z 0-9 _ - : only${token.includes('*') || token.includes('>') ? ' (wildcards are for subscriptions)' : ''}.`,
        { path },
      );
  });
}

/** Validates a subscription pattern (`*` one token, `>` the rest, last only). */
export function validatePattern(pattern: string, path = '/pattern'): void {
  if (typeof pattern !== 'string' || pattern.length === 0)
    throw new InvalidParamsError("The subscription pattern is empty; use e.g. 'orders.>'.", { path });
  const tokens = pattern.split('.');
  if (pattern.length > 512 || tokens.length > 32)
    throw new InvalidParamsError(
      `The subscription pattern '${pattern.slice(0, 60)}' is too long (at most 512 characters and 32 tokens).`,
      { path },
    );
  tokens.forEach((token, i) => {
    if (token === '*') return;
    if (token === '>') {
      if (i !== tokens.length - 1)
        throw new InvalidParamsError(
          `The subscription pattern '${pattern}' is invalid: '>' may only be the last token.`,
          { path },
        );
      return;
    }
    if (token.length === 0)
      throw new InvalidParamsError(
        `The subscription pattern '${pattern}' has an empty token at position ${i + 1}.`,
        { path },
      );
    if (!TOKEN.test(token))
      throw new InvalidParamsError(
        `The subscription pattern '${pattern}' has an invalid token '${token}'; tokens use A-Z a-z 0-9 _ - : and the wildcards '*' and '>' as whole tokens.`,
        { path },
      );
  });
}

/** Topic token for an agent id (dots would add tokens). */
export const inboxToken = (agentId: string): string => agentId.replace(/\./g, '_');

/** A JSON pointer (RFC 6901) from path segments. */
export function jsonPointer(segments: readonly PropertyKey[]): string {
  return segments.map((s) => '/' + String(s).replace(/~/g, '~0').replace(/\//g, '~1')).join('');
}

export const textEncoder = new TextEncoder();
export const textDecoder = new TextDecoder();

export const EMPTY = new Uint8Array(0);

/** A payload: bytes as they are, anything else (strings too) as JSON, like the .NET SDK. */
export function encodePayload(payload: unknown): { bytes: Uint8Array; contentType: string } {
  if (payload instanceof Uint8Array) return { bytes: payload, contentType: 'application/octet-stream' };
  if (payload === undefined) return { bytes: EMPTY, contentType: '' };
  return { bytes: Buffer.from(JSON.stringify(payload), 'utf8'), contentType: 'application/json' };
}

/** JSON text of a value as UTF-8 bytes. */
export const jsonBytes = (value: unknown): Buffer => Buffer.from(JSON.stringify(value ?? null), 'utf8');

/** Parses UTF-8 JSON bytes; empty bytes give `null`. */
export function parseJsonBytes(bytes: Uint8Array | null | undefined): unknown {
  if (!bytes || bytes.length === 0) return null;
  return JSON.parse(
    Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'),
  ) as unknown;
}

/** A positive whole number of milliseconds, or INVALID_PARAMS. */
export function positiveMs(value: number, what: string, path: string): number {
  if (!Number.isFinite(value) || value <= 0)
    throw new InvalidParamsError(`${what} must be a positive number of milliseconds; got ${String(value)}.`, {
      path,
    });
  return Math.min(Math.ceil(value), 0xffffffff);
}

/** Resolves after `ms`, or rejects when the signal aborts. Unrefs nothing: callers decide. */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
