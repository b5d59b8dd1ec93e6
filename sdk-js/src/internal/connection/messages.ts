// Outgoing messages built from the public API's arguments: envelopes (emit, request, reply,
// publishDurable) and capability calls (invoke). Checks what the bridge would refuse first.
import type { InvokeOptions, RoutingPolicy } from '../../connection-types.js';
import { ResourceExhaustedError } from '../../errors.js';
import { type EmitOptions, QOS_NUMBERS } from '../../event.js';
import type { PbClientMessage, PbEnvelope } from '../proto.js';
import { encodePayload, jsonBytes, positiveMs, validateTopic } from '../util.js';
import type { ConnectionState } from './state.js';

const ROUTING_NUMBERS: Record<RoutingPolicy, number> = {
  'round-robin': 1,
  'least-latency': 2,
  'lowest-cost': 3,
  'local-only': 4,
};

export class Messages {
  readonly #state: ConnectionState;
  #lastTopic = '';

  constructor(state: ConnectionState) {
    this.#state = state;
  }

  /** An envelope for `topic`; INVALID_PARAMS for a bad topic or TTL, RESOURCE_EXHAUSTED for a payload over the bridge's limit. */
  envelope(topic: string, payload: unknown, options: EmitOptions | undefined): PbEnvelope {
    if (topic !== this.#lastTopic) {
      // Publishers tend to reuse one topic: validate each new one once.
      validateTopic(topic);
      this.#lastTopic = topic;
    }
    const { bytes, contentType } = encodePayload(payload);
    const maxPayload = this.#state.limits.maxPayloadBytes ?? 0;
    if (maxPayload > 0 && bytes.length > maxPayload) {
      throw new ResourceExhaustedError(
        `Payload of ${bytes.length} bytes on topic '${topic}' exceeds the bridge's limit of ${maxPayload} bytes.`,
        { path: '/payload' },
      );
    }
    const envelope: PbEnvelope = {
      id: options?.id ?? this.#state.ids.next(),
      topic,
      payload: bytes,
      contentType: options?.contentType ?? contentType,
    };
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

  /** An ActionCall message for `invoke`. */
  call(
    callId: string,
    capability: string,
    input: unknown,
    options: InvokeOptions,
    timeoutMs: number,
  ): PbClientMessage {
    return {
      call: {
        callId,
        capability,
        version: options.version ?? '',
        inputJson: jsonBytes(input),
        timeoutMs,
        threadId: options.threadId ?? '',
        traceparent: options.traceparent ?? '',
        routing: options.routing ? ROUTING_NUMBERS[options.routing] : 0,
        targetAgent: options.targetAgent ?? '',
        headers: options.headers ?? {},
        idempotencyKey: options.idempotencyKey ?? '',
      },
    };
  }
}
