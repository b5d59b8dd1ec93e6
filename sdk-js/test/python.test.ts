// Cross-language: TypeScript and Python agents (sdk-python, run by test/fixtures/py_agent.py with
// /usr/bin/python3) through a real bridge.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { connect, type Connection, InvalidParamsError, ToolError } from '../src/mod.js';
import { Bridge, LineProcess, nodeAgent, NODE_AGENT, REPO, SDK_ROOT, waitFor } from './helpers/processes.js';

const T = { timeout: 60_000 };
const PYTHON = '/usr/bin/python3';
/** The Python fixture agent (a source file: tests run from build/, the script stays in test/). */
const PY_AGENT = path.join(SDK_ROOT, 'test/fixtures/py_agent.py');

let bridge: Bridge;
const conns: Connection[] = [];
const procs: LineProcess[] = [];

/** Spawns the Python fixture agent with a command and arguments. */
function pyAgent(args: readonly string[]): LineProcess {
  const p = new LineProcess(PYTHON, ['-u', PY_AGENT, ...args], {
    env: { ...process.env, PYTHONPATH: path.join(REPO, 'sdk-python/src'), PYTHONDONTWRITEBYTECODE: '1' },
  });
  procs.push(p);
  return p;
}

const uid = (): string => randomUUID().slice(0, 8);

before(async () => {
  assert.ok(existsSync(PYTHON), `${PYTHON} is missing (the Python SDK tests need it too)`);
  assert.ok(existsSync(NODE_AGENT), `${NODE_AGENT} is missing: npm run build:test (run-tests.sh does)`);
  bridge = await Bridge.start();
});

after(async () => {
  await Promise.all(procs.map((p) => p.stop()));
  await Promise.all(conns.map((c) => c.close()));
  await bridge?.stop();
});

describe('TypeScript and Python', () => {
  test('a Python capability is called from TS (output, INVALID_PARAMS path, TOOL_ERROR)', T, async () => {
    const agentId = `py-provider-${uid()}`;
    const server = pyAgent(['serve', '--url', bridge.grpcUrl, '--agent-id', agentId]);
    await server.ready(30_000);
    const caller = await connect(bridge.grpcUrl, { name: 'ts-caller', logLevel: 'silent' });
    conns.push(caller);

    // Listed by the bridge as the Python agent's capabilities.
    const listed = await waitFor(
      'the Python agent in GET /v1/agents',
      async () => (await bridge.agents()).find((a) => a.agent_id === agentId),
      10_000,
    );
    // GET /v1/agents lists capability names as strings.
    assert.deepEqual([...listed.capabilities].sort(), ['py.add', 'py.basket.count', 'py.echo', 'py.fail']);

    assert.deepEqual(await caller.invoke('py.add', { a: 20, b: 22 }, { timeoutMs: 10_000 }), { sum: 42 });
    const value = { text: 'météo ✓', list: [1, null, { deep: true }], n: 1.5 };
    assert.deepEqual(await caller.invoke('py.echo', { value }, { timeoutMs: 10_000 }), value);
    assert.deepEqual(
      await caller.invoke(
        'py.basket.count',
        {
          customer: 'c',
          lines: [
            { sku: 'a', qty: 2 },
            { sku: 'b', qty: 3 },
          ],
        },
        { timeoutMs: 10_000 },
      ),
      { items: 5 },
    );

    // A bad input is INVALID_PARAMS with the JSON pointer of the failing value.
    await assert.rejects(
      caller.invoke('py.add', { a: 1 }, { timeoutMs: 10_000 }),
      (e: unknown) => e instanceof InvalidParamsError && e.path === '/b',
    );
    await assert.rejects(
      caller.invoke(
        'py.basket.count',
        {
          customer: 'c',
          lines: [
            { sku: 'a', qty: 1 },
            { sku: 'b', qty: 'two' },
          ],
        },
        { timeoutMs: 10_000 },
      ),
      (e: unknown) => e instanceof InvalidParamsError && e.path === '/lines/1/qty',
    );
    // An exception in the Python function is TOOL_ERROR with its message; the agent goes on.
    await assert.rejects(
      caller.invoke('py.fail', { reason: 'because' }, { timeoutMs: 10_000 }),
      (e: unknown) =>
        e instanceof ToolError && e.code === 'TOOL_ERROR' && /py\.fail refused: because/.test(e.message),
    );
    assert.deepEqual(await caller.invoke('py.add', { a: 1, b: 1 }, { timeoutMs: 10_000 }), { sum: 2 });

    // The Python agent leaves cleanly on SIGTERM.
    server.kill('SIGTERM');
    assert.deepEqual(await server.json(15_000), { stopped: true });
    await waitFor(
      'the Python agent to leave GET /v1/agents',
      async () => !(await bridge.agents()).some((a) => a.agent_id === agentId),
      10_000,
    );
  });

  test('a TS capability (test/fixtures/agent.ts) is called from Python', T, async () => {
    const server = nodeAgent(['serve', '--url', bridge.grpcUrl, '--agent-id', `ts-provider-${uid()}`], {
      LOOM_LOG_LEVEL: 'silent',
    });
    procs.push(server);
    await server.ready(30_000);
    const call = async (capability: string, input: unknown): Promise<Record<string, unknown>> =>
      pyAgent([
        'call',
        '--url',
        bridge.grpcUrl,
        '--capability',
        capability,
        '--input',
        JSON.stringify(input),
        '--timeout-ms',
        '10000',
      ]).json(30_000);

    assert.deepEqual(await call('ts.add', { a: 1.5, b: 2 }), { ok: true, output: { sum: 3.5 } });
    const input = { text: 'météo ✓', list: [1, null, { deep: true }] };
    assert.deepEqual(await call('ts.echo', input), { ok: true, output: input });
    const bad = await call('ts.add', { a: 1 });
    assert.equal(bad.ok, false);
    assert.equal(bad.code, 'INVALID_PARAMS');
    assert.equal(bad.path, '/b');
    const failed = await call('ts.fail', {});
    assert.equal(failed.code, 'TOOL_ERROR');
    assert.match(String(failed.message), /ts\.fail always fails/);
  });

  test('events published from TS reach a Python subscriber (wildcard pattern), in order', T, async () => {
    const root = `pyx${uid()}`;
    const count = 1000;
    const sub = pyAgent([
      'subscribe',
      '--url',
      bridge.grpcUrl,
      '--topic',
      `${root}.*.events`,
      '--count',
      String(count),
      '--timeout-s',
      '30',
    ]);
    await sub.ready(30_000);
    const pub = await connect(bridge.grpcUrl, {
      name: 'ts-pub',
      agentId: `ts-pub-${uid()}`,
      logLevel: 'silent',
    });
    conns.push(pub);
    for (let i = 0; i < count; i++) {
      await pub.emit(`${root}.${i % 2 === 0 ? 'even' : 'odd'}.events`, { i, from: 'ts' });
      // Not matched by the pattern: `*` is one token, and the last token differs.
      if (i % 100 === 0) {
        await pub.emit(`${root}.deep.er.events`, { i, unmatched: true });
        await pub.emit(`${root}.even.other`, { i, unmatched: true });
      }
    }
    const result = await sub.json<{
      received: number;
      topics: string[];
      first: unknown;
      last: unknown;
      in_order: boolean;
      senders: string[];
    }>(40_000);
    assert.equal(result.received, count);
    assert.deepEqual(result.topics, [`${root}.even.events`, `${root}.odd.events`]);
    assert.deepEqual(result.first, { i: 0, from: 'ts' });
    assert.deepEqual(result.last, { i: count - 1, from: 'ts' });
    assert.equal(result.in_order, true);
    assert.deepEqual(result.senders, [pub.agentId]);
    const exit = await sub.exited;
    assert.equal(exit.code, 0);
  });
});
