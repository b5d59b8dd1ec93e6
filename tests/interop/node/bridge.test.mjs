// Interop: the Loom bridge driven directly by the official Node client (@grpc/grpc-js).
// What each test checks is the contract in proto/loom/v1/bridge.proto and docs/protocol.md.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  AgentStream, CHANNEL_OPTIONS, ERROR_CODE_TRAILER, describe, grpc, grpcError, loadProtos, register, startBridge, uid, unary,
} from './lib/bridge.mjs';

const FOUR_MIB = 4 * 1024 * 1024;
const TEST = { timeout: 30000 };

let bridge;
let pkg;
let client; // loom.v1.Bridge
let health; // grpc.health.v1.Health
const streams = [];

before(async () => {
  pkg = loadProtos();
  bridge = await startBridge();
  const creds = grpc.credentials.createInsecure();
  client = new pkg.loom.v1.Bridge(bridge.grpc, creds, CHANNEL_OPTIONS);
  health = new pkg.grpc.health.v1.Health(bridge.grpc, creds, CHANNEL_OPTIONS);
  await new Promise((resolve, reject) => client.waitForReady(Date.now() + 10000, (err) => (err ? reject(err) : resolve())));
}, { timeout: 180000 });

after(async () => {
  for (const s of streams) s.close();
  client?.close();
  health?.close();
  await bridge?.stop();
}, { timeout: 30000 });

function openStream(sessionId, options) {
  const s = new AgentStream(client, sessionId, options);
  streams.push(s);
  return s;
}

const trailer = (err, name) => err.metadata?.get(name)?.[0];

// The bridge process survived what the test did (a crash shows up as UNAVAILABLE here).
async function assertStillServing() {
  let resp;
  try {
    resp = await unary(health, 'Check', { service: '' }, { timeoutMs: 5000 });
  } catch (err) {
    assert.fail(`the bridge stopped serving: ${describe(err)}`);
  }
  assert.equal(resp.status, 'SERVING');
}

function provider(capability, inputSchema = '{}') {
  return register(client, {
    capabilities: [{ name: capability, version: '1.0.0', description: 'interop test capability', input_schema_json: inputSchema }],
  });
}

// ---------------------------------------------------------------------------------------------

for (const service of ['', 'loom.v1.Bridge']) {
  test(`health check for service "${service}" is SERVING`, TEST, async () => {
    const resp = await unary(health, 'Check', { service }, { timeoutMs: 5000 });
    assert.equal(resp.status, 'SERVING');
  });
}

test('GET /healthz on the HTTP port is 200', TEST, async (t) => {
  if (!bridge.http) return t.skip('no HTTP address known (LOOM_BRIDGE_HTTP_ADDR not set)');
  const resp = await fetch(`http://${bridge.http}/healthz`, { signal: AbortSignal.timeout(5000) });
  assert.equal(resp.status, 200);
});

test('RegisterAgent returns a session, limits and subscription ids', TEST, async () => {
  const agentId = `interop-node-${uid()}`;
  const pattern = `interop.reg.${uid()}.>`;
  const resp = await register(client, { agentId, subscriptions: [{ pattern }] });
  assert.ok(resp.session_id, 'session_id is set');
  assert.equal(resp.agent_id, agentId);
  assert.ok(resp.heartbeat_interval_ms > 0, 'heartbeat_interval_ms > 0');
  assert.equal(resp.limits.max_message_bytes, FOUR_MIB);
  assert.deepEqual(resp.subscriptions.map((s) => s.pattern), [pattern]);
  assert.ok(resp.subscriptions[0].subscription_id, 'subscriptions come back with ids assigned');
  assert.equal(resp.reconnected, false);

  const again = await register(client, { agentId, subscriptions: [{ pattern }] });
  assert.equal(again.agent_id, agentId);
  assert.equal(again.reconnected, true, 're-registering a known agent id reports reconnected');
  assert.ok(again.session_id);
});

test('EventStream: 10,000 publishes come back in order', { timeout: 60000 }, async () => {
  const n = 10000;
  const topic = `interop.seq.${uid()}`;
  // BATCH: a 65536 queue, so no drop can hide an ordering bug.
  const reg = await register(client, { subscriptions: [{ pattern: topic, qos: 'QOS_CLASS_BATCH' }] });
  const subId = reg.subscriptions[0]?.subscription_id;
  const stream = openStream(reg.session_id, { timeoutMs: 60000 });
  const deadline = Date.now() + 45000;

  const sending = (async () => {
    for (let i = 0; i < n; i++) {
      await stream.send({
        publish: {
          id: `${reg.agent_id}-${i}`, topic, qos: 'QOS_CLASS_BATCH', content_type: 'text/plain', payload: Buffer.from(String(i)),
        },
      });
    }
  })();

  for (let expected = 0; expected < n; expected++) {
    const remaining = deadline - Date.now();
    assert.ok(remaining > 0, `only ${expected} of ${n} deliveries arrived within 45 s`);
    const d = await stream.next('deliver', () => true, { timeoutMs: remaining, what: `delivery #${expected}` });
    const got = Number(Buffer.from(d.envelope.payload).toString());
    assert.equal(got, expected, `delivery #${expected} carried payload ${got}: out of order or lost`);
    if (expected === 0) {
      assert.equal(d.envelope.topic, topic);
      assert.equal(d.envelope.sender, reg.agent_id, 'sender is set by the bridge from the session');
      if (subId) assert.equal(d.subscription_id, subId);
    }
  }
  await sending;
  assert.deepEqual(stream.errors, [], 'no ErrorReply during publish');
  stream.close();
});

test('error status with a non-ASCII message round-trips', TEST, async () => {
  const pattern = 'météo.>.x';
  const err = await grpcError(register(client, { subscriptions: [{ pattern }] }));
  assert.equal(err.code, grpc.status.INVALID_ARGUMENT, describe(err));
  assert.ok(err.details.includes(pattern), `details ${JSON.stringify(err.details)} do not echo ${pattern}`);
  assert.equal(trailer(err, ERROR_CODE_TRAILER), 'INVALID_PARAMS', describe(err));
});

test('ForwardAction past its deadline: DEADLINE_EXCEEDED and the provider gets a cancel', TEST, async () => {
  const capability = `interop.slow.${uid()}`;
  const prov = await provider(capability);
  const ps = openStream(prov.session_id);
  await ps.subscribe(`interop.ready.${uid()}`); // the stream is attached before the call

  const started = Date.now();
  const err = await grpcError(unary(client, 'ForwardAction', {
    call: { call_id: `dl-${uid()}`, capability, input_json: Buffer.from('{"n":1}') },
  }, { timeoutMs: 300 }));
  assert.equal(err.code, grpc.status.DEADLINE_EXCEEDED, describe(err));
  assert.ok(Date.now() - started < 5000);

  const pushed = await ps.next('call', (c) => c.capability === capability, { what: 'the pushed ActionCall' });
  assert.ok(pushed.call_id);
  await ps.next('cancel', (c) => c.call_id === pushed.call_id, { what: `CancelCall for call_id=${pushed.call_id}` });
  ps.close();
  await assertStillServing();
});

test('ForwardAction cancelled by the client: CANCELLED and the provider gets a cancel', TEST, async () => {
  const capability = `interop.hang.${uid()}`;
  const prov = await provider(capability);
  const ps = openStream(prov.session_id);
  await ps.subscribe(`interop.ready.${uid()}`);

  let call;
  const outcome = new Promise((resolve) => {
    call = client.ForwardAction(
      { call: { call_id: `cc-${uid()}`, capability, input_json: Buffer.from('{}') } },
      { deadline: Date.now() + 30000 },
      (err, resp) => resolve({ err, resp }),
    );
  });
  const pushed = await ps.next('call', (c) => c.capability === capability, { what: 'the pushed ActionCall' });
  call.cancel();
  const { err } = await outcome;
  assert.ok(err, 'the cancelled call fails');
  assert.equal(err.code, grpc.status.CANCELLED, describe(err));
  await ps.next('cancel', (c) => c.call_id === pushed.call_id, { what: `CancelCall for call_id=${pushed.call_id}` });
  ps.close();
  await assertStillServing();
});

test('unknown method is UNIMPLEMENTED', TEST, async () => {
  const raw = new grpc.Client(bridge.grpc, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
  try {
    const err = await grpcError(new Promise((resolve, reject) => {
      raw.makeUnaryRequest('/loom.v1.Bridge/NoSuchMethod', (b) => b, (b) => b, Buffer.alloc(0),
        new grpc.Metadata(), { deadline: Date.now() + 5000 }, (e, r) => (e ? reject(e) : resolve(r)));
    }));
    assert.equal(err.code, grpc.status.UNIMPLEMENTED, describe(err));
  } finally {
    raw.close();
  }
});

test('a request over 4 MiB is RESOURCE_EXHAUSTED', TEST, async () => {
  const err = await grpcError(register(client, { metadata: { blob: 'x'.repeat(5 * 1024 * 1024) }, timeoutMs: 15000 }));
  assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED, describe(err));
  await assertStillServing(); // the connection and the bridge survive it
});

test('capability round trip: the provider answers, ForwardAction returns it', TEST, async () => {
  const capability = `interop.echo.${uid()}`;
  const schema = JSON.stringify({ type: 'object', properties: { text: { type: 'string' } }, required: ['text'] });
  const prov = await provider(capability, schema);
  const ps = openStream(prov.session_id);
  await ps.subscribe(`interop.ready.${uid()}`);
  const input = { text: 'héllo wörld ✓' };

  const answered = (async () => {
    const c = await ps.next('call', (m) => m.capability === capability, { timeoutMs: 10000, what: 'the pushed ActionCall' });
    const out = { echo: JSON.parse(Buffer.from(c.input_json).toString('utf8')), call_id: c.call_id };
    await ps.send({ result: { call_id: c.call_id, output_json: Buffer.from(JSON.stringify(out)), provider: prov.agent_id, duration_us: '5' } });
    return c;
  })();
  const before = Date.now();
  const resp = await unary(client, 'ForwardAction', {
    call: { call_id: `rt-${uid()}`, capability, input_json: Buffer.from(JSON.stringify(input)) },
  }, { timeoutMs: 10000 });
  const c = await answered;

  assert.equal(c.capability, capability);
  assert.deepEqual(JSON.parse(Buffer.from(c.input_json).toString('utf8')), input);
  assert.ok(Number(c.deadline_unix_ms) >= before, 'the bridge sets deadline_unix_ms on pushed calls');
  assert.deepEqual(JSON.parse(Buffer.from(resp.output_json).toString('utf8')), { echo: input, call_id: c.call_id });
  assert.equal(resp.provider, prov.agent_id);
  ps.close();
});

test('EventStream with an unknown session is UNAUTHENTICATED', TEST, async () => {
  const s = openStream(`no-such-session-${uid()}`, { timeoutMs: 10000 });
  const status = await s.waitEnd(10000);
  assert.ok(status, 'the stream fails');
  assert.equal(status.code, grpc.status.UNAUTHENTICATED, describe(status));
  assert.equal(trailer(status, ERROR_CODE_TRAILER), 'SESSION_NOT_FOUND', describe(status));
});
