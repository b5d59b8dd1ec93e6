// Helpers for the Node interop suite: start the bridge, load the protos with proto-loader,
// register agents and drive an EventStream. Official client only (@grpc/grpc-js); no Loom SDK.
//
// Environment:
//   LOOM_BRIDGE_CMD        command that starts the bridge (run by /bin/sh from the repo root);
//                          default: <repo>/loom up --grpc-port 0 --http-port 0
//   LOOM_BRIDGE_GRPC_ADDR  host:port of a bridge that is already running: start none
//   LOOM_BRIDGE_HTTP_ADDR  host:port of that bridge's HTTP/1.1 port (for /healthz), optional
//   LOOM_BRIDGE_START_TIMEOUT_S  how long to wait for the ready line (default 120: first build)

import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createWriteStream, existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

export { grpc };

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
export const SESSION_HEADER = 'loom-session-id';
export const ERROR_CODE_TRAILER = 'loom-error-code';
const READY_LINE = /^listening grpc=http:\/\/(127\.0\.0\.1:\d+) http=http:\/\/(127\.0\.0\.1:\d+)\s*$/;

// High on purpose: the oversized-message test must reach the bridge, not be stopped here.
export const CHANNEL_OPTIONS = {
  'grpc.max_send_message_length': 64 * 1024 * 1024,
  'grpc.max_receive_message_length': 64 * 1024 * 1024,
  'grpc.enable_http_proxy': 0,
};

export const uid = () => randomUUID().replaceAll('-', '').slice(0, 12);

export function loadProtos() {
  const definition = protoLoader.loadSync(['loom/v1/bridge.proto', 'grpc/health/v1/health.proto'], {
    includeDirs: [path.join(REPO, 'proto')],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition);
}

const shellQuote = (s) => `'${s.replaceAll("'", "'\\''")}'`;

// Starts the bridge (or takes the one named by LOOM_BRIDGE_GRPC_ADDR).
// Resolves to { grpc: 'host:port', http: 'host:port' | undefined, stop(): Promise<void> }.
export async function startBridge() {
  if (process.env.LOOM_BRIDGE_GRPC_ADDR) {
    return { grpc: process.env.LOOM_BRIDGE_GRPC_ADDR, http: process.env.LOOM_BRIDGE_HTTP_ADDR, stop: async () => {} };
  }
  let cmd = process.env.LOOM_BRIDGE_CMD;
  if (!cmd) {
    const launcher = path.join(REPO, 'loom');
    if (!existsSync(launcher)) throw new Error(`${launcher} does not exist; set LOOM_BRIDGE_CMD or LOOM_BRIDGE_GRPC_ADDR`);
    cmd = `${shellQuote(launcher)} up --grpc-port 0 --http-port 0`;
  }
  const timeoutMs = Number(process.env.LOOM_BRIDGE_START_TIMEOUT_S ?? '120') * 1000;
  const logPath = path.join(mkdtempSync(path.join(tmpdir(), 'loom-interop-node-')), 'bridge.stderr.log');
  const log = createWriteStream(logPath);
  // detached: its own process group, so teardown kills the build and the server with it.
  const child = spawn('/bin/sh', ['-c', cmd], { cwd: REPO, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr.pipe(log);
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const killGroup = (sig) => {
    try { process.kill(-child.pid, sig); } catch { /* already gone */ }
  };
  const onExit = () => killGroup('SIGKILL');
  process.once('exit', onExit);

  const logTail = () => {
    try { return readFileSync(logPath, 'utf8').split('\n').slice(-60).join('\n'); } catch { return ''; }
  };
  const stop = async () => {
    killGroup('SIGTERM');
    let timer;
    const stopped = await Promise.race([exited.then(() => true), new Promise((r) => { timer = setTimeout(r, 15000, false); })]);
    clearTimeout(timer);
    if (!stopped) process.stderr.write('loom bridge did not stop within 15s of SIGTERM; killing\n');
    killGroup('SIGKILL');
    process.removeListener('exit', onExit);
    log.end();
  };

  const otherLines = [];
  const lines = createInterface({ input: child.stdout });
  try {
    const addrs = await new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`bridge printed no ready line within ${timeoutMs / 1000}s (stdout: ${JSON.stringify(otherLines)})`)),
        timeoutMs,
      );
      lines.on('line', (line) => {
        const m = READY_LINE.exec(line);
        if (m) { clearTimeout(timer); resolve({ grpc: m[1], http: m[2] }); } else otherLines.push(line);
      });
      exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`bridge exited (code ${code}, signal ${signal}) before it was ready (stdout: ${JSON.stringify(otherLines)})`));
      });
    });
    // Keep draining stdout so the bridge never blocks on a full pipe (readline keeps reading).
    return { ...addrs, stop };
  } catch (err) {
    await stop();
    throw new Error(`could not start the bridge with \`${cmd}\`: ${err.message}\nstderr tail:\n${logTail()}`);
  }
}

export function unary(client, method, request, options = {}) {
  return new Promise((resolve, reject) => {
    client[method](request, options.metadata ?? new grpc.Metadata(), { deadline: Date.now() + (options.timeoutMs ?? 10000) }, (err, resp) =>
      err ? reject(err) : resolve(resp));
  });
}

// Awaits a promise that must reject with a gRPC error and returns that error.
export async function grpcError(promise) {
  try {
    const value = await promise;
    throw new Error(`expected a gRPC error, got success: ${JSON.stringify(value)?.slice(0, 200)}`);
  } catch (err) {
    if (err?.code === undefined) throw err;
    return err;
  }
}

export const describe = (err) => (err ? `${grpc.status[err.code] ?? err.code} ${JSON.stringify(err.details)} metadata=${JSON.stringify(err.metadata?.getMap?.() ?? {})}` : 'status OK');

export function register(client, { agentId, subscriptions = [], capabilities = [], metadata = {}, timeoutMs = 10000 } = {}) {
  return unary(client, 'RegisterAgent', {
    agent_id: agentId ?? `interop-node-${uid()}`,
    name: 'node interop test',
    sdk: 'interop-node/grpc-js',
    subscriptions,
    capabilities,
    metadata,
  }, { timeoutMs });
}

// One EventStream call. Every ServerMessage is queued as { kind, msg }; server heartbeats are
// answered with a client heartbeat. next() waits with a deadline and leaves non-matching
// messages queued for later calls.
export class AgentStream {
  constructor(client, sessionId, { timeoutMs = 60000 } = {}) {
    const md = new grpc.Metadata();
    md.set(SESSION_HEADER, sessionId);
    this.call = client.EventStream(md, { deadline: Date.now() + timeoutMs });
    this.backlog = [];
    this.waiters = [];
    this.errors = [];
    this.status = undefined; // gRPC error when the call ended with a non-OK status
    this.ended = false;
    this.heartbeatSeq = 0;
    this.endWaiters = [];
    this.call.on('data', (frame) => {
      for (const m of frame.messages) {
        if (m.kind === 'heartbeat') {
          this.send({ heartbeat: { sequence: String(++this.heartbeatSeq), sent_unix_ms: String(Date.now()) } });
          continue;
        }
        const item = { kind: m.kind, msg: m[m.kind] };
        if (m.kind === 'error') this.errors.push(item.msg);
        this.#offer(item);
      }
    });
    this.call.on('error', (err) => { this.status = err; this.#end(); });
    this.call.on('status', () => this.#end());
    this.call.on('end', () => this.#end());
  }

  #offer(item) {
    const i = this.waiters.findIndex((w) => w.match(item));
    if (i >= 0) { const [w] = this.waiters.splice(i, 1); w.resolve(item); } else this.backlog.push(item);
  }

  #end() {
    if (this.ended) return;
    this.ended = true;
    for (const w of this.waiters.splice(0)) w.reject(new Error(`EventStream ended (${describe(this.status)}) while waiting for ${w.what}; ErrorReplies: ${JSON.stringify(this.errors.slice(0, 5))}`));
    for (const r of this.endWaiters.splice(0)) r(this.status);
  }

  // Writes one ClientFrame; resolves when the stream can take more (backpressure).
  send(...messages) {
    if (this.ended) return Promise.resolve();
    const ok = this.call.write({ messages });
    return ok ? Promise.resolve() : new Promise((r) => this.call.once('drain', r));
  }

  // Resolves to the first { kind, msg } with kind in kinds and pred(msg) true.
  nextOf(kinds, pred = () => true, { timeoutMs = 5000, what } = {}) {
    what ??= kinds.join('|');
    const match = (item) => kinds.includes(item.kind) && pred(item.msg, item.kind);
    const i = this.backlog.findIndex(match);
    if (i >= 0) return Promise.resolve(this.backlog.splice(i, 1)[0]);
    if (this.ended) return Promise.reject(new Error(`EventStream ended (${describe(this.status)}) while waiting for ${what}`));
    return new Promise((resolve, reject) => {
      const waiter = { match, what };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; unmatched: ${JSON.stringify(this.backlog.slice(0, 20).map((b) => b.kind))}; ErrorReplies: ${JSON.stringify(this.errors.slice(0, 5))}`));
      }, timeoutMs);
      waiter.resolve = (item) => { clearTimeout(timer); resolve(item); };
      waiter.reject = (err) => { clearTimeout(timer); reject(err); };
      this.waiters.push(waiter);
    });
  }

  async next(kind, pred = () => true, options = {}) {
    return (await this.nextOf([kind], pred, { what: kind, ...options })).msg;
  }

  // Subscribes over the stream and waits for the Ack; also proves the stream is attached.
  async subscribe(pattern, fields = {}, timeoutMs = 5000) {
    const cid = `sub-${uid()}`;
    await this.send({ subscribe: { correlation_id: cid, subscription: { pattern, ...fields } } });
    const { kind, msg } = await this.nextOf(['ack', 'error'], (m) => m.correlation_id === cid, { timeoutMs, what: `Ack for subscribe correlation_id=${cid}` });
    if (kind !== 'ack') throw new Error(`subscribe ${pattern} failed: ${JSON.stringify(msg)}`);
    return msg;
  }

  waitEnd(timeoutMs) {
    if (this.ended) return Promise.resolve(this.status);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`EventStream did not end within ${timeoutMs} ms`)), timeoutMs);
      this.endWaiters.push((s) => { clearTimeout(timer); resolve(s); });
    });
  }

  close() {
    if (!this.ended) this.call.cancel();
  }
}
