/**
 * The public types of a connection: its status, counters, the options of its operations and the
 * {@link AgentContext} interface it implements.
 * @module
 */
import type { Capability } from './capability.js';
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
import type { LoomError } from './errors.js';
import type { EmitOptions, LoomEvent } from './event.js';
import type { Llm } from './llm.js';
import type { Memory } from './memory.js';
import type { SubscribeOptions, Subscription } from './subscription.js';
import type { JoinThreadOptions, Thread } from './thread.js';

/** The state of a connection, as a discriminated union on `state`. */
export type ConnectionStatus =
  | { readonly state: 'connecting' }
  | { readonly state: 'connected'; readonly sessionId: string; readonly reconnected: boolean }
  | { readonly state: 'reconnecting'; readonly error: LoomError }
  | { readonly state: 'closed'; readonly error?: LoomError | undefined };

/** Routing policy of a capability call. */
export type RoutingPolicy = 'round-robin' | 'least-latency' | 'lowest-cost' | 'local-only';

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
  tool<I = unknown, O = unknown>(
    capability: string,
    defaults?: InvokeOptions,
  ): (input: I, options?: InvokeOptions) => Promise<O>;
  subscribe(pattern: string, options?: SubscribeOptions): Promise<Subscription>;
  joinThread(threadId: string, options?: JoinThreadOptions): Promise<Thread>;
  publishDurable(topic: string, payload?: unknown, options?: PublishDurableOptions): Promise<PublishAck>;
  consume(options: ConsumeOptions, handler?: (message: ConsumerMessage) => unknown): Promise<Consumer>;
  readStream(stream: string, options?: ReadStreamOptions): Promise<StreamReadResult>;
  createStream(spec: StreamSpec, options?: { signal?: AbortSignal }): Promise<StreamState>;
  streamInfo(name: string, options?: { signal?: AbortSignal }): Promise<StreamState>;
  listStreams(options?: { signal?: AbortSignal }): Promise<StreamState[]>;
  deleteStream(name: string, options?: { signal?: AbortSignal }): Promise<void>;
}

/** Extra options of `connect`. */
export interface ConnectionSetup {
  /** Capabilities this agent provides, registered with every (re-)registration. @default [] */
  capabilities?: readonly Capability<AgentContext>[];
  /** Aborts the first connection attempt. @default none */
  signal?: AbortSignal;
}
