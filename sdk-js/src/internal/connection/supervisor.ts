// Supervisor: RegisterAgent and the EventStream, the status state machine, reconnects with
// jittered exponential backoff, the settle after a bridge restart, resubscribe-before-flush
// ordering (a registration carries every subscription and capability; what it missed and the
// durable consumers are sent before anything queued), and the bounded shutdown.
import * as grpc from '@grpc/grpc-js';

import type { ConnectionStatus } from '../../connection-types.js';
import {
  CancelledError,
  InvalidParamsError,
  type LoomError,
  TimeoutError,
  UnavailableError,
} from '../../errors.js';
import { encodeClientFrame } from '../frame-encoder.js';
import {
  deserializeServerFrame,
  fromStatus,
  type PbRegisterRequest,
  type PbRegisterResponse,
  type PbServerFrame,
  registerAgent,
  SERVICE,
  SESSION_HEADER,
  unary,
} from '../proto.js';
import { backoffDelay, delay } from '../util.js';
import type { CallRunner } from './call-runner.js';
import type { DurableStreams } from './durable-streams.js';
import type { Heartbeat } from './heartbeat.js';
import type { PendingCalls } from './pending-calls.js';
import type { Reader } from './reader.js';
import type { ConnectionState, Session } from './state.js';
import type { SubscriptionRouter } from './subscription-router.js';
import type { Writer } from './writer.js';

const FRAME_HEADROOM = 64 * 1024;

export interface SupervisorParts {
  client: grpc.Client;
  url: string;
  writer: Writer;
  pending: PendingCalls;
  router: SubscriptionRouter;
  calls: CallRunner;
  heartbeat: Heartbeat;
  reader: Reader;
  durable: DurableStreams;
}

export class Supervisor {
  readonly #state: ConnectionState;
  readonly #p: SupervisorParts;
  readonly #statusListeners = new Set<(status: ConnectionStatus) => void>();
  #generation = 0;
  #started = false;
  /** When the last stream was lost (Date.now()); undefined while connected or before the first. */
  #lostAt: number | undefined;

  constructor(state: ConnectionState, parts: SupervisorParts) {
    this.#state = state;
    this.#p = parts;
  }

  setStatus(status: ConnectionStatus): void {
    const state = this.#state;
    if (state.status.state === 'closed' || state.status.state === status.state) return;
    state.log.debug(`${state.agentId}: ${state.status.state} -> ${status.state}`);
    state.status = status;
    for (const listener of [...this.#statusListeners]) listener(status);
  }

  /** Status changes from now on (see `Connection.statusChanges`). */
  statusChanges(signal?: AbortSignal): AsyncIterableIterator<ConnectionStatus> {
    const buffer: ConnectionStatus[] = [];
    let waiter: ((r: IteratorResult<ConnectionStatus>) => void) | undefined;
    let done = this.#state.status.state === 'closed';
    const finish = (): void => {
      done = true;
      this.#statusListeners.delete(listener);
      signal?.removeEventListener('abort', finish);
      if (waiter) {
        const w = waiter;
        waiter = undefined;
        w({ value: undefined, done: true });
      }
    };
    const listener = (status: ConnectionStatus): void => {
      if (waiter) {
        const w = waiter;
        waiter = undefined;
        w({ value: status, done: false });
      } else {
        buffer.push(status);
        if (buffer.length > 64) buffer.shift();
      }
      if (status.state === 'closed') {
        this.#statusListeners.delete(listener);
        signal?.removeEventListener('abort', finish);
        done = true;
      }
    };
    if (!done) this.#statusListeners.add(listener);
    signal?.addEventListener('abort', finish, { once: true });
    const iterator: AsyncIterableIterator<ConnectionStatus> = {
      next: () => {
        const value = buffer.shift();
        if (value !== undefined) return Promise.resolve({ value, done: false });
        if (done || signal?.aborted) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => {
          waiter = resolve;
        });
      },
      return: () => {
        finish();
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  /** Registers and opens the first stream. */
  async start(signal?: AbortSignal): Promise<void> {
    if (this.#started)
      throw new InvalidParamsError('start() was already called; the connection reconnects by itself.');
    this.#started = true;
    const onAbort = (): void => this.#state.lifetime.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const session = await this.#establish();
      this.#connected(session, false);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Connected: what the registration missed and the durable consumers go first, then the queue. */
  #connected(session: Session, reconnected: boolean): void {
    this.setStatus({ state: 'connected', sessionId: session.sessionId, reconnected });
    this.#p.router.subscribeMissing();
    this.#p.durable.reattach();
    this.#p.writer.scheduleFlush();
  }

  #registration(): PbRegisterRequest {
    const options = this.#state.options;
    return {
      agentId: this.#state.agentId,
      name: options.name,
      namespace: options.namespace,
      subscriptions: this.#p.router.specs(),
      capabilities: this.#p.calls.descriptors(),
      metadata: options.metadata,
      sdk: options.sdk,
      heartbeatIntervalMs: options.heartbeatMs,
    };
  }

  async #establish(): Promise<Session> {
    const state = this.#state;
    const options = state.options;
    const { client, router } = this.#p;
    const signal = state.lifetime.signal;
    // The registration carries every subscription and capability, and its answer confirms them
    // (with the subscriptions' ids): all are in place before anything queued is written. One
    // added while the registration was on its way is carried by one more registration.
    let response: PbRegisterResponse = await unary(
      client,
      registerAgent,
      this.#registration(),
      options.connectTimeoutMs,
      signal,
    );
    const bridgeKnewUs = response.reconnected;
    for (let round = 1; round < 3 && !router.allConfirmed(response); round++) {
      response = await unary(client, registerAgent, this.#registration(), options.connectTimeoutMs, signal);
    }
    state.limits = response.limits ?? {};
    const stale = router.bind(response);
    const limits = state.limits;
    const maxFrameMessages = Math.min(
      options.maxFrameMessages,
      limits.maxBatchMessages || options.maxFrameMessages,
    );
    let maxFrameBytes = options.maxFrameBytes;
    if ((limits.maxMessageBytes ?? 0) > FRAME_HEADROOM * 2)
      maxFrameBytes = Math.min(maxFrameBytes, (limits.maxMessageBytes ?? 0) - FRAME_HEADROOM);
    const metadata = new grpc.Metadata();
    metadata.set(SESSION_HEADER, response.sessionId);
    const call = client.makeBidiStreamRequest(
      SERVICE + 'EventStream',
      encodeClientFrame,
      deserializeServerFrame,
      metadata,
      {},
    );
    const now = Date.now();
    const session: Session = {
      generation: ++this.#generation,
      sessionId: response.sessionId,
      call,
      intervalMs: response.heartbeatIntervalMs || 5000,
      maxFrameMessages: Math.max(1, maxFrameMessages),
      maxFrameBytes,
      lastReceived: now,
      lastWrite: now,
      ended: false,
      paused: false,
      heartbeat: undefined,
      onStatus: () => undefined,
      endWaiters: [],
      heldUntil: 0,
      releaseTimer: undefined,
    };
    call.on('error', () => undefined); // the status event carries every failure
    call.on('status', (status: grpc.StatusObject) => session.onStatus(status));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          fail(
            new TimeoutError(
              `The bridge did not open the event stream within ${options.connectTimeoutMs} ms.`,
            ),
          ),
        options.connectTimeoutMs,
      );
      const onAbort = (): void => fail(new CancelledError('The connection was closed while connecting.'));
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
      };
      const fail = (error: LoomError): void => {
        done();
        session.ended = true;
        call.cancel();
        reject(error);
      };
      session.onStatus = (status) => fail(fromStatus(status, this.#p.url));
      call.once('metadata', () => {
        done();
        resolve();
      });
      signal.addEventListener('abort', onAbort, { once: true });
    });
    session.onStatus = (status) =>
      this.onStreamEnded(
        session,
        status.code === grpc.status.OK ? undefined : fromStatus(status, this.#p.url),
      );
    call.on('data', (frame: PbServerFrame) => this.#p.reader.onFrame(session, frame));
    this.#p.heartbeat.start(session);
    state.session = session;
    const lostAt = this.#lostAt;
    this.#lostAt = undefined;
    if (lostAt !== undefined && !bridgeKnewUs) {
      // Below the bridge's expiry (3 silent heartbeat intervals): nothing, not even a ping, is written meanwhile.
      const settle = Math.min(this.#restartSettle(Date.now() - lostAt), 2 * session.intervalMs);
      if (settle > 0) {
        // The bridge restarted (or dropped this agent): other agents' subscriptions are gone until
        // they register again, and what this one queued meanwhile would reach nobody.
        state.warn(
          `the bridge did not know this agent (it restarted); holding ${this.#p.writer.depth} queued messages for ${Math.round(settle)} ms so that other agents subscribe again first`,
        );
        session.heldUntil = Date.now() + settle;
        session.releaseTimer = setTimeout(() => {
          session.heldUntil = 0;
          this.#p.writer.scheduleFlush();
        }, settle);
      }
    }
    for (const id of stale) {
      this.#p.writer.enqueue({ unsubscribe: { correlationId: state.ids.next(), subscriptionId: id } });
    }
    state.log.info(
      `${state.agentId}: registered (session ${response.sessionId}, reconnected=${String(response.reconnected)}, heartbeat ${session.intervalMs} ms)`,
    );
    return session;
  }

  /**
   * How long to hold the queue after a bridge restart: a peer with the same reconnect settings,
   * disconnected at the same moment, retries within its current delay; the delays double, so that
   * is at most about the outage plus the first delay (twice the outage to cover the jitter of the
   * delays before), capped at the largest delay, plus the jitter of the delay itself.
   */
  #restartSettle(outageMs: number): number {
    const options = this.#state.options;
    const configured = options.restartSettleMs;
    if (configured >= 0) return configured;
    const initial = options.reconnectInitialMs;
    const largest = Math.max(initial, options.reconnectMaxMs);
    return Math.min(2 * outageMs + initial, largest) * (1 + options.reconnectJitter) + 50;
  }

  #endSession(session: Session): void {
    session.ended = true;
    this.#p.heartbeat.stop(session);
    clearTimeout(session.releaseTimer);
  }

  /** The stream of `session` ended (by the bridge, a transport failure, or silence): reconnect. */
  onStreamEnded(session: Session, error: LoomError | undefined): void {
    if (session.ended) return;
    const state = this.#state;
    this.#endSession(session);
    for (const waiter of session.endWaiters) waiter();
    if (state.session === session) state.session = undefined;
    this.#p.writer.sessionEnded(session);
    if (state.closing) return;
    const why = error ?? new UnavailableError('The bridge ended the stream.');
    this.#lostAt = Date.now();
    state.warn(`stream lost (${why.code}: ${why.message}); reconnecting`);
    this.setStatus({ state: 'reconnecting', error: why });
    this.#failInFlight(
      new UnavailableError(
        `The connection to the bridge was lost (${why.message}); the request may or may not have been carried out. Retry once the connection is back.`,
        { cause: why },
      ),
      session.generation,
    );
    void this.#reconnect();
  }

  /** What waited on a broken stream fails (retryable); calls pushed on it stop. */
  #failInFlight(error: LoomError, generation: number): void {
    this.#p.pending.failAll(error);
    this.#p.calls.abortAll(error, generation);
    this.#p.router.unbindAll();
  }

  async #reconnect(): Promise<void> {
    const state = this.#state;
    const options = state.options;
    const signal = state.lifetime.signal;
    for (let attempt = 0; !state.closing; attempt++) {
      try {
        await delay(
          backoffDelay(attempt, options.reconnectInitialMs, options.reconnectMaxMs, options.reconnectJitter),
          signal,
        );
      } catch {
        return; // closed
      }
      if (state.closing) return;
      try {
        const session = await this.#establish();
        if (state.closing) {
          this.#endSession(session);
          session.call.cancel();
          return;
        }
        state.stats.reconnects++;
        this.#connected(session, true);
        return;
      } catch (error) {
        state.log.info(
          `${state.agentId}: reconnect attempt ${attempt + 1} failed: ${(error as Error).message}`,
        );
      }
    }
  }

  /**
   * Shuts down within `drainTimeoutMs`: graceful waits for pushed calls to finish first; then
   * what waits fails with CANCELLED, what is queued is flushed (briefly unless graceful), the
   * stream is half-closed, and what was never written is counted.
   */
  async stop(graceful: boolean): Promise<void> {
    const state = this.#state;
    const { writer, calls } = this.#p;
    const deadline = Date.now() + state.options.drainTimeoutMs;
    const left = (): number => Math.max(0, deadline - Date.now());
    const session = state.session;
    const connected = session !== undefined && !session.ended && state.status.state === 'connected';
    if (graceful && connected) {
      while (calls.running > 0 && left() > 0 && !session.ended) await writer.waitIdle(Math.min(50, left()));
    }
    state.closing = true;
    const closed = new CancelledError('The connection was closed.');
    this.#failInFlight(closed, Number.MAX_SAFE_INTEGER);
    if (connected) {
      // What is queued goes out now, held or not.
      clearTimeout(session.releaseTimer);
      session.heldUntil = 0;
      const flushDeadline = Date.now() + (graceful ? left() : Math.min(left(), 1000));
      while (writer.busy && !session.ended && Date.now() < flushDeadline) {
        writer.scheduleFlush();
        await writer.waitIdle(20);
      }
      if (!session.ended) {
        const ended = new Promise<void>((resolve) => {
          session.endWaiters.push(resolve);
          setTimeout(resolve, Math.max(1, graceful ? left() : Math.min(left(), 1000))).unref();
        });
        session.call.end();
        await ended;
      }
    }
    if (session && !session.ended) {
      this.#endSession(session);
      session.call.cancel();
    }
    state.lifetime.abort(closed);
    this.#p.router.closeAll();
    this.#p.durable.closeAll();
    // What was never written: the publisher learns of it here, not from silence.
    const unsent = writer.discard();
    if (unsent > 0) {
      state.stats.unsentOnClose += unsent;
      state.warn(`${unsent} queued messages were never sent: the connection closed first`);
    }
    this.setStatus({ state: 'closed' });
    writer.wakeAll();
    this.#p.client.close();
  }
}
