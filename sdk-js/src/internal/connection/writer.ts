// Writer: the bounded outbound queue and the single write loop. Everything sent goes through one
// queue; whatever is pending when the transport is free is coalesced into one ClientFrame (up to
// the session's message and byte bounds). One write in flight per stream; none while the session
// is held after a bridge restart.
import { CancelledError } from '../../errors.js';
import type { PbClientMessage } from '../proto.js';
import type { ConnectionState, Session } from './state.js';

export class Writer {
  readonly #state: ConnectionState;
  readonly #isStale: (message: PbClientMessage) => boolean;
  #queue: PbClientMessage[] = [];
  #head = 0;
  #spaceWaiters: (() => void)[] = [];
  #idleWaiters: (() => void)[] = [];
  #flushScheduled = false;
  /** The generation of the session a write is in flight on; 0 when none. */
  #writing = 0;
  #writingCount = 0;

  /** `isStale`: a queued request nobody waits for any more (timed out, cancelled) is not written. */
  constructor(state: ConnectionState, isStale: (message: PbClientMessage) => boolean) {
    this.#state = state;
    this.#isStale = isStale;
  }

  /** Messages waiting in the queue. */
  get depth(): number {
    return this.#queue.length - this.#head;
  }

  /** Something is queued or being written. */
  get busy(): boolean {
    return this.#queue.length > this.#head || this.#writing !== 0;
  }

  /** Queues a message; false when the queue is at or over its capacity (the caller may wait for space). */
  enqueue(message: PbClientMessage): boolean {
    this.#queue.push(message);
    this.scheduleFlush();
    return this.#queue.length - this.#head < this.#state.options.outboundQueueCapacity;
  }

  scheduleFlush(): void {
    if (this.#flushScheduled || this.#writing !== 0 || !this.#state.session) return;
    this.#flushScheduled = true;
    queueMicrotask(() => this.#flush());
  }

  #flush(): void {
    this.#flushScheduled = false;
    const session = this.#state.session;
    if (!session || session.ended || this.#writing !== 0 || session.heldUntil !== 0) return;
    const messages: PbClientMessage[] = [];
    let bytes = 0;
    const queue = this.#queue;
    let head = this.#head;
    while (messages.length < session.maxFrameMessages && head < queue.length) {
      const message = queue[head] as PbClientMessage;
      const size = estimateSize(message);
      if (messages.length > 0 && bytes + size > session.maxFrameBytes) break;
      queue[head++] = undefined as unknown as PbClientMessage;
      if (this.#isStale(message)) continue;
      messages.push(message);
      bytes += size;
    }
    if (head === queue.length) {
      this.#queue = [];
      this.#head = 0;
    } else if (head > 4096 && head * 2 > queue.length) {
      this.#queue = queue.slice(head);
      this.#head = 0;
    } else {
      this.#head = head;
    }
    this.#wakeSpaceWaiters();
    if (messages.length === 0) return;
    this.#write(session, messages);
  }

  #write(session: Session, messages: PbClientMessage[]): void {
    const stats = this.#state.stats;
    this.#writing = session.generation;
    const count = messages.length;
    this.#writingCount = count;
    try {
      session.call.write({ messages }, () => {
        if (this.#writing === session.generation) this.#writing = 0;
        if (session.ended) return;
        stats.framesSent++;
        stats.messagesSent += count;
        session.lastWrite = Date.now();
        if (this.#queue.length > this.#head) this.scheduleFlush();
        else this.notifyIdle();
      });
    } catch (error) {
      this.#writing = 0;
      stats.lostOnBreak += count;
      this.#state.warn(`a write failed: ${(error as Error).message}`);
    }
  }

  /** The stream of `session` ended: a frame being written on it may or may not have reached the bridge. */
  sessionEnded(session: Session): void {
    if (this.#writing !== session.generation) return;
    this.#writing = 0;
    if (!this.#state.closing) this.#state.stats.lostOnBreak += this.#writingCount;
  }

  /** Wakes whoever waits for the connection to be idle (nothing to write, no call running). */
  notifyIdle(): void {
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const wake of waiters) wake();
  }

  /** Resolves on the next idle notification, or after `ms`. */
  waitIdle(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#idleWaiters.push(resolve);
      setTimeout(resolve, ms).unref();
    });
  }

  #wakeSpaceWaiters(): void {
    while (
      this.#spaceWaiters.length > 0 &&
      this.#queue.length - this.#head < this.#state.options.outboundQueueCapacity
    ) {
      (this.#spaceWaiters.shift() as () => void)();
    }
  }

  /** Resolves when the queue has room again; CANCELLED on abort or when the connection closed. */
  waitForSpace(signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.#spaceWaiters.indexOf(wake);
        if (i >= 0) this.#spaceWaiters.splice(i, 1);
        reject(
          new CancelledError('Gave up waiting for room in the outbound queue.', { cause: signal?.reason }),
        );
      };
      const wake = (): void => {
        signal?.removeEventListener('abort', onAbort);
        if (this.#state.closing && this.#state.status.state === 'closed')
          reject(new CancelledError('The connection is closed.'));
        else resolve();
      };
      this.#spaceWaiters.push(wake);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * The connection closed: drops what was never written and returns how many of those were
   * messages nobody waits an answer for (requests' waiters fail with CANCELLED instead). Space
   * waiters are woken by {@link wakeAll} once the status is `closed`.
   */
  discard(): number {
    let unsent = 0;
    for (let i = this.#head; i < this.#queue.length; i++) {
      const m = this.#queue[i] as PbClientMessage;
      if (!m.heartbeat && !m.call && !m.memory && !m.publishAcked && !m.read && !m.streamAdmin) unsent++;
    }
    this.#queue = [];
    this.#head = 0;
    return unsent;
  }

  wakeAll(): void {
    const waiters = this.#spaceWaiters;
    this.#spaceWaiters = [];
    for (const wake of waiters) wake();
  }
}

/** A cheap upper estimate of a message's encoded size, to keep frames under the byte bound. */
export function estimateSize(message: PbClientMessage): number {
  const p = message.publish;
  if (p) {
    return (
      (p.payload?.length ?? 0) +
      (p.topic?.length ?? 0) +
      (p.replyTo?.length ?? 0) +
      (p.correlationId?.length ?? 0) +
      (p.id?.length ?? 0) +
      48 +
      (p.headers ? Object.keys(p.headers).length * 64 : 0)
    );
  }
  const acked = message.publishAcked?.envelope;
  if (acked)
    return (
      (acked.payload?.length ?? 0) +
      (acked.topic?.length ?? 0) +
      (acked.id?.length ?? 0) +
      64 +
      (acked.headers ? Object.keys(acked.headers).length * 64 : 0)
    );
  if (message.result)
    return (message.result.outputJson?.length ?? 0) + (message.result.error?.message?.length ?? 0) + 96;
  if (message.call)
    return (message.call.inputJson?.length ?? 0) + (message.call.capability?.length ?? 0) + 128;
  if (message.memory) {
    const m = message.memory;
    return (m.set?.value?.length ?? 0) + (m.compareAndSet?.value?.length ?? 0) + 640;
  }
  return 64;
}
