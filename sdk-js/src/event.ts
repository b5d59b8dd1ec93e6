/**
 * Events (envelopes) as handlers see them, and the options of publishing one.
 * @module
 */
import { InvalidParamsError } from './errors.js';
import { num, type PbEnvelope } from './internal/proto.js';
import { EMPTY, textDecoder } from './internal/util.js';

/** Quality-of-service class of an event or a subscription (protocol §7). */
export type Qos = 'realtime' | 'normal' | 'batch';

/** Full-queue policy of a subscription. */
export type OverflowPolicy = 'drop-oldest' | 'drop-newest' | 'block';

export const QOS_NUMBERS: Record<Qos, number> = { realtime: 1, normal: 2, batch: 3 };
const QOS_NAMES: readonly Qos[] = ['normal', 'realtime', 'normal', 'batch'];
export const qosName = (value: number | null | undefined): Qos => QOS_NAMES[value ?? 0] ?? 'normal';

/** Options of `emit`, `reply` and `request`. */
export interface EmitOptions {
  /** Groups a conversation. @default "" (for `reply`: the request's thread) */
  threadId?: string;
  /** Links a reply to its request. @default "" (set by `reply` and `request`) */
  correlationId?: string;
  /** Topic where replies are expected. @default "" (set by `request`) */
  replyTo?: string;
  /** Time to live in ms. @default 0 (the bridge default, 5 min) */
  ttlMs?: number;
  /** QoS class carried with the event. @default "normal" */
  qos?: Qos;
  /** Free string headers. @default {} */
  headers?: Record<string, string>;
  /** Content type. @default derived from the payload: bytes `application/octet-stream`, anything else `application/json` */
  contentType?: string;
  /** W3C trace context. @default "" */
  traceparent?: string;
  /** W3C trace state. @default "" */
  tracestate?: string;
  /** Envelope id. @default a fresh id unique for this connection */
  id?: string;
}

/**
 * One event delivered to this agent: the envelope's fields, read-only. The payload is raw bytes;
 * {@link LoomEvent.json} and {@link LoomEvent.text} decode it.
 */
export class LoomEvent {
  readonly #envelope: PbEnvelope;
  /** The id of the subscription that delivered it ("" for a reply). */
  readonly subscriptionId: string;

  /** @internal */
  constructor(envelope: PbEnvelope, subscriptionId: string) {
    this.#envelope = envelope;
    this.subscriptionId = subscriptionId;
  }

  /** Envelope id, unique per sender. */
  get id(): string {
    return this.#envelope.id ?? '';
  }
  /** Concrete topic it was published on. */
  get topic(): string {
    return this.#envelope.topic ?? '';
  }
  /** The publishing agent's id (set by the bridge). */
  get sender(): string {
    return this.#envelope.sender ?? '';
  }
  /** Conversation it belongs to, or "". */
  get threadId(): string {
    return this.#envelope.threadId ?? '';
  }
  /** On a reply: the id of the request it answers; on a request: the id to echo. */
  get correlationId(): string {
    return this.#envelope.correlationId ?? '';
  }
  /** Topic where replies are expected, or "" when it is not a request. */
  get replyTo(): string {
    return this.#envelope.replyTo ?? '';
  }
  /** Time to live in ms given by the publisher (0: the bridge default). */
  get ttlMs(): number {
    return this.#envelope.ttlMs ?? 0;
  }
  /** Absolute expiry (Unix ms). */
  get deadlineUnixMs(): number {
    return num(this.#envelope.deadlineUnixMs);
  }
  /** Number of publishes along the way (1 for a first publish). */
  get hop(): number {
    return this.#envelope.hopCount ?? 0;
  }
  /** QoS class carried with the event. */
  get qos(): Qos {
    return qosName(this.#envelope.qos);
  }
  /** When it was published (Unix ms). */
  get timestampUnixMs(): number {
    return num(this.#envelope.timestampUnixMs);
  }
  /** Content type, e.g. `application/json`. */
  get contentType(): string {
    return this.#envelope.contentType ?? '';
  }
  /** Raw payload bytes. */
  get payload(): Uint8Array {
    return this.#envelope.payload ?? EMPTY;
  }
  /** Free string headers. */
  get headers(): Readonly<Record<string, string>> {
    return this.#envelope.headers ?? {};
  }
  /** W3C trace context, or "". */
  get traceparent(): string {
    return this.#envelope.traceparent ?? '';
  }
  /** W3C trace state, or "". */
  get tracestate(): string {
    return this.#envelope.tracestate ?? '';
  }

  /** The payload as UTF-8 text. */
  text(): string {
    return textDecoder.decode(this.payload);
  }

  /** The payload parsed as JSON; INVALID_PARAMS when it is not JSON. */
  json<T = unknown>(): T {
    try {
      return JSON.parse(this.text()) as T;
    } catch (error) {
      throw new InvalidParamsError(
        `The payload of event '${this.id}' on '${this.topic}' is not JSON: ${(error as Error).message}`,
        { path: '/payload', cause: error },
      );
    }
  }

  /** A plain object with every field (for logging). */
  toJSON(): Record<string, unknown> {
    return {
      id: this.id,
      topic: this.topic,
      sender: this.sender,
      threadId: this.threadId,
      correlationId: this.correlationId,
      replyTo: this.replyTo,
      ttlMs: this.ttlMs,
      deadlineUnixMs: this.deadlineUnixMs,
      hop: this.hop,
      qos: this.qos,
      timestampUnixMs: this.timestampUnixMs,
      contentType: this.contentType,
      headers: this.headers,
      traceparent: this.traceparent,
      payloadBytes: this.payload.length,
    };
  }
}
