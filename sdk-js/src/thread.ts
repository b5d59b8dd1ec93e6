/**
 * Conversations: `thread.<id>.broadcast` and `thread.<id>.reply` (the convention of
 * docs/concepts.md), joined with `context.joinThread(id)`.
 * @module
 */
import type { EmitOptions, LoomEvent } from './event.js';
import type { SubscribeOptions, Subscription } from './subscription.js';

/** Options of `joinThread`. */
export interface JoinThreadOptions extends SubscribeOptions {
  /** Also yield this agent's own posts. @default false */
  includeOwn?: boolean;
}

interface Emitter {
  readonly agentId: string;
  emit(topic: string, payload?: unknown, options?: EmitOptions): Promise<void>;
}

/** A joined conversation. Iterate it for the events posted to it; `leave()` ends it. */
export class Thread implements AsyncIterable<LoomEvent> {
  /** The thread id. */
  readonly id: string;
  /** The underlying subscription (`thread.<id>.>`). */
  readonly subscription: Subscription;
  readonly #emitter: Emitter;
  readonly #includeOwn: boolean;

  /** @internal */
  constructor(id: string, subscription: Subscription, emitter: Emitter, includeOwn: boolean) {
    this.id = id;
    this.subscription = subscription;
    this.#emitter = emitter;
    this.#includeOwn = includeOwn;
  }

  /** Posts to everyone in the thread (`thread.<id>.broadcast`), with `threadId` set. */
  broadcast(payload?: unknown, options?: EmitOptions): Promise<void> {
    return this.#emitter.emit(`thread.${this.id}.broadcast`, payload, { ...options, threadId: this.id });
  }

  /** Posts an answer in the thread (`thread.<id>.reply`), with `threadId` set. */
  reply(payload?: unknown, options?: EmitOptions): Promise<void> {
    return this.#emitter.emit(`thread.${this.id}.reply`, payload, { ...options, threadId: this.id });
  }

  /** Leaves the thread (unsubscribes). */
  leave(): Promise<void> {
    return this.subscription.unsubscribe();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<LoomEvent> {
    for await (const event of this.subscription) {
      if (this.#includeOwn || event.sender !== this.#emitter.agentId) yield event;
    }
  }
}
