// TLS and mutual TLS against a real `./loom up` with `./loom certs dev` material, over real sockets (grpc-js).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { connect, InvalidParamsError, type LoomError, UnauthenticatedError } from '../src/mod.js';
import { resolveOptions } from '../src/options.js';
import { LineProcess, REPO, within } from './helpers/processes.js';

const LOOM = path.join(REPO, 'loom');
const READY = /^listening grpc=(https:\/\/127\.0\.0\.1:\d+) http=(https:\/\/127\.0\.0\.1:\d+)\s*$/;

function certs(dir: string, client = 'js-tls'): string {
  execFileSync(LOOM, ['certs', 'dev', '--dir', dir, '--client-name', client], {
    stdio: 'ignore',
    timeout: 120_000,
  });
  return dir;
}

describe('TLS', () => {
  const temp = mkdtempSync(path.join(tmpdir(), 'loom-js-tls-'));
  const dir = path.join(temp, 'certs');
  const other = path.join(temp, 'other');
  let bridge: LineProcess;
  let url = '';

  before(async () => {
    certs(dir);
    certs(other);
    bridge = new LineProcess(
      LOOM,
      [
        'up',
        '--grpc-port',
        '0',
        '--http-port',
        '0',
        '--tls-cert',
        path.join(dir, 'server.pem'),
        '--tls-key',
        path.join(dir, 'server.key'),
        '--tls-client-ca',
        path.join(dir, 'ca.pem'),
      ],
      { detached: false },
    );
    const line = await bridge.nextLine((l) => READY.test(l), 120_000, 'the https ready line');
    url = (READY.exec(line) as RegExpExecArray)[1] as string;
  });

  after(async () => {
    await bridge.stop();
  });

  test('connects over mutual TLS with options, and the LOOM_TLS_* variables set them', async () => {
    const conn = await within(
      connect(url, {
        agentId: 'js-tls',
        logLevel: 'silent',
        tlsCa: path.join(dir, 'ca.pem'),
        tlsCert: path.join(dir, 'client.pem'),
        tlsKey: path.join(dir, 'client.key'),
      }),
      60_000,
      'connect',
    );
    try {
      const sub = await conn.subscribe('jstls.>');
      await conn.emit('jstls.hello', { n: 1 });
      const next = await within(sub.next(), 30_000, 'the event');
      assert.equal(next.done, false);
      assert.equal(next.value?.topic, 'jstls.hello');
    } finally {
      await conn.close();
    }

    const resolved = resolveOptions(
      {},
      { LOOM_TLS_CA: '/a/ca.pem', LOOM_TLS_CERT: '/a/c.pem', LOOM_TLS_KEY: '/a/c.key', LOOM_TOKEN: 't' },
    );
    assert.deepEqual(
      [resolved.tlsCa, resolved.tlsCert, resolved.tlsKey, resolved.token],
      ['/a/ca.pem', '/a/c.pem', '/a/c.key', 't'],
    );
  });

  test('a wrong CA fails with an error that says what to check', async () => {
    await assert.rejects(
      connect(url, {
        logLevel: 'silent',
        connectTimeoutMs: 5000,
        tlsCa: path.join(other, 'ca.pem'),
        tlsCert: path.join(dir, 'client.pem'),
        tlsKey: path.join(dir, 'client.key'),
      }),
      (e: LoomError) =>
        e.code === 'UNAVAILABLE' &&
        /TLS handshake with the bridge/.test(e.message) &&
        /LOOM_TLS_CA/.test(e.message),
    );
  });

  test('a certificate without its key, and a token in the clear to another machine, are refused', async () => {
    await assert.rejects(
      connect(url, { logLevel: 'silent', tlsCert: path.join(dir, 'client.pem') }),
      (e: InvalidParamsError) => e.code === 'INVALID_PARAMS' && /needs its key/.test(e.message),
    );
    await assert.rejects(
      connect('http://10.1.2.3:7070', { logLevel: 'silent', token: 'x' }),
      (e: InvalidParamsError) => e.code === 'INVALID_PARAMS' && /never sent in the clear/.test(e.message),
    );
  });
});

describe('tokens', () => {
  const temp = mkdtempSync(path.join(tmpdir(), 'loom-js-token-'));
  const key = path.join(temp, 'keys', 'token.key');
  let bridge: LineProcess;
  let url = '';
  const mint = (agent: string, keyFile = key, publish: string[] = [], subscribe: string[] = []): string =>
    execFileSync(
      LOOM,
      [
        'token',
        'create',
        '--agent',
        agent,
        '--token-key',
        keyFile,
        '--expires',
        '1h',
        ...publish.flatMap((p) => ['--allow-publish', p]),
        ...subscribe.flatMap((p) => ['--allow-subscribe', p]),
      ],
      { timeout: 120_000 },
    )
      .toString()
      .trim();

  before(async () => {
    bridge = new LineProcess(LOOM, [
      'up',
      '--grpc-port',
      '0',
      '--http-port',
      '0',
      '--auth',
      'required',
      '--token-key',
      key,
    ]);
    const line = await bridge.nextLine(
      (l) => /^listening grpc=(http:\/\/\S+)/.test(l),
      120_000,
      'the ready line',
    );
    url = (/^listening grpc=(http:\/\/\S+)/.exec(line) as RegExpExecArray)[1] as string;
  });

  after(async () => {
    await bridge.stop();
  });

  test('grpc-js with a token connects; missing, forged and mismatched tokens are refused saying why', async () => {
    const token = mint('js-tok', key, ['jstok.>'], ['jstok.>']);
    const conn = await within(
      connect(url, { agentId: 'js-tok', token, logLevel: 'silent' }),
      60_000,
      'connect',
    );
    try {
      const sub = await conn.subscribe('jstok.>');
      await conn.emit('jstok.hello', {});
      const next = await within(sub.next(), 30_000, 'the event');
      assert.equal(next.done, false);
      assert.equal(next.value?.topic, 'jstok.hello');
    } finally {
      await conn.close();
    }

    // No credential, and a forged one: UNAUTHENTICATED as its own typed error (not SESSION_NOT_FOUND).
    await assert.rejects(
      connect(url, { agentId: 'js-tok', logLevel: 'silent', connectTimeoutMs: 5000 }),
      (e: LoomError) =>
        e instanceof UnauthenticatedError &&
        e.code === 'UNAUTHENTICATED' &&
        e.name === 'UnauthenticatedError' &&
        !e.retryable &&
        /LOOM_TOKEN/.test(e.message),
    );
    await assert.rejects(
      connect(url, {
        agentId: 'js-tok',
        token: mint('js-tok', path.join(temp, 'other.key')),
        logLevel: 'silent',
        connectTimeoutMs: 5000,
      }),
      (e: LoomError) => e instanceof UnauthenticatedError && /signature does not match/.test(e.message),
    );
    await assert.rejects(
      connect(url, { agentId: 'someone-else', token, logLevel: 'silent', connectTimeoutMs: 5000 }),
      (e: LoomError) =>
        e.code === 'PERMISSION_DENIED' && /may register agent id 'js-tok' only/.test(e.message),
    );
  });

  test("the token's allow lists permit publish and subscribe and refuse the rest with PERMISSION_DENIED", async () => {
    const conn = await within(
      connect(url, {
        agentId: 'js-perm',
        token: mint('js-perm', key, ['jsperm.>'], ['jsperm.>']),
        logLevel: 'silent',
      }),
      60_000,
      'connect',
    );
    const watcher = await within(
      connect(url, {
        agentId: 'js-watch',
        token: mint('js-watch', key, [], ['jsother.>']),
        logLevel: 'silent',
      }),
      60_000,
      'connect',
    );
    try {
      const sub = await conn.subscribe('jsperm.>');
      const watched = await watcher.subscribe('jsother.>');
      await assert.rejects(
        conn.subscribe('jsother.>'),
        (e: LoomError) =>
          e.code === 'PERMISSION_DENIED' &&
          /Identity 'js-perm' may not subscribe to 'jsother.>': no rule allows it/.test(e.message),
      );
      await conn.emit('jsperm.ok', { n: 1 });
      const next = await within(sub.next(), 30_000, 'the allowed event');
      assert.equal(next.done, false);
      assert.equal(next.value?.topic, 'jsperm.ok');
      await conn.emit('jsother.x', { n: 2 });
      const deadline = Date.now() + 30_000;
      while (conn.stats.publishErrors < 1) {
        assert.ok(Date.now() < deadline, 'the refused publish was never reported');
        await new Promise((r) => setTimeout(r, 50));
      }
      const nothing = await Promise.race([
        watched.next().then(() => 'delivered'),
        new Promise((r) => setTimeout(() => r('nothing'), 300)),
      ]);
      assert.equal(nothing, 'nothing');
    } finally {
      await conn.close();
      await watcher.close();
    }
  });
});

describe('limits per identity', () => {
  const temp = mkdtempSync(path.join(tmpdir(), 'loom-js-limits-'));
  const key = path.join(temp, 'keys', 'token.key');
  const audit = path.join(temp, 'audit', 'audit.log');
  let bridge: LineProcess;
  let url = '';

  before(async () => {
    const config = path.join(temp, 'loom.yaml');
    writeFileSync(
      config,
      [
        'name: limits',
        'permissions:',
        '  js-rate:',
        "    allow: { publish: ['jsrate.>'], subscribe: ['jsrate.>'], call: ['*'] }",
        '    limits: { publishes_per_second: 1, publish_burst: 3, calls_per_second: 1, call_burst: 1 }',
        '',
      ].join('\n'),
    );
    bridge = new LineProcess(LOOM, [
      'up',
      '--grpc-port',
      '0',
      '--http-port',
      '0',
      '--auth',
      'required',
      '--token-key',
      key,
      '--audit-log',
      audit,
      '--config',
      config,
    ]);
    const line = await bridge.nextLine(
      (l) => /^listening grpc=(http:\/\/\S+)/.test(l),
      120_000,
      'the ready line',
    );
    url = (/^listening grpc=(http:\/\/\S+)/.exec(line) as RegExpExecArray)[1] as string;
  });

  after(async () => {
    await bridge.stop();
  });

  test('publishes and calls over the rate are refused with RESOURCE_EXHAUSTED naming the limit, and audited', async () => {
    const token = execFileSync(
      LOOM,
      ['token', 'create', '--agent', 'js-rate', '--token-key', key, '--expires', '1h'],
      { timeout: 120_000 },
    )
      .toString()
      .trim();
    const conn = await within(
      connect(url, { agentId: 'js-rate', token, logLevel: 'silent' }),
      60_000,
      'connect',
    );
    try {
      // 10 publishes at once: the bucket holds 3 and refills 1 per second; the refused ones are reported, not delivered.
      const sub = await conn.subscribe('jsrate.>');
      for (let i = 0; i < 10; i++) {
        await conn.emit('jsrate.n', { i });
      }
      const deadline = Date.now() + 60_000;
      while (conn.stats.publishErrors < 6) {
        assert.ok(Date.now() < deadline, `only ${conn.stats.publishErrors} publishes were refused`);
        await new Promise((r) => setTimeout(r, 50));
      }
      let delivered = 0;
      for (;;) {
        const got = await Promise.race([
          sub.next().then(() => 'event'),
          new Promise((r) => setTimeout(() => r('quiet'), 1500)),
        ]);
        if (got !== 'event') {
          break;
        }
        delivered++;
      }
      assert.ok(
        delivered >= 3 && delivered <= 10 - conn.stats.publishErrors,
        `delivered ${delivered}, refused ${conn.stats.publishErrors}`,
      );

      // Calls: the first passes the bucket (and finds no provider), the next at once is refused by the limit.
      const errors: LoomError[] = [];
      for (let i = 0; i < 3; i++) {
        try {
          await conn.invoke('nobody.here', {}, { timeoutMs: 10_000 });
        } catch (e) {
          errors.push(e as LoomError);
        }
      }
      const limited = errors.filter((e) => e.code === 'RESOURCE_EXHAUSTED');
      assert.ok(limited.length > 0, errors.map((e) => e.message).join('\n'));
      assert.match(
        limited[0]?.message ?? '',
        /Identity 'js-rate' is over its limit of 1 calls per second \(permissions\.js-rate\.limits\.calls_per_second, burst 1\)/,
      );
    } finally {
      await conn.close();
    }

    // The limit hits are JSON lines of the audit log.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const lines = existsSync(audit)
        ? readFileSync(audit, 'utf8')
            .split('\n')
            .filter((l) => l.trim())
            .map((l) => JSON.parse(l) as Record<string, string | null>)
        : [];
      const publish = lines.find((r) => r.kind === 'limit' && r.action === 'publish');
      if (publish && lines.some((r) => r.kind === 'limit' && r.action === 'call')) {
        assert.equal(publish.identity, 'js-rate');
        assert.equal(publish.resource, 'jsrate.n');
        assert.match(publish.reason ?? '', /publishes_per_second/);
        break;
      }
      assert.ok(Date.now() < deadline, 'the audit lines never appeared');
      await new Promise((r) => setTimeout(r, 100));
    }
  });
});
