// MCP ingestion seen from a TypeScript agent: a bridge started with `loom up --config` ingests
// @modelcontextprotocol/server-everything (stdio, from tests/Loom.Mcp.Tests/npm); its tools are
// listed as `everything:*` capabilities and called like any other capability.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { CapabilityNotFoundError, connect, type Connection, InvalidParamsError } from '../src/mod.js';
import { ConfiguredBridge, ensureMcpServers, everythingConfig } from './helpers/mcp.js';
import { waitFor } from './helpers/processes.js';

const T = { timeout: 90_000 };
let bridge: ConfiguredBridge | undefined;
let conn: Connection | undefined;

interface CallToolResult {
  content: { type: string; text?: string; data?: string; mimeType?: string }[];
  structuredContent?: Record<string, unknown>;
  isError?: boolean;
}

before(
  async () => {
    ensureMcpServers();
    bridge = await ConfiguredBridge.start(everythingConfig());
    conn = await connect(bridge.grpcUrl, { name: 'ts-mcp-caller', logLevel: 'silent' });
  },
  { timeout: 420_000 },
);

after(async () => {
  await conn?.close();
  await bridge?.stop();
});

describe('MCP tools from a TypeScript agent', () => {
  test('server-everything tools are listed as everything:* capabilities', T, async () => {
    const b = bridge!;
    const caps = await waitFor(
      'everything:echo and everything:get-sum in GET /v1/capabilities',
      async () => {
        const list = await b.capabilities();
        return list.some((c) => c.name === 'everything:echo') &&
          list.some((c) => c.name === 'everything:get-sum')
          ? list
          : undefined;
      },
      60_000,
      100,
    );
    const echo = caps.find((c) => c.name === 'everything:echo')!;
    assert.equal(echo.description, 'Echoes back the input string');
    assert.ok(echo.tags.includes('mcp'), `tags: ${echo.tags.join(',')}`);
    assert.equal(echo.providers[0]?.agent_id, 'mcp:everything');
    assert.deepEqual(
      (echo.input_schema.properties as Record<string, { type: string }>).message?.type,
      'string',
    );
    const sum = caps.find((c) => c.name === 'everything:get-sum')!;
    assert.ok(
      'a' in (sum.input_schema.properties as object) && 'b' in (sum.input_schema.properties as object),
    );
  });

  test('echo and get-sum are called; the output is the CallToolResult', T, async () => {
    const b = bridge!;
    await waitFor(
      'everything:get-sum to be listed',
      async () => (await b.capabilities()).some((c) => c.name === 'everything:get-sum'),
      60_000,
      100,
    );
    const echo = await conn!.invoke<CallToolResult>(
      'everything:echo',
      { message: 'hello from ts ✓' },
      { timeoutMs: 20_000 },
    );
    assert.deepEqual(echo.content, [{ type: 'text', text: 'Echo: hello from ts ✓' }]);
    assert.equal('isError' in echo, false);

    const sum = await conn!.invoke<CallToolResult>(
      'everything:get-sum',
      { a: 2, b: 3.5 },
      { timeoutMs: 20_000 },
    );
    assert.equal(sum.content[0]?.type, 'text');
    assert.match(sum.content[0]?.text ?? '', /5\.5/);

    const image = await conn!.invoke<CallToolResult>('everything:get-tiny-image', {}, { timeoutMs: 20_000 });
    const png = image.content.find((c) => c.type === 'image');
    assert.equal(png?.mimeType, 'image/png');
    assert.deepEqual([...Buffer.from(png?.data ?? '', 'base64').subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);

    // The tool function bound once, called twice.
    const echoTool = conn!.tool<{ message: string }, CallToolResult>('everything:echo');
    assert.equal(
      (await echoTool({ message: 'again' }, { timeoutMs: 20_000 })).content[0]?.text,
      'Echo: again',
    );
  });

  test(
    'bad arguments are INVALID_PARAMS with the path; an unknown tool is CAPABILITY_NOT_FOUND',
    T,
    async () => {
      const b = bridge!;
      await waitFor(
        'everything:get-sum to be listed',
        async () => (await b.capabilities()).some((c) => c.name === 'everything:get-sum'),
        60_000,
        100,
      );
      await assert.rejects(
        conn!.invoke('everything:get-sum', { a: 'two', b: 3 }, { timeoutMs: 20_000 }),
        (e: unknown) => e instanceof InvalidParamsError && e.path === '/a',
      );
      await assert.rejects(
        conn!.invoke('everything:echo', {}, { timeoutMs: 20_000 }),
        (e: unknown) => e instanceof InvalidParamsError && /message/.test(e.message),
      );
      await assert.rejects(
        conn!.invoke('everything:no-such-tool', {}, { timeoutMs: 20_000 }),
        (e: unknown) => e instanceof CapabilityNotFoundError,
      );
      // The server still answers.
      const echo = await conn!.invoke<CallToolResult>(
        'everything:echo',
        { message: 'still here' },
        { timeoutMs: 20_000 },
      );
      assert.equal(echo.content[0]?.text, 'Echo: still here');
    },
  );
});
