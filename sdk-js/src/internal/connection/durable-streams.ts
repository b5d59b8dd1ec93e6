// DurableStreams: publish with an acknowledgement, durable consumers (attach, settle, detach,
// re-attach after every reconnect, deliveries routed by stream and name), stream reads and stream
// administration. Wire: ClientMessage.publish_acked / consumer / read / stream_admin, answered by
// PublishAck / ConsumerReply / StreamReadResponse / StreamAdminReply or an ErrorReply carrying
// the request's correlation id (proto/loom/v1/bridge.proto, docs/durability.md).
import { randomUUID } from 'node:crypto';

import {
  type ConsumeOptions,
  Consumer,
  type ConsumerHost,
  type ConsumerInfo,
  type ConsumerMessage,
  type PublishAck,
  type PublishDurableOptions,
  type ReadStreamOptions,
  type StreamReadResult,
  type StreamSpec,
  type StreamState,
} from '../../durable.js';
import { InvalidParamsError, type LoomError, TimeoutError, UnavailableError } from '../../errors.js';
import { LoomEvent } from '../../event.js';
import type { Logger } from '../../options.js';
import {
  fromProtoError,
  num,
  type PbClientMessage,
  type PbEnvelope,
  type PbServerMessage,
  type PbStreamState,
} from '../proto.js';
import { positiveMs, validatePattern, validateTopic } from '../util.js';

/** What the part needs from the connection. */
export interface DurableHost {
  readonly agentId: string;
  readonly log: Logger;
  readonly requestTimeoutMs: number;
  nextId(): string;
  ensureOpen(): void;
  isConnected(): boolean;
  enqueue(message: PbClientMessage): boolean;
  sendAndWait(
    id: string,
    message: PbClientMessage,
    timeoutMs: number,
    onTimeout: () => LoomError,
    signal?: AbortSignal,
  ): Promise<PbServerMessage>;
  buildEnvelope(topic: string, payload: unknown, options: PublishDurableOptions): PbEnvelope;
  countUnrouted(): void;
}

const NAME = /^[A-Za-z0-9_-]{1,64}$/;
const DELIVER_NUMBERS = { all: 1, new: 2, 'by-sequence': 3, 'by-time': 4 } as const;
const ACK_NUMBERS = { ack: 1, nak: 2, 'in-progress': 3, term: 4 } as const;
const U32 = 0xffffffff;

const key = (stream: string, name: string): string => `${stream}\u0000${name}`;
const unixMs = (value: number | Date): number => (value instanceof Date ? value.getTime() : value);

function wholeNumber(
  value: number | undefined,
  what: string,
  path: string,
  min: number,
  max: number,
): number {
  if (value === undefined) return 0;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new InvalidParamsError(
      `${what} must be a whole number from ${min} to ${max}; got ${String(value)}.`,
      { path },
    );
  }
  return value;
}

function checkName(name: unknown, what: string, path: string): string {
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new InvalidParamsError(
      `${what} '${String(name)}' is not valid: use 1 to 64 letters, digits, '-' or '_'.`,
      { path },
    );
  }
  return name;
}

/** The wire ConsumerConfig of `consume`'s options; INVALID_PARAMS (with the option's path) says what to fix. */
export function consumerConfig(options: ConsumeOptions): Record<string, unknown> {
  const stream = checkName(options.stream, 'Stream name', '/stream');
  const name = checkName(options.name, 'Consumer name', '/name');
  if (options.filter) validatePattern(options.filter, '/filter');
  if (options.deadLetterTopic)
    validateTopic(options.deadLetterTopic, 'dead-letter topic', '/deadLetterTopic');
  const deliver = options.deliver ?? 'all';
  if (!(deliver in DELIVER_NUMBERS)) {
    throw new InvalidParamsError(
      `deliver '${deliver as string}' is not one of all, new, by-sequence, by-time.`,
      { path: '/deliver' },
    );
  }
  const config: Record<string, unknown> = {
    name,
    stream,
    filter: options.filter ?? '',
    deliver: DELIVER_NUMBERS[deliver],
    ackWaitMs: options.ackWaitMs === undefined ? 0 : positiveMs(options.ackWaitMs, 'ackWaitMs', '/ackWaitMs'),
    maxDeliver: wholeNumber(options.maxDeliver, 'maxDeliver', '/maxDeliver', 1, U32),
    maxAckPending: wholeNumber(options.maxAckPending, 'maxAckPending', '/maxAckPending', 1, 100_000),
    deadLetterTopic: options.deadLetterTopic ?? '',
  };
  if (deliver === 'by-sequence') {
    if (options.startSequence === undefined)
      throw new InvalidParamsError("deliver 'by-sequence' needs startSequence (1 or more).", {
        path: '/startSequence',
      });
    config.startSequence = wholeNumber(
      options.startSequence,
      'startSequence',
      '/startSequence',
      1,
      Number.MAX_SAFE_INTEGER,
    );
  }
  if (deliver === 'by-time') {
    const start = options.startTime === undefined ? Number.NaN : unixMs(options.startTime);
    if (!Number.isFinite(start))
      throw new InvalidParamsError("deliver 'by-time' needs startTime (Unix ms or a Date).", {
        path: '/startTime',
      });
    config.startUnixMs = Math.round(start);
  }
  return config;
}

function consumerInfo(info: PbServerMessage['consumer']): ConsumerInfo {
  const i = info?.info;
  const c = i?.config;
  return {
    ackFloor: num(i?.ackFloor),
    nextSequence: num(i?.nextSequence),
    pending: i?.pending ?? 0,
    streamLastSequence: num(i?.streamLastSequence),
    ackWaitMs: c?.ackWaitMs ?? 0,
    maxDeliver: c?.maxDeliver ?? 0,
    maxAckPending: c?.maxAckPending ?? 0,
    deadLetterTopic: c?.deadLetterTopic ?? '',
    filter: c?.filter ?? '',
  };
}

function streamState(state: PbStreamState): StreamState {
  const spec = state.spec;
  return {
    name: spec?.name ?? '',
    subjects: [...(spec?.subjects ?? [])],
    maxAgeMs: num(spec?.maxAgeMs),
    maxBytes: num(spec?.maxBytes),
    maxEvents: num(spec?.maxEvents),
    duplicateWindowMs: num(spec?.duplicateWindowMs),
    firstSequence: num(state.firstSequence),
    lastSequence: num(state.lastSequence),
    events: num(state.events),
    bytes: num(state.bytes),
  };
}

export class DurableStreams {
  readonly #host: DurableHost;
  readonly #consumers = new Map<string, Consumer>();
  readonly #consumerHost: ConsumerHost;

  constructor(host: DurableHost) {
    this.#host = host;
    this.#consumerHost = {
      settle: (consumer, sequence, kind, delayMs) => {
        // Fire and forget: a lost ack means a redelivery, which at-least-once allows.
        this.#host.enqueue({
          consumer: {
            ack: {
              stream: consumer.stream,
              consumer: consumer.name,
              sequences: [sequence],
              kind: ACK_NUMBERS[kind],
              delayMs,
            },
          },
        });
      },
      detach: (consumer, remove) => this.#detach(consumer, remove),
      warn: (message) => this.#host.log.warn(`${this.#host.agentId}: ${message}`),
    };
  }

  /** Consumers attached on this connection. */
  get consumerCount(): number {
    return this.#consumers.size;
  }

  async publishDurable(topic: string, payload: unknown, options: PublishDurableOptions): Promise<PublishAck> {
    this.#host.ensureOpen();
    const envelope = this.#host.buildEnvelope(topic, payload, {
      ...options,
      id: options.id || randomUUID().replace(/-/g, ''),
    });
    const id = envelope.id as string;
    const timeoutMs = positiveMs(
      options.timeoutMs ?? this.#host.requestTimeoutMs,
      'A publish timeout',
      '/timeoutMs',
    );
    const reply = await this.#host.sendAndWait(
      id,
      { publishAcked: { envelope } },
      timeoutMs,
      () =>
        new TimeoutError(
          `The bridge did not acknowledge event '${id}' on '${topic}' within ${timeoutMs} ms; publish it again with the same id (it is not stored twice).`,
        ),
      options.signal,
    );
    const ack = reply.publishAck;
    if (!ack)
      throw new UnavailableError(`The bridge answered the publish of '${id}' without an acknowledgement.`);
    return { stream: ack.stream ?? '', sequence: num(ack.sequence), duplicate: ack.duplicate === true };
  }

  async consume(options: ConsumeOptions, handler?: (message: ConsumerMessage) => unknown): Promise<Consumer> {
    this.#host.ensureOpen();
    const config = consumerConfig(options);
    const k = key(options.stream, options.name);
    if (this.#consumers.has(k)) {
      throw new InvalidParamsError(
        `Consumer '${options.name}' of stream '${options.stream}' is already consumed on this connection.`,
        { path: '/name' },
      );
    }
    const capacity = ((config.maxAckPending as number) || 1000) + 16;
    const consumer = new Consumer(options.stream, options.name, config, capacity, this.#consumerHost);
    this.#consumers.set(k, consumer);
    try {
      const id = this.#host.nextId();
      const reply = await this.#host.sendAndWait(
        id,
        { consumer: { correlationId: id, attach: { config } } },
        this.#host.requestTimeoutMs,
        () =>
          new TimeoutError(
            `The bridge did not answer the attach of consumer '${options.name}' within ${this.#host.requestTimeoutMs} ms.`,
          ),
        options.signal,
      );
      consumer.info = consumerInfo(reply.consumer);
    } catch (error) {
      this.#consumers.delete(k);
      consumer.close();
      throw error;
    }
    if (handler) consumer.run(handler);
    return consumer;
  }

  async readStream(stream: string, options: ReadStreamOptions): Promise<StreamReadResult> {
    this.#host.ensureOpen();
    checkName(stream, 'Stream name', '/stream');
    const id = this.#host.nextId();
    const request: Record<string, unknown> = { correlationId: id, stream };
    if (options.fromSequence !== undefined)
      request.startSequence = wholeNumber(
        options.fromSequence,
        'fromSequence',
        '/fromSequence',
        1,
        Number.MAX_SAFE_INTEGER,
      );
    else if (options.fromTime !== undefined) {
      const start = unixMs(options.fromTime);
      if (!Number.isFinite(start))
        throw new InvalidParamsError('fromTime is not a valid time (Unix ms or a Date).', {
          path: '/fromTime',
        });
      request.startUnixMs = Math.round(start);
    }
    request.maxEvents = wholeNumber(options.maxEvents, 'maxEvents', '/maxEvents', 1, 1000);
    const timeoutMs = positiveMs(
      options.timeoutMs ?? this.#host.requestTimeoutMs,
      'A read timeout',
      '/timeoutMs',
    );
    const reply = await this.#host.sendAndWait(
      id,
      { read: request },
      timeoutMs,
      () =>
        new TimeoutError(`The bridge did not answer the read of stream '${stream}' within ${timeoutMs} ms.`),
      options.signal,
    );
    const read = reply.read;
    if (!read)
      throw new UnavailableError(`The bridge answered the read of stream '${stream}' without events.`);
    if (read.error && (read.error.code ?? 0) !== 0) throw fromProtoError(read.error);
    return {
      events: (read.events ?? []).map((e) => ({
        sequence: num(e.sequence),
        storedUnixMs: num(e.storedUnixMs),
        event: new LoomEvent(e.envelope ?? {}, ''),
      })),
      firstSequence: num(read.firstSequence),
      lastSequence: num(read.lastSequence),
    };
  }

  async createStream(spec: StreamSpec, signal?: AbortSignal): Promise<StreamState> {
    checkName(spec?.name, 'Stream name', '/name');
    const subjects: readonly string[] = spec.subjects ?? [];
    if (subjects.length === 0) {
      throw new InvalidParamsError(
        `Stream '${spec.name}' needs at least one subject (a topic pattern such as 'orders.>').`,
        { path: '/subjects' },
      );
    }
    subjects.forEach((s, i) => validatePattern(s, `/subjects/${i}`));
    const max = Number.MAX_SAFE_INTEGER;
    const create = {
      name: spec.name,
      subjects: [...subjects],
      maxAgeMs: wholeNumber(spec.maxAgeMs, 'maxAgeMs', '/maxAgeMs', 0, max),
      maxBytes: wholeNumber(spec.maxBytes, 'maxBytes', '/maxBytes', 0, max),
      maxEvents: wholeNumber(spec.maxEvents, 'maxEvents', '/maxEvents', 0, max),
      duplicateWindowMs: wholeNumber(
        spec.duplicateWindowMs,
        'duplicateWindowMs',
        '/duplicateWindowMs',
        0,
        max,
      ),
    };
    const states = await this.#admin({ create }, `create stream '${spec.name}'`, signal);
    const state = states[0];
    if (!state)
      throw new UnavailableError(
        `The bridge answered the creation of stream '${spec.name}' without its state.`,
      );
    return state;
  }

  async streamInfo(name: string, signal?: AbortSignal): Promise<StreamState> {
    checkName(name, 'Stream name', '/name');
    const state = (await this.#admin({ info: name }, `describe stream '${name}'`, signal))[0];
    if (!state)
      throw new UnavailableError(
        `The bridge answered the description of stream '${name}' without its state.`,
      );
    return state;
  }

  listStreams(signal?: AbortSignal): Promise<StreamState[]> {
    return this.#admin({ list: true }, 'list streams', signal);
  }

  async deleteStream(name: string, signal?: AbortSignal): Promise<void> {
    checkName(name, 'Stream name', '/name');
    await this.#admin({ delete: name }, `delete stream '${name}'`, signal);
  }

  async #admin(op: Record<string, unknown>, what: string, signal?: AbortSignal): Promise<StreamState[]> {
    this.#host.ensureOpen();
    const id = this.#host.nextId();
    const timeoutMs = this.#host.requestTimeoutMs;
    const reply = await this.#host.sendAndWait(
      id,
      { streamAdmin: { correlationId: id, ...op } },
      timeoutMs,
      () => new TimeoutError(`The bridge did not answer the request to ${what} within ${timeoutMs} ms.`),
      signal,
    );
    const admin = reply.streamAdmin;
    if (!admin)
      throw new UnavailableError(`The bridge answered the request to ${what} without a stream reply.`);
    return (admin.streams ?? []).map(streamState);
  }

  /** After a (re)connect: attach every consumer again (the replies carry no waiter). */
  reattach(): void {
    for (const consumer of this.#consumers.values()) {
      this.#host.enqueue({ consumer: { attach: { config: consumer.config } } });
    }
  }

  /** A delivery for a durable consumer (`deliver.consumer` set). */
  deliver(delivery: NonNullable<PbServerMessage['deliver']>): void {
    const consumer = this.#consumers.get(key(delivery.stream ?? '', delivery.consumer ?? ''));
    if (!consumer || !delivery.envelope) {
      this.#host.countUnrouted(); // detached meanwhile: the bridge delivers it again after the ack wait
      return;
    }
    consumer.push(
      new LoomEvent(delivery.envelope, ''),
      num(delivery.streamSequence),
      delivery.deliveryCount ?? 1,
    );
  }

  /** The connection closes: consumers end. */
  closeAll(): void {
    for (const consumer of this.#consumers.values()) consumer.close();
    this.#consumers.clear();
  }

  async #detach(consumer: Consumer, remove: boolean): Promise<void> {
    const k = key(consumer.stream, consumer.name);
    if (this.#consumers.get(k) !== consumer) return;
    this.#consumers.delete(k);
    if (!this.#host.isConnected()) {
      if (remove)
        throw new UnavailableError(
          `Consumer '${consumer.name}' was detached here but not deleted: not connected to the bridge. Consume it again and delete it once connected.`,
        );
      return; // the bridge detaches it when the session ends
    }
    const id = this.#host.nextId();
    try {
      await this.#host.sendAndWait(
        id,
        {
          consumer: {
            correlationId: id,
            detach: { stream: consumer.stream, consumer: consumer.name, delete: remove },
          },
        },
        this.#host.requestTimeoutMs,
        () => new TimeoutError(`The bridge did not answer the detach of consumer '${consumer.name}'.`),
      );
    } catch (error) {
      if (remove) throw error;
      // Without delete the session ending detaches it anyway.
    }
  }
}
