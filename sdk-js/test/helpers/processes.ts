// Test helpers: start a real bridge (`./loom up`), spawn agent processes (Node or .NET) and talk to
// them line by line, poll conditions with deadlines. Reusable by cross-language suites.
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** The sdk-js folder (tests run from build/test/..., sources from test/...). */
export const SDK_ROOT = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return dir;
})();
export const REPO = path.resolve(SDK_ROOT, '..');
export const TEST_AGENT_DLL = path.join(REPO, 'tests/Loom.TestAgent/bin/Release/net10.0/Loom.TestAgent.dll');
/** The Node fixture agent (compiled). */
export const NODE_AGENT = path.join(SDK_ROOT, 'build/test/fixtures/agent.js');

const READY = /^listening grpc=(http:\/\/127\.0\.0\.1:(\d+)) http=(http:\/\/127\.0\.0\.1:(\d+))\s*$/;

/** Polls `condition` until it returns a truthy value, or fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  condition: () => T | Promise<T>,
  timeoutMs = 10_000,
  intervalMs = 25,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await condition();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline)
      throw new Error(
        `Timed out after ${timeoutMs} ms waiting for ${what}${last ? `; last error: ${last instanceof Error ? last.message : JSON.stringify(last)}` : ''}`,
      );
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Races a promise against a deadline. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const children = new Set<LineProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/** A line-oriented child process: read stdout lines with deadlines, signal it, stop it. */
export class LineProcess {
  readonly child: ChildProcess;
  readonly #lines: string[] = [];
  #waiters: (() => void)[] = [];
  #stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    command: string,
    args: readonly string[],
    options: { cwd?: string; env?: NodeJS.ProcessEnv; detached?: boolean } = {},
  ) {
    this.child = spawn(command, args, {
      cwd: options.cwd ?? REPO,
      env: options.env ?? process.env,
      detached: options.detached ?? false,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      this.#lines.push(line);
      this.#wake();
    });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      this.#stderr = (this.#stderr + chunk.toString()).slice(-8000);
    });
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code, signal) => {
        this.#wake();
        resolve({ code, signal });
      }),
    );
    children.add(this);
    void this.exited.then(() => children.delete(this));
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  get stderr(): string {
    return this.#stderr;
  }
  get lines(): readonly string[] {
    return this.#lines;
  }

  /** Waits for the next stdout line matching `test` (lines before it are consumed). */
  async nextLine(test: (line: string) => boolean, timeoutMs: number, what = 'a line'): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.#lines.length > 0) {
        const line = this.#lines.shift() as string;
        if (test(line)) return line;
      }
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(
          `process exited (${String(this.child.exitCode ?? this.child.signalCode)}) before ${what}; stderr:\n${this.#stderr}`,
        );
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} within ${timeoutMs} ms; stderr:\n${this.#stderr}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Waits for a line `ready`. */
  ready(timeoutMs = 30_000): Promise<string> {
    return this.nextLine((l) => l.trim() === 'ready', timeoutMs, "'ready'");
  }

  /** Waits for the next stdout line that parses as a JSON object. */
  async json<T = Record<string, unknown>>(timeoutMs = 30_000): Promise<T> {
    const line = await this.nextLine((l) => l.trim().startsWith('{'), timeoutMs, 'a JSON line');
    return JSON.parse(line) as T;
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    try {
      if (this.child.pid !== undefined && this.child.exitCode === null && this.child.signalCode === null)
        this.child.kill(signal);
    } catch {
      /* gone */
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when it exited. */
  async stop(graceMs = 5000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.stdin?.end();
    this.kill('SIGTERM');
    const timer = setTimeout(() => this.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

/** A bridge started by `./loom up` on random (or given) ports. */
export class Bridge {
  grpcUrl = '';
  httpUrl = '';
  grpcPort = 0;
  httpPort = 0;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #extraArgs: readonly string[] = [];
  readonly #logPath = path.join(mkdtempSync(path.join(tmpdir(), 'loom-sdk-js-')), 'bridge.log');

  /** Starts a bridge with `./loom up --grpc-port 0 --http-port 0` (or LOOM_BRIDGE_LAUNCHER). */
  static async start(extraArgs: readonly string[] = []): Promise<Bridge> {
    const bridge = new Bridge();
    bridge.#extraArgs = extraArgs;
    await bridge.#launch(0, 0);
    return bridge;
  }

  async #launch(grpcPort: number, httpPort: number): Promise<void> {
    // LOOM_BRIDGE_LAUNCHER: the command that runs the CLI, e.g. "dotnet bridge/Loom.Cli/bin/Release/net10.0/loom.dll".
    const [launcher, ...pre] = (process.env.LOOM_BRIDGE_LAUNCHER ?? path.join(REPO, 'loom'))
      .split(' ')
      .filter(Boolean) as [string, ...string[]];
    const log = createWriteStream(this.#logPath, { flags: 'a' });
    const child = spawn(
      launcher,
      [...pre, 'up', '--grpc-port', String(grpcPort), '--http-port', String(httpPort), ...this.#extraArgs],
      { cwd: REPO, detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.#child = child;
    child.stderr.pipe(log);
    this.#exited = new Promise((resolve) => child.once('exit', () => resolve()));
    process.once('exit', () => this.#killGroup('SIGKILL'));
    const line = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`bridge did not print its ready line within 120 s; log: ${this.#logTail()}`)),
        120_000,
      );
      const rl = createInterface({ input: child.stdout });
      rl.on('line', (l) => {
        if (READY.test(l)) {
          clearTimeout(timer);
          resolve(l);
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`bridge exited with ${String(code)} before it was ready; log: ${this.#logTail()}`));
      });
    });
    const m = READY.exec(line) as RegExpExecArray;
    this.grpcUrl = m[1] as string;
    this.grpcPort = Number(m[2]);
    this.httpUrl = m[3] as string;
    this.httpPort = Number(m[4]);
  }

  #logTail(): string {
    try {
      return readFileSync(this.#logPath, 'utf8').split('\n').slice(-40).join('\n');
    } catch {
      return '';
    }
  }

  #killGroup(signal: NodeJS.Signals): void {
    const pid = this.#child?.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, signal);
    } catch {
      /* gone */
    }
  }

  /** Sends a signal to the bridge's process group (e.g. SIGSTOP/SIGCONT to freeze it). */
  signal(signal: NodeJS.Signals): void {
    this.#killGroup(signal);
  }

  /** Stops the bridge (SIGTERM, SIGKILL after 10 s). */
  async stop(): Promise<void> {
    if (!this.#child || this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    this.#killGroup('SIGTERM');
    const timer = setTimeout(() => this.#killGroup('SIGKILL'), 10_000);
    await this.#exited;
    clearTimeout(timer);
  }

  /** Stops the bridge (or kills it: `kill -9`, nothing flushed) and starts a new one on the same ports. */
  async restart(how: 'stop' | 'kill' = 'stop'): Promise<void> {
    if (how === 'kill') {
      this.#killGroup('SIGKILL');
      await this.#exited;
    } else {
      await this.stop();
    }
    const deadline = Date.now() + 20_000;
    for (;;) {
      try {
        await this.#launch(this.grpcPort, this.httpPort);
        return;
      } catch (error) {
        if (Date.now() > deadline) throw error; // the port may still be in TIME_WAIT/closing
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  /** `GET /v1/agents` of the bridge's HTTP port. */
  async agents(): Promise<
    { agent_id: string; session_id: string; state: string; topics: string[]; capabilities: string[] }[]
  > {
    const response = await fetch(`${this.httpUrl}/v1/agents`, { signal: AbortSignal.timeout(5000) });
    if (!response.ok) throw new Error(`GET /v1/agents: HTTP ${response.status}`);
    const body = (await response.json()) as { agents: never[] };
    return body.agents;
  }
}

/** Spawns the .NET test agent (tests/Loom.TestAgent) with a command and arguments. */
export function dotnetAgent(args: readonly string[]): LineProcess {
  return new LineProcess('dotnet', [TEST_AGENT_DLL, ...args], {
    env: { ...process.env, DOTNET_NOLOGO: '1', DOTNET_CLI_TELEMETRY_OPTOUT: '1' },
  });
}

/** Spawns the Node fixture agent (test/fixtures/agent.ts, compiled) with arguments. */
export function nodeAgent(args: readonly string[], env: NodeJS.ProcessEnv = {}): LineProcess {
  return new LineProcess(process.execPath, [NODE_AGENT, ...args], { env: { ...process.env, ...env } });
}

export const hasDotnetAgent = (): boolean => existsSync(TEST_AGENT_DLL);
