// Reader: the read loop of a session. Decodes each ServerFrame's messages and dispatches them by
// kind: deliveries to the SubscriptionRouter (or DurableStreams for a consumer's), pushed calls
// and cancels to the CallRunner, replies to PendingCalls. It never waits on user code; a `block`
// subscription over capacity pauses the stream until its reader catches up or its timeout passes.
import type { PbActionCall, PbServerFrame, PbServerMessage } from '../proto.js';
import type { CallRunner } from './call-runner.js';
import type { DurableStreams } from './durable-streams.js';
import type { PendingCalls } from './pending-calls.js';
import type { ConnectionState, Session } from './state.js';
import type { SubscriptionRouter } from './subscription-router.js';

export interface ReaderParts {
  router: SubscriptionRouter;
  pending: PendingCalls;
  calls: CallRunner;
  durable: DurableStreams;
}

export class Reader {
  readonly #state: ConnectionState;
  #parts: ReaderParts | undefined;

  constructor(state: ConnectionState) {
    this.#state = state;
  }

  /** Wired after construction (the router needs `resume` first). */
  set parts(parts: ReaderParts) {
    this.#parts = parts;
  }

  onFrame(session: Session, frame: PbServerFrame): void {
    if (session.ended) return;
    session.lastReceived = Date.now();
    const stats = this.#state.stats;
    stats.framesReceived++;
    stats.messagesReceived += frame.messages.length;
    for (const message of frame.messages) {
      try {
        this.#dispatch(session, message);
      } catch (error) {
        this.#state.log.error(`${this.#state.agentId}: failed to handle a message from the bridge`, error);
      }
    }
  }

  #dispatch(session: Session, message: PbServerMessage): void {
    const parts = this.#parts as ReaderParts;
    if (message.deliver) {
      if (message.deliver.consumer) {
        parts.durable.deliver(message.deliver);
        return;
      }
      const pauseMs = parts.router.deliver(message.deliver);
      if (pauseMs > 0) this.#pause(session, pauseMs);
    } else if (message.call) {
      parts.calls.onCall(message.call as PbActionCall, session.generation);
    } else if (message.result) {
      parts.pending.complete(message.result.callId ?? '', message);
    } else if (message.ack) {
      const ack = message.ack;
      const op = parts.pending.take(ack.correlationId ?? '');
      if (!op) return;
      if (op.kind === 'subscribe' && op.subscription)
        parts.router.onSubscribeAck(op.subscription, ack.subscriptionId ?? '', op.abandoned === true);
      op.resolve(message);
    } else if (message.error) {
      parts.pending.onErrorReply(message);
    } else if (message.memory) {
      parts.pending.complete(message.memory.correlationId ?? '', message);
    } else if (message.cancel) {
      parts.calls.cancel(message.cancel.callId ?? '');
    } else if (message.publishAck) {
      parts.pending.complete(message.publishAck.correlationId ?? '', message);
    } else if (message.consumer) {
      if (message.consumer.correlationId) parts.pending.complete(message.consumer.correlationId, message);
    } else if (message.read) {
      parts.pending.complete(message.read.correlationId ?? '', message);
    } else if (message.streamAdmin) {
      parts.pending.complete(message.streamAdmin.correlationId ?? '', message);
    }
    // heartbeat: any frame is a sign of life. Unknown kinds are ignored.
  }

  #pause(session: Session, blockTimeoutMs: number): void {
    if (session.paused) return;
    session.paused = true;
    session.call.pause();
    setTimeout(() => this.resume(), blockTimeoutMs).unref();
  }

  /** A `block` subscription made room (or its timeout passed): read again. */
  resume(): void {
    const session = this.#state.session;
    if (session?.paused) {
      session.paused = false;
      session.call.resume();
    }
  }
}
