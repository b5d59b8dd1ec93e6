// Fault injection through real mechanisms: the bridge is killed and restarted on the same ports;
// an agent process is frozen (SIGSTOP) so it stops heartbeating.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  capability,
  connect,
  type ConnectOptions,
  type Connection,
  type ConnectionStatus,
} from '../src/mod.js';
import { Bridge, nodeAgent, waitFor, within } from './helpers/processes.js';

const T = { timeout: 90_000 };
let bridge: Bridge;
const conns: Connection[] = [];

before(async () => {
  bridge = await Bridge.start();
});

after(async () => {
  await Promise.all(conns.map((c) => within(c.close(), 10_000, 'close')));
  await bridge.stop();
});

describe('resilience', () => {
  test('after the bridge restarts on the same port, agents re-register and re-subscribe', T, async () => {
    const echo = capability({ name: 'res.echo', handler: (input) => input });
    const options = {
      logLevel: 'silent' as const,
      reconnectInitialMs: 50,
      reconnectMaxMs: 500,
      heartbeatMs: 500,
    };
    const provider = await connect(
      bridge.grpcUrl,
      { ...options, name: 'res-provider' },
      { capabilities: [echo] },
    );
    const listener = await connect(bridge.grpcUrl, { ...options, name: 'res-listener' });
    const caller = await connect(bridge.grpcUrl, { ...options, name: 'res-caller' });
    conns.push(provider, listener, caller);
    const sub = await listener.subscribe('res.events.>');
    const statuses: ConnectionStatus[] = [];
    const watching = (async () => {
      for await (const s of provider.statusChanges()) statuses.push(s);
    })();
    assert.deepEqual(await caller.invoke('res.echo', { n: 1 }), { n: 1 });

    await bridge.restart();

    await waitFor(
      'all three reconnected',
      () =>
        [provider, listener, caller].every((c) => c.status.state === 'connected' && c.stats.reconnects >= 1),
      30_000,
    );
    assert.deepEqual(
      statuses.slice(0, 2).map((s) => s.state),
      ['reconnecting', 'connected'],
    );
    const back = statuses[1];
    assert.ok(back?.state === 'connected' && back.reconnected);
    // Capabilities are callable again.
    assert.deepEqual(
      await waitFor(
        'the capability answers again',
        async () => caller.invoke('res.echo', { n: 2 }).catch(() => undefined),
        10_000,
      ),
      { n: 2 },
    );
    // Subscriptions receive again.
    const pending = sub.next(); // one reader; re-publish until it receives
    const got = await waitFor(
      'a delivery after the restart',
      async () => {
        await caller.emit('res.events.after', { ok: true });
        const next = await Promise.race([
          pending,
          new Promise<undefined>((r) => setTimeout(() => r(undefined), 200)),
        ]);
        return next && !next.done ? next.value : undefined;
      },
      10_000,
    );
    assert.equal(got.topic, 'res.events.after');
    const listed = await bridge.agents();
    assert.ok(listed.some((a) => a.agent_id === provider.agentId && a.state === 'connected'));
    await provider.close();
    await within(watching, 5000, 'status iteration ends on close');
    assert.equal(statuses.at(-1)?.state, 'closed');
  });

  test(
    'a bridge killed mid-flow and restarted: every event queued after the kill reaches the subscriber',
    T,
    async (t) => {
      // The subscriber retries every 5 s, the publisher every 100 ms: after the restart the publisher
      // is back first, the case where what it queued during the outage reached nobody (a bridge's
      // first answers after a cold start can take a second or two, and retries that land in that
      // window all come back together, so the subscriber's delay is longer than that). The publisher
      // holds its queue for 8 s after a restart, so the subscriber is back before it is sent.
      const counts = await restartMidFlow(
        {
          reconnectInitialMs: 100,
          reconnectMaxMs: 100,
          reconnectJitter: 0,
          restartSettleMs: Number(process.env.LOOM_TEST_RESTART_SETTLE_MS ?? 8000),
        },
        { reconnectInitialMs: 5000, reconnectMaxMs: 5000, reconnectJitter: 0 },
      );
      t.diagnostic(`restart mid-flow, slow subscriber: ${JSON.stringify(counts)}`);
      assert.equal(counts.reconnects, 2, JSON.stringify(counts));
      assert.equal(
        counts.lostAfterBound,
        0,
        `events queued after the kill were lost: ${JSON.stringify(counts)}`,
      );
      assert.ok(counts.lost <= counts.bound, JSON.stringify(counts));
    },
  );

  test(
    'a bridge killed mid-flow and restarted, default reconnect settings: nothing queued after the kill is lost',
    T,
    async (t) => {
      const counts = await restartMidFlow({}, {});
      t.diagnostic(`restart mid-flow, default settings: ${JSON.stringify(counts)}`);
      assert.equal(
        counts.lostAfterBound,
        0,
        `events queued after the kill were lost: ${JSON.stringify(counts)}`,
      );
      assert.ok(counts.lost <= counts.bound, JSON.stringify(counts));
    },
  );

  test('events still queued when a connection closes are counted', T, async () => {
    const own = await Bridge.start();
    try {
      const conn = await connect(own.grpcUrl, {
        name: 'unsent',
        logLevel: 'silent',
        reconnectInitialMs: 200,
        reconnectMaxMs: 200,
      });
      await own.stop();
      await waitFor('the connection to notice the stop', () => conn.status.state === 'reconnecting', 20_000);
      for (let i = 0; i < 7; i++) await conn.emit('unsent.n', new Uint8Array([i]));
      await within(conn.close(), 10_000, 'close');
      assert.equal(conn.stats.unsentOnClose, 7);
    } finally {
      await own.stop();
    }
  });

  test('a bridge that goes silent is noticed by the agent after 3 heartbeat intervals', T, async () => {
    const conn = await connect(bridge.grpcUrl, {
      name: 'hb-watcher',
      logLevel: 'silent',
      heartbeatMs: 200,
      reconnectInitialMs: 50,
      reconnectMaxMs: 300,
      connectTimeoutMs: 2000,
    });
    conns.push(conn);
    const changes = conn.statusChanges();
    bridge.signal('SIGSTOP'); // the bridge hangs: no frames, no pings, sockets stay open
    let frozen = true;
    try {
      const started = Date.now();
      const first = await within(changes.next(), 10_000, 'a status change');
      assert.ok(first.done !== true);
      const status: ConnectionStatus = first.value;
      assert.equal(status.state, 'reconnecting');
      assert.ok(
        status.state === 'reconnecting' && /heartbeat/.test(status.error.message),
        JSON.stringify(status),
      );
      assert.ok(Date.now() - started < 5000);
      bridge.signal('SIGCONT');
      frozen = false;
      await waitFor('connected again', () => conn.status.state === 'connected', 20_000);
      assert.equal(await conn.memory.set('hb/alive', true).then((i) => i.key), 'hb/alive');
    } finally {
      if (frozen) bridge.signal('SIGCONT');
      await changes.return?.();
    }
  });

  test(
    'an agent that stops heartbeating is noticed by the bridge, and comes back when it resumes',
    T,
    async () => {
      const agent = nodeAgent(
        ['serve', '--url', bridge.grpcUrl, '--agent-id', 'frozen-agent', '--heartbeat-ms', '200'],
        { LOOM_LOG_LEVEL: 'silent', LOOM_RECONNECT_MAX_MS: '300' },
      );
      try {
        await agent.ready(15_000);
        const caller = await connect(bridge.grpcUrl, { name: 'hb-caller', logLevel: 'silent' });
        conns.push(caller);
        assert.deepEqual(await caller.invoke('ts.add', { a: 1, b: 1 }), { sum: 2 });
        await waitFor(
          'the agent listed as connected',
          async () =>
            (await bridge.agents()).some((a) => a.agent_id === 'frozen-agent' && a.state === 'connected'),
          5000,
        );

        agent.kill('SIGSTOP'); // the process hangs: no heartbeats, no reads, socket stays open
        const started = Date.now();
        await waitFor(
          'the bridge to drop the silent agent',
          async () => !(await bridge.agents()).some((a) => a.agent_id === 'frozen-agent'),
          10_000,
          50,
        );
        const noticedAfter = Date.now() - started;
        assert.ok(noticedAfter < 5000, `noticed after ${noticedAfter} ms`);
        await assert.rejects(
          caller.invoke('ts.add', { a: 1, b: 1 }, { timeoutMs: 2000 }),
          (e: Error & { code: string }) => ['CAPABILITY_NOT_FOUND', 'PROVIDER_UNAVAILABLE'].includes(e.code),
        );

        agent.kill('SIGCONT'); // it notices its stream is gone, re-registers, and serves again
        await waitFor(
          'the agent to come back',
          async () =>
            (await bridge.agents()).some((a) => a.agent_id === 'frozen-agent' && a.state === 'connected'),
          15_000,
        );
        assert.deepEqual(
          await waitFor(
            'its capability answers again',
            () => caller.invoke('ts.add', { a: 2, b: 2 }).catch(() => undefined),
            10_000,
          ),
          { sum: 4 },
        );
      } finally {
        agent.kill('SIGCONT');
        await agent.stop();
      }
    },
  );
});

const FLOW = 15_000;

/**
 * A publisher and a subscriber (two connections, each with its own channel and reconnect loop)
 * flow FLOW numbered events; the bridge is killed (SIGKILL) in the middle and started again on the
 * same ports while the publisher goes on publishing (it queues). Returns the counts: published,
 * received, lost, and the bound: events numbered from it on were never written to the killed
 * bridge, so every one of them must be delivered.
 */
async function restartMidFlow(
  pubOptions: ConnectOptions,
  subOptions: ConnectOptions,
): Promise<{
  published: number;
  received: number;
  lost: number;
  lostAfterBound: number;
  bound: number;
  lostOnBreak: number;
  reconnects: number;
}> {
  const topic = `flow.${Date.now().toString(36)}`;
  const sub = await connect(bridge.grpcUrl, { name: 'flow-sub', logLevel: 'silent', ...subOptions });
  const pub = await connect(bridge.grpcUrl, { name: 'flow-pub', logLevel: 'silent', ...pubOptions });
  try {
    const got = new Set<number>();
    // batch: a large queue on the bridge that makes the publisher wait rather than drop.
    const subscription = await sub.subscribe(`${topic}.>`, { qos: 'batch' });
    const reading = (async () => {
      for await (const event of subscription)
        got.add(new DataView(event.payload.buffer, event.payload.byteOffset, 4).getUint32(0));
    })();
    let published = 0;
    const flow = (async () => {
      for (let seq = 0; seq < FLOW; seq++) {
        const payload = new Uint8Array(4);
        new DataView(payload.buffer).setUint32(0, seq);
        await pub.emit(`${topic}.n`, payload);
        published = seq + 1;
        if (seq % 100 === 99) await new Promise((r) => setTimeout(r, 10)); // about 10,000 events/s
      }
    })();
    await waitFor('a third of the flow to be published', () => published >= FLOW / 3, 60_000, 5);
    const restarted = bridge.restart('kill');
    await waitFor('the publisher to notice the kill', () => pub.status.state === 'reconnecting', 20_000, 5);
    // Publishes are written in the order they were numbered: all from `bound` on never reached the killed bridge.
    const bound = pub.stats.messagesSent + pub.stats.lostOnBreak;
    await within(restarted, 120_000, 'the restart');
    await within(flow, 120_000, 'the flow');
    const deadline = Date.now() + 60_000;
    const complete = (): boolean => {
      for (let seq = bound; seq < FLOW; seq++) if (!got.has(seq)) return false;
      return true;
    };
    while (Date.now() < deadline && !complete()) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 200)); // stragglers of the first part, if any, are counted too
    let lost = 0;
    let lostAfterBound = 0;
    for (let seq = 0; seq < FLOW; seq++) {
      if (got.has(seq)) continue;
      lost++;
      if (seq >= bound) lostAfterBound++;
    }
    await subscription.unsubscribe();
    await within(reading, 10_000, 'the subscription to end');
    return {
      published: FLOW,
      received: got.size,
      lost,
      lostAfterBound,
      bound,
      lostOnBreak: pub.stats.lostOnBreak,
      reconnects: pub.stats.reconnects + sub.stats.reconnects,
    };
  } finally {
    await within(pub.close(), 10_000, 'close');
    await within(sub.close(), 10_000, 'close');
  }
}
