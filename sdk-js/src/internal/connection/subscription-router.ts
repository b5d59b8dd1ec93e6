// SubscriptionRouter: the local subscriptions (and the request/reply inbox), their binding to the
// bridge's subscription ids after each (re-)registration, subscribe/unsubscribe on the stream,
// re-subscription of what a registration missed, and delivery to each subscription's queue.
import { TimeoutError, UnavailableError } from '../../errors.js';
import { LoomEvent } from '../../event.js';
import { type SubscribeOptions, Subscription, type SubscriptionHost } from '../../subscription.js';
import type { PbRegisterResponse, PbServerMessage, PbSubscription } from '../proto.js';
import { inboxToken, validatePattern } from '../util.js';
import type { PendingCalls } from './pending-calls.js';
import type { ConnectionState } from './state.js';
import type { Writer } from './writer.js';

/** Inbox of request/reply: completes reply waiters instead of queueing. */
class InboxSubscription extends Subscription {
  readonly #onReply: (event: LoomEvent) => void;
  constructor(pattern: string, host: SubscriptionHost, onReply: (event: LoomEvent) => void) {
    super(pattern, {}, 1, host);
    this.#onReply = onReply;
  }
  override push(event: LoomEvent): boolean {
    this.#onReply(event);
    return false;
  }
}

export class SubscriptionRouter {
  /** `_inbox.<agent>`: replies to this agent's requests arrive on `<inboxPrefix>.<id>`. */
  readonly inboxPrefix: string;
  readonly #state: ConnectionState;
  readonly #writer: Writer;
  readonly #pending: PendingCalls;
  readonly #host: SubscriptionHost;
  readonly #entries: Subscription[] = [];
  #routes = new Map<string, Subscription[]>();

  constructor(state: ConnectionState, writer: Writer, pending: PendingCalls, resumeReading: () => void) {
    this.#state = state;
    this.#writer = writer;
    this.#pending = pending;
    this.#host = {
      unsubscribe: (s) => this.#unsubscribe(s),
      resumeReading,
      warn: (message) => state.warn(message),
    };
    this.inboxPrefix = `_inbox.${inboxToken(state.agentId)}`;
    this.#entries.push(
      new InboxSubscription(`${this.inboxPrefix}.>`, this.#host, (event) =>
        pending.onReply(event, this.inboxPrefix),
      ),
    );
  }

  /** The subscriptions a registration carries (one per pattern and QoS class). */
  specs(): PbSubscription[] {
    const subscriptions: PbSubscription[] = [];
    for (const entry of this.#entries) {
      if (!subscriptions.some((s) => entry.sameAs(s))) subscriptions.push(entry.spec);
    }
    return subscriptions;
  }

  /** True when a registration's answer confirms every local subscription. */
  allConfirmed(response: PbRegisterResponse): boolean {
    return this.#entries.every((e) => (response.subscriptions ?? []).some((h) => e.sameAs(h)));
  }

  /** Binds local subscriptions to the ids of a (re-)registration; returns bridge ids nobody here wants. */
  bind(response: PbRegisterResponse): string[] {
    const stale: string[] = [];
    for (const entry of this.#entries) entry.bridgeId = undefined;
    for (const held of response.subscriptions ?? []) {
      let wanted = false;
      for (const entry of this.#entries) {
        if (entry.sameAs(held)) {
          entry.bridgeId = held.subscriptionId ?? '';
          wanted = true;
        }
      }
      if (!wanted) stale.push(held.subscriptionId ?? '');
    }
    this.#rebuildRoutes();
    return stale;
  }

  /** The stream broke: no subscription is bound any more. */
  unbindAll(): void {
    for (const entry of this.#entries) entry.bridgeId = undefined;
    this.#rebuildRoutes();
  }

  #rebuildRoutes(): void {
    const routes = new Map<string, Subscription[]>();
    for (const entry of this.#entries) {
      if (entry.bridgeId === undefined) continue;
      const list = routes.get(entry.bridgeId);
      if (list) list.push(entry);
      else routes.set(entry.bridgeId, [entry]);
    }
    this.#routes = routes;
  }

  /** Subscribes what was added while a registration was on its way. */
  subscribeMissing(): void {
    const sent: Subscription[] = [];
    for (const entry of this.#entries) {
      if (entry.bridgeId !== undefined || sent.some((s) => s.sameAs(entry.spec))) continue;
      sent.push(entry);
      const correlationId = this.#state.ids.next();
      this.#pending.expectSubscribeAck(correlationId, entry);
      this.#writer.enqueue({ subscribe: { correlationId, subscription: entry.spec } });
    }
  }

  /**
   * Hands a delivery to every subscription bound to its id; returns the block timeout when a
   * `block` subscription is over capacity (the reader pauses), else 0.
   */
  deliver(deliver: NonNullable<PbServerMessage['deliver']>): number {
    const subscriptionId = deliver.subscriptionId ?? '';
    const entries = this.#routes.get(subscriptionId);
    if (!entries || !deliver.envelope) {
      this.#state.stats.unrouted++;
      return 0;
    }
    const event = new LoomEvent(deliver.envelope, subscriptionId);
    let pause = 0;
    for (const entry of entries) {
      if (entry.push(event) && pause === 0) pause = entry.blockTimeoutMs;
    }
    return pause;
  }

  /** The bridge acknowledged a subscribe: bind it (and its twins); unsubscribe it when nobody wants it any more. */
  onSubscribeAck(entry: Subscription, subscriptionId: string, abandoned: boolean): void {
    let wanted = false;
    for (const e of this.#entries) {
      if (e === entry || (e.bridgeId === undefined && e.sameAs(entry.spec))) e.bridgeId = subscriptionId;
      wanted ||= e.bridgeId === subscriptionId;
    }
    this.#rebuildRoutes();
    if (!wanted && abandoned && entry.closed) {
      this.#writer.enqueue({ unsubscribe: { correlationId: this.#state.ids.next(), subscriptionId } });
    }
  }

  async subscribe(pattern: string, options: SubscribeOptions): Promise<Subscription> {
    this.#state.ensureOpen();
    validatePattern(pattern);
    const options_ = this.#state.options;
    const entry = new Subscription(pattern, options, options_.deliveryQueueCapacity, this.#host);
    this.#entries.push(entry);
    const twin = this.#entries.find((e) => e !== entry && e.bridgeId !== undefined && e.sameAs(entry.spec));
    if (twin) {
      entry.bridgeId = twin.bridgeId;
      this.#rebuildRoutes();
      return entry;
    }
    if (this.#state.status.state !== 'connected') return entry;
    const correlationId = this.#state.ids.next();
    try {
      await this.#pending.sendAndWait(
        'subscribe',
        correlationId,
        { subscribe: { correlationId, subscription: entry.spec } },
        options_.requestTimeoutMs,
        () =>
          new TimeoutError(
            `The bridge did not acknowledge the subscription to '${pattern}' within ${options_.requestTimeoutMs} ms.`,
          ),
        options.signal,
        entry,
      );
    } catch (error) {
      if (error instanceof UnavailableError && !this.#state.closing) return entry; // the re-registration carries it
      this.#removeEntry(entry);
      throw error;
    }
    return entry;
  }

  #removeEntry(entry: Subscription): void {
    const i = this.#entries.indexOf(entry);
    if (i >= 0) this.#entries.splice(i, 1);
    entry.close();
    this.#rebuildRoutes();
  }

  async #unsubscribe(entry: Subscription): Promise<void> {
    const bridgeId = entry.bridgeId;
    this.#removeEntry(entry);
    const last = !this.#entries.some((e) => e.sameAs(entry.spec));
    if (!last || bridgeId === undefined || this.#state.closing || this.#state.status.state !== 'connected')
      return;
    const correlationId = this.#state.ids.next();
    try {
      await this.#pending.sendAndWait(
        'unsubscribe',
        correlationId,
        { unsubscribe: { correlationId, subscriptionId: bridgeId } },
        this.#state.options.requestTimeoutMs,
        () => new TimeoutError(`The bridge did not acknowledge the unsubscribe of '${entry.pattern}'.`),
      );
    } catch (error) {
      this.#state.warn(`unsubscribe of '${entry.pattern}' failed: ${(error as Error).message}`);
    }
  }

  /** The connection closed: every subscription ends (readers see `done` after what is queued). */
  closeAll(): void {
    for (const entry of this.#entries) entry.close();
  }
}
