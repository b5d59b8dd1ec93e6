/**
 * Subscriptions: a bounded local queue per subscription, read as an async iterator.
 * @module
 */
import { CancelledError, type LoomError } from './errors.js';
import { type LoomEvent, type OverflowPolicy, type Qos, QOS_NUMBERS } from './event.js';
import type { PbSubscription } from './internal/proto.js';

/** Options of `subscribe`. */
export interface SubscribeOptions {
  /** QoS class of the subscription: sets the bridge queue's defaults (protocol §7). @default "normal" */
  qos?: Qos;
  /** Full-queue policy, in the bridge and locally. @default the class default: realtime drop-oldest, normal drop-newest, batch block */
  overflow?: OverflowPolicy;
  /** Capacity of the bridge-side queue. @default 0 (the class default: 1024 / 8192 / 8192) */
  queueCapacity?: number;
  /** For the `block` policy: how long a full queue holds up the stream before dropping. @default 1000 */
  blockTimeoutMs?: number;
  /** Capacity of the local queue between the stream reader and the consumer. @default the connection's `deliveryQueueCapacity` (8192) */
  localQueueCapacity?: number;
  /** Unsubscribes when aborted. @default none */
  signal?: AbortSignal;
}

const OVERFLOW_NUMBERS: Record<OverflowPolicy, number> = { 'drop-oldest': 1, 'drop-newest': 2, block: 3 };

/** @internal */
export function subscriptionSpec(pattern: string, options: SubscribeOptions): PbSubscription {
  return {
    pattern,
    qos: QOS_NUMBERS[options.qos ?? 'normal'],
    overflow: options.overflow ? OVERFLOW_NUMBERS[options.overflow] : 0,
    queueCapacity: options.queueCapacity ?? 0,
    blockTimeoutMs: options.blockTimeoutMs ?? 0,
  };
}

/** @internal */
export function effectivePolicy(options: SubscribeOptions): OverflowPolicy {
  if (options.overflow) return options.overflow;
  return options.qos === 'realtime' ? 'drop-oldest' : options.qos === 'batch' ? 'block' : 'drop-newest';
}

/** @internal Hooks the connection gives a subscription. */
export interface SubscriptionHost {
  unsubscribe(subscription: Subscription): Promise<void>;
  /** The consumer made room in a full `block` queue. */
  resumeReading(): void;
  warn(message: string): void;
}

/**
 * A subscription to a topic pattern (`*` one token, `>` the rest). Iterate it with
 * `for await (const event of subscription)`; leaving the loop (or `unsubscribe()`) ends it.
 * Subscriptions survive reconnects. One consumer at a time.
 */
export class Subscription implements AsyncIterableIterator<LoomEvent> {
  /** The pattern subscribed to. */
  readonly pattern: string;
  /** @internal */
  readonly spec: PbSubscription;
  /** @internal The bridge's id on the current session, undefined until acknowledged. */
  bridgeId: string | undefined;
  /** @internal */
  readonly policy: OverflowPolicy;
  /** @internal */
  readonly blockTimeoutMs: number;
  readonly #capacity: number;
  readonly #host: SubscriptionHost;
  #queue: LoomEvent[] = [];
  #head = 0;
  #waiter: ((result: IteratorResult<LoomEvent>) => void) | undefined;
  #failWaiter: ((error: LoomError) => void) | undefined;
  #closed = false;
  #error: LoomError | undefined;
  #delivered = 0;
  #dropped = 0;
  #slow = false;
  #unsubscribing: Promise<void> | undefined;

  /** @internal */
  constructor(pattern: string, options: SubscribeOptions, capacity: number, host: SubscriptionHost) {
    this.pattern = pattern;
    this.spec = subscriptionSpec(pattern, options);
    this.policy = effectivePolicy(options);
    this.blockTimeoutMs =
      options.blockTimeoutMs && options.blockTimeoutMs > 0 ? options.blockTimeoutMs : 1000;
    this.#capacity = Math.max(1, options.localQueueCapacity ?? capacity);
    this.#host = host;
    if (options.signal) {
      const signal = options.signal;
      if (signal.aborted) void this.unsubscribe();
      else signal.addEventListener('abort', () => void this.unsubscribe(), { once: true });
    }
  }

  /** The bridge's subscription id on the current session ("" while not acknowledged). */
  get id(): string {
    return this.bridgeId ?? '';
  }
  /** Events handed to the consumer so far. */
  get delivered(): number {
    return this.#delivered;
  }
  /** Events dropped because the local queue was full (by the subscription's policy). */
  get dropped(): number {
    return this.#dropped;
  }
  /** Events waiting in the local queue. */
  get pending(): number {
    return this.#queue.length - this.#head;
  }
  /** True once unsubscribed or closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** @internal Same bridge subscription: same pattern and QoS class. */
  sameAs(other: PbSubscription): boolean {
    return this.spec.pattern === other.pattern && (this.spec.qos || 2) === (other.qos || 2);
  }

  /**
   * @internal Hands over one delivery (from the stream reader; never waits). Returns true when
   * a `block` subscription is over capacity: the reader should pause.
   */
  push(event: LoomEvent): boolean {
    if (this.#closed) return false;
    if (this.#waiter) {
      const waiter = this.#waiter;
      this.#waiter = undefined;
      this.#failWaiter = undefined;
      this.#delivered++;
      waiter({ value: event, done: false });
      return false;
    }
    const depth = this.#queue.length - this.#head;
    if (depth >= this.#capacity) {
      if (this.policy === 'drop-oldest') {
        this.#queue[this.#head++] = undefined as unknown as LoomEvent;
        this.#compact();
        this.#drop();
      } else if (this.policy === 'drop-newest' || depth >= this.#capacity * 2) {
        this.#drop();
        return this.policy === 'block';
      } else {
        this.#queue.push(event);
        return true;
      }
    }
    this.#queue.push(event);
    return this.policy === 'block' && depth + 1 >= this.#capacity;
  }

  // Consumed and dropped slots are cleared as they go; once they make up most of the array it is
  // cut, so the array stays within about twice the capacity whichever end moves.
  #compact(): void {
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }

  #drop(): void {
    this.#dropped++;
    if (!this.#slow) {
      this.#slow = true;
      this.#host.warn(
        `Subscription '${this.pattern}' is not keeping up: its local queue of ${this.#capacity} is full; policy ${this.policy} (drops are counted in .dropped).`,
      );
    }
  }

  /** Waits for the next event; `done` once unsubscribed and the queue is empty. */
  next(): Promise<IteratorResult<LoomEvent>> {
    if (this.#head < this.#queue.length) {
      const value = this.#queue[this.#head] as LoomEvent;
      this.#queue[this.#head++] = undefined as unknown as LoomEvent;
      this.#compact();
      this.#delivered++;
      const depth = this.#queue.length - this.#head;
      if (this.#slow && depth < this.#capacity / 2) this.#slow = false;
      if (this.policy === 'block' && depth + 1 === this.#capacity) this.#host.resumeReading();
      return Promise.resolve({ value, done: false });
    }
    if (this.#closed) {
      return this.#error ? Promise.reject(this.#error) : Promise.resolve({ value: undefined, done: true });
    }
    if (this.#waiter)
      return Promise.reject(
        new CancelledError(`Subscription '${this.pattern}' already has a reader; iterate it once.`),
      );
    return new Promise<IteratorResult<LoomEvent>>((resolve, reject) => {
      this.#waiter = resolve;
      this.#failWaiter = reject;
    });
  }

  /** Ends the iteration and unsubscribes. */
  async return(): Promise<IteratorResult<LoomEvent>> {
    await this.unsubscribe();
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<LoomEvent> {
    return this;
  }

  /** Unsubscribes (once; later calls return the same promise). Queued events can still be read. */
  unsubscribe(): Promise<void> {
    this.#unsubscribing ??= (async () => {
      this.close();
      await this.#host.unsubscribe(this);
    })();
    return this.#unsubscribing;
  }

  /** @internal Stops taking deliveries; the reader finishes what is queued, then sees `done` (or `error`). */
  close(error?: LoomError): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#error = error;
    if (this.#waiter) {
      const waiter = this.#waiter;
      const fail = this.#failWaiter;
      this.#waiter = undefined;
      this.#failWaiter = undefined;
      if (error && fail) fail(error);
      else waiter({ value: undefined, done: true });
    }
  }
}
