/**
 * One agent's connection to a bridge: RegisterAgent, then one EventStream. `Connection` is a
 * small facade over the parts in `internal/connection/` (docs/architecture.md): Supervisor
 * (register, status, reconnect), Writer (one bounded queue, one write in flight), Reader
 * (dispatch), SubscriptionRouter, PendingCalls, CallRunner (pushed calls), Heartbeat and
 * DurableStreams. It wires them and holds no loop of its own.
 * @module
 */
import type * as grpc from '@grpc/grpc-js';

import type {
  AgentContext,
  ConnectionSetup,
  ConnectionStats,
  ConnectionStatus,
  InvokeOptions,
  RequestManyOptions,
  RequestOptions,
} from './connection-types.js';
import type {
  ConsumeOptions,
  Consumer,
  ConsumerMessage,
  PublishAck,
  PublishDurableOptions,
  ReadStreamOptions,
  StreamReadResult,
  StreamSpec,
  StreamState,
} from './durable.js';
import { InvalidParamsError, TimeoutError, ToolError, UnavailableError } from './errors.js';
import type { EmitOptions, LoomEvent } from './event.js';
import type { DurableStreams } from './internal/connection/durable-streams.js';
import type { Messages } from './internal/connection/messages.js';
import { wireParts } from './internal/connection/parts.js';
import type { PendingCalls } from './internal/connection/pending-calls.js';
import { ConnectionState } from './internal/connection/state.js';
import type { SubscriptionRouter } from './internal/connection/subscription-router.js';
import type { Supervisor } from './internal/connection/supervisor.js';
import type { Writer } from './internal/connection/writer.js';
import {
  fromProtoError,
  type PbEnvelope,
  type PbLimits,
  type PbMemoryRequest,
  type PbMemoryResponse,
} from './internal/proto.js';
import { newAgentId, parseJsonBytes, positiveMs, validateTopic } from './internal/util.js';
import { Llm } from './llm.js';
import { Memory } from './memory.js';
import { type ConnectOptions, type Logger, resolveOptions, resolveUrl } from './options.js';
import type { SubscribeOptions, Subscription } from './subscription.js';
import { type JoinThreadOptions, Thread } from './thread.js';

export type {
  AgentContext,
  ConnectionSetup,
  ConnectionStats,
  ConnectionStatus,
  InvokeOptions,
  MemoryWriteOptions,
  RequestManyOptions,
  RequestOptions,
  RoutingPolicy,
} from './connection-types.js';

const RESOLVED: Promise<void> = Promise.resolve();
const toError = (error: unknown): Error => (error instanceof Error ? error : new Error(String(error)));

/**
 * A connection of one agent to a bridge. Create it with {@link connect}. It implements
 * {@link AgentContext}: emit, request/reply, invoke, subscribe, memory, threads, durable streams.
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

  readonly #state: ConnectionState;
  readonly #client: grpc.Client;
  readonly #messages: Messages;
  readonly #writer: Writer;
  readonly #pending: PendingCalls;
  readonly #router: SubscriptionRouter;
  readonly #durable: DurableStreams;
  readonly #supervisor: Supervisor;
  #shutdown: Promise<void> | undefined;

  /** @internal Use {@link connect}. */
  constructor(url: string, options: ConnectOptions = {}, setup: ConnectionSetup = {}) {
    this.url = url;
    const resolved = resolveOptions(options);
    this.agentId = resolved.agentId ?? newAgentId(resolved.name);
    this.namespace = resolved.namespace || 'default';
    this.#state = new ConnectionState(resolved, this.agentId);
    const parts = wireParts(this.#state, url, setup, this);
    this.#client = parts.client;
    this.#messages = parts.messages;
    this.#writer = parts.writer;
    this.#pending = parts.pending;
    this.#router = parts.router;
    this.#durable = parts.durable;
    this.#supervisor = parts.supervisor;
    this.memory = new Memory((request, signal) => this.#memory(request, signal), '', this.namespace);
    this.llm = new Llm(this);
  }

  // -------------------------------------------------------------------------------------------
  // Status
  // -------------------------------------------------------------------------------------------

  /** The current status. */
  get status(): ConnectionStatus {
    return this.#state.status;
  }

  /** The bound of `drain()`/`close()` in ms. */
  get drainTimeoutMs(): number {
    return this.#state.options.drainTimeoutMs;
  }

  /** The logger this connection writes to. */
  get logger(): Logger {
    return this.#state.log;
  }

  /** @internal The gRPC client of this connection, for unary calls of other services (collab.ts). */
  get grpcClient(): grpc.Client {
    return this.#client;
  }

  /** The current session id ("" while not connected). */
  get sessionId(): string {
    const status = this.#state.status;
    return status.state === 'connected' ? status.sessionId : '';
  }

  /** The bridge's limits from the last registration. */
  get limits(): Readonly<PbLimits> {
    return this.#state.limits;
  }

  /** Counters since the connection was created. */
  get stats(): ConnectionStats {
    return { ...this.#state.stats, outboundQueueDepth: this.#writer.depth };
  }

  /**
   * Status changes from now on, as an async iterable (each call gets its own iterator, which
   * keeps the last 64 changes if not read). It ends after the `closed` status, or when `signal`
   * aborts.
   */
  statusChanges(options: { signal?: AbortSignal } = {}): AsyncIterableIterator<ConnectionStatus> {
    return this.#supervisor.statusChanges(options.signal);
  }

  /** @internal Registers and opens the stream; {@link connect} calls it. */
  start(signal?: AbortSignal): Promise<void> {
    return this.#supervisor.start(signal);
  }

  // -------------------------------------------------------------------------------------------
  // Events
  // -------------------------------------------------------------------------------------------

  #publish(envelope: PbEnvelope, signal?: AbortSignal): Promise<void> {
    if (this.#writer.enqueue({ publish: envelope })) return RESOLVED;
    return this.#writer.waitForSpace(signal);
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
      this.#state.ensureOpen();
      return this.#publish(this.#messages.envelope(topic, payload, options), options?.signal);
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
      return Promise.reject(
        new InvalidParamsError(
          `Event '${request.id}' on '${request.topic}' has no replyTo; only requests can be replied to.`,
          { path: '/replyTo' },
        ),
      );
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
    if (!Number.isInteger(needed) || needed < 1)
      return Promise.reject(
        new InvalidParamsError(`'first' must be a positive integer; got ${String(needed)}.`, {
          path: '/first',
        }),
      );
    let timeoutMs: number;
    let envelope: PbEnvelope;
    const id = this.#state.ids.next();
    try {
      this.#state.ensureOpen();
      timeoutMs = positiveMs(
        options.timeoutMs ?? this.#state.options.requestTimeoutMs,
        'A request timeout',
        '/timeoutMs',
      );
      envelope = this.#messages.envelope(topic, payload, {
        ...options,
        id,
        correlationId: id,
        replyTo: `${this.#router.inboxPrefix}.${id}`,
      });
    } catch (error) {
      return Promise.reject(toError(error));
    }
    return this.#pending.awaitReplies(
      id,
      needed,
      topic,
      timeoutMs,
      options.allowPartial ?? false,
      options.signal,
      () => this.#publish(envelope, options.signal),
    );
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
  subscribe(pattern: string, options: SubscribeOptions = {}): Promise<Subscription> {
    return this.#router.subscribe(pattern, options);
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
  // Durable streams (docs/durability.md)
  // -------------------------------------------------------------------------------------------

  /**
   * Publishes to a topic a durable stream captures and resolves once the bridge has persisted it,
   * with its stream and sequence. `options.id` (a fresh unique id when not given) is the message
   * id: publishing again with the same id within the stream's dedup window (e.g. a retry after a
   * reconnect) stores nothing new and answers with the first copy's sequence (`duplicate: true`).
   * @throws {InvalidParamsError} no stream captures the topic, or the topic is invalid
   * @throws {UnavailableError} not connected (retry with the same id), or the disk write failed
   * @throws {TimeoutError} no acknowledgement within `timeoutMs` (retry with the same id)
   */
  publishDurable(topic: string, payload?: unknown, options: PublishDurableOptions = {}): Promise<PublishAck> {
    return this.#durable.publishDurable(topic, payload, options);
  }

  /**
   * Attaches to (creating it when new) the durable consumer `options.name` of `options.stream`.
   * Iterate the result (`for await (const m of consumer)`, then `m.ack()`), or give a `handler`:
   * it runs for one message at a time; one it did not settle is acked when it returns and nak'ed
   * when it throws. The consumer is attached again after every reconnect; its position lives in
   * the bridge, so it also survives a restart of this process or of the bridge.
   * @throws {InvalidParamsError} a bad option (its `path` names it), no such stream, or already consumed here
   */
  consume(options: ConsumeOptions, handler?: (message: ConsumerMessage) => unknown): Promise<Consumer> {
    return this.#durable.consume(options, handler);
  }

  /**
   * Reads events of a stream from a sequence or a time (replay); at most 1000 per call. Read the
   * next page from the last event's `sequence + 1`.
   * @throws {InvalidParamsError} no such stream
   */
  readStream(stream: string, options: ReadStreamOptions = {}): Promise<StreamReadResult> {
    return this.#durable.readStream(stream, options);
  }

  /**
   * Creates a durable stream (idempotent: the same settings again succeed; different ones fail
   * with INVALID_PARAMS). Needs the `streams` permission when the bridge checks permissions.
   */
  createStream(spec: StreamSpec, options: { signal?: AbortSignal } = {}): Promise<StreamState> {
    return this.#durable.createStream(spec, options.signal);
  }

  /** A stream's settings and state. @throws {InvalidParamsError} no such stream */
  streamInfo(name: string, options: { signal?: AbortSignal } = {}): Promise<StreamState> {
    return this.#durable.streamInfo(name, options.signal);
  }

  /** Every stream of the bridge. */
  listStreams(options: { signal?: AbortSignal } = {}): Promise<StreamState[]> {
    return this.#durable.listStreams(options.signal);
  }

  /** Deletes a stream with its events and consumers. @throws {InvalidParamsError} no such stream */
  deleteStream(name: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    return this.#durable.deleteStream(name, options.signal);
  }

  // -------------------------------------------------------------------------------------------
  // Capability calls and memory
  // -------------------------------------------------------------------------------------------

  /**
   * Calls a capability through the bridge with `input` as JSON and returns its output parsed
   * from JSON.
   * @throws {LoomError} INVALID_PARAMS (with `path`), CAPABILITY_NOT_FOUND, PROVIDER_UNAVAILABLE,
   * TOOL_ERROR, TIMEOUT, UNAVAILABLE when the connection is down or breaks, CANCELLED on abort
   */
  async invoke<T = unknown>(
    capabilityName: string,
    input?: unknown,
    options: InvokeOptions = {},
  ): Promise<T> {
    this.#state.ensureOpen();
    if (!capabilityName)
      throw new InvalidParamsError('The capability name is empty.', { path: '/capability' });
    const timeoutMs = positiveMs(
      options.timeoutMs ?? this.#state.options.callTimeoutMs,
      'A call timeout',
      '/timeoutMs',
    );
    const callId = this.#state.ids.next();
    // A little longer than the bridge's deadline, so its own TIMEOUT normally arrives first.
    const grace = Math.min(1000, 100 + timeoutMs * 0.05);
    const reply = await this.#pending.sendAndWait(
      'call',
      callId,
      this.#messages.call(callId, capabilityName, input, options, timeoutMs),
      timeoutMs + grace,
      () => new TimeoutError(`Call to '${capabilityName}' got no result within ${timeoutMs} ms.`),
      options.signal,
    );
    const result = reply.result;
    if (!result) throw new UnavailableError('The bridge answered a call without a result.');
    if (result.error) throw fromProtoError(result.error);
    try {
      return parseJsonBytes(result.outputJson) as T;
    } catch (error) {
      throw new ToolError(`The output of '${capabilityName}' is not JSON: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }

  /** A function that calls one capability: `const add = ctx.tool('math.add'); await add({a:1,b:2})`. */
  tool<I = unknown, O = unknown>(
    capabilityName: string,
    defaults: InvokeOptions = {},
  ): (input: I, options?: InvokeOptions) => Promise<O> {
    return (input, options) => this.invoke<O>(capabilityName, input, { ...defaults, ...options });
  }

  async #memory(request: PbMemoryRequest, signal?: AbortSignal): Promise<PbMemoryResponse> {
    this.#state.ensureOpen();
    const correlationId = this.#state.ids.next();
    request.correlationId = correlationId;
    const timeoutMs = this.#state.options.requestTimeoutMs;
    const reply = await this.#pending.sendAndWait(
      'memory',
      correlationId,
      { memory: request },
      timeoutMs,
      () => new TimeoutError(`The bridge did not answer a memory request within ${timeoutMs} ms.`),
      signal,
    );
    const response = reply.memory;
    if (!response) throw new UnavailableError('The bridge answered a memory request without a response.');
    if (response.error && (response.error.code ?? 0) !== 0) throw fromProtoError(response.error);
    return response;
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
    this.#shutdown ??= this.#supervisor.stop(true);
    return this.#shutdown;
  }

  /**
   * Closes now: what waits (requests, calls) fails with CANCELLED, pushed calls are aborted,
   * what is already queued is flushed briefly, then the stream is half-closed. Safe to call
   * more than once (and after `drain()`).
   */
  close(): Promise<void> {
    this.#shutdown ??= this.#supervisor.stop(false);
    return this.#shutdown;
  }
}

/**
 * Connects to a bridge: registers the agent (with `setup.capabilities`) and opens its event
 * stream. The connection then keeps itself connected until `close()` or `drain()`.
 * @param url the bridge's gRPC address, e.g. `http://127.0.0.1:7070`; default `LOOM_URL`, else that
 * @throws {UnavailableError} the bridge cannot be reached
 * @throws {InvalidParamsError} the bridge rejected the registration (the `path` names the field)
 */
export async function connect(
  url?: string,
  options: ConnectOptions = {},
  setup: ConnectionSetup = {},
): Promise<Connection> {
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
export function createConnection(
  url: string | undefined,
  options: ConnectOptions,
  setup: ConnectionSetup,
): Connection {
  return new Connection(resolveUrl(url), options, setup);
}
