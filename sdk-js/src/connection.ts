/**
 * One agent's connection to a bridge: RegisterAgent, then one EventStream. Everything sent goes
 * through one bounded queue and is coalesced into one ClientFrame per write. Heartbeats flow both
 * ways; a broken (or silent) stream is re-established with jittered exponential backoff,
 * registering again with the same agent id, subscriptions and capabilities.
 * @module
 */
import * as grpc from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';

import { type Capability, type CallInfo, toLoomError } from './capability.js';
import {
  CancelledError, CapabilityNotFoundError, createError, errorCodeNumber, InvalidParamsError, type LoomError,
  ResourceExhaustedError, TimeoutError, ToolError, UnavailableError,
} from './errors.js';
import { type EmitOptions, LoomEvent, QOS_NUMBERS } from './event.js';
import {
  fromProtoError, fromStatus, num, type PbActionCall, type PbActionResult, type PbClientMessage, type PbEnvelope,
  type PbLimits, type PbMemoryRequest, type PbMemoryResponse, type PbRegisterRequest, type PbRegisterResponse,
  type PbServerFrame, type PbServerMessage, type PbSubscription, registerAgent, SERVICE, SESSION_HEADER,
  deserializeServerFrame, unary,
} from './internal/proto.js';
import {
  backoffDelay, delay, encodePayload, IdGenerator, inboxToken, jsonBytes, newAgentId, parseJsonBytes, positiveMs,
  validatePattern, validateTopic,
} from './internal/util.js';
import { encodeClientFrame } from './internal/frame-encoder.js';
import { Llm } from './llm.js';
import { Memory } from './memory.js';
import { type ConnectOptions, type Logger, type ResolvedOptions, resolveOptions, resolveUrl } from './options.js';
import { type SubscribeOptions, Subscription, type SubscriptionHost } from './subscription.js';
import { Thread, type JoinThreadOptions } from './thread.js';

/** The state of a connection, as a discriminated union on `state`. */
export type ConnectionStatus =
  | { readonly state: 'connecting' }
  | { readonly state: 'connected'; readonly sessionId: string; readonly reconnected: boolean }
  | { readonly state: 'reconnecting'; readonly error: LoomError }
  | { readonly state: 'closed'; readonly error?: LoomError | undefined };

/** Routing policy of a capability call. */
export type RoutingPolicy = 'round-robin' | 'least-latency' | 'lowest-cost' | 'local-only';
const ROUTING_NUMBERS: Record<RoutingPolicy, number> = { 'round-robin': 1, 'least-latency': 2, 'lowest-cost': 3, 'local-only': 4 };

/** Options of `invoke` and `tool`. */
export interface InvokeOptions {
  /** Deadline of the call in ms. @default the connection's `callTimeoutMs` (30000) */
  timeoutMs?: number;
  /** Exact capability version. @default "" (any) */
  version?: string;
  /** Call this provider only. @default "" (any) */
  targetAgent?: string;
  /** How the bridge picks a provider. @default "round-robin" */
  routing?: RoutingPolicy;
  /** Conversation the call belongs to. @default "" */
  threadId?: string;
  /** Headers passed to the provider. @default {} */
  headers?: Record<string, string>;
  /** W3C trace context. @default "" */
  traceparent?: string;
  /**
   * Calls with the same key (per caller identity and capability) within the bridge's idempotency
   * window (default 24 h) get the first call's result instead of invoking a provider again, also
   * after a bridge restart. At most 128 bytes of printable ASCII, e.g. a UUID (docs/durability.md).
   * @default "" (not idempotent)
   */
  idempotencyKey?: string;
  /** Cancels the call (the provider is told to stop). @default none */
  signal?: AbortSignal;
}

/** Options of `request`. */
export interface RequestOptions extends EmitOptions {
  /** How long to wait for the reply in ms. @default the connection's `requestTimeoutMs` (10000) */
  timeoutMs?: number;
  /** Stops waiting (rejects with CANCELLED). @default none */
  signal?: AbortSignal;
}

/** Options of `requestMany` (first-k). */
export interface RequestManyOptions extends RequestOptions {
  /** How many replies to wait for. */
  first: number;
  /** On timeout resolve with the replies that arrived instead of rejecting with TIMEOUT. @default false */
  allowPartial?: boolean;
}

/** Options of memory writes. */
export interface MemoryWriteOptions {
  /** Time to live in ms. @default none (no expiry) */
  ttlMs?: number;
  /** Stops waiting (rejects with CANCELLED). @default none */
  signal?: AbortSignal;
}

/** Counters since the connection was created. */
export interface ConnectionStats {
  framesSent: number;
  messagesSent: number;
  framesReceived: number;
  messagesReceived: number;
  reconnects: number;
  /** Publishes the bridge rejected (logged). */
  publishErrors: number;
  /** Replies that arrived for requests nobody waits for any more. */
  lateReplies: number;
  /** Messages that were in a frame being written when the stream broke. */
  lostOnBreak: number;
  /** Messages nobody waits an answer for (publishes, results, unsubscribes) still queued, never written, when the connection closed (e.g. closed while reconnecting). */
  unsentOnClose: number;
  /** Deliveries for a subscription this connection no longer has (e.g. just unsubscribed). */
  unrouted: number;
  /** Messages waiting in the outbound queue. */
  outboundQueueDepth: number;
}

/** What an agent can do. A {@link Connection} is one; capability handlers and `onEvent` receive it. */
export interface AgentContext {
  /** This agent's id (stable across reconnects). */
  readonly agentId: string;
  /** This agent's namespace ("default" unless given). */
  readonly namespace: string;
  /** Key-value memory in the agent's namespace. */
  readonly memory: Memory;
  /** Language models through the bridge's LLM gateway (docs/llm.md). */
  readonly llm: Llm;
  /** The current connection status. */
  readonly status: ConnectionStatus;
  emit(topic: string, payload?: unknown, options?: EmitOptions & { signal?: AbortSignal }): Promise<void>;
  reply(request: LoomEvent, payload?: unknown, options?: EmitOptions): Promise<void>;
  request(topic: string, payload?: unknown, options?: RequestOptions): Promise<LoomEvent>;
  requestMany(topic: string, payload: unknown, options: RequestManyOptions): Promise<LoomEvent[]>;
  invoke<T = unknown>(capability: string, input?: unknown, options?: InvokeOptions): Promise<T>;
  tool<I = unknown, O = unknown>(capability: string, defaults?: InvokeOptions): (input: I, options?: InvokeOptions) => Promise<O>;
  subscribe(pattern: string, options?: SubscribeOptions): Promise<Subscription>;
  joinThread(threadId: string, options?: JoinThreadOptions): Promise<Thread>;
}

/** Extra options of `connect`. */
export interface ConnectionSetup {
  /** Capabilities this agent provides, registered with every (re-)registration. @default [] */
  capabilities?: readonly Capability<AgentContext>[];
  /** Aborts the first connection attempt. @default none */
  signal?: AbortSignal;
}

interface Session {
  readonly generation: number;
  readonly sessionId: string;
  readonly call: grpc.ClientDuplexStream<Parameters<typeof encodeClientFrame>[0], PbServerFrame>;
  readonly intervalMs: number;
  readonly maxFrameMessages: number;
  readonly maxFrameBytes: number;
  lastReceived: number;
  lastWrite: number;
  ended: boolean;
  paused: boolean;
  heartbeat: NodeJS.Timeout | undefined;
  onStatus: (status: grpc.StatusObject) => void;
  endWaiters: (() => void)[];
  /** Nothing is written before this time (Date.now()): the settle after a bridge restart; 0 when not held. */
  heldUntil: number;
  releaseTimer: NodeJS.Timeout | undefined;
}

type PendingKind = 'subscribe' | 'unsubscribe' | 'call' | 'memory';

/** How long an abandoned subscribe waits for its late ack (to unsubscribe it) before it is forgotten. */
const ABANDONED_SUBSCRIBE_MS = 60_000;
interface Pending {
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

interface Inflight {
  controller: AbortController;
  timer: NodeJS.Timeout;
  generation: number;
}

const RESOLVED: Promise<void> = Promise.resolve();
const FRAME_HEADROOM = 64 * 1024;

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

function readPem(file: string, what: string, option: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new InvalidParamsError(`Cannot read the ${what} '${file}' (${option}): ${(error as Error).message}.`, { path: `/${option.split(',')[0] ?? option}` });
  }
}

function isLoopback(address: string): boolean {
  const host = address.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

/**
 * TLS (grpc-js `credentials.createSsl` with the CA bundle and client certificate of the options) and
 * the bearer token (an interceptor adding `authorization: Bearer ...`, refused in the clear to another machine).
 */
function channelSecurity(address: string, https: boolean, options: ResolvedOptions): { credentials: grpc.ChannelCredentials; interceptors: grpc.Interceptor[] } {
  const tls = https || options.tlsCa !== '' || options.tlsCert !== '';
  if ((options.tlsCert === '') !== (options.tlsKey === '')) {
    throw new InvalidParamsError('A client certificate needs its key: give both tlsCert (LOOM_TLS_CERT) and tlsKey (LOOM_TLS_KEY), or neither.', { path: '/tlsKey' });
  }
  const credentials = tls
    ? grpc.credentials.createSsl(
      options.tlsCa ? readPem(options.tlsCa, 'CA bundle', 'tlsCa, LOOM_TLS_CA') : null,
      options.tlsKey ? readPem(options.tlsKey, 'client key', 'tlsKey, LOOM_TLS_KEY') : null,
      options.tlsCert ? readPem(options.tlsCert, 'client certificate', 'tlsCert, LOOM_TLS_CERT') : null)
    : grpc.credentials.createInsecure();
  const interceptors: grpc.Interceptor[] = [];
  if (options.token !== '') {
    if (!tls && !isLoopback(address)) {
      throw new InvalidParamsError(`A token is never sent in the clear to another machine: use an https:// URL (and LOOM_TLS_CA) for ${address}, or a loopback address.`, { path: '/token' });
    }
    const header = `Bearer ${options.token}`;
    interceptors.push((callOptions, nextCall) => new grpc.InterceptingCall(nextCall(callOptions), {
      start(metadata, listener, next) {
        metadata.set('authorization', header);
        next(metadata, listener);
      },
    }));
  }
  return { credentials, interceptors };
}

function target(url: string): { address: string; secure: boolean } {
  const match = /^(https?):\/\/([^/]+)\/?$/.exec(url.trim());
  if (match) return { address: match[2] as string, secure: match[1] === 'https' };
  if (/^[^/:]+:\d+$/.test(url.trim())) return { address: url.trim(), secure: false };
  throw new InvalidParamsError(`Bridge URL '${url}' is not of the form http://host:port.`, { path: '/url' });
}

/**
 * A connection of one agent to a bridge. Create it with {@link connect}. It implements
 * {@link AgentContext}: emit, request/reply, invoke, subscribe, memory, threads.
 */
export class Connection implements AgentContext {
  /** The bridge URL. */
  readonly url: string;
  /** This agent's id (stable across reconnects). */
  readonly agentId: string;
  /** This agent's namespace. */
  readonly namespace: string;
  /** Key-value memory in this agent's namespace. */
  readonly memory: Memory;
  /** Language models through the bridge's LLM gateway (docs/llm.md). */
  readonly llm: Llm;

  readonly #options: ResolvedOptions;
  readonly #log: Logger;
  readonly #client: grpc.Client;
  readonly #ids = new IdGenerator();
  readonly #capabilities = new Map<string, Capability<AgentContext>>();
  readonly #entries: Subscription[] = [];
  #routes = new Map<string, Subscription[]>();
  readonly #inbox: InboxSubscription;
  readonly #inboxPrefix: string;
  readonly #pending = new Map<string, Pending>();
  readonly #replyWaiters = new Map<string, ReplyWaiter>();
  readonly #inflight = new Map<string, Inflight>();
  readonly #lifetime = new AbortController();
  readonly #host: SubscriptionHost;

  #queue: PbClientMessage[] = [];
  #head = 0;
  #spaceWaiters: (() => void)[] = [];
  #flushScheduled = false;
  #writing = 0;
  #writingCount = 0;
  #session: Session | undefined;
  #generation = 0;
  #status: ConnectionStatus = { state: 'connecting' };
  #statusListeners = new Set<(status: ConnectionStatus) => void>();
  #limits: PbLimits = {};
  #started = false;
  #closing = false;
  #shutdown: Promise<void> | undefined;
  #lastTopic = '';
  #heartbeatSequence = 0;
  /** When the last stream was lost (Date.now()); undefined while connected or before the first. */
  #lostAt: number | undefined;
  #stats = { framesSent: 0, messagesSent: 0, framesReceived: 0, messagesReceived: 0, reconnects: 0, publishErrors: 0, lateReplies: 0, lostOnBreak: 0, unsentOnClose: 0, unrouted: 0 };

  /** @internal Use {@link connect}. */
  constructor(url: string, options: ConnectOptions = {}, setup: ConnectionSetup = {}) {
    this.url = url;
    this.#options = resolveOptions(options);
    this.#log = this.#options.logger;
    this.agentId = this.#options.agentId ?? newAgentId(this.#options.name);
    this.namespace = this.#options.namespace || 'default';
    for (const cap of setup.capabilities ?? []) {
      if (this.#capabilities.has(cap.name)) {
        throw new InvalidParamsError(`Capability '${cap.name}' is given twice; one agent provides each capability once.`, { path: '/capabilities' });
      }
      this.#capabilities.set(cap.name, cap);
    }
    this.#host = {
      unsubscribe: (s) => this.#unsubscribe(s),
      resumeReading: () => this.#resumeReading(),
      warn: (message) => this.#log.warn(`${this.agentId}: ${message}`),
    };
    this.#inboxPrefix = `_inbox.${inboxToken(this.agentId)}`;
    this.#inbox = new InboxSubscription(`${this.#inboxPrefix}.>`, this.#host, (event) => this.#onReply(event));
    this.#entries.push(this.#inbox);
    const { address, secure } = target(url);
    const backoff = Math.max(1, this.#options.reconnectInitialMs);
    const security = channelSecurity(address, secure, this.#options);
    this.#client = new grpc.Client(address, security.credentials, {
      ...(security.interceptors.length > 0 ? { interceptors: security.interceptors } : {}),
      'grpc.enable_http_proxy': 0,
      'grpc.initial_reconnect_backoff_ms': backoff,
      'grpc.min_reconnect_backoff_ms': backoff,
      'grpc.max_reconnect_backoff_ms': Math.max(backoff, this.#options.reconnectMaxMs),
      'grpc.max_receive_message_length': 16 * 1024 * 1024,
      ...this.#options.channelOptions,
    });
    this.memory = new Memory((request, signal) => this.#memory(request, signal), '', this.namespace);
    this.llm = new Llm(this);
  }

  // -------------------------------------------------------------------------------------------
  // Status
  // -------------------------------------------------------------------------------------------

  /** The current status. */
  get status(): ConnectionStatus {
    return this.#status;
  }

  /** The bound of `drain()`/`close()` in ms. */
  get drainTimeoutMs(): number {
    return this.#options.drainTimeoutMs;
  }

  /** The logger this connection writes to. */
  get logger(): Logger {
    return this.#log;
  }

  /** @internal The gRPC client of this connection, for unary calls of other services (collab.ts). */
  get grpcClient(): grpc.Client {
    return this.#client;
  }

  /** The current session id ("" while not connected). */
  get sessionId(): string {
    return this.#status.state === 'connected' ? this.#status.sessionId : '';
  }

  /** The bridge's limits from the last registration. */
  get limits(): Readonly<PbLimits> {
    return this.#limits;
  }

  /** Counters since the connection was created. */
  get stats(): ConnectionStats {
    return { ...this.#stats, outboundQueueDepth: this.#queue.length - this.#head };
  }

  /**
   * Status changes from now on, as an async iterable (each call gets its own iterator, which
   * keeps the last 64 changes if not read). It ends after the `closed` status, or when `signal`
   * aborts.
   */
  statusChanges(options: { signal?: AbortSignal } = {}): AsyncIterableIterator<ConnectionStatus> {
    const buffer: ConnectionStatus[] = [];
    let waiter: ((r: IteratorResult<ConnectionStatus>) => void) | undefined;
    let done = this.#status.state === 'closed';
    const finish = (): void => {
      done = true;
      this.#statusListeners.delete(listener);
      options.signal?.removeEventListener('abort', finish);
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
        options.signal?.removeEventListener('abort', finish);
        done = true;
      }
    };
    if (!done) this.#statusListeners.add(listener);
    options.signal?.addEventListener('abort', finish, { once: true });
    const iterator: AsyncIterableIterator<ConnectionStatus> = {
      next: () => {
        const value = buffer.shift();
        if (value !== undefined) return Promise.resolve({ value, done: false });
        if (done || options.signal?.aborted) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => { waiter = resolve; });
      },
      return: () => {
        finish();
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  #setStatus(status: ConnectionStatus): void {
    if (this.#status.state === 'closed' || this.#status.state === status.state) return;
    this.#log.debug(`${this.agentId}: ${this.#status.state} -> ${status.state}`);
    this.#status = status;
    for (const listener of [...this.#statusListeners]) listener(status);
  }

  // -------------------------------------------------------------------------------------------
  // Connecting and reconnecting
  // -------------------------------------------------------------------------------------------

  /** @internal Registers and opens the stream; {@link connect} calls it. */
  async start(signal?: AbortSignal): Promise<void> {
    if (this.#started) throw new InvalidParamsError('start() was already called; the connection reconnects by itself.');
    this.#started = true;
    const onAbort = (): void => this.#lifetime.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const session = await this.#establish();
      this.#setStatus({ state: 'connected', sessionId: session.sessionId, reconnected: false });
      this.#subscribeMissing();
      this.#scheduleFlush();
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  #registration(): PbRegisterRequest {
    const subscriptions: PbSubscription[] = [];
    for (const entry of this.#entries) {
      if (!subscriptions.some((s) => entry.sameAs(s))) subscriptions.push(entry.spec);
    }
    return {
      agentId: this.agentId,
      name: this.#options.name,
      namespace: this.#options.namespace,
      subscriptions,
      capabilities: [...this.#capabilities.values()].map((c) => c.descriptor),
      metadata: this.#options.metadata,
      sdk: this.#options.sdk,
      heartbeatIntervalMs: this.#options.heartbeatMs,
    };
  }

  async #establish(): Promise<Session> {
    const signal = this.#lifetime.signal;
    // The registration carries every subscription and capability, and its answer confirms them
    // (with the subscriptions' ids): all are in place before anything queued is written. One
    // added while the registration was on its way is carried by one more registration.
    let response: PbRegisterResponse = await unary(this.#client, registerAgent, this.#registration(), this.#options.connectTimeoutMs, signal);
    const bridgeKnewUs = response.reconnected;
    for (let round = 1; round < 3 && this.#entries.some((e) => !(response.subscriptions ?? []).some((h) => e.sameAs(h))); round++) {
      response = await unary(this.#client, registerAgent, this.#registration(), this.#options.connectTimeoutMs, signal);
    }
    this.#limits = response.limits ?? {};
    const stale = this.#bindSubscriptions(response);
    const limits = this.#limits;
    const maxFrameMessages = Math.min(this.#options.maxFrameMessages, limits.maxBatchMessages || this.#options.maxFrameMessages);
    let maxFrameBytes = this.#options.maxFrameBytes;
    if ((limits.maxMessageBytes ?? 0) > FRAME_HEADROOM * 2) maxFrameBytes = Math.min(maxFrameBytes, (limits.maxMessageBytes ?? 0) - FRAME_HEADROOM);
    const metadata = new grpc.Metadata();
    metadata.set(SESSION_HEADER, response.sessionId);
    const call = this.#client.makeBidiStreamRequest(SERVICE + 'EventStream', encodeClientFrame, deserializeServerFrame, metadata, {});
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
      const timer = setTimeout(() => fail(new TimeoutError(`The bridge did not open the event stream within ${this.#options.connectTimeoutMs} ms.`)), this.#options.connectTimeoutMs);
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
      session.onStatus = (status) => fail(fromStatus(status, this.url));
      call.once('metadata', () => {
        done();
        resolve();
      });
      signal.addEventListener('abort', onAbort, { once: true });
    });
    session.onStatus = (status) => this.#onStreamEnded(session, status.code === grpc.status.OK ? undefined : fromStatus(status, this.url));
    call.on('data', (frame: PbServerFrame) => this.#onFrame(session, frame));
    session.heartbeat = setInterval(() => this.#heartbeat(session), session.intervalMs);
    this.#session = session;
    const lostAt = this.#lostAt;
    this.#lostAt = undefined;
    if (lostAt !== undefined && !bridgeKnewUs) {
      // Below the bridge's expiry (3 silent heartbeat intervals): nothing, not even a ping, is written meanwhile.
      const settle = Math.min(this.#restartSettle(Date.now() - lostAt), 2 * session.intervalMs);
      if (settle > 0) {
        // The bridge restarted (or dropped this agent): other agents' subscriptions are gone until
        // they register again, and what this one queued meanwhile would reach nobody.
        this.#log.warn(`${this.agentId}: the bridge did not know this agent (it restarted); holding ${this.#queue.length - this.#head} queued messages for ${Math.round(settle)} ms so that other agents subscribe again first`);
        session.heldUntil = Date.now() + settle;
        session.releaseTimer = setTimeout(() => {
          session.heldUntil = 0;
          this.#scheduleFlush();
        }, settle);
      }
    }
    for (const id of stale) {
      this.#enqueue({ unsubscribe: { correlationId: this.#ids.next(), subscriptionId: id } });
    }
    this.#log.info(`${this.agentId}: registered (session ${response.sessionId}, reconnected=${String(response.reconnected)}, heartbeat ${session.intervalMs} ms)`);
    return session;
  }

  /**
   * How long to hold the queue after a bridge restart: a peer with the same reconnect settings,
   * disconnected at the same moment, retries within its current delay; the delays double, so that
   * is at most about the outage plus the first delay (twice the outage to cover the jitter of the
   * delays before), capped at the largest delay, plus the jitter of the delay itself.
   */
  #restartSettle(outageMs: number): number {
    const configured = this.#options.restartSettleMs;
    if (configured >= 0) return configured;
    const initial = this.#options.reconnectInitialMs;
    const largest = Math.max(initial, this.#options.reconnectMaxMs);
    return Math.min(2 * outageMs + initial, largest) * (1 + this.#options.reconnectJitter) + 50;
  }

  /** Binds local subscriptions to the ids of a (re-)registration; returns bridge ids nobody here wants. */
  #bindSubscriptions(response: PbRegisterResponse): string[] {
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
  #subscribeMissing(): void {
    const sent: Subscription[] = [];
    for (const entry of this.#entries) {
      if (entry.bridgeId !== undefined || sent.some((s) => s.sameAs(entry.spec))) continue;
      sent.push(entry);
      const correlationId = this.#ids.next();
      // No forget timer: the subscription is wanted, its ack binds it whenever it comes (a new stream starts over).
      this.#pending.set(correlationId, { kind: 'subscribe', subscription: entry, abandoned: true, resolve: () => undefined, reject: () => undefined });
      this.#enqueue({ subscribe: { correlationId, subscription: entry.spec } });
    }
  }

  #onStreamEnded(session: Session, error: LoomError | undefined): void {
    if (session.ended) return;
    session.ended = true;
    clearInterval(session.heartbeat);
    clearTimeout(session.releaseTimer);
    for (const waiter of session.endWaiters) waiter();
    if (this.#session === session) this.#session = undefined;
    if (this.#writing === session.generation) {
      // The frame being written may or may not have reached the bridge.
      this.#writing = 0;
      if (!this.#closing) this.#stats.lostOnBreak += this.#writingCount;
    }
    if (this.#closing) return;
    const why = error ?? new UnavailableError('The bridge ended the stream.');
    this.#lostAt = Date.now();
    this.#log.warn(`${this.agentId}: stream lost (${why.code}: ${why.message}); reconnecting`);
    this.#setStatus({ state: 'reconnecting', error: why });
    this.#failInFlight(new UnavailableError(`The connection to the bridge was lost (${why.message}); the request may or may not have been carried out. Retry once the connection is back.`, { cause: why }), session.generation);
    void this.#reconnect();
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

  /** What waited on a broken stream fails (retryable); calls pushed on it stop. */
  #failInFlight(error: LoomError, generation: number): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const op of pending) op.reject(error);
    const waiters = [...this.#replyWaiters.values()];
    this.#replyWaiters.clear();
    for (const waiter of waiters) waiter.reject(error);
    for (const [id, call] of this.#inflight) {
      if (call.generation <= generation) {
        this.#inflight.delete(id);
        clearTimeout(call.timer);
        call.controller.abort(error);
      }
    }
    for (const entry of this.#entries) entry.bridgeId = undefined;
    this.#rebuildRoutes();
  }

  async #reconnect(): Promise<void> {
    const signal = this.#lifetime.signal;
    for (let attempt = 0; !this.#closing; attempt++) {
      try {
        await delay(backoffDelay(attempt, this.#options.reconnectInitialMs, this.#options.reconnectMaxMs, this.#options.reconnectJitter), signal);
      } catch {
        return; // closed
      }
      if (this.#closing) return;
      try {
        const session = await this.#establish();
        if (this.#closing) {
          session.ended = true;
          clearInterval(session.heartbeat);
          clearTimeout(session.releaseTimer);
          session.call.cancel();
          return;
        }
        this.#stats.reconnects++;
        this.#setStatus({ state: 'connected', sessionId: session.sessionId, reconnected: true });
        this.#subscribeMissing();
        this.#scheduleFlush();
        return;
      } catch (error) {
        this.#log.info(`${this.agentId}: reconnect attempt ${attempt + 1} failed: ${(error as Error).message}`);
      }
    }
  }

  #heartbeat(session: Session): void {
    if (session.ended) return;
    const now = Date.now();
    const silent = now - session.lastReceived;
    if (silent > session.intervalMs * 3) {
      session.call.cancel();
      this.#onStreamEnded(session, new UnavailableError(`Nothing arrived from the bridge for ${silent} ms (3 heartbeat intervals of ${session.intervalMs} ms).`));
      return;
    }
    if (now - session.lastWrite >= session.intervalMs / 2) {
      this.#enqueue({ heartbeat: { sequence: ++this.#heartbeatSequence, sentUnixMs: now } });
    }
  }

  // -------------------------------------------------------------------------------------------
  // Reading
  // -------------------------------------------------------------------------------------------

  #onFrame(session: Session, frame: PbServerFrame): void {
    if (session.ended) return;
    session.lastReceived = Date.now();
    this.#stats.framesReceived++;
    this.#stats.messagesReceived += frame.messages.length;
    for (const message of frame.messages) {
      try {
        this.#dispatch(session, message);
      } catch (error) {
        this.#log.error(`${this.agentId}: failed to handle a message from the bridge`, error);
      }
    }
  }

  #dispatch(session: Session, message: PbServerMessage): void {
    if (message.deliver) {
      const subscriptionId = message.deliver.subscriptionId ?? '';
      const entries = this.#routes.get(subscriptionId);
      if (!entries || !message.deliver.envelope) {
        this.#stats.unrouted++;
        return;
      }
      const event = new LoomEvent(message.deliver.envelope, subscriptionId);
      for (const entry of entries) {
        if (entry.push(event)) this.#pauseReading(session, entry.blockTimeoutMs);
      }
    } else if (message.call) {
      this.#onPushedCall(message.call as PbActionCall, session);
    } else if (message.result) {
      this.#complete(message.result.callId ?? '', message);
    } else if (message.ack) {
      this.#onAck(message);
    } else if (message.error) {
      this.#onErrorReply(message);
    } else if (message.memory) {
      this.#complete(message.memory.correlationId ?? '', message);
    } else if (message.cancel) {
      const id = message.cancel.callId ?? '';
      const call = this.#inflight.get(id);
      if (call) {
        this.#inflight.delete(id);
        clearTimeout(call.timer);
        call.controller.abort(new CancelledError('The caller cancelled the call.'));
      }
    }
    // heartbeat: any frame is a sign of life. Unknown kinds are ignored.
  }

  #pauseReading(session: Session, blockTimeoutMs: number): void {
    if (session.paused) return;
    session.paused = true;
    session.call.pause();
    setTimeout(() => this.#resumeReading(), blockTimeoutMs).unref();
  }

  #resumeReading(): void {
    const session = this.#session;
    if (session?.paused) {
      session.paused = false;
      session.call.resume();
    }
  }

  #complete(correlationId: string, message: PbServerMessage): void {
    const op = this.#pending.get(correlationId);
    if (!op) return; // late (timed out, or from an old stream)
    this.#pending.delete(correlationId);
    op.resolve(message);
  }

  #onAck(message: PbServerMessage): void {
    const ack = message.ack;
    if (!ack) return;
    const op = this.#pending.get(ack.correlationId ?? '');
    if (!op) return;
    this.#pending.delete(ack.correlationId ?? '');
    const entry = op.subscription;
    if (op.kind === 'subscribe' && entry) {
      let wanted = false;
      for (const e of this.#entries) {
        if (e === entry || (e.bridgeId === undefined && e.sameAs(entry.spec))) e.bridgeId = ack.subscriptionId ?? '';
        wanted ||= e.bridgeId === ack.subscriptionId;
      }
      this.#rebuildRoutes();
      if (!wanted && op.abandoned && entry.closed) {
        this.#enqueue({ unsubscribe: { correlationId: this.#ids.next(), subscriptionId: ack.subscriptionId ?? '' } });
      }
    }
    op.resolve(message);
  }

  #onErrorReply(message: PbServerMessage): void {
    const reply = message.error;
    if (!reply) return;
    const id = reply.correlationId ?? '';
    const op = id ? this.#pending.get(id) : undefined;
    if (op) {
      this.#pending.delete(id);
      op.resolve(message);
      return;
    }
    const error = fromProtoError(reply.error);
    if (id) {
      this.#stats.publishErrors++;
      this.#log.warn(`${this.agentId}: the bridge rejected envelope '${id}': ${error.code}: ${error.message}`);
    } else {
      this.#log.warn(`${this.agentId}: session error from the bridge: ${error.code}: ${error.message}`);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Writing: one queue, one frame per write
  // -------------------------------------------------------------------------------------------

  #enqueue(message: PbClientMessage): boolean {
    this.#queue.push(message);
    this.#scheduleFlush();
    return this.#queue.length - this.#head < this.#options.outboundQueueCapacity;
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled || this.#writing !== 0 || !this.#session) return;
    this.#flushScheduled = true;
    queueMicrotask(() => this.#flush());
  }

  #isStale(message: PbClientMessage): boolean {
    if (message.call) return !this.#pending.has(message.call.callId ?? '');
    if (message.memory) return !this.#pending.has(message.memory.correlationId ?? '');
    return false;
  }

  #flush(): void {
    this.#flushScheduled = false;
    const session = this.#session;
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
    this.#writing = session.generation;
    const count = messages.length;
    this.#writingCount = count;
    try {
      session.call.write({ messages }, () => {
        if (this.#writing === session.generation) this.#writing = 0;
        if (session.ended) {
          return;
        }
        this.#stats.framesSent++;
        this.#stats.messagesSent += count;
        session.lastWrite = Date.now();
        if (this.#queue.length > this.#head) this.#scheduleFlush();
        else this.#onIdle();
      });
    } catch (error) {
      this.#writing = 0;
      this.#stats.lostOnBreak += count;
      this.#log.warn(`${this.agentId}: a write failed: ${(error as Error).message}`);
    }
  }

  #idleWaiters: (() => void)[] = [];
  #onIdle(): void {
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w();
  }

  #wakeSpaceWaiters(): void {
    while (this.#spaceWaiters.length > 0 && this.#queue.length - this.#head < this.#options.outboundQueueCapacity) {
      (this.#spaceWaiters.shift() as () => void)();
    }
  }

  #waitForSpace(signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.#spaceWaiters.indexOf(wake);
        if (i >= 0) this.#spaceWaiters.splice(i, 1);
        reject(new CancelledError('Gave up waiting for room in the outbound queue.', { cause: signal?.reason }));
      };
      const wake = (): void => {
        signal?.removeEventListener('abort', onAbort);
        if (this.#closing && this.#status.state === 'closed') reject(new CancelledError('The connection is closed.'));
        else resolve();
      };
      this.#spaceWaiters.push(wake);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  #ensureOpen(): void {
    if (this.#closing) throw new CancelledError('The connection is closed.');
  }

  // -------------------------------------------------------------------------------------------
  // Events
  // -------------------------------------------------------------------------------------------

  #buildEnvelope(topic: string, payload: unknown, options: EmitOptions | undefined): PbEnvelope {
    if (topic !== this.#lastTopic) {
      // Publishers tend to reuse one topic: validate each new one once.
      validateTopic(topic);
      this.#lastTopic = topic;
    }
    const { bytes, contentType } = encodePayload(payload);
    const maxPayload = this.#limits.maxPayloadBytes ?? 0;
    if (maxPayload > 0 && bytes.length > maxPayload) {
      throw new ResourceExhaustedError(`Payload of ${bytes.length} bytes on topic '${topic}' exceeds the bridge's limit of ${maxPayload} bytes.`, { path: '/payload' });
    }
    const envelope: PbEnvelope = { id: options?.id ?? this.#ids.next(), topic, payload: bytes, contentType: options?.contentType ?? contentType };
    if (options) {
      if (options.threadId) envelope.threadId = options.threadId;
      if (options.correlationId) envelope.correlationId = options.correlationId;
      if (options.replyTo) envelope.replyTo = options.replyTo;
      if (options.ttlMs !== undefined) envelope.ttlMs = positiveMs(options.ttlMs, 'A time to live', '/ttlMs');
      if (options.qos) envelope.qos = QOS_NUMBERS[options.qos];
      if (options.headers) envelope.headers = options.headers;
      if (options.traceparent) envelope.traceparent = options.traceparent;
      if (options.tracestate) envelope.tracestate = options.tracestate;
    }
    return envelope;
  }

  #publish(envelope: PbEnvelope, signal?: AbortSignal): Promise<void> {
    if (this.#enqueue({ publish: envelope })) return RESOLVED;
    return this.#waitForSpace(signal);
  }

  /**
   * Publishes an event. `payload` bytes go as they are; anything else is sent as JSON. Resolves
   * once queued (waits while the outbound queue is full); the bridge reports rejections
   * asynchronously (logged, counted in `stats.publishErrors`). Events emitted while
   * reconnecting are sent once the connection is back.
   * @throws {InvalidParamsError} the topic is not a valid concrete topic
   * @throws {ResourceExhaustedError} the payload is larger than the bridge accepts
   */
  emit(topic: string, payload?: unknown, options?: EmitOptions & { signal?: AbortSignal }): Promise<void> {
    try {
      this.#ensureOpen();
      return this.#publish(this.#buildEnvelope(topic, payload, options), options?.signal);
    } catch (error) {
      return Promise.reject(toError(error));
    }
  }

  /**
   * Replies to a request: publishes to its `replyTo` with its correlation id and thread.
   * @throws {InvalidParamsError} the event is not a request (no replyTo)
   */
  reply(request: LoomEvent, payload?: unknown, options?: EmitOptions): Promise<void> {
    if (!request.replyTo) {
      return Promise.reject(new InvalidParamsError(`Event '${request.id}' on '${request.topic}' has no replyTo; only requests can be replied to.`, { path: '/replyTo' }));
    }
    return this.emit(request.replyTo, payload, {
      ...options,
      correlationId: request.correlationId || request.id,
      threadId: options?.threadId ?? request.threadId,
    });
  }

  /**
   * Publishes a request (with `replyTo` on this agent's inbox and a fresh correlation id) and
   * waits for the first reply.
   * @throws {TimeoutError} no reply within the timeout
   */
  async request(topic: string, payload?: unknown, options: RequestOptions = {}): Promise<LoomEvent> {
    const replies = await this.requestMany(topic, payload, { ...options, first: 1 });
    return replies[0] as LoomEvent;
  }

  /**
   * First-k: publishes a request and waits for the first `first` replies (from any number of
   * responders), in arrival order.
   * @throws {TimeoutError} fewer replies within the timeout (unless `allowPartial`)
   */
  requestMany(topic: string, payload: unknown, options: RequestManyOptions): Promise<LoomEvent[]> {
    const needed = options.first;
    if (!Number.isInteger(needed) || needed < 1) return Promise.reject(new InvalidParamsError(`'first' must be a positive integer; got ${String(needed)}.`, { path: '/first' }));
    let timeoutMs: number;
    let envelope: PbEnvelope;
    const id = this.#ids.next();
    try {
      this.#ensureOpen();
      timeoutMs = positiveMs(options.timeoutMs ?? this.#options.requestTimeoutMs, 'A request timeout', '/timeoutMs');
      envelope = this.#buildEnvelope(topic, payload, { ...options, id, correlationId: id, replyTo: `${this.#inboxPrefix}.${id}` });
    } catch (error) {
      return Promise.reject(toError(error));
    }
    const signal = options.signal;
    return new Promise<LoomEvent[]>((resolve, reject) => {
      const cleanup = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.#replyWaiters.delete(id);
      };
      const waiter: ReplyWaiter = {
        needed,
        replies: [],
        resolve: (replies) => { cleanup(); resolve(replies); },
        reject: (error) => { cleanup(); reject(error); },
      };
      const timer = setTimeout(() => {
        if (options.allowPartial) waiter.resolve(waiter.replies);
        else waiter.reject(new TimeoutError(`${needed === 1 ? 'No reply' : `Only ${waiter.replies.length} of ${needed} replies`} to the request on '${topic}' within ${timeoutMs} ms.`));
      }, timeoutMs);
      const onAbort = (): void => waiter.reject(new CancelledError(`The request on '${topic}' was cancelled.`, { cause: signal?.reason }));
      if (signal?.aborted) {
        onAbort();
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#replyWaiters.set(id, waiter);
      this.#publish(envelope, signal).catch((error: unknown) => waiter.reject(error as LoomError));
    });
  }

  #onReply(event: LoomEvent): void {
    let id = event.correlationId;
    if (!id && event.topic.startsWith(this.#inboxPrefix + '.')) id = event.topic.slice(this.#inboxPrefix.length + 1);
    const waiter = this.#replyWaiters.get(id);
    if (!waiter) {
      this.#stats.lateReplies++;
      this.#log.debug(`${this.agentId}: late reply on '${event.topic}' (correlation '${id}')`);
      return;
    }
    waiter.replies.push(event);
    if (waiter.replies.length >= waiter.needed) waiter.resolve(waiter.replies);
  }

  // -------------------------------------------------------------------------------------------
  // Subscriptions
  // -------------------------------------------------------------------------------------------

  /**
   * Subscribes to a pattern (`*` one token, `>` the rest). Resolves once the bridge
   * acknowledged it (or at once when not connected: the next registration carries it).
   * Iterate the result with `for await`; it survives reconnects.
   * @throws {InvalidParamsError} the pattern is invalid
   */
  async subscribe(pattern: string, options: SubscribeOptions = {}): Promise<Subscription> {
    this.#ensureOpen();
    validatePattern(pattern);
    const entry = new Subscription(pattern, options, this.#options.deliveryQueueCapacity, this.#host);
    this.#entries.push(entry);
    const twin = this.#entries.find((e) => e !== entry && e.bridgeId !== undefined && e.sameAs(entry.spec));
    if (twin) {
      entry.bridgeId = twin.bridgeId;
      this.#rebuildRoutes();
      return entry;
    }
    if (this.#status.state !== 'connected') return entry;
    const correlationId = this.#ids.next();
    try {
      await this.#sendAndWait('subscribe', correlationId, { subscribe: { correlationId, subscription: entry.spec } }, this.#options.requestTimeoutMs,
        () => new TimeoutError(`The bridge did not acknowledge the subscription to '${pattern}' within ${this.#options.requestTimeoutMs} ms.`), options.signal, entry);
    } catch (error) {
      if (error instanceof UnavailableError && !this.#closing) return entry; // the re-registration carries it
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
    if (!last || bridgeId === undefined || this.#closing || this.#status.state !== 'connected') return;
    const correlationId = this.#ids.next();
    try {
      await this.#sendAndWait('unsubscribe', correlationId, { unsubscribe: { correlationId, subscriptionId: bridgeId } }, this.#options.requestTimeoutMs,
        () => new TimeoutError(`The bridge did not acknowledge the unsubscribe of '${entry.pattern}'.`));
    } catch (error) {
      this.#log.warn(`${this.agentId}: unsubscribe of '${entry.pattern}' failed: ${(error as Error).message}`);
    }
  }

  /**
   * Joins a conversation: subscribes to `thread.<id>.>` and returns a {@link Thread} to post
   * to it (`broadcast`, `reply`) and read it (`for await`).
   */
  async joinThread(threadId: string, options: JoinThreadOptions = {}): Promise<Thread> {
    validateTopic(`thread.${threadId}.broadcast`, 'thread id', '/threadId');
    const subscription = await this.subscribe(`thread.${threadId}.>`, options);
    return new Thread(threadId, subscription, this, options.includeOwn ?? false);
  }

  // -------------------------------------------------------------------------------------------
  // Requests on the stream (subscribe, call, memory)
  // -------------------------------------------------------------------------------------------

  #sendAndWait(kind: PendingKind, id: string, message: PbClientMessage, timeoutMs: number, onTimeout: () => LoomError, signal?: AbortSignal, subscription?: Subscription): Promise<PbServerMessage> {
    if (this.#status.state !== 'connected') {
      return Promise.reject(this.#closing
        ? new CancelledError('The connection is closed.')
        : new UnavailableError(`Not connected to the bridge (status ${this.#status.state}); retry once the connection is back.`));
    }
    if (this.#pending.has(id)) return Promise.reject(new InvalidParamsError(`Id '${id}' is already in flight; use a unique id per request.`, { path: '/call_id' }));
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
        resolve: (m) => { cleanup(); resolve(m); },
        reject: (e) => { cleanup(); reject(e); },
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

  /**
   * Calls a capability through the bridge with `input` as JSON and returns its output parsed
   * from JSON.
   * @throws {LoomError} INVALID_PARAMS (with `path`), CAPABILITY_NOT_FOUND, PROVIDER_UNAVAILABLE,
   * TOOL_ERROR, TIMEOUT, UNAVAILABLE when the connection is down or breaks, CANCELLED on abort
   */
  async invoke<T = unknown>(capabilityName: string, input?: unknown, options: InvokeOptions = {}): Promise<T> {
    this.#ensureOpen();
    if (!capabilityName) throw new InvalidParamsError('The capability name is empty.', { path: '/capability' });
    const timeoutMs = positiveMs(options.timeoutMs ?? this.#options.callTimeoutMs, 'A call timeout', '/timeoutMs');
    const callId = this.#ids.next();
    const call = {
      callId,
      capability: capabilityName,
      version: options.version ?? '',
      inputJson: jsonBytes(input),
      timeoutMs,
      threadId: options.threadId ?? '',
      traceparent: options.traceparent ?? '',
      routing: options.routing ? ROUTING_NUMBERS[options.routing] : 0,
      targetAgent: options.targetAgent ?? '',
      headers: options.headers ?? {},
      idempotencyKey: options.idempotencyKey ?? '',
    };
    // A little longer than the bridge's deadline, so its own TIMEOUT normally arrives first.
    const grace = Math.min(1000, 100 + timeoutMs * 0.05);
    const reply = await this.#sendAndWait('call', callId, { call }, timeoutMs + grace,
      () => new TimeoutError(`Call to '${capabilityName}' got no result within ${timeoutMs} ms.`), options.signal);
    const result = reply.result;
    if (!result) throw new UnavailableError('The bridge answered a call without a result.');
    if (result.error) throw fromProtoError(result.error);
    try {
      return parseJsonBytes(result.outputJson) as T;
    } catch (error) {
      throw new ToolError(`The output of '${capabilityName}' is not JSON: ${(error as Error).message}`, { cause: error });
    }
  }

  /** A function that calls one capability: `const add = ctx.tool('math.add'); await add({a:1,b:2})`. */
  tool<I = unknown, O = unknown>(capabilityName: string, defaults: InvokeOptions = {}): (input: I, options?: InvokeOptions) => Promise<O> {
    return (input, options) => this.invoke<O>(capabilityName, input, { ...defaults, ...options });
  }

  async #memory(request: PbMemoryRequest, signal?: AbortSignal): Promise<PbMemoryResponse> {
    this.#ensureOpen();
    const correlationId = this.#ids.next();
    request.correlationId = correlationId;
    const reply = await this.#sendAndWait('memory', correlationId, { memory: request }, this.#options.requestTimeoutMs,
      () => new TimeoutError(`The bridge did not answer a memory request within ${this.#options.requestTimeoutMs} ms.`), signal);
    const response = reply.memory;
    if (!response) throw new UnavailableError('The bridge answered a memory request without a response.');
    if (response.error && (response.error.code ?? 0) !== 0) throw fromProtoError(response.error);
    return response;
  }

  // -------------------------------------------------------------------------------------------
  // Calls pushed by the bridge (this agent as a provider)
  // -------------------------------------------------------------------------------------------

  #onPushedCall(call: PbActionCall, session: Session): void {
    const callId = call.callId;
    const cap = this.#capabilities.get(call.capability);
    if (!cap) {
      const error = new CapabilityNotFoundError(`Agent '${this.agentId}' does not provide '${call.capability}'.`);
      this.#enqueue({ result: { callId, provider: this.agentId, error: toProtoError(error) } });
      return;
    }
    if (this.#inflight.has(callId)) return;
    if (this.#closing) {
      // Leaving: the broker fails over to another provider of the capability, if any.
      const error = createError('PROVIDER_UNAVAILABLE', `Agent '${this.agentId}' is shutting down.`);
      this.#enqueue({ result: { callId, provider: this.agentId, error: toProtoError(error) } });
      return;
    }
    const now = Date.now();
    const deadline = num(call.deadlineUnixMs) || now + this.#options.callTimeoutMs;
    const controller = new AbortController();
    const timer = setTimeout(() => {
      if (this.#inflight.get(callId) === inflight) {
        this.#inflight.delete(callId);
        controller.abort(new TimeoutError(`The deadline of call '${callId}' to '${call.capability}' passed.`));
      }
    }, Math.max(1, deadline - now));
    const inflight: Inflight = { controller, timer, generation: session.generation };
    this.#inflight.set(callId, inflight);
    const info: CallInfo = {
      callId,
      capability: call.capability,
      version: call.version,
      caller: call.caller,
      threadId: call.threadId,
      traceparent: call.traceparent,
      headers: call.headers,
      deadlineUnixMs: deadline,
      signal: controller.signal,
    };
    void this.#runPushedCall(cap, call, info, inflight, now);
  }

  async #runPushedCall(cap: Capability<AgentContext>, call: PbActionCall, info: CallInfo, inflight: Inflight, started: number): Promise<void> {
    const result: PbActionResult = { callId: call.callId, provider: this.agentId };
    try {
      let input: unknown;
      try {
        input = parseJsonBytes(call.inputJson);
      } catch (error) {
        throw new InvalidParamsError(`The input of '${call.capability}' is not JSON: ${(error as Error).message}`, { cause: error });
      }
      const output = cap.parseOutput(await cap.run(cap.parseInput(input), info, this));
      result.outputJson = jsonBytes(output);
    } catch (error) {
      const loomError = toLoomError(error, call.capability);
      if (loomError.code === 'TOOL_ERROR' || loomError.code === 'INTERNAL') {
        this.#log.warn(`${this.agentId}: capability '${call.capability}' failed: ${loomError.message}`);
      }
      result.error = toProtoError(loomError);
    }
    // Not in the map any more: cancelled, timed out, or the stream broke; nobody waits.
    if (this.#inflight.get(call.callId) !== inflight) return;
    this.#inflight.delete(call.callId);
    clearTimeout(inflight.timer);
    result.durationUs = Math.max(0, Math.round((Date.now() - started) * 1000));
    this.#enqueue({ result });
    if (this.#inflight.size === 0) this.#onIdle();
  }

  // -------------------------------------------------------------------------------------------
  // Shutdown
  // -------------------------------------------------------------------------------------------

  /**
   * Leaves gracefully within `drainTimeoutMs`: capability calls in flight finish and their
   * results go out, queued messages are written, then the stream is half-closed (the bridge
   * takes that as the agent leaving). Safe to call more than once.
   */
  drain(): Promise<void> {
    this.#shutdown ??= this.#stop(true);
    return this.#shutdown;
  }

  /**
   * Closes now: what waits (requests, calls) fails with CANCELLED, pushed calls are aborted,
   * what is already queued is flushed briefly, then the stream is half-closed. Safe to call
   * more than once (and after `drain()`).
   */
  close(): Promise<void> {
    this.#shutdown ??= this.#stop(false);
    return this.#shutdown;
  }

  async #stop(graceful: boolean): Promise<void> {
    const deadline = Date.now() + this.#options.drainTimeoutMs;
    const left = (): number => Math.max(0, deadline - Date.now());
    const session = this.#session;
    const connected = session !== undefined && !session.ended && this.#status.state === 'connected';
    if (graceful && connected) {
      while (this.#inflight.size > 0 && left() > 0 && !session.ended) {
        await new Promise<void>((resolve) => {
          this.#idleWaiters.push(resolve);
          setTimeout(resolve, Math.min(50, left())).unref();
        });
      }
    }
    this.#closing = true;
    const closed = new CancelledError('The connection was closed.');
    this.#failInFlight(closed, Number.MAX_SAFE_INTEGER);
    if (connected) {
      // What is queued goes out now, held or not.
      clearTimeout(session.releaseTimer);
      session.heldUntil = 0;
      const flushBound = graceful ? left() : Math.min(left(), 1000);
      const flushDeadline = Date.now() + flushBound;
      while ((this.#queue.length > this.#head || this.#writing !== 0) && !session.ended && Date.now() < flushDeadline) {
        this.#scheduleFlush();
        await new Promise<void>((resolve) => {
          this.#idleWaiters.push(resolve);
          setTimeout(resolve, 20).unref();
        });
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
      session.ended = true;
      clearInterval(session.heartbeat);
      clearTimeout(session.releaseTimer);
      session.call.cancel();
    }
    this.#lifetime.abort(closed);
    for (const entry of this.#entries) entry.close();
    const waiters = this.#spaceWaiters;
    this.#spaceWaiters = [];
    // What was never written: the publisher learns of it here, not from silence.
    let unsent = 0;
    for (let i = this.#head; i < this.#queue.length; i++) {
      const message = this.#queue[i] as PbClientMessage;
      // Calls and memory requests are not counted: their waiters fail with CANCELLED.
      if (!message.heartbeat && !message.call && !message.memory) unsent++;
    }
    if (unsent > 0) {
      this.#stats.unsentOnClose += unsent;
      this.#log.warn(`${this.agentId}: ${unsent} queued messages were never sent: the connection closed first`);
    }
    this.#queue = [];
    this.#head = 0;
    this.#setStatus({ state: 'closed' });
    for (const wake of waiters) wake();
    this.#client.close();
  }
}

function toProtoError(error: LoomError): NonNullable<PbActionResult['error']> {
  return {
    code: errorCodeNumber(error.code),
    message: error.message,
    path: error.path ?? '',
    details: { ...error.details },
    retryable: error.retryable,
  };
}

const toError = (error: unknown): Error => (error instanceof Error ? error : new Error(String(error)));

function estimateSize(message: PbClientMessage): number {
  const p = message.publish;
  if (p) {
    return (p.payload?.length ?? 0) + (p.topic?.length ?? 0) + (p.replyTo?.length ?? 0) + (p.correlationId?.length ?? 0) + (p.id?.length ?? 0) + 48
      + (p.headers ? Object.keys(p.headers).length * 64 : 0);
  }
  if (message.result) return (message.result.outputJson?.length ?? 0) + (message.result.error?.message?.length ?? 0) + 96;
  if (message.call) return (message.call.inputJson?.length ?? 0) + (message.call.capability?.length ?? 0) + 128;
  if (message.memory) {
    const m = message.memory;
    return (m.set?.value?.length ?? 0) + (m.compareAndSet?.value?.length ?? 0) + 640;
  }
  return 64;
}

/**
 * Connects to a bridge: registers the agent (with `setup.capabilities`) and opens its event
 * stream. The connection then keeps itself connected until `close()` or `drain()`.
 * @param url the bridge's gRPC address, e.g. `http://127.0.0.1:7070`; default `LOOM_URL`, else that
 * @throws {UnavailableError} the bridge cannot be reached
 * @throws {InvalidParamsError} the bridge rejected the registration (the `path` names the field)
 */
export async function connect(url?: string, options: ConnectOptions = {}, setup: ConnectionSetup = {}): Promise<Connection> {
  const connection = new Connection(resolveUrl(url), options, setup);
  try {
    await connection.start(setup.signal);
    return connection;
  } catch (error) {
    await connection.close();
    throw error;
  }
}

/** @internal Creates an unstarted connection (agents subscribe their topics before the first registration). */
export function createConnection(url: string | undefined, options: ConnectOptions, setup: ConnectionSetup): Connection {
  return new Connection(resolveUrl(url), options, setup);
}
