// Collaboration operations from a TypeScript coordinator, with .NET (tests/Loom.TestAgent `worker`)
// and TypeScript workers, through a real bridge (protocol §16, docs/collaboration.md).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  applyMajority,
  barrier,
  capability,
  connect,
  contractNet,
  type Connection,
  gather,
  InvalidParamsError,
  isCallForProposals,
  isCollabRecord,
  type LoomEvent,
  ToolError,
} from '../src/mod.js';
import {
  Bridge,
  dotnetAgent,
  hasDotnetAgent,
  TEST_AGENT_DLL,
  waitFor,
  type LineProcess,
} from './helpers/processes.js';

const T = { timeout: 90_000 };
let bridge: Bridge;
const conns: Connection[] = [];
const procs: LineProcess[] = [];
const run = Math.random().toString(16).slice(2, 10);

before(async () => {
  assert.ok(
    hasDotnetAgent(),
    `${TEST_AGENT_DLL} is missing: run dotnet build tests/Loom.TestAgent -c Release (run-tests.sh does)`,
  );
  bridge = await Bridge.start();
});

after(async () => {
  await Promise.all(procs.map((p) => p.stop()));
  await Promise.all(conns.map((c) => c.close()));
  await bridge?.stop();
});

async function open(agentId: string, capabilities: Parameters<typeof connect>[2] = {}): Promise<Connection> {
  const conn = await connect(bridge.grpcUrl, { agentId, name: agentId, logLevel: 'silent' }, capabilities);
  conns.push(conn);
  return conn;
}

async function dotnetWorker(args: string[]): Promise<LineProcess> {
  const p = dotnetAgent(['worker', '--url', bridge.grpcUrl, ...args]);
  procs.push(p);
  await p.ready(60_000);
  return p;
}

/** A TS worker answering requests on `topic` with `answer` (and the request under "req"). */
async function tsWorker(
  agentId: string,
  topic: string,
  answer: Record<string, unknown>,
  bid?: number,
): Promise<Connection> {
  const conn = await open(agentId);
  const sub = await conn.subscribe(topic);
  void (async () => {
    for await (const event of sub) {
      if (isCollabRecord(event) || !event.replyTo) continue;
      if (isCallForProposals(event)) {
        if (bid !== undefined) await conn.reply(event, { cost: bid });
        continue;
      }
      await conn.reply(event, { ...answer, req: event.json() });
    }
  })();
  return conn;
}

async function subscribed(topic: string, agents: readonly string[]): Promise<void> {
  await waitFor(
    `subscriptions of ${agents.join(', ')} to ${topic}`,
    async () => {
      const response = await fetch(`${bridge.httpUrl}/v1/agents`);
      const body = (await response.json()) as { agents: { agent_id: string; topics: string[] }[] };
      return agents.every((a) => body.agents.some((x) => x.agent_id === a && x.topics.includes(topic)));
    },
    30_000,
  );
}

describe('collaboration', () => {
  test('fan-out to .NET and TS workers with each join strategy', T, async () => {
    const topic = `collab.${run}.ask`;
    await dotnetWorker(['--agent-id', `dn-a-${run}`, '--topic', topic, '--answer', JSON.stringify({ v: 1 })]);
    await dotnetWorker([
      '--agent-id',
      `dn-b-${run}`,
      '--topic',
      topic,
      '--answer',
      JSON.stringify({ v: 2 }),
      '--delay-ms',
      '100',
    ]);
    await tsWorker(`ts-c-${run}`, topic, { v: 1.0 });
    const names = [`dn-a-${run}`, `dn-b-${run}`, `ts-c-${run}`];
    const boss = await open(`boss-${run}`);
    await subscribed(topic, names);

    const first = await gather(boss, { topic, data: { n: 1 }, strategy: 'first', timeoutMs: 10_000 });
    assert.equal(first.outcome, 'completed');
    assert.equal(first.answered.length, 1);
    assert.equal(first.expected, 3);
    assert.deepEqual(first.replies[0]?.json<{ req: unknown }>().req, { n: 1 });

    const two = await gather(boss, { topic, data: { n: 2 }, strategy: 'first_k', k: 2, timeoutMs: 10_000 });
    assert.equal(two.outcome, 'completed');
    assert.equal(two.answered.length, 2);

    const all = await gather(boss, { topic, data: { n: 3 }, strategy: 'all', timeoutMs: 10_000 });
    assert.equal(all.outcome, 'completed');
    assert.deepEqual([...all.answered].sort(), [...names].sort());
    assert.ok(all.replies.every((r) => r.json<{ req: { n: number } }>().req.n === 3));

    const majority = await gather(boss, {
      topic,
      data: { n: 4 },
      strategy: 'majority',
      compare: '/v',
      timeoutMs: 10_000,
    });
    assert.equal(majority.outcome, 'completed');
    assert.equal(majority.agreedValue, 1);
    assert.deepEqual([...majority.agreeing].sort(), [`dn-a-${run}`, `ts-c-${run}`]);

    const local = await gather(boss, {
      topic,
      data: { n: 5 },
      strategy: 'majority',
      compare: (r) => r.json<{ v: number }>().v > 1.5,
      timeoutMs: 10_000,
    });
    assert.equal(local.outcome, 'completed');
    assert.equal(local.quorum, 2);
    assert.deepEqual([...local.agreeing].sort(), [`dn-a-${run}`, `ts-c-${run}`]);
    assert.equal(applyMajority(all, () => 'same', 3).outcome, 'completed');

    await assert.rejects(
      gather(boss, { topic, strategy: 'first_k' }),
      (e: InvalidParamsError) => e.code === 'INVALID_PARAMS' && e.path === '/k',
    );
    await assert.rejects(
      gather(boss, { topic, capability: 'x' }),
      (e: InvalidParamsError) => e.code === 'INVALID_PARAMS' && e.path === '/capability',
    );

    const abort = new AbortController();
    const pending = gather(boss, {
      topic: `collab.${run}.nobody`,
      agents: ['absent'],
      strategy: 'all',
      timeoutMs: 20_000,
      signal: abort.signal,
    });
    setTimeout(() => abort.abort(), 200);
    await assert.rejects(pending, (e: { code?: string }) => e.code === 'CANCELLED');
  });

  test('a barrier with a missing participant times out and reports who arrived', T, async () => {
    const a = await open(`bar-a-${run}`);
    const b = await open(`bar-b-${run}`);
    const participants = [a.agentId, b.agentId, `ghost-${run}`];
    const [ra, rb] = await Promise.all([
      barrier(a, `b-${run}`, { participants, timeoutMs: 1500 }),
      barrier(b, `b-${run}`, { participants, timeoutMs: 1500 }),
    ]);
    for (const r of [ra, rb]) {
      assert.equal(r.outcome, 'timeout');
      assert.deepEqual([...r.arrived].sort(), [a.agentId, b.agentId].sort());
      assert.deepEqual(r.missing, [`ghost-${run}`]);
      assert.equal(r.expected, 3);
    }
    const [ca, cb] = await Promise.all([
      barrier(a, `c-${run}`, { count: 2, timeoutMs: 10_000 }),
      barrier(b, `c-${run}`, { count: 2, timeoutMs: 10_000 }),
    ]);
    assert.equal(ca.outcome, 'completed');
    assert.equal(cb.outcome, 'completed');
  });

  test(
    'contract-net: the cheapest bidder fails, the next one completes, all recorded on the thread',
    T,
    async () => {
      const thread = `cn-${run}`;
      const topic = `thread.${thread}.broadcast`;
      const cap = `collab.task.${run}`;
      const failing = capability({
        name: cap,
        handler: () => {
          throw new ToolError('the cheap one breaks');
        },
      });
      const cheap = await open(`ts-cheap-${run}`, { capabilities: [failing] });
      const cheapSub = await cheap.subscribe(topic);
      void (async () => {
        for await (const event of cheapSub)
          if (isCallForProposals(event)) await cheap.reply(event, { cost: 1 });
      })();
      await dotnetWorker([
        '--agent-id',
        `dn-mid-${run}`,
        '--topic',
        topic,
        '--bid-cost',
        '2',
        '--capability',
        cap,
      ]);
      const boss = await open(`boss-cn-${run}`);
      const seen: LoomEvent[] = [];
      const joined = await boss.joinThread(thread, { includeOwn: true }); // the coordinator's records carry its id as sender
      void (async () => {
        for await (const e of joined) seen.push(e);
      })();
      await subscribed(topic, [`ts-cheap-${run}`, `dn-mid-${run}`]);

      const result = await contractNet(boss, {
        task: { job: run },
        capability: cap,
        threadId: thread,
        bidTimeoutMs: 5000,
        timeoutMs: 30_000,
      });
      assert.equal(result.outcome, 'completed');
      assert.equal(result.winner, `dn-mid-${run}`);
      assert.deepEqual(
        result.bids.map((b) => b.bidder),
        [`ts-cheap-${run}`, `dn-mid-${run}`],
      );
      assert.deepEqual(
        result.attempts.map((a) => [a.agent, a.succeeded, a.error?.code]),
        [
          [`ts-cheap-${run}`, false, 'TOOL_ERROR'],
          [`dn-mid-${run}`, true, undefined],
        ],
      );
      assert.deepEqual((result.output as { input: unknown }).input, { job: run });
      await waitFor(
        'the result record',
        () => seen.some((e) => e.headers['loom-collab'] === 'result'),
        10_000,
      );
      assert.deepEqual(
        seen.map((e) => e.headers['loom-collab']),
        ['cfp', 'bid', 'bid', 'award', 'fallback', 'award', 'result'],
      );

      const scored = await contractNet(boss, {
        task: { job: 2 },
        capability: cap,
        topic,
        threadId: `${thread}-2`,
        scoring: (bid) => -bid.json<{ cost: number }>().cost,
        bidTimeoutMs: 5000,
      });
      assert.equal(scored.outcome, 'completed');
      assert.equal(scored.winner, `dn-mid-${run}`);
      await joined.leave();
    },
  );
});
