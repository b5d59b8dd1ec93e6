// Cross-language: TypeScript and .NET agents (tests/Loom.TestAgent) through a real bridge.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { z } from 'zod';

import { capability, connect, type Connection, InvalidParamsError } from '../src/mod.js';
import {
  Bridge,
  dotnetAgent,
  hasDotnetAgent,
  TEST_AGENT_DLL,
  type LineProcess,
} from './helpers/processes.js';

const T = { timeout: 60_000 };
let bridge: Bridge;
const conns: Connection[] = [];
const procs: LineProcess[] = [];

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

describe('TypeScript and .NET', () => {
  test('a TS capability is called from .NET (output, INVALID_PARAMS path, TOOL_ERROR)', T, async () => {
    const add = capability({
      name: 'ts.add',
      input: z.object({ a: z.number(), b: z.number() }),
      output: z.object({ sum: z.number() }),
      handler: ({ a, b }) => ({ sum: a + b }),
    });
    const fail = capability({
      name: 'ts.fail',
      handler: () => {
        throw new Error('deliberate');
      },
    });
    conns.push(
      await connect(
        bridge.grpcUrl,
        { name: 'ts-provider', logLevel: 'silent' },
        { capabilities: [add, fail] },
      ),
    );
    const call = async (name: string, input: unknown): Promise<Record<string, unknown>> => {
      const p = dotnetAgent([
        'call',
        '--url',
        bridge.grpcUrl,
        '--capability',
        name,
        '--input',
        JSON.stringify(input),
        '--timeout-ms',
        '10000',
      ]);
      procs.push(p);
      return p.json(30_000);
    };
    assert.deepEqual(await call('ts.add', { a: 20, b: 22 }), { ok: true, output: { sum: 42 } });
    const bad = await call('ts.add', { a: 1 });
    assert.equal(bad.ok, false);
    assert.equal(bad.code, 'INVALID_PARAMS');
    assert.equal(bad.path, '/b');
    const failed = await call('ts.fail', {});
    assert.equal(failed.code, 'TOOL_ERROR');
    assert.match(String(failed.message), /deliberate/);
  });

  test('a .NET capability is called from TS', T, async () => {
    const server = dotnetAgent(['serve', '--url', bridge.grpcUrl, '--agent-id', 'dotnet-provider']);
    procs.push(server);
    await server.ready(30_000);
    const caller = await connect(bridge.grpcUrl, { name: 'ts-caller', logLevel: 'silent' });
    conns.push(caller);
    assert.deepEqual(await caller.invoke('dotnet.add', { a: 1.5, b: 2 }), { sum: 3.5 });
    const input = { text: 'météo ✓', list: [1, null, { deep: true }] };
    assert.deepEqual(await caller.invoke('dotnet.echo', input), input);
    await assert.rejects(
      caller.invoke('dotnet.add', { a: 1 }),
      (e: InvalidParamsError) => e.code === 'INVALID_PARAMS' && e.path === '/b',
    );
  });

  test('events published from TS reach a .NET subscriber (wildcard pattern)', T, async () => {
    const sub = dotnetAgent([
      'subscribe',
      '--url',
      bridge.grpcUrl,
      '--topic',
      'cross.*.events',
      '--count',
      '1000',
      '--timeout-s',
      '20',
    ]);
    procs.push(sub);
    await sub.ready(30_000);
    const pub = await connect(bridge.grpcUrl, { name: 'ts-pub', logLevel: 'silent' });
    conns.push(pub);
    for (let i = 0; i < 1000; i++) await pub.emit('cross.ts.events', { i });
    const result = await sub.json<{ received: number }>(30_000);
    assert.equal(result.received, 1000);
  });
});
