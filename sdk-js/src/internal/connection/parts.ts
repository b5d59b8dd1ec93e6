// Wires the parts of a connection together (the facade keeps the ones its API uses).
import type * as grpc from '@grpc/grpc-js';

import type { AgentContext, ConnectionSetup } from '../../connection-types.js';
import { CallRunner } from './call-runner.js';
import { createClient } from './channel.js';
import { DurableStreams } from './durable-streams.js';
import { Heartbeat } from './heartbeat.js';
import { Messages } from './messages.js';
import { PendingCalls } from './pending-calls.js';
import { Reader } from './reader.js';
import type { ConnectionState } from './state.js';
import { SubscriptionRouter } from './subscription-router.js';
import { Supervisor } from './supervisor.js';
import { Writer } from './writer.js';

export interface Parts {
  client: grpc.Client;
  messages: Messages;
  writer: Writer;
  pending: PendingCalls;
  router: SubscriptionRouter;
  durable: DurableStreams;
  supervisor: Supervisor;
}

/** Builds every part for `state`; `context` is what capability handlers receive (the facade). */
export function wireParts(
  state: ConnectionState,
  url: string,
  setup: ConnectionSetup,
  context: AgentContext,
): Parts {
  const messages = new Messages(state);
  const pending = new PendingCalls(state);
  const writer = new Writer(state, (m) => pending.isStale(m));
  pending.writer = writer;
  const calls = new CallRunner(state, writer, setup.capabilities ?? []);
  calls.context = context;
  const reader = new Reader(state);
  const router = new SubscriptionRouter(state, writer, pending, () => reader.resume());
  const durable = new DurableStreams({
    agentId: state.agentId,
    log: state.log,
    requestTimeoutMs: state.options.requestTimeoutMs,
    nextId: () => state.ids.next(),
    ensureOpen: () => state.ensureOpen(),
    isConnected: () => state.connected && !state.closing,
    enqueue: (message) => writer.enqueue(message),
    sendAndWait: (id, message, timeoutMs, onTimeout, signal) =>
      pending.sendAndWait('durable', id, message, timeoutMs, onTimeout, signal),
    buildEnvelope: (topic, payload, options) => messages.envelope(topic, payload, options),
    countUnrouted: () => {
      state.stats.unrouted++;
    },
  });
  reader.parts = { router, pending, calls, durable };
  const client = createClient(url, state.options);
  const heartbeat = new Heartbeat(writer, (session, error) => supervisor.onStreamEnded(session, error));
  const supervisor: Supervisor = new Supervisor(state, {
    client,
    url,
    writer,
    pending,
    router,
    calls,
    heartbeat,
    reader,
    durable,
  });
  return { client, messages, writer, pending, router, durable, supervisor };
}
