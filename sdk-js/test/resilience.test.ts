// Fault injection through real mechanisms: the bridge is killed and restarted on the same ports;
// an agent process is frozen (SIGSTOP) so it stops heartbeating.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { capability, connect, type Connection, type ConnectionStatus } from '../src/mod.js';
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
    const options = { logLevel: 'silent' as const, reconnectInitialMs: 50, reconnectMaxMs: 500, heartbeatMs: 500 };
    const provider = await connect(bridge.grpcUrl, { ...options, name: 'res-provider' }, { capabilities: [echo] });
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

    await waitFor('all three reconnected', () => [provider, listener, caller].every((c) => c.status.state === 'connected' && c.stats.reconnects >= 1), 30_000);
    assert.deepEqual(statuses.slice(0, 2).map((s) => s.state), ['reconnecting', 'connected']);
    const back = statuses[1];
    assert.ok(back?.state === 'connected' && back.reconnected);
    // Capabilities are callable again.
    assert.deepEqual(await waitFor('the capability answers again', async () => caller.invoke('res.echo', { n: 2 }).catch(() => undefined), 10_000), { n: 2 });
    // Subscriptions receive again.
    const pending = sub.next(); // one reader; re-publish until it receives
    const got = await waitFor('a delivery after the restart', async () => {
      await caller.emit('res.events.after', { ok: true });
      const next = await Promise.race([pending, new Promise<undefined>((r) => setTimeout(() => r(undefined), 200))]);
      return next && !next.done ? next.value : undefined;
    }, 10_000);
    assert.equal(got.topic, 'res.events.after');
    const listed = await bridge.agents();
    assert.ok(listed.some((a) => a.agent_id === provider.agentId && a.state === 'connected'));
    await provider.close();
    await within(watching, 5000, 'status iteration ends on close');
    assert.equal(statuses.at(-1)?.state, 'closed');
  });

  test('a bridge that goes silent is noticed by the agent after 3 heartbeat intervals', T, async () => {
    const conn = await connect(bridge.grpcUrl, { name: 'hb-watcher', logLevel: 'silent', heartbeatMs: 200, reconnectInitialMs: 50, reconnectMaxMs: 300, connectTimeoutMs: 2000 });
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
      assert.ok(status.state === 'reconnecting' && /heartbeat/.test(status.error.message), JSON.stringify(status));
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

  test('an agent that stops heartbeating is noticed by the bridge, and comes back when it resumes', T, async () => {
    const agent = nodeAgent(['serve', '--url', bridge.grpcUrl, '--agent-id', 'frozen-agent', '--heartbeat-ms', '200'], { LOOM_LOG_LEVEL: 'silent', LOOM_RECONNECT_MAX_MS: '300' });
    try {
      await agent.ready(15_000);
      const caller = await connect(bridge.grpcUrl, { name: 'hb-caller', logLevel: 'silent' });
      conns.push(caller);
      assert.deepEqual(await caller.invoke('ts.add', { a: 1, b: 1 }), { sum: 2 });
      await waitFor('the agent listed as connected', async () => (await bridge.agents()).some((a) => a.agent_id === 'frozen-agent' && a.state === 'connected'), 5000);

      agent.kill('SIGSTOP'); // the process hangs: no heartbeats, no reads, socket stays open
      const started = Date.now();
      await waitFor('the bridge to drop the silent agent', async () => !(await bridge.agents()).some((a) => a.agent_id === 'frozen-agent'), 10_000, 50);
      const noticedAfter = Date.now() - started;
      assert.ok(noticedAfter < 5000, `noticed after ${noticedAfter} ms`);
      await assert.rejects(caller.invoke('ts.add', { a: 1, b: 1 }, { timeoutMs: 2000 }), (e: Error & { code: string }) =>
        ['CAPABILITY_NOT_FOUND', 'PROVIDER_UNAVAILABLE'].includes(e.code));

      agent.kill('SIGCONT'); // it notices its stream is gone, re-registers, and serves again
      await waitFor('the agent to come back', async () => (await bridge.agents()).some((a) => a.agent_id === 'frozen-agent' && a.state === 'connected'), 15_000);
      assert.deepEqual(await waitFor('its capability answers again', () => caller.invoke('ts.add', { a: 2, b: 2 }).catch(() => undefined), 10_000), { sum: 4 });
    } finally {
      agent.kill('SIGCONT');
      await agent.stop();
    }
  });
});
