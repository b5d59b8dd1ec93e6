// The state every part of a connection shares: options, ids, counters, the current session and
// status, and whether the connection is closing. Parts read it; the Supervisor changes the session
// and the status.
import type * as grpc from '@grpc/grpc-js';

import type { ConnectionStatus } from '../../connection-types.js';
import { CancelledError } from '../../errors.js';
import type { encodeClientFrame } from '../frame-encoder.js';
import type { Logger, ResolvedOptions } from '../../options.js';
import type { PbLimits, PbServerFrame } from '../proto.js';
import { IdGenerator } from '../util.js';

/** One EventStream: its call, its negotiated limits and its liveness. */
export interface Session {
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

/** The counters of `Connection.stats` (the queue depth is added by the facade). */
export interface Counters {
  framesSent: number;
  messagesSent: number;
  framesReceived: number;
  messagesReceived: number;
  reconnects: number;
  publishErrors: number;
  lateReplies: number;
  lostOnBreak: number;
  unsentOnClose: number;
  unrouted: number;
}

export class ConnectionState {
  readonly options: ResolvedOptions;
  readonly log: Logger;
  readonly agentId: string;
  readonly ids = new IdGenerator();
  /** Aborted when the connection closes (or its first connect is aborted). */
  readonly lifetime = new AbortController();
  readonly stats: Counters = {
    framesSent: 0,
    messagesSent: 0,
    framesReceived: 0,
    messagesReceived: 0,
    reconnects: 0,
    publishErrors: 0,
    lateReplies: 0,
    lostOnBreak: 0,
    unsentOnClose: 0,
    unrouted: 0,
  };
  session: Session | undefined;
  status: ConnectionStatus = { state: 'connecting' };
  closing = false;
  limits: PbLimits = {};

  constructor(options: ResolvedOptions, agentId: string) {
    this.options = options;
    this.log = options.logger;
    this.agentId = agentId;
  }

  get connected(): boolean {
    return this.status.state === 'connected';
  }

  ensureOpen(): void {
    if (this.closing) throw new CancelledError('The connection is closed.');
  }

  warn(message: string): void {
    this.log.warn(`${this.agentId}: ${message}`);
  }
}
