/**
 * Namespaced key-value memory with TTL, held by the bridge.
 * @module
 */
import { InvalidParamsError } from './errors.js';
import { num, type PbMemoryEntry, type PbMemoryRequest, type PbMemoryResponse } from './internal/proto.js';
import { EMPTY, encodePayload, positiveMs, textDecoder } from './internal/util.js';

/** One memory entry. */
export class MemoryItem {
  /** The key. */
  readonly key: string;
  /** The raw value. */
  readonly value: Uint8Array;
  /** Increases on every write of the key (from 1). */
  readonly version: number;
  /** When it expires (Unix ms), or undefined for never. */
  readonly expiresUnixMs: number | undefined;

  /** @internal */
  constructor(entry: PbMemoryEntry) {
    this.key = entry.key ?? '';
    this.value = entry.value ?? EMPTY;
    this.version = num(entry.version);
    const expires = num(entry.expiresUnixMs);
    this.expiresUnixMs = expires > 0 ? expires : undefined;
  }

  /** The value as UTF-8 text. */
  text(): string {
    return textDecoder.decode(this.value);
  }

  /** The value parsed as JSON. */
  json<T = unknown>(): T {
    try {
      return JSON.parse(this.text()) as T;
    } catch (error) {
      throw new InvalidParamsError(
        `The value of memory key '${this.key}' is not JSON: ${(error as Error).message}`,
        { path: '/value', cause: error },
      );
    }
  }
}

/** Outcome of {@link Memory.compareAndSet}. */
export interface CompareAndSetResult {
  /** True when the value was written. */
  swapped: boolean;
  /** On success the written entry; on failure the current entry, if any. */
  item: MemoryItem | undefined;
}

type Run = (request: PbMemoryRequest, signal?: AbortSignal) => Promise<PbMemoryResponse>;

/** Options of memory operations. */
export interface MemoryOptions {
  /** Stops waiting (rejects with CANCELLED). @default none */
  signal?: AbortSignal;
}

/** Options of memory writes. */
export interface MemorySetOptions extends MemoryOptions {
  /** Time to live in ms. @default none (no expiry) */
  ttlMs?: number;
}

const bytesOf = (value: unknown): Uint8Array => encodePayload(value).bytes;
const ttlOf = (ttlMs: number | undefined): number =>
  ttlMs === undefined ? 0 : positiveMs(ttlMs, 'A time to live', '/ttlMs');

/**
 * Key-value memory in one namespace (the agent's own by default). Values are bytes: a
 * `Uint8Array` is stored as it is, anything else as JSON. Errors are typed (INVALID_PARAMS for a
 * bad key, RESOURCE_EXHAUSTED when full).
 */
export class Memory {
  readonly #run: Run;
  readonly #namespace: string;
  /** The namespace this view reads and writes. */
  readonly namespace: string;

  /** @internal */
  constructor(run: Run, namespace: string, effective: string) {
    this.#run = run;
    this.#namespace = namespace;
    this.namespace = namespace || effective;
  }

  /** A view of another namespace. */
  withNamespace(namespace: string): Memory {
    if (!namespace) throw new InvalidParamsError('The namespace is empty.', { path: '/namespace' });
    return new Memory(this.#run, namespace, namespace);
  }

  #exec(request: PbMemoryRequest, options?: MemoryOptions): Promise<PbMemoryResponse> {
    request.namespace = this.#namespace;
    return this.#run(request, options?.signal);
  }

  /** The entry, or undefined when the key is absent or expired. */
  async get(key: string, options?: MemoryOptions): Promise<MemoryItem | undefined> {
    const response = await this.#exec({ get: { key } }, options);
    const entry = response.entries?.[0];
    return response.found === true && entry ? new MemoryItem(entry) : undefined;
  }

  /** Writes the value (replacing any), with an optional time to live; returns the new entry. */
  async set(key: string, value: unknown, options?: MemorySetOptions): Promise<MemoryItem> {
    const response = await this.#exec(
      { set: { key, value: bytesOf(value), ttlMs: ttlOf(options?.ttlMs) } },
      options,
    );
    const entry = response.entries?.[0];
    return new MemoryItem(entry ?? { key, value: bytesOf(value), version: 0, expiresUnixMs: 0 });
  }

  /** Deletes the key; true when it existed. */
  async delete(key: string, options?: MemoryOptions): Promise<boolean> {
    const response = await this.#exec({ delete: { key } }, options);
    return response.found === true;
  }

  /** Entries whose key starts with `prefix`, in ordinal key order, at most `limit` (default 1000). */
  async list(prefix = '', options?: MemoryOptions & { limit?: number }): Promise<MemoryItem[]> {
    const limit = options?.limit ?? 1000;
    if (!Number.isInteger(limit) || limit < 1)
      throw new InvalidParamsError(`The limit must be a positive integer; got ${String(limit)}.`, {
        path: '/limit',
      });
    const response = await this.#exec({ list: { prefix, limit } }, options);
    return (response.entries ?? []).map((e) => new MemoryItem(e));
  }

  /**
   * Writes the value only if the key is at `expectedVersion` (0: only if the key does not
   * exist). Returns whether it swapped and the entry as it is now.
   */
  async compareAndSet(
    key: string,
    expectedVersion: number,
    value: unknown,
    options?: MemorySetOptions,
  ): Promise<CompareAndSetResult> {
    const response = await this.#exec(
      { compareAndSet: { key, expectedVersion, value: bytesOf(value), ttlMs: ttlOf(options?.ttlMs) } },
      options,
    );
    const entry = response.entries?.[0];
    return { swapped: response.found === true, item: entry ? new MemoryItem(entry) : undefined };
  }
}
