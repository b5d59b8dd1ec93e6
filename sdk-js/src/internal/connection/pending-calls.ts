// PendingCalls: the correlation table of requests awaiting a reply on the stream (subscribe,
// unsubscribe, calls, memory, durable publishes, consumer and stream requests) and of
// request/reply waiters on the inbox: timeouts, cancellation, completion, fail-all on disconnect.
import {
  CancelledError,
  InvalidParamsError,
  type LoomError,
  TimeoutError,
  UnavailableError,
} from '../../errors.js';
import type { LoomEvent } from '../../event.js';
import type { Subscription } from '../../subscription.js';
import { fromProtoError, type PbClientMessage, type PbServerMessage } from '../proto.js';
import type { ConnectionState } from './state.js';
import type { Writer } from './writer.js';

export type PendingKind = 'subscribe' | 'unsubscribe' | 'call' | 'memory' | 'durable';

/** How long an abandoned subscribe waits for its late ack (to unsubscribe it) before it is forgotten. */
const ABANDONED_SUBSCRIBE_MS = 60_000;

export interface Pending {
  kind: PendingKind;
  resolve(message: PbServerMessage): void;
  reject(error: LoomError): void;
  subscription?: Subscription | undefined;
  abandoned?: boolean;
}

interface ReplyWaiter {
  needed: number;
  replies: LoomEvent[];
  resolve(replies: LoomEvent[]): void;
  reject(error: LoomError): void;
}

export class PendingCalls {
  readonly #state: ConnectionState;
  readonly #pending = new Map<string, Pending>();
  readonly #replyWaiters = new Map<string, ReplyWaiter>();
  #writer: Writer | undefined;

  constructor(state: ConnectionState) {
    this.#state = state;
  }

  /** Wired after construction (the writer asks this table which queued requests are stale). */
  set writer(writer: Writer) {
    this.#writer = writer;
  }

  #enqueue(message: PbClientMessage): void {
    this.#writer?.enqueue(message);
  }

  has(id: string): boolean {
    return this.#pending.has(id);
  }

  /** A queued request nobody waits for any more is not written. */
  isStale(message: PbClientMessage): boolean {
    if (message.call) return !this.#pending.has(message.call.callId ?? '');
    if (message.memory) return !this.#pending.has(message.memory.correlationId ?? '');
    return false;
  }

  /**
   * Queues `message` and waits for the reply with correlation `id`; an ErrorReply for it rejects
   * with its typed error. A subscribe that times out is kept for a while so that its late ack
   * unsubscribes what nobody wants; a call that times out or is aborted is cancelled at the bridge.
   */
  sendAndWait(
    kind: PendingKind,
    id: string,
    message: PbClientMessage,
    timeoutMs: number,
    onTimeout: () => LoomError,
    signal?: AbortSignal,
    subscription?: Subscription,
  ): Promise<PbServerMessage> {
    if (this.#state.status.state !== 'connected') {
      return Promise.reject(
        this.#state.closing
          ? new CancelledError('The connection is closed.')
          : new UnavailableError(
              `Not connected to the bridge (status ${this.#state.status.state}); retry once the connection is back.`,
            ),
      );
    }
    if (this.#pending.has(id))
      return Promise.reject(
        new InvalidParamsError(`Id '${id}' is already in flight; use a unique id per request.`, {
          path: '/call_id',
        }),
      );
    return new Promise<PbServerMessage>((resolve, reject) => {
      const cleanup = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const timer = setTimeout(() => {
        if (this.#pending.get(id) !== op) return;
        if (kind === 'subscribe') {
          op.abandoned = true; // kept for a while: a late ack unsubscribes what nobody wants
          this.#forgetLater(id, op);
        } else {
          this.#pending.delete(id);
        }
        if (kind === 'call') this.#enqueue({ cancel: { callId: id } });
        reject(onTimeout());
      }, timeoutMs);
      const onAbort = (): void => {
        cleanup();
        if (this.#pending.get(id) === op) {
          this.#pending.delete(id);
          if (kind === 'call') this.#enqueue({ cancel: { callId: id } });
        }
        reject(new CancelledError('The operation was cancelled.', { cause: signal?.reason }));
      };
      const op: Pending = {
        kind,
        subscription,
        resolve: (m) => {
          cleanup();
          resolve(m);
        },
        reject: (e) => {
          cleanup();
          reject(e);
        },
      };
      if (signal?.aborted) {
        onAbort();
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#pending.set(id, op);
      this.#enqueue(message);
    }).then((reply) => {
      if (reply.error) throw fromProtoError(reply.error.error);
      return reply;
    });
  }

  /** A subscribe sent without a waiter (after a registration): its ack binds the subscription whenever it comes. */
  expectSubscribeAck(id: string, subscription: Subscription): void {
    // No forget timer: the subscription is wanted; a new stream starts over.
    this.#pending.set(id, {
      kind: 'subscribe',
      subscription,
      abandoned: true,
      resolve: () => undefined,
      reject: () => undefined,
    });
  }

  /**
   * Forgets a subscribe whose caller gave up and that the bridge has not answered within
   * {@link ABANDONED_SUBSCRIBE_MS} (it answers at once unless the stream is gone, and a new stream
   * clears everything), so a bridge that never answers cannot grow the map. An ack later than that
   * leaves the subscription on the bridge until the next reconnect; its deliveries are dropped.
   */
  #forgetLater(id: string, op: Pending): void {
    setTimeout(() => {
      if (this.#pending.get(id) === op) this.#pending.delete(id);
    }, ABANDONED_SUBSCRIBE_MS).unref();
  }

  /** Removes and returns the waiter of `id` (undefined when late: timed out, or from an old stream). */
  take(id: string): Pending | undefined {
    const op = this.#pending.get(id);
    if (op) this.#pending.delete(id);
    return op;
  }

  complete(id: string, message: PbServerMessage): void {
    this.take(id)?.resolve(message);
  }

  /** An ErrorReply: completes its waiter, or is a rejected publish (counted) or a session error (logged). */
  onErrorReply(message: PbServerMessage): void {
    const reply = message.error;
    if (!reply) return;
    const id = reply.correlationId ?? '';
    const op = id ? this.take(id) : undefined;
    if (op) {
      op.resolve(message);
      return;
    }
    const error = fromProtoError(reply.error);
    if (id) {
      this.#state.stats.publishErrors++;
      this.#state.warn(`the bridge rejected envelope '${id}': ${error.code}: ${error.message}`);
    } else {
      this.#state.warn(`session error from the bridge: ${error.code}: ${error.message}`);
    }
  }

  /** Everything waiting (requests and reply waiters) fails with `error`. */
  failAll(error: LoomError): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const op of pending) op.reject(error);
    const waiters = [...this.#replyWaiters.values()];
    this.#replyWaiters.clear();
    for (const waiter of waiters) waiter.reject(error);
  }

  /**
   * Waits for the first `needed` replies correlated to `id` (request/reply over the inbox);
   * `publish` sends the request once the waiter is in place.
   */
  awaitReplies(
    id: string,
    needed: number,
    topic: string,
    timeoutMs: number,
    allowPartial: boolean,
    signal: AbortSignal | undefined,
    publish: () => Promise<void>,
  ): Promise<LoomEvent[]> {
    return new Promise<LoomEvent[]>((resolve, reject) => {
      const cleanup = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.#replyWaiters.delete(id);
      };
      const waiter: ReplyWaiter = {
        needed,
        replies: [],
        resolve: (replies) => {
          cleanup();
          resolve(replies);
        },
        reject: (error) => {
          cleanup();
          reject(error);
        },
      };
      const timer = setTimeout(() => {
        if (allowPartial) waiter.resolve(waiter.replies);
        else
          waiter.reject(
            new TimeoutError(
              `${needed === 1 ? 'No reply' : `Only ${waiter.replies.length} of ${needed} replies`} to the request on '${topic}' within ${timeoutMs} ms.`,
            ),
          );
      }, timeoutMs);
      const onAbort = (): void =>
        waiter.reject(
          new CancelledError(`The request on '${topic}' was cancelled.`, { cause: signal?.reason }),
        );
      if (signal?.aborted) {
        onAbort();
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#replyWaiters.set(id, waiter);
      publish().catch((error: unknown) => waiter.reject(error as LoomError));
    });
  }

  /** A reply on this agent's inbox (`inboxPrefix.<id>`). */
  onReply(event: LoomEvent, inboxPrefix: string): void {
    let id = event.correlationId;
    if (!id && event.topic.startsWith(inboxPrefix + '.')) id = event.topic.slice(inboxPrefix.length + 1);
    const waiter = this.#replyWaiters.get(id);
    if (!waiter) {
      this.#state.stats.lateReplies++;
      this.#state.log.debug(`${this.#state.agentId}: late reply on '${event.topic}' (correlation '${id}')`);
      return;
    }
    waiter.replies.push(event);
    if (waiter.replies.length >= waiter.needed) waiter.resolve(waiter.replies);
  }
}
