// The LLM gateway from TypeScript: ctx.llm against a bridge whose loom.yaml points at the fake
// OpenAI/Anthropic server (tests/Loom.LlmFake, run here as a process on 127.0.0.1, port 0).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { BudgetExceededError, connect, type Connection, type LlmChatResult } from '../src/mod.js';
import { Bridge, LineProcess, REPO, waitFor, within } from './helpers/processes.js';

const FAKE_DLL = path.join(REPO, 'tests/Loom.LlmFake/bin/Release/net10.0/Loom.LlmFake.dll');
const T = 60_000;

describe('LLM gateway (ctx.llm)', () => {
  let fake: LineProcess;
  let fakeUrl = '';
  let bridge: Bridge;
  let conn: Connection;

  const upstream = async (marker: string): Promise<{ path: string; model: string; body: string }[]> => {
    const all = (await (await fetch(`${fakeUrl}/control/requests`)).json()) as {
      path: string;
      model: string;
      body: string;
    }[];
    return all.filter((r) => r.body.includes(marker));
  };
  const metric = async (name: string, ...labels: string[]): Promise<number> => {
    const text = await (await fetch(`${bridge.httpUrl}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && labels.every((x) => l.includes(x)));
    return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
  };

  before(async () => {
    if (!existsSync(FAKE_DLL))
      execFileSync(
        'dotnet',
        ['build', path.join(REPO, 'tests/Loom.LlmFake'), '-c', 'Release', '-nologo', '-v', 'quiet'],
        { stdio: 'inherit' },
      );
    fake = new LineProcess('dotnet', [FAKE_DLL]);
    fakeUrl = (await fake.nextLine((l) => l.startsWith('FAKE_LLM_URL='), T, 'the fake LLM server'))
      .split('=')[1]!
      .replace(/\/$/, '');
    const dir = mkdtempSync(path.join(tmpdir(), 'loom-llm-'));
    const config = path.join(dir, 'loom.yaml');
    writeFileSync(
      config,
      [
        'name: llm-ts',
        'llm:',
        '  providers:',
        `    - { name: openai-fake, kind: openai, base_url: ${fakeUrl}/v1 }`,
        `    - { name: anthropic-fake, kind: anthropic, base_url: ${fakeUrl} }`,
        '  models:',
        '    - { name: fast, provider: openai-fake, id: fake-fast, input_cost_per_mtok: 1000, output_cost_per_mtok: 2000 }',
        '    - { name: claude, provider: anthropic-fake, id: claude-fake }',
        '    - { name: broken, provider: openai-fake, id: fail-model, fallback: [fast] }',
        '    - { name: gated, provider: openai-fake, id: gated-model }',
        '  retry_base_delay_ms: 10',
        '  budgets: { agents: { ts-stingy: 5 } }',
        '',
      ].join('\n'),
    );
    bridge = await Bridge.start(['--config', config]);
    conn = await connect(bridge.grpcUrl, { agentId: 'ts-writer', logLevel: 'error' });
  });

  after(async () => {
    await conn?.close();
    await bridge?.stop();
    await fake?.stop();
  });

  test('chat, streaming (Anthropic), tools and structured output', async () => {
    const result = await within(
      conn.llm.chat({ model: 'fast', messages: [{ role: 'user', content: 'hello from ts' }] }),
      T,
      'chat',
    );
    assert.equal(result.content, 'echo: hello from ts');
    assert.equal(result.provider, 'openai-fake');
    assert.equal(
      result.cost_usd,
      (result.usage.input_tokens * 1000 + result.usage.output_tokens * 2000) / 1e6,
    );
    assert.equal((await upstream('hello from ts')).length, 1);

    const pieces: string[] = [];
    let final: LlmChatResult | undefined;
    for await (const e of conn.llm.streamChat({
      model: 'claude',
      messages: [{ role: 'user', content: 'stream from ts please' }],
    })) {
      if (e.type === 'delta') pieces.push(e.text);
      else if (e.type === 'result') final = e.result;
    }
    assert.equal(final?.content, 'echo: stream from ts please');
    assert.equal(pieces.join(''), final?.content);
    assert.ok(pieces.length >= 4);
    assert.equal((await upstream('stream from ts please'))[0]?.path, '/v1/messages');

    const called = await conn.llm.chat({
      messages: [{ role: 'user', content: 'ts weather?' }],
      tools: [
        { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } },
      ],
    });
    assert.deepEqual(
      called.tool_calls.map((c) => [c.name, c.arguments]),
      [['get_weather', { city: 'Oslo' }]],
    );

    const structured = await conn.llm.chat({
      messages: [{ role: 'user', content: 'ts json' }],
      response_format: {
        type: 'json_schema',
        schema: { type: 'object', properties: { answer: { type: 'string' } } },
      },
    });
    assert.deepEqual(structured.json, { answer: 'ts json' });
  });

  test('fallback, cache hit and 50 identical requests coalesced into one', async () => {
    const fell = await conn.llm.chat({
      model: 'broken',
      messages: [{ role: 'user', content: 'ts fallback' }],
    });
    assert.equal(fell.model, 'fast');
    assert.equal(fell.fallback_from, 'broken');

    const first = await conn.llm.chat('ts cache');
    const second = await conn.llm.chat('ts cache');
    assert.equal(first.cached, false);
    assert.equal(second.cached, true);
    assert.equal((await upstream('ts cache')).length, 1);

    await fetch(`${fakeUrl}/control/hold`, { method: 'POST' });
    const calls = Array.from({ length: 50 }, () =>
      conn.llm.chat({ model: 'gated', messages: [{ role: 'user', content: 'ts coalesce' }] }),
    );
    try {
      await waitFor(
        '50 calls in flight',
        async () => (await metric('loom_action_calls_in_flight', 'capability="llm.chat"')) >= 50,
        T,
      );
      assert.equal((await upstream('ts coalesce')).length, 1);
    } finally {
      await fetch(`${fakeUrl}/control/release`, { method: 'POST' });
    }
    const results = await within(Promise.all(calls), T, '50 calls');
    assert.equal(results.filter((r) => r.coalesced).length, 49);
    assert.equal((await upstream('ts coalesce')).length, 1);
  });

  test('an agent over its budget gets BUDGET_EXCEEDED; costs are in the metrics', async () => {
    const stingy = await connect(bridge.grpcUrl, { agentId: 'ts-stingy', logLevel: 'error' });
    try {
      await stingy.llm.chat('ts spend');
      await assert.rejects(
        stingy.llm.chat('ts over budget'),
        (e: unknown) =>
          e instanceof BudgetExceededError && e.code === 'BUDGET_EXCEEDED' && e.message.includes('ts-stingy'),
      );
      const usage = await stingy.llm.usage();
      assert.equal(usage.budget_tokens, 5);
    } finally {
      await stingy.close();
    }
    assert.ok((await metric('loom_llm_budget_refused_total', 'scope="agent"')) >= 1);
    assert.ok((await metric('loom_llm_cost_total', 'model="fast"')) > 0);
  });
});
