// Unit tests without a bridge: the generated codec is current, errors map as the protocol says,
// options read the environment, topics are checked locally.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';

import * as grpc from '@grpc/grpc-js';

import {
  CancelledError,
  createError,
  ENVIRONMENT_VARIABLES,
  ERROR_CODES,
  InvalidParamsError,
  LoomError,
  parseErrorCode,
  resolveOptions,
  SessionNotFoundError,
  TimeoutError,
  ToolError,
  UnauthenticatedError,
  UnavailableError,
} from '../src/mod.js';
import { errorCodeNumber } from '../src/errors.js';
import { encodeClientFrame } from '../src/internal/frame-encoder.js';
import { fromProtoError, fromStatus, pb, serializeClientFrameGenerated } from '../src/internal/proto.js';
import { backoffDelay, validatePattern, validateTopic } from '../src/internal/util.js';
import { SDK_ROOT } from './helpers/processes.js';

test(
  'the committed codec in src/gen matches proto/ (run `npm run gen` after changing the proto)',
  { timeout: 60_000 },
  () => {
    const out = mkdtempSync(path.join(tmpdir(), 'loom-gen-'));
    execFileSync(process.execPath, [path.join(SDK_ROOT, 'scripts/gen-proto.mjs'), out], {
      cwd: SDK_ROOT,
      stdio: 'pipe',
    });
    for (const name of ['loom.js', 'loom.d.ts']) {
      const fresh = readFileSync(path.join(out, name), 'utf8');
      const committed = readFileSync(path.join(SDK_ROOT, 'src/gen', name), 'utf8');
      assert.ok(fresh === committed, `src/gen/${name} is stale: run 'npm run gen' in sdk-js`);
    }
  },
);

test('error codes: every proto code has a class with name, code and cause', () => {
  assert.equal(ERROR_CODES.length, 16);
  const cause = new Error('root');
  const e = createError('TOOL_ERROR', 'failed', { cause });
  assert.ok(e instanceof ToolError && e instanceof LoomError && e instanceof Error);
  assert.equal(e.name, 'ToolError');
  assert.equal(e.code, 'TOOL_ERROR');
  assert.equal(e.cause, cause);
  assert.ok(createError('SESSION_NOT_FOUND', 'x') instanceof SessionNotFoundError);
  assert.equal(createError('PROVIDER_UNAVAILABLE', 'x').retryable, true);
  assert.equal(createError('INVALID_PARAMS', 'x').retryable, false);
  assert.equal(parseErrorCode('error_code_invalid_params'), 'INVALID_PARAMS');
  assert.equal(parseErrorCode('TIMEOUT'), 'TIMEOUT');
  assert.equal(parseErrorCode('SOMETHING_NEW'), 'INTERNAL');
  assert.equal(parseErrorCode(5), 'TOOL_ERROR');
  const fromWire = fromProtoError({ code: 1, message: 'bad', path: '/a/0' });
  assert.ok(fromWire instanceof InvalidParamsError);
  assert.equal(fromWire.path, '/a/0');
});

test('gRPC statuses map to Loom errors: trailer first, then the status fallback (protocol §11.1)', () => {
  const md = new grpc.Metadata();
  md.set('loom-error-code', 'INVALID_PARAMS');
  md.set('loom-error-path', '/subscriptions/0/pattern');
  const withTrailer = fromStatus({
    code: grpc.status.INVALID_ARGUMENT,
    details: "pattern 'météo.>.x' is invalid",
    metadata: md,
  });
  assert.ok(withTrailer instanceof InvalidParamsError);
  assert.equal(withTrailer.path, '/subscriptions/0/pattern');
  assert.match(withTrailer.message, /météo/);
  const cases: [grpc.status, string][] = [
    [grpc.status.CANCELLED, 'CANCELLED'],
    [grpc.status.DEADLINE_EXCEEDED, 'TIMEOUT'],
    [grpc.status.UNAVAILABLE, 'UNAVAILABLE'],
    [grpc.status.RESOURCE_EXHAUSTED, 'RESOURCE_EXHAUSTED'],
    [grpc.status.UNAUTHENTICATED, 'UNAUTHENTICATED'],
    [grpc.status.UNIMPLEMENTED, 'INTERNAL'],
    [grpc.status.UNKNOWN, 'INTERNAL'],
  ];
  for (const [status, code] of cases)
    assert.equal(fromStatus({ code: status, details: 'x', metadata: new grpc.Metadata() }).code, code);
  assert.ok(
    fromStatus({ code: grpc.status.CANCELLED, details: '', metadata: new grpc.Metadata() }) instanceof
      CancelledError,
  );
  assert.ok(
    fromStatus({ code: grpc.status.UNAVAILABLE, details: '', metadata: new grpc.Metadata() }) instanceof
      UnavailableError,
  );
  assert.ok(
    fromStatus({ code: grpc.status.DEADLINE_EXCEEDED, details: '', metadata: new grpc.Metadata() }) instanceof
      TimeoutError,
  );
  // A missing or bad credential is UNAUTHENTICATED (wire number 14), its own typed error, not SESSION_NOT_FOUND.
  const auth = new grpc.Metadata();
  auth.set('loom-error-code', 'UNAUTHENTICATED');
  const refused = fromStatus({
    code: grpc.status.UNAUTHENTICATED,
    details: 'This bridge requires a credential',
    metadata: auth,
  });
  assert.ok(refused instanceof UnauthenticatedError);
  assert.equal(refused.name, 'UnauthenticatedError');
  assert.equal(refused.retryable, false);
  assert.equal(parseErrorCode(14), 'UNAUTHENTICATED');
  assert.equal(errorCodeNumber('UNAUTHENTICATED'), 14);
  const session = new grpc.Metadata();
  session.set('loom-error-code', 'SESSION_NOT_FOUND');
  assert.equal(
    fromStatus({ code: grpc.status.UNAUTHENTICATED, details: 'x', metadata: session }).code,
    'SESSION_NOT_FOUND',
  );
});

test('options: explicit values win over LOOM_* environment variables, which win over defaults', () => {
  const env = {
    LOOM_AGENT_ID: 'env-id',
    LOOM_NAMESPACE: 'ns',
    LOOM_HEARTBEAT_MS: '250',
    LOOM_CALL_TIMEOUT_MS: '1234',
    LOOM_LOG_LEVEL: 'silent',
    LOOM_METADATA: 'team=a, tier=2',
  };
  const fromEnv = resolveOptions({}, env);
  assert.equal(fromEnv.agentId, 'env-id');
  assert.equal(fromEnv.namespace, 'ns');
  assert.equal(fromEnv.heartbeatMs, 250);
  assert.equal(fromEnv.callTimeoutMs, 1234);
  assert.deepEqual(fromEnv.metadata, { team: 'a', tier: '2' });
  assert.equal(resolveOptions({ agentId: 'explicit' }, env).agentId, 'explicit');
  const defaults = resolveOptions({}, {});
  assert.equal(defaults.agentId, undefined);
  assert.equal(defaults.reconnectInitialMs, 100);
  assert.equal(defaults.reconnectMaxMs, 5000);
  assert.throws(() => resolveOptions({}, { LOOM_CALL_TIMEOUT_MS: 'soon' }), InvalidParamsError);
  assert.ok(Object.keys(ENVIRONMENT_VARIABLES).includes('LOOM_URL'));
});

test('topics and patterns are checked locally', () => {
  validateTopic('orders.eu.created');
  validateTopic('_inbox.agent-1:x.42');
  for (const bad of ['', 'a..b', '.a', 'a.', 'a.*', 'a.>', 'météo.x', 'a b'])
    assert.throws(() => validateTopic(bad), InvalidParamsError, bad);
  for (const ok of ['>', 'a.*.c', 'a.>', '*']) validatePattern(ok);
  for (const bad of ['a.>.b', 'a*', 'a..b', ''])
    assert.throws(() => validatePattern(bad), InvalidParamsError, bad);
});

test('backoff is exponential, capped and jittered', () => {
  for (let attempt = 0; attempt < 12; attempt++) {
    const base = Math.min(5000, 100 * 2 ** attempt);
    const d = backoffDelay(attempt, 100, 5000, 0.2);
    assert.ok(d >= base * 0.8 && d <= base * 1.2, `attempt ${attempt}: ${d}`);
  }
  assert.equal(backoffDelay(3, 100, 5000, 0), 800);
});

test('the hand-written frame encoder agrees with the generated codec', () => {
  const messages = [
    {
      publish: {
        id: 'a-1',
        topic: 'orders.eu.created',
        payload: new Uint8Array(300).fill(7),
        contentType: 'application/json',
      },
    },
    {
      publish: {
        id: 'a-2',
        topic: 'météo.paris',
        threadId: 'th',
        correlationId: 'c',
        replyTo: '_inbox.x.1',
        ttlMs: 70_000,
        qos: 3,
        headers: { k: 'v', ü: '', '': 'x' },
        traceparent: 'tp',
        tracestate: 'ts',
      },
    },
    { subscribe: { correlationId: 's-1', subscription: { pattern: 'a.>', qos: 1 } } },
    { heartbeat: { sequence: 5, sentUnixMs: Date.now() } },
    { result: { callId: 'b1', outputJson: Buffer.from('{"ok":true}'), provider: 'p', durationUs: 12 } },
    { publish: { id: 'x'.repeat(200), topic: 't', payload: new Uint8Array(20_000) } },
  ];
  const ours = pb.ClientFrame.decode(encodeClientFrame({ messages }));
  const theirs = pb.ClientFrame.decode(serializeClientFrameGenerated({ messages }));
  assert.deepEqual(JSON.parse(JSON.stringify(ours)), JSON.parse(JSON.stringify(theirs)));
  assert.equal(ours.messages.length, messages.length);
  assert.equal(ours.messages[1]?.publish?.topic, 'météo.paris');
  assert.deepEqual({ ...ours.messages[1]?.publish?.headers }, { k: 'v', ü: '', '': 'x' });
  assert.equal(ours.messages[1]?.publish?.tracestate, 'ts');
});
