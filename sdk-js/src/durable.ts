/**
 * Durable streams (docs/durability.md): acknowledged publishes, durable consumers and their
 * messages, stream reads and stream administration. The connection's `publishDurable`,
 * `consume`, `readStream`, `createStream`, `streamInfo`, `listStreams` and `deleteStream` use
 * these types.
 * @module
 */
import { CancelledError } from './errors.js';
import type { EmitOptions, LoomEvent } from './event.js';

/** The answer to {@link AgentContext.publishDurable}: where the event is stored. */
export interface PublishAck {
  /** The stream that captured the topic. */
  readonly stream: string;
  /** The event's sequence in the stream (1, 2, 3, ...). */
  readonly sequence: number;
  /** True when an event with the same id was already stored within the stream's dedup window (nothing new was stored; `sequence` is the first copy's). */
  readonly duplicate: boolean;
}

/** Options of `publishDurable`. `id` is the message id: publishing again with the same id stores nothing new. */
export interface PublishDurableOptions extends EmitOptions {
  /** How long to wait for the acknowledgement in ms. @default the connection's `requestTimeoutMs` (10000) */
  timeoutMs?: number;
  /** Stops waiting (rejects with CANCELLED; the event may still be stored). @default none */
  signal?: AbortSignal;
}

/** Where a new durable consumer starts (an existing one resumes where it was). */
export type DeliverPolicy = 'all' | 'new' | 'by-sequence' | 'by-time';

/** Options of `consume`: the durable consumer's configuration. */
export interface ConsumeOptions {
  /** The stream to consume. */
  stream: string;
  /** Durable name, unique per stream (1 to 64 letters, digits, '-', '_'); the position lives in the bridge under it. */
  name: string;
  /** Topic pattern within the stream. @default "" (all of it) */
  filter?: string;
  /** Where a new consumer starts. @default "all" */
  deliver?: DeliverPolicy;
  /** First sequence for `deliver: "by-sequence"`. */
  startSequence?: number;
  /** First time (Unix ms, or a Date) for `deliver: "by-time"`. */
  startTime?: number | Date;
  /** A delivery not settled within this many ms is delivered again. @default 30000 */
  ackWaitMs?: number;
  /** Deliveries before the event goes to the dead-letter topic. @default 5 */
  maxDeliver?: number;
  /** Unacknowledged deliveries in flight (the backpressure; at most 100000). @default 1000 */
  maxAckPending?: number;
  /** Where an event goes after `maxDeliver` deliveries. @default "loom.dead.<stream>.<name>" */
  deadLetterTopic?: string;
  /** Aborts the attach (rejects with CANCELLED). @default none */
  signal?: AbortSignal;
}

/** A durable consumer's state in the bridge. */
export interface ConsumerInfo {
  /** Every sequence up to here is acknowledged. */
  readonly ackFloor: number;
  /** The next sequence to deliver for the first time. */
  readonly nextSequence: number;
  /** Delivered, not yet acknowledged. */
  readonly pending: number;
  /** The stream's last sequence. */
  readonly streamLastSequence: number;
  /** The effective settings (defaults filled in by the bridge). */
  readonly ackWaitMs: number;
  readonly maxDeliver: number;
  readonly maxAckPending: number;
  readonly deadLetterTopic: string;
  readonly filter: string;
}

/** Options of `readStream`. */
export interface ReadStreamOptions {
  /** First sequence to read. @default from `startTime`, else the first event held */
  fromSequence?: number;
  /** First time to read from (Unix ms, or a Date), when `fromSequence` is not given. */
  fromTime?: number | Date;
  /** At most this many events (at most 1000, and what fits in one message). @default 100 */
  maxEvents?: number;
  /** How long to wait for the answer in ms. @default the connection's `requestTimeoutMs` */
  timeoutMs?: number;
  /** Stops waiting (rejects with CANCELLED). @default none */
  signal?: AbortSignal;
}

/** An event as a stream holds it. */
export interface StoredEvent {
  readonly sequence: number;
  /** When the bridge stored it (Unix ms). */
  readonly storedUnixMs: number;
  readonly event: LoomEvent;
}

/** The answer of `readStream`. */
export interface StreamReadResult {
  readonly events: readonly StoredEvent[];
  /** The stream's first held sequence. */
  readonly firstSequence: number;
  /** The stream's last sequence. */
  readonly lastSequence: number;
}

/** A stream's settings (`createStream`). */
export interface StreamSpec {
  /** Letters, digits, '-' and '_'. */
  name: string;
  /** Topic patterns captured; at least one. */
  subjects: readonly string[];
  /** Retention by age in ms. @default 0 (none) */
  maxAgeMs?: number;
  /** Retention by size in bytes. @default 0 (none) */
  maxBytes?: number;
  /** Retention by count. @default 0 (none) */
  maxEvents?: number;
  /** Message-id dedup window in ms. @default 120000 */
  duplicateWindowMs?: number;
}

/** A stream's settings and state (`createStream`, `streamInfo`, `listStreams`). */
export interface StreamState {
  readonly name: string;
  readonly subjects: readonly string[];
  readonly maxAgeMs: number;
  readonly maxBytes: number;
  readonly maxEvents: number;
  readonly duplicateWindowMs: number;
  readonly firstSequence: number;
  readonly lastSequence: number;
  readonly events: number;
  readonly bytes: number;
}

/** Options of {@link Consumer.detach}. */
export interface DetachOptions {
  /** Also remove the consumer (and its position) from the bridge. @default false */
  delete?: boolean;
}

/** @internal What a consumer needs from its connection. */
export interface ConsumerHost {
  settle(
    consumer: Consumer,
    sequence: number,
    kind: 'ack' | 'nak' | 'in-progress' | 'term',
    delayMs: number,
  ): void;
  detach(consumer: Consumer, remove: boolean): Promise<void>;
  warn(message: string): void;
}

/**
 * One delivery of a durable consumer: the event, its stream sequence, how often it was
 * delivered, and how to settle it. Settling more than once does nothing (except `inProgress`).
 */
export class ConsumerMessage {
  /** The event. */
  readonly event: LoomEvent;
  /** Its sequence in the stream. */
  readonly sequence: number;
  /** 1 on the first delivery; more when it is a redelivery. */
  readonly deliveryCount: number;
  /** The stream. */
  readonly stream: string;
  readonly #consumer: Consumer;
  readonly #host: ConsumerHost;
  #settled = false;

  /** @internal */
  constructor(
    consumer: Consumer,
    host: ConsumerHost,
    event: LoomEvent,
    sequence: number,
    deliveryCount: number,
  ) {
    this.#consumer = consumer;
    this.#host = host;
    this.event = event;
    this.sequence = sequence;
    this.deliveryCount = deliveryCount;
    this.stream = consumer.stream;
  }

  /** True once acked, nak'ed or terminated. */
  get settled(): boolean {
    return this.#settled;
  }

  /** Done: never delivered again. */
  ack(): void {
    this.#settle('ack', 0);
  }

  /** Failed: delivered again after `delayMs` (counts toward `maxDeliver`). */
  nak(delayMs = 0): void {
    this.#settle('nak', Math.min(Math.max(0, Math.round(delayMs)), 0xffffffff));
  }

  /** Still working: the ack wait starts again (may be sent more than once). */
  inProgress(): void {
    if (!this.#settled) this.#host.settle(this.#consumer, this.sequence, 'in-progress', 0);
  }

  /** Never deliver again, and do not dead-letter it. */
  term(): void {
    this.#settle('term', 0);
  }

  #settle(kind: 'ack' | 'nak' | 'term', delayMs: number): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#host.settle(this.#consumer, this.sequence, kind, delayMs);
  }
}

/**
 * A durable consumer attached through a connection (`consume`). Iterate it with
 * `for await (const message of consumer)` (one reader), or give `consume` a handler. It is
 * attached again after every reconnect; its position lives in the bridge, so it also survives a
 * restart of this process or of the bridge. Deliveries wait in a local queue bounded by
 * `maxAckPending` (plus a little for redeliveries); one that finds it full is dropped, counted
 * in `dropped`, and delivered again after the ack wait.
 */
export class Consumer implements AsyncIterableIterator<ConsumerMessage> {
  /** The stream. */
  readonly stream: string;
  /** The durable name. */
  readonly name: string;
  /** @internal The configuration attached with (re-sent on every reconnect). */
  readonly config: Readonly<Record<string, unknown>>;
  /** The consumer's state when it was (last) attached by `consume`. */
  info: ConsumerInfo;
  readonly #host: ConsumerHost;
  readonly #capacity: number;
  #queue: ConsumerMessage[] = [];
  #head = 0;
  #waiter: ((result: IteratorResult<ConsumerMessage>) => void) | undefined;
  #closed = false;
  #dropped = 0;
  #handled = 0;
  #failed = 0;
  #detaching: Promise<void> | undefined;
  /** @internal Resolves when the handler loop (if any) ended. */
  loop: Promise<void> = Promise.resolve();

  /** @internal */
  constructor(
    stream: string,
    name: string,
    config: Readonly<Record<string, unknown>>,
    capacity: number,
    host: ConsumerHost,
  ) {
    this.stream = stream;
    this.name = name;
    this.config = config;
    this.#capacity = capacity;
    this.#host = host;
    this.info = {
      ackFloor: 0,
      nextSequence: 0,
      pending: 0,
      streamLastSequence: 0,
      ackWaitMs: 0,
      maxDeliver: 0,
      maxAckPending: 0,
      deadLetterTopic: '',
      filter: '',
    };
  }

  /** Deliveries dropped because the local queue was full (delivered again after the ack wait). */
  get dropped(): number {
    return this.#dropped;
  }
  /** Messages waiting in the local queue. */
  get queued(): number {
    return this.#queue.length - this.#head;
  }
  /** With a handler: deliveries it finished without throwing. */
  get handled(): number {
    return this.#handled;
  }
  /** With a handler: deliveries whose handler threw (each was nak'ed unless settled). */
  get failed(): number {
    return this.#failed;
  }
  /** True once detached or the connection closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** @internal Hands over one delivery (never waits). */
  push(event: LoomEvent, sequence: number, deliveryCount: number): void {
    if (this.#closed) return;
    const message = new ConsumerMessage(this, this.#host, event, sequence, deliveryCount);
    if (this.#waiter) {
      const waiter = this.#waiter;
      this.#waiter = undefined;
      waiter({ value: message, done: false });
      return;
    }
    if (this.#queue.length - this.#head >= this.#capacity) {
      if (this.#dropped++ === 0)
        this.#host.warn(
          `Consumer '${this.name}' of stream '${this.stream}' is not keeping up: its local queue of ${this.#capacity} is full (drops are redelivered after the ack wait, counted in .dropped).`,
        );
      return;
    }
    this.#queue.push(message);
  }

  /** Waits for the next message; `done` once detached or closed. */
  next(): Promise<IteratorResult<ConsumerMessage>> {
    if (this.#head < this.#queue.length) {
      const value = this.#queue[this.#head] as ConsumerMessage;
      this.#queue[this.#head++] = undefined as unknown as ConsumerMessage;
      if (this.#head === this.#queue.length) {
        this.#queue = [];
        this.#head = 0;
      } else if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
        this.#queue = this.#queue.slice(this.#head);
        this.#head = 0;
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.#closed) return Promise.resolve({ value: undefined, done: true });
    if (this.#waiter)
      return Promise.reject(
        new CancelledError(`Consumer '${this.name}' already has a reader; iterate it once.`),
      );
    return new Promise((resolve) => {
      this.#waiter = resolve;
    });
  }

  /** Ends the iteration and detaches (the position stays in the bridge). */
  async return(): Promise<IteratorResult<ConsumerMessage>> {
    await this.detach();
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<ConsumerMessage> {
    return this;
  }

  /** Stops receiving (once; later calls return the same promise). The position stays in the bridge unless `delete`. */
  detach(options: DetachOptions = {}): Promise<void> {
    this.#detaching ??= (async () => {
      this.close();
      await this.#host.detach(this, options.delete ?? false);
      await this.loop;
    })();
    return this.#detaching;
  }

  /** @internal Runs `handler` for each message, one at a time: unsettled on return is acked, on a throw nak'ed. */
  run(handler: (message: ConsumerMessage) => unknown): void {
    this.loop = (async () => {
      for (;;) {
        const next = await this.next();
        if (next.done) return;
        const message = next.value;
        try {
          await handler(message);
          this.#handled++;
          message.ack();
        } catch (error) {
          this.#failed++;
          this.#host.warn(
            `Consumer '${this.name}' handler failed on sequence ${message.sequence}: ${(error as Error)?.message ?? String(error)}`,
          );
          message.nak();
        }
      }
    })();
  }

  /** @internal Stops taking deliveries; what is queued is dropped unsettled (the bridge delivers it again), a reader sees `done`. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = [];
    this.#head = 0;
    if (this.#waiter) {
      const waiter = this.#waiter;
      this.#waiter = undefined;
      waiter({ value: undefined, done: true });
    }
  }
}
