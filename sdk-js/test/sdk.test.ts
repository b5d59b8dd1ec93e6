// The SDK against a real bridge (started by the test on random ports): registration, pub/sub with
// wildcards, request/reply and first-k, capabilities and their errors, memory, threads, status, shutdown.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { z } from 'zod';

import {
  capability,
  connect,
  type Connection,
  type ConnectionStatus,
  defineAgent,
  InvalidParamsError,
  type LoomEvent,
  run,
  startAgent,
  TimeoutError,
  ToolError,
  CancelledError,
  CapabilityNotFoundError,
  UnavailableError,
} from '../src/mod.js';
import { Bridge, nodeAgent, waitFor, within } from './helpers/processes.js';

const T = { timeout: 30_000 };
let bridge: Bridge;
const opened: Connection[] = [];

async function open(
  name: string,
  setup: Parameters<typeof connect>[2] = {},
  options: Parameters<typeof connect>[1] = {},
): Promise<Connection> {
  const conn = await connect(bridge.grpcUrl, { name, logLevel: 'error', ...options }, setup);
  opened.push(conn);
  return conn;
}

/** Collects `count` events from a subscription, with a deadline. */
async function take(sub: AsyncIterator<LoomEvent>, count: number, ms = 5000): Promise<LoomEvent[]> {
  const out: LoomEvent[] = [];
  while (out.length < count) {
    const next = await within(sub.next(), ms, `event ${out.length + 1} of ${count}`);
    if (next.done) break;
    out.push(next.value);
  }
  return out;
}

const adder = capability({
  name: 'js.add',
  description: 'adds two numbers',
  input: z.object({ a: z.number(), b: z.number() }),
  output: z.object({ sum: z.number() }),
  handler: ({ a, b }) => ({ sum: a + b }),
});

before(async () => {
  bridge = await Bridge.start();
});

after(async () => {
  await Promise.all(opened.map((c) => within(c.close(), 10_000, 'close')));
  await bridge.stop();
});

describe('registration', () => {
  test('an agent registers its topics and capabilities and is listed by the bridge', T, async () => {
    const conn = await open('reg', { capabilities: [adder] });
    assert.equal(conn.status.state, 'connected');
    assert.ok(conn.sessionId.length > 0);
    assert.equal(conn.limits.maxMessageBytes, 4 * 1024 * 1024);
    await conn.subscribe('reg.topic.>');
    const listed = await waitFor('the agent in /v1/agents', async () =>
      (await bridge.agents()).find((a) => a.agent_id === conn.agentId),
    );
    assert.equal(listed.state, 'connected');
    assert.ok(listed.topics.includes('reg.topic.>'));
    const names = listed.capabilities.map((c: unknown) =>
      typeof c === 'string' ? c : (c as { name: string }).name,
    );
    assert.deepEqual(names, ['js.add']);
  });

  test('a closed agent leaves at once (half-close)', T, async () => {
    const conn = await connect(bridge.grpcUrl, { name: 'leaver', logLevel: 'error' });
    await waitFor('listed', async () => (await bridge.agents()).some((a) => a.agent_id === conn.agentId));
    await conn.close();
    await conn.close(); // twice is fine
    assert.equal(conn.status.state, 'closed');
    await waitFor(
      'removed',
      async () => !(await bridge.agents()).some((a) => a.agent_id === conn.agentId),
      3000,
    );
  });

  test('connect to a port nobody listens on fails with UNAVAILABLE', T, async () => {
    await assert.rejects(
      connect('http://127.0.0.1:1', { logLevel: 'silent', connectTimeoutMs: 3000 }),
      (e: UnavailableError) => {
        assert.equal(e.code, 'UNAVAILABLE');
        assert.equal(e.name, 'UnavailableError');
        return true;
      },
    );
  });

  test('invalid arguments fail locally with INVALID_PARAMS and a path', T, async () => {
    const conn = await open('bad-args');
    await assert.rejects(
      conn.emit('a..b', {}),
      (e: InvalidParamsError) => e.code === 'INVALID_PARAMS' && e.path === '/topic',
    );
    await assert.rejects(
      conn.subscribe('a.>.b'),
      (e: InvalidParamsError) => e.code === 'INVALID_PARAMS' && e.path === '/pattern',
    );
    assert.throws(() => capability({ name: 'bad name', handler: () => 1 }), InvalidParamsError);
    // Rejected by the bridge at registration: the path comes back in the loom-error-path trailer.
    await assert.rejects(
      connect(bridge.grpcUrl, { agentId: 'bad id!', logLevel: 'silent' }),
      (e: InvalidParamsError) => {
        assert.equal(e.name, 'InvalidParamsError');
        assert.equal(e.path, '/agent_id');
        assert.match(e.message, /bad id!/);
        return true;
      },
    );
  });
});

describe('pub/sub', () => {
  test('wildcards: * matches one token, > the rest; envelope fields reach the handler', T, async () => {
    const pub = await open('pub');
    const sub = await open('sub');
    const star = await sub.subscribe('orders.*.created');
    const rest = await sub.subscribe('orders.>');
    await pub.emit(
      'orders.eu.created',
      { n: 1 },
      { threadId: 't-1', correlationId: 'c-1', headers: { k: 'v' }, ttlMs: 60_000, qos: 'realtime' },
    );
    await pub.emit('orders.eu.x.created', { n: 2 });
    await pub.emit('orders', { n: 3 }); // matches neither
    const [first] = await take(star, 1);
    assert.ok(first);
    assert.equal(first.topic, 'orders.eu.created');
    assert.deepEqual(first.json(), { n: 1 });
    assert.equal(first.sender, pub.agentId);
    assert.equal(first.threadId, 't-1');
    assert.equal(first.correlationId, 'c-1');
    assert.deepEqual({ ...first.headers }, { k: 'v' });
    assert.equal(first.ttlMs, 60_000);
    assert.equal(first.hop, 1);
    assert.equal(first.qos, 'realtime');
    assert.equal(first.contentType, 'application/json');
    assert.ok(first.timestampUnixMs > 0 && first.deadlineUnixMs > first.timestampUnixMs);
    assert.equal(first.subscriptionId, star.id);
    const both = await take(rest, 2);
    assert.deepEqual(
      both.map((e) => e.topic),
      ['orders.eu.created', 'orders.eu.x.created'],
    );
    await star.unsubscribe();
    await star.unsubscribe();
    assert.equal((await star.next()).done, true);
  });

  test('10,000 events arrive in order, coalesced into few frames', T, async () => {
    const conn = await open('order');
    const sub = await conn.subscribe('seq.numbers', { qos: 'batch' });
    const payload = new Uint8Array(4);
    const view = new DataView(payload.buffer);
    const framesBefore = conn.stats.framesSent;
    for (let i = 0; i < 10_000; i++) {
      view.setUint32(0, i);
      await conn.emit('seq.numbers', payload.slice());
    }
    const events = await take(sub, 10_000, 10_000);
    events.forEach((e, i) =>
      assert.equal(new DataView(e.payload.buffer, e.payload.byteOffset).getUint32(0), i),
    );
    assert.ok(conn.stats.framesSent - framesBefore < 1000, `frames: ${conn.stats.framesSent - framesBefore}`);
  });

  test('a subscription with a signal ends when aborted', T, async () => {
    const conn = await open('abort-sub');
    const controller = new AbortController();
    const sub = await conn.subscribe('abort.me', { signal: controller.signal });
    const pending = sub.next();
    controller.abort();
    assert.equal((await within(pending, 2000, 'end')).done, true);
  });
});

describe('request/reply', () => {
  test('a request gets its reply; thread and correlation are echoed', T, async () => {
    const server = await open('replier');
    const client = await open('requester');
    const sub = await server.subscribe('svc.echo');
    void (async () => {
      for await (const req of sub) await server.reply(req, { echo: req.json() });
    })();
    const reply = await client.request('svc.echo', { hi: 1 }, { threadId: 'th', timeoutMs: 5000 });
    assert.deepEqual(reply.json(), { echo: { hi: 1 } });
    assert.equal(reply.threadId, 'th');
    assert.equal(reply.sender, server.agentId);
    assert.ok(reply.correlationId.length > 0);
  });

  test('a request nobody answers times out with TIMEOUT', T, async () => {
    const client = await open('lonely');
    const started = Date.now();
    await assert.rejects(
      client.request('svc.nobody', {}, { timeoutMs: 300 }),
      (e: TimeoutError) => e instanceof TimeoutError && e.code === 'TIMEOUT',
    );
    assert.ok(Date.now() - started < 3000);
  });

  test('a request can be cancelled with an AbortSignal', T, async () => {
    const client = await open('canceller');
    await assert.rejects(
      client.request('svc.nobody', {}, { signal: AbortSignal.timeout(100) }),
      CancelledError,
    );
  });

  test('first-k: waits for the first k replies of many responders', T, async () => {
    const client = await open('gatherer');
    for (let i = 0; i < 3; i++) {
      const responder = await open(`voter-${i}`);
      const sub = await responder.subscribe('vote.request');
      void (async () => {
        for await (const req of sub) await responder.reply(req, { voter: i });
      })();
    }
    const two = await client.requestMany('vote.request', { q: 'x' }, { first: 2, timeoutMs: 5000 });
    assert.equal(two.length, 2);
    const senders = new Set(two.map((r) => r.sender));
    assert.equal(senders.size, 2);
    // Asking for more replies than there are responders: TIMEOUT, or the partial set on request.
    await assert.rejects(client.requestMany('vote.request', {}, { first: 4, timeoutMs: 500 }), TimeoutError);
    const partial = await client.requestMany(
      'vote.request',
      {},
      { first: 4, timeoutMs: 500, allowPartial: true },
    );
    assert.equal(partial.length, 3);
  });
});

describe('capabilities', () => {
  test('a TS capability is called from another TS agent', T, async () => {
    await open('provider', { capabilities: [adder] });
    const caller = await open('caller');
    assert.deepEqual(await caller.invoke('js.add', { a: 2, b: 3 }), { sum: 5 });
    const add = caller.tool<{ a: number; b: number }, { sum: number }>('js.add');
    assert.equal((await add({ a: 40, b: 2 })).sum, 42);
  });

  test('schema errors: INVALID_PARAMS with the failing path as a JSON pointer', T, async () => {
    const strict = capability({
      name: 'js.strict',
      // The refinement cannot be expressed in JSON Schema: the SDK's own zod validation catches it.
      input: z.object({
        items: z.array(z.object({ name: z.string().refine((s) => s !== 'forbidden', 'name is forbidden') })),
      }),
      handler: ({ items }) => ({ count: items.length }),
    });
    const raw = capability({
      name: 'js.raw',
      input: { type: 'object', properties: { n: { type: 'integer', minimum: 0 } }, required: ['n'] },
      output: { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] },
      handler: (input) => ((input as { n: number }).n === 7 ? { wrong: true } : { ok: true }),
    });
    await open('schema-provider', { capabilities: [strict, raw] });
    const caller = await open('schema-caller');
    // Checked by the bridge against the JSON Schema derived from zod.
    await assert.rejects(caller.invoke('js.strict', { items: [{ name: 3 }] }), (e: InvalidParamsError) => {
      assert.equal(e.code, 'INVALID_PARAMS');
      assert.equal(e.path, '/items/0/name');
      return true;
    });
    // Checked by the SDK (zod refinement).
    await assert.rejects(
      caller.invoke('js.strict', { items: [{ name: 'ok' }, { name: 'forbidden' }] }),
      (e: InvalidParamsError) => {
        assert.equal(e.code, 'INVALID_PARAMS');
        assert.equal(e.path, '/items/1/name');
        assert.match(e.message, /forbidden/);
        return true;
      },
    );
    assert.deepEqual(await caller.invoke('js.strict', { items: [{ name: 'a' }] }), { count: 1 });
    await assert.rejects(
      caller.invoke('js.raw', { n: -1 }),
      (e: InvalidParamsError) => e.code === 'INVALID_PARAMS' && e.path === '/n',
    );
    await assert.rejects(
      caller.invoke('js.raw', {}),
      (e: InvalidParamsError) => e.code === 'INVALID_PARAMS' && e.path === '/n',
    );
    // An output that does not match its schema is the tool's fault.
    // (the bridge passes the path of a provider's error on for INVALID_PARAMS only, so check the message)
    await assert.rejects(
      caller.invoke('js.raw', { n: 7 }),
      (e: ToolError) => e.code === 'TOOL_ERROR' && e.message.includes("'/ok'"),
    );
    assert.deepEqual(await caller.invoke('js.raw', { n: 1 }), { ok: true });
  });

  test('SDK-side validation of raw JSON Schema (ajv) and zod gives JSON pointers', () => {
    const raw = capability({
      name: 'v.raw',
      input: {
        type: 'object',
        properties: { a: { type: 'array', items: { type: 'string' } } },
        required: ['a'],
      },
      handler: () => 1,
    });
    assert.throws(
      () => raw.parseInput({ a: ['x', 2] }),
      (e: InvalidParamsError) => e.path === '/a/1',
    );
    assert.throws(
      () => raw.parseInput({}),
      (e: InvalidParamsError) => e.path === '/a',
    );
    const zodCap = capability({
      name: 'v.zod',
      input: z.object({ 'a/b': z.object({ 'c~d': z.number() }) }),
      handler: () => 1,
    });
    assert.throws(
      () => zodCap.parseInput({ 'a/b': { 'c~d': 'x' } }),
      (e: InvalidParamsError) => e.path === '/a~1b/c~0d',
    );
    assert.deepEqual(zodCap.inputSchema, {
      type: 'object',
      properties: { 'a/b': { type: 'object', properties: { 'c~d': { type: 'number' } }, required: ['c~d'] } },
      required: ['a/b'],
    });
  });

  test('thrown errors become TOOL_ERROR and never kill the agent', T, async () => {
    let calls = 0;
    const flaky = capability({
      name: 'js.flaky',
      handler: async (input) => {
        calls++;
        const mode = (input as { mode: string }).mode;
        if (mode === 'throw') throw new Error('boom');
        if (mode === 'string') throw 'a string'; // eslint-disable-line @typescript-eslint/only-throw-error
        if (mode === 'reject') return Promise.reject(new TypeError('rejected'));
        if (mode === 'invalid') throw new InvalidParamsError('bad widget', { path: '/widget' });
        return { ok: true };
      },
    });
    const provider = await open('flaky-provider', { capabilities: [flaky] });
    const caller = await open('flaky-caller');
    for (const mode of ['throw', 'string', 'reject']) {
      await assert.rejects(caller.invoke('js.flaky', { mode }), (e: ToolError) => {
        assert.equal(e.code, 'TOOL_ERROR');
        assert.equal(e.name, 'ToolError');
        return true;
      });
    }
    await assert.rejects(
      caller.invoke('js.flaky', { mode: 'invalid' }),
      (e: InvalidParamsError) => e.code === 'INVALID_PARAMS' && e.path === '/widget',
    );
    assert.deepEqual(await caller.invoke('js.flaky', { mode: 'ok' }), { ok: true });
    assert.equal(calls, 5);
    assert.equal(provider.status.state, 'connected');
  });

  test('a call past its timeout fails with TIMEOUT and the provider is told to stop', T, async () => {
    let aborted = false;
    const slow = capability({
      name: 'js.slow',
      handler: (_input, call) =>
        new Promise((resolve) => {
          call.signal.addEventListener('abort', () => {
            aborted = true;
            resolve(null);
          });
        }),
    });
    await open('slow-provider', { capabilities: [slow] });
    const caller = await open('slow-caller');
    await assert.rejects(caller.invoke('js.slow', {}, { timeoutMs: 300 }), TimeoutError);
    await waitFor('the provider saw the cancel', () => aborted, 5000);
    await assert.rejects(caller.invoke('js.nothing', {}), CapabilityNotFoundError);
  });
});

describe('memory', () => {
  test('set/get/list/delete/compare-and-set and TTL expiry', T, async () => {
    const conn = await open('memo');
    const m = conn.memory;
    assert.equal(m.namespace, 'default');
    const item = await m.set('plan/today', { steps: 3 });
    assert.equal(item.version, 1);
    assert.deepEqual((await m.get('plan/today'))?.json(), { steps: 3 });
    assert.equal(await m.get('plan/missing'), undefined);
    const cas1 = await m.compareAndSet('plan/today', 1, { steps: 4 });
    assert.equal(cas1.swapped, true);
    assert.equal(cas1.item?.version, 2);
    const cas2 = await m.compareAndSet('plan/today', 1, { steps: 5 });
    assert.equal(cas2.swapped, false);
    assert.deepEqual(cas2.item?.json(), { steps: 4 });
    assert.equal((await m.compareAndSet('plan/new', 0, new Uint8Array([1, 2]))).swapped, true);
    assert.deepEqual(
      (await m.list('plan/')).map((i) => i.key),
      ['plan/new', 'plan/today'],
    );
    const short = await m.set('plan/short', 'x', { ttlMs: 200 });
    assert.ok(short.expiresUnixMs !== undefined && short.expiresUnixMs > Date.now());
    await waitFor('the entry to expire', async () => (await m.get('plan/short')) === undefined, 5000);
    assert.equal(await m.delete('plan/today'), true);
    assert.equal(await m.delete('plan/today'), false);
    const other = m.withNamespace('elsewhere');
    await other.set('k', 1);
    assert.equal(await m.get('k'), undefined);
    assert.equal((await other.get('k'))?.json(), 1);
    await assert.rejects(m.set('', 1), (e: InvalidParamsError) => e.code === 'INVALID_PARAMS');
  });
});

describe('threads, agents and status', () => {
  test('joinThread: broadcast and reply reach the others in the thread', T, async () => {
    const a = await open('alice');
    const b = await open('bob');
    const ta = await a.joinThread('t42');
    const tb = await b.joinThread('t42');
    await ta.broadcast({ text: 'hello' });
    const iterator = tb[Symbol.asyncIterator]();
    const first = await within(iterator.next(), 5000, 'broadcast');
    assert.ok(first.done !== true);
    assert.equal(first.value.topic, 'thread.t42.broadcast');
    assert.equal(first.value.threadId, 't42');
    await tb.reply({ text: 'hi' });
    const back = await within(ta[Symbol.asyncIterator]().next(), 5000, 'reply');
    assert.ok(back.done !== true);
    assert.equal(back.value.topic, 'thread.t42.reply');
    assert.equal(back.value.sender, b.agentId);
    await ta.leave();
    await tb.leave();
  });

  test('defineAgent + startAgent: onEvent sees events, a failing handler does not stop it', T, async () => {
    const seen: string[] = [];
    const agent = defineAgent({
      name: 'handler-agent',
      topics: ['jobs.>'],
      capabilities: [adder],
      onEvent: async (event, ctx) => {
        if (event.topic === 'jobs.bad') throw new Error('handler failed');
        seen.push(event.topic);
        if (event.replyTo) await ctx.reply(event, { done: true });
      },
    });
    assert.throws(
      () => defineAgent({ name: 'x', topics: ['a..b'], onEvent: () => undefined }),
      InvalidParamsError,
    );
    const running = await startAgent(agent, { url: bridge.grpcUrl, logLevel: 'silent' });
    const client = await open('job-client');
    await client.emit('jobs.bad', {});
    const reply = await client.request('jobs.one', {}, { timeoutMs: 5000 });
    assert.deepEqual(reply.json(), { done: true });
    assert.deepEqual(seen, ['jobs.one']);
    assert.deepEqual(await client.invoke('js.add', { a: 1, b: 1 }), { sum: 2 });
    await running.stop();
    await running.stop();
    assert.equal(running.context.status.state, 'closed');
  });

  test('run() starts several agents and stops them when its signal aborts', T, async () => {
    const one = defineAgent({
      name: 'run-one',
      capabilities: [capability({ name: 'run.one', handler: () => 1 })],
    });
    const two = defineAgent({
      name: 'run-two',
      capabilities: [capability({ name: 'run.two', handler: () => 2 })],
    });
    const stop = new AbortController();
    const client = await open('run-client');
    let ids: string[] = [];
    await within(
      run([one, two], {
        url: bridge.grpcUrl,
        logLevel: 'silent',
        handleSignals: false,
        signal: stop.signal,
        onReady: async (agents) => {
          ids = agents.map((a) => a.agentId);
          assert.equal(await client.invoke('run.one'), 1);
          assert.equal(await client.invoke('run.two'), 2);
          stop.abort();
        },
      }),
      20_000,
      'run()',
    );
    assert.equal(new Set(ids).size, 2);
    await waitFor(
      'both agents left',
      async () => !(await bridge.agents()).some((a) => ids.includes(a.agent_id)),
      5000,
    );
    await assert.rejects(
      run([one, two], { url: bridge.grpcUrl, agentId: 'same', handleSignals: false }),
      InvalidParamsError,
    );
  });

  test('status changes are an async iterable of a discriminated union', T, async () => {
    const conn = await open('status');
    const changes = conn.statusChanges();
    const seen: ConnectionStatus[] = [];
    const reader = (async () => {
      for await (const status of changes) seen.push(status);
    })();
    await conn.drain();
    await conn.close();
    await within(reader, 5000, 'status iteration');
    assert.deepEqual(
      seen.map((s) => s.state),
      ['closed'],
    );
    await assert.rejects(conn.emit('x.y', 1), CancelledError);
  });

  test('run() stops cleanly on SIGTERM (a spawned agent process)', T, async () => {
    const agent = nodeAgent(['serve', '--url', bridge.grpcUrl, '--agent-id', 'sigterm-agent']);
    try {
      await agent.ready(15_000);
      const caller = await open('sigterm-caller');
      assert.deepEqual(await caller.invoke('ts.add', { a: 1, b: 2 }), { sum: 3 });
      agent.kill('SIGTERM');
      const done = await agent.json<{ stopped: boolean }>(10_000);
      assert.equal(done.stopped, true);
      const exit = await within(agent.exited, 10_000, 'exit');
      assert.equal(exit.code, 0);
      await waitFor(
        'the agent left',
        async () => !(await bridge.agents()).some((a) => a.agent_id === 'sigterm-agent'),
        5000,
      );
    } finally {
      await agent.stop();
    }
  });
});
