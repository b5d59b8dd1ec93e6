/**
 * Collaboration operations: gather (request/reply, fan-out/fan-in), barrier and contract-net.
 *
 * They run in the bridge's core (service `loom.v1.Collaboration`, protocol §16), so TypeScript,
 * Python and .NET agents get the same semantics; these functions build the requests and read the
 * results. Outcomes are values: a timeout, a failed responder or a missing participant is in the
 * result, never thrown. Invalid requests reject with {@link InvalidParamsError} (with the path);
 * aborting `signal` cancels the operation in the bridge (outstanding capability calls receive a
 * cancel) and rejects with {@link CancelledError}.
 *
 * A local comparison (`compare` as a function) or scorer (`scoring` as a function) runs here: the
 * SDK gathers through the core with strategy `all` (or first-k bids) and applies the function,
 * with the same result shape as the core's declarative rules. See docs/collaboration.md.
 * @module
 */
import { randomUUID } from 'node:crypto';

import { Connection, type AgentContext } from './connection.js';
import { InvalidParamsError, LoomError, UnavailableError } from './errors.js';
import type { LoomEvent } from './event.js';
import { loom } from './gen/loom.js';
import { fromProtoError, unary } from './internal/proto.js';

const pb = loom.v1;
const SERVICE = '/loom.v1.Collaboration/';
const GRACE_MS = 5000;

/** Header naming the kind of a collaboration request or record (`cfp`, `bid`, `award`, ...). */
export const COLLAB_KIND_HEADER = 'loom-collab';

/** How a gather joins its replies. `any` is `first`. */
export type JoinStrategy = 'first' | 'any' | 'first_k' | 'majority' | 'all';

/** How an operation ended; partial results come with every outcome. */
export type CollabOutcome =
  'unspecified' | 'completed' | 'timeout' | 'cancelled' | 'no_quorum' | 'failed' | 'no_bids' | 'pending';

const OUTCOMES: readonly CollabOutcome[] = [
  'unspecified',
  'completed',
  'timeout',
  'cancelled',
  'no_quorum',
  'failed',
  'no_bids',
  'pending',
];
const STRATEGIES: Record<JoinStrategy, number> = { first: 1, any: 1, first_k: 2, majority: 3, all: 4 };
const outcomeOf = (n: number | null | undefined): CollabOutcome => OUTCOMES[n ?? 0] ?? 'unspecified';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function parse(bytes: Uint8Array | null | undefined): unknown {
  if (!bytes || bytes.length === 0) return undefined;
  try {
    return JSON.parse(decoder.decode(bytes)) as unknown;
  } catch {
    return bytes;
  }
}

function jsonBytes(value: unknown): Uint8Array {
  if (value instanceof Uint8Array) return value;
  return encoder.encode(JSON.stringify(value ?? {}));
}

/** One responder's answer (or failure) to a gather. */
export interface Reply {
  readonly responder: string;
  readonly payload: Uint8Array;
  readonly contentType: string;
  /** Set when the responder failed (capability mode). */
  readonly error: LoomError | undefined;
  readonly latencyMs: number;
  readonly envelopeId: string;
  readonly headers: Readonly<Record<string, string>>;
  /** The payload parsed as JSON (`undefined` when empty, the bytes when not JSON). */
  json<T = unknown>(): T;
}

/** The outcome of a gather: who answered, who timed out, who failed. */
export interface GatherResult {
  readonly opId: string;
  readonly outcome: CollabOutcome;
  readonly replies: readonly Reply[];
  readonly answered: readonly string[];
  readonly timedOut: readonly string[];
  readonly failed: readonly string[];
  readonly expected: number;
  /** Majority: the agreed value (JSON). */
  readonly agreedValue: unknown;
  readonly agreeing: readonly string[];
  readonly quorum: number;
  readonly elapsedMs: number;
  readonly threadId: string;
}

/** Options of {@link gather}. Exactly one of `topic` and `capability`. */
export interface GatherOptions {
  /** Publish one request here; subscribers reply (what `ctx.reply` does). */
  topic?: string;
  /** Or call this capability on every agent in `agents` (default: every provider). */
  capability?: string;
  version?: string;
  /** Topic: the known responders (default: the topic's subscribers). Capability: who to call. */
  agents?: readonly string[];
  /** The request payload (JSON; bytes go as they are). */
  data?: unknown;
  /** @default "first" */
  strategy?: JoinStrategy;
  /** `first_k`: replies wanted. */
  k?: number;
  /** `majority`: agreeing responders needed. @default more than half of the known responders */
  quorum?: number;
  /** `majority`: a JSON pointer into each reply ("" = the whole reply) or a key function applied here. @default "" */
  compare?: string | ((reply: Reply) => unknown);
  /** @default 30000 */
  timeoutMs?: number;
  threadId?: string;
  opId?: string;
  headers?: Readonly<Record<string, string>>;
  contentType?: string;
  signal?: AbortSignal;
}

/** Who reached a barrier, and who is missing. */
export interface BarrierResult {
  readonly barrierId: string;
  readonly outcome: CollabOutcome;
  readonly arrived: readonly string[];
  readonly missing: readonly string[];
  readonly expected: number;
  readonly elapsedMs: number;
}

/** Options of {@link barrier}. */
export interface BarrierOptions {
  /** The named participants the barrier waits for (the first call names them, or `count`). */
  participants?: readonly string[];
  /** Or: this many distinct arrivals. */
  count?: number;
  /** Arrive as this participant. @default this agent's id */
  participant?: string;
  /** Wait without arriving. @default false */
  observe?: boolean;
  /** Arrive and return at once (`pending` or `completed`). @default false */
  noWait?: boolean;
  /** @default 30000 */
  timeoutMs?: number;
  threadId?: string;
  signal?: AbortSignal;
}

/** A contract-net bid with its score. */
export interface Bid {
  readonly bidder: string;
  readonly payload: Uint8Array;
  readonly score: number;
  readonly valid: boolean;
  readonly reason: string;
  readonly latencyMs: number;
  json<T = unknown>(): T;
}

/** One awarded bidder's execution. */
export interface Attempt {
  readonly agent: string;
  readonly succeeded: boolean;
  readonly error: LoomError | undefined;
  readonly durationMs: number;
}

/** The outcome of a contract-net. */
export interface ContractNetResult {
  readonly opId: string;
  readonly threadId: string;
  readonly outcome: CollabOutcome;
  /** Valid bids best first, then invalid ones. */
  readonly bids: readonly Bid[];
  readonly attempts: readonly Attempt[];
  readonly winner: string;
  /** The winner's output (JSON). */
  readonly output: unknown;
  readonly noBid: readonly string[];
  readonly elapsedMs: number;
}

/** How bids are scored: lowest `/cost`, lowest `/latency_ms`, min/max of a pointer, or a function (higher wins). */
export type Scoring = 'lowest_cost' | 'fastest' | { min: string } | { max: string } | ((bid: Bid) => number);

/** Options of {@link contractNet}. */
export interface ContractNetOptions {
  /** The call for proposals (JSON). */
  task: unknown;
  /** What the winner executes (called on that agent only). */
  capability: string;
  version?: string;
  /** Where the call for proposals goes. @default `thread.<threadId>.broadcast` */
  topic?: string;
  /** The exchange is recorded on `thread.<threadId>.broadcast`. @default the operation id */
  threadId?: string;
  /** The capability's input. @default the task */
  input?: unknown;
  /** @default "lowest_cost" */
  scoring?: Scoring;
  /** @default 2000 */
  bidTimeoutMs?: number;
  /** Stop collecting after this many valid bids. @default 0 (until the bid deadline or every known bidder) */
  maxBids?: number;
  /** Per attempt. @default what is left of `timeoutMs` */
  executionTimeoutMs?: number;
  /** Awarded bidders tried in order. @default 0 (all) */
  maxAttempts?: number;
  /** The whole exchange. @default 60000 */
  timeoutMs?: number;
  /** Known bidders. @default the topic's subscribers */
  bidders?: readonly string[];
  opId?: string;
  signal?: AbortSignal;
}

/** True for a contract-net call for proposals: answer it with a bid (`ctx.reply(event, {...})`). */
export function isCallForProposals(event: LoomEvent): boolean {
  return event.replyTo !== '' && event.headers[COLLAB_KIND_HEADER] === 'cfp';
}

/** True for a collaboration record on a thread (cfp/bid/award/fallback/result): not a request. */
export function isCollabRecord(event: LoomEvent): boolean {
  return event.replyTo === '' && COLLAB_KIND_HEADER in event.headers;
}

// ---------------------------------------------------------------------------------------------

function millis(value: number, path: string): number {
  if (!Number.isFinite(value) || value <= 0)
    throw new InvalidParamsError(`A timeout must be positive; got ${value} ms.`, { path });
  return Math.max(1, Math.ceil(value));
}

interface Message<T> {
  encode(message: T): { finish(): Uint8Array };
}

async function call<Req, Res>(
  context: AgentContext,
  method: string,
  type: Message<Req>,
  decode: (bytes: Buffer) => Res,
  request: Req & { sessionId?: string | null },
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<Res> {
  if (!(context instanceof Connection)) {
    throw new UnavailableError(
      'Collaboration operations need a Connection (or an agent context backed by one).',
    );
  }
  const sessionId = context.sessionId;
  if (!sessionId)
    throw new UnavailableError(
      `Agent ${context.agentId} is not connected; collaboration operations need a live connection.`,
    );
  request.sessionId = sessionId;
  return unary(
    context.grpcClient,
    {
      path: SERVICE + method,
      serialize: (value: Req) => Buffer.from(type.encode(value).finish()),
      deserialize: decode,
    },
    request,
    timeoutMs + GRACE_MS,
    signal,
  );
}

function toReply(r: loom.v1.Reply.$Properties): Reply {
  const payload = r.payload ?? new Uint8Array();
  return {
    responder: r.responder ?? '',
    payload,
    contentType: r.contentType ?? '',
    error: r.error ? fromProtoError(r.error) : undefined,
    latencyMs: r.latencyMs ?? 0,
    envelopeId: r.envelopeId ?? '',
    headers: { ...(r.headers ?? {}) },
    json: <T>() => parse(payload) as T,
  };
}

/**
 * Request/reply and fan-out/fan-in: one request to a `topic` (replies gathered by correlation id)
 * or to the providers of a `capability`, joined by `strategy` within `timeoutMs`.
 */
export async function gather(context: AgentContext, options: GatherOptions): Promise<GatherResult> {
  const strategy = options.strategy ?? 'first';
  if (!(strategy in STRATEGIES))
    throw new InvalidParamsError(
      `Unknown strategy '${strategy}'; use first, any, first_k, majority or all.`,
      { path: '/strategy' },
    );
  if (strategy === 'first_k' && !(options.k !== undefined && options.k >= 1))
    throw new InvalidParamsError('first_k needs k >= 1.', { path: '/k' });
  const local = typeof options.compare === 'function' ? options.compare : undefined;
  const timeoutMs = millis(options.timeoutMs ?? 30_000, '/timeout_ms');
  const data = options.data;
  const request: loom.v1.GatherRequest.$Properties = {
    opId: options.opId ?? '',
    threadId: options.threadId ?? '',
    topic: options.topic ?? '',
    capability: options.capability ?? '',
    version: options.version ?? '',
    agents: [...(options.agents ?? [])],
    payload: jsonBytes(data),
    contentType:
      options.contentType ?? (data instanceof Uint8Array ? 'application/octet-stream' : 'application/json'),
    headers: { ...(options.headers ?? {}) },
    strategy: local && strategy === 'majority' ? STRATEGIES.all : STRATEGIES[strategy],
    k: options.k ?? 0,
    quorum: options.quorum ?? 0,
    comparePointer: typeof options.compare === 'string' ? options.compare : '',
    timeoutMs,
  };
  const response = await call(
    context,
    'Gather',
    pb.GatherRequest,
    (b) => pb.GatherResult.decode(b),
    request,
    timeoutMs,
    options.signal,
  );
  const result: GatherResult = {
    opId: response.opId,
    outcome: outcomeOf(response.outcome),
    replies: response.replies.map(toReply),
    answered: [...response.answered],
    timedOut: [...response.timedOut],
    failed: [...response.failed],
    expected: response.expected,
    agreedValue: parse(response.agreedValue),
    agreeing: [...response.agreeing],
    quorum: response.quorum,
    elapsedMs: response.elapsedMs,
    threadId: response.threadId,
  };
  return local && strategy === 'majority' ? applyMajority(result, local, options.quorum ?? 0) : result;
}

/**
 * Majority with a local comparison over a finished gather: successful replies grouped by `key`
 * (an `undefined`/`null` key abstains; keys are compared with `Object.is`, or as JSON for objects),
 * the first group in arrival order to reach the quorum agrees.
 */
export function applyMajority(
  result: GatherResult,
  key: (reply: Reply) => unknown,
  quorum = 0,
): GatherResult {
  const needed = quorum > 0 ? quorum : Math.floor(result.expected / 2) + 1;
  const groups: { key: unknown; replies: Reply[] }[] = [];
  let agreed: { key: unknown; replies: Reply[] } | undefined;
  const same = (a: unknown, b: unknown): boolean =>
    Object.is(a, b) ||
    (typeof a === 'object' &&
      typeof b === 'object' &&
      a !== null &&
      b !== null &&
      JSON.stringify(a) === JSON.stringify(b));
  for (const reply of result.replies) {
    if (reply.error) continue;
    const value = key(reply);
    if (value === undefined || value === null) continue;
    let group = groups.find((g) => same(g.key, value));
    if (!group) {
      group = { key: value, replies: [] };
      groups.push(group);
    }
    group.replies.push(reply);
    if (group.replies.length >= needed) {
      agreed = group;
      break;
    }
  }
  const first = agreed?.replies[0];
  return {
    ...result,
    outcome: agreed
      ? 'completed'
      : result.outcome === 'completed' || result.outcome === 'failed'
        ? 'no_quorum'
        : result.outcome,
    agreedValue: first ? first.json() : undefined,
    agreeing: agreed ? agreed.replies.map((r) => r.responder) : [],
    quorum: needed,
  };
}

/**
 * Arrives at `barrierId` (as this agent, or `participant`; `observe` waits without arriving) and
 * waits until every one of `participants` (or `count` distinct arrivals) is there, or `timeoutMs`.
 */
export async function barrier(
  context: AgentContext,
  barrierId: string,
  options: BarrierOptions = {},
): Promise<BarrierResult> {
  const timeoutMs = millis(options.timeoutMs ?? 30_000, '/timeout_ms');
  const request: loom.v1.BarrierRequest.$Properties = {
    barrierId,
    participant: options.participant ?? '',
    observe: options.observe ?? false,
    participants: [...(options.participants ?? [])],
    count: options.count ?? 0,
    timeoutMs,
    threadId: options.threadId ?? '',
    noWait: options.noWait ?? false,
  };
  const r = await call(
    context,
    'Barrier',
    pb.BarrierRequest,
    (b) => pb.BarrierResult.decode(b),
    request,
    timeoutMs,
    options.signal,
  );
  return {
    barrierId: r.barrierId,
    outcome: outcomeOf(r.outcome),
    arrived: [...r.arrived],
    missing: [...r.missing],
    expected: r.expected,
    elapsedMs: r.elapsedMs,
  };
}

function toBid(b: loom.v1.Bid.$Properties): Bid {
  const payload = b.payload ?? new Uint8Array();
  return {
    bidder: b.bidder ?? '',
    payload,
    score: b.score ?? 0,
    valid: b.valid ?? false,
    reason: b.reason ?? '',
    latencyMs: b.latencyMs ?? 0,
    json: <T>() => parse(payload) as T,
  };
}

/**
 * Contract-net: a call for proposals (`task`), bids collected for `bidTimeoutMs` (or `maxBids`,
 * or every known bidder), the best bid by `scoring` awarded; the winner executes `capability`,
 * and if it fails or exceeds `executionTimeoutMs`, the next bidder does. Recorded on the thread.
 */
export async function contractNet(
  context: AgentContext,
  options: ContractNetOptions,
): Promise<ContractNetResult> {
  if (!options.capability)
    throw new InvalidParamsError('contractNet needs capability: what the winner executes.', {
      path: '/capability',
    });
  const timeoutMs = millis(options.timeoutMs ?? 60_000, '/timeout_ms');
  const bidTimeoutMs = millis(options.bidTimeoutMs ?? 2000, '/bid_timeout_ms');
  const scoring = options.scoring ?? 'lowest_cost';
  const request: loom.v1.ContractNetRequest.$Properties = {
    opId: options.opId ?? '',
    threadId: options.threadId ?? '',
    topic: options.topic ?? '',
    task: jsonBytes(options.task),
    capability: options.capability,
    version: options.version ?? '',
    inputJson: options.input === undefined ? new Uint8Array() : jsonBytes(options.input),
    bidTimeoutMs,
    maxBids: options.maxBids ?? 0,
    executionTimeoutMs:
      options.executionTimeoutMs === undefined
        ? 0
        : millis(options.executionTimeoutMs, '/execution_timeout_ms'),
    maxAttempts: options.maxAttempts ?? 0,
    timeoutMs,
    bidders: [...(options.bidders ?? [])],
  };
  let noBid: readonly string[] | undefined;
  let extraMs = 0;
  if (typeof scoring === 'function') {
    const opId = options.opId || randomUUID().replaceAll('-', '');
    const threadId = options.threadId || opId;
    const bids = await gather(context, {
      topic: options.topic || `thread.${threadId}.broadcast`,
      data: options.task ?? {},
      agents: options.bidders ?? [],
      strategy: options.maxBids ? 'first_k' : 'all',
      k: options.maxBids ?? 0,
      timeoutMs: bidTimeoutMs,
      threadId,
      opId: `${opId}-cfp`,
      headers: { [COLLAB_KIND_HEADER]: 'cfp', 'loom-capability': options.capability },
      ...(options.signal ? { signal: options.signal } : {}),
    });
    request.opId = opId;
    request.threadId = threadId;
    request.scoring = loom.v1.ScoringRule.SCORING_RULE_GIVEN;
    request.bids = bids.replies
      .filter((r) => !r.error)
      .map((r) => {
        const bid = toBid({ bidder: r.responder, payload: r.payload, latencyMs: r.latencyMs, valid: true });
        let score: number;
        try {
          score = scoring(bid);
        } catch {
          score = Number.NaN;
        }
        return { bidder: bid.bidder, payload: bid.payload, score, latencyMs: bid.latencyMs };
      });
    noBid = bids.timedOut;
    extraMs = bids.elapsedMs;
    if (request.bids.length === 0) {
      return {
        opId,
        threadId,
        outcome: 'no_bids',
        bids: [],
        attempts: [],
        winner: '',
        output: undefined,
        noBid,
        elapsedMs: extraMs,
      };
    }
  } else if (scoring === 'lowest_cost') {
    request.scoring = loom.v1.ScoringRule.SCORING_RULE_LOWEST_COST;
  } else if (scoring === 'fastest') {
    request.scoring = loom.v1.ScoringRule.SCORING_RULE_FASTEST;
  } else if (typeof scoring === 'object' && 'min' in scoring) {
    request.scoring = loom.v1.ScoringRule.SCORING_RULE_FIELD_MIN;
    request.scorePointer = scoring.min;
  } else if (typeof scoring === 'object' && 'max' in scoring) {
    request.scoring = loom.v1.ScoringRule.SCORING_RULE_FIELD_MAX;
    request.scorePointer = scoring.max;
  } else {
    throw new InvalidParamsError(
      `Unknown scoring ${JSON.stringify(scoring)}: use 'lowest_cost', 'fastest', { min: '/ptr' }, { max: '/ptr' } or a function.`,
      { path: '/scoring' },
    );
  }
  const r = await call(
    context,
    'ContractNet',
    pb.ContractNetRequest,
    (b) => pb.ContractNetResult.decode(b),
    request,
    timeoutMs,
    options.signal,
  );
  return {
    opId: r.opId,
    threadId: r.threadId,
    outcome: outcomeOf(r.outcome),
    bids: r.bids.map(toBid),
    attempts: r.attempts.map((a) => ({
      agent: a.agent ?? '',
      succeeded: a.succeeded ?? false,
      error: a.error ? fromProtoError(a.error) : undefined,
      durationMs: a.durationMs ?? 0,
    })),
    winner: r.winner,
    output: parse(r.outputJson),
    noBid: noBid ?? [...r.noBid],
    elapsedMs: r.elapsedMs + extraMs,
  };
}
