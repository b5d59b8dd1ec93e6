// MCP test helpers: install the npm MCP servers of tests/Loom.Mcp.Tests/npm (the one copy the C#
// suite uses too), start a bridge (`./loom up --config loom.yaml`) that ingests
// @modelcontextprotocol/server-everything, and read GET /v1/capabilities.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { LineProcess, REPO } from './processes.js';

export const MCP_NPM_DIR = path.join(REPO, 'tests/Loom.Mcp.Tests/npm');
export const EVERYTHING = path.join(
  MCP_NPM_DIR,
  'node_modules/@modelcontextprotocol/server-everything/dist/index.js',
);

const installed = (): boolean => {
  const hidden = path.join(MCP_NPM_DIR, 'node_modules/.package-lock.json');
  return (
    existsSync(hidden) &&
    existsSync(EVERYTHING) &&
    statSync(hidden).mtimeMs >= statSync(path.join(MCP_NPM_DIR, 'package-lock.json')).mtimeMs
  );
};

/**
 * `npm ci` in tests/Loom.Mcp.Tests/npm unless node_modules is newer than the lock file, under the
 * same lock file as the C# fixture (flock(1) on `.install.lock`; .NET's FileShare.None is flock
 * too), bounded by 5 minutes. Idempotent.
 */
export function ensureMcpServers(): void {
  if (installed()) return;
  // Under the lock: check again, install, then remove the lock file while holding it (as the C#
  // fixture's DeleteOnClose does), so no stray file is left in the repository.
  const script = `cd "$1" && trap 'rm -f .install.lock' EXIT; if [ -f node_modules/.package-lock.json ] && [ -f "$2" ] && [ ! package-lock.json -nt node_modules/.package-lock.json ]; then exit 0; fi; npm ci --no-audit --no-fund --loglevel=error`;
  execFileSync(
    'flock',
    [
      '-w',
      '300',
      path.join(MCP_NPM_DIR, '.install.lock'),
      'timeout',
      '300',
      'bash',
      '-c',
      script,
      'install',
      MCP_NPM_DIR,
      EVERYTHING,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], timeout: 620_000 },
  );
  if (!installed()) throw new Error(`npm ci in ${MCP_NPM_DIR} did not install ${EVERYTHING}`);
}

const READY = /^listening grpc=(http:\/\/127\.0\.0\.1:\d+) http=(http:\/\/127\.0\.0\.1:\d+)\s*$/;

export interface CapabilityView {
  name: string;
  version: string;
  description: string;
  tags: string[];
  input_schema: Record<string, unknown>;
  output_schema: Record<string, unknown>;
  providers: { agent_id: string; healthy: boolean; calls: number }[];
}

/** A bridge started by `./loom up --grpc-port 0 --http-port 0 --config FILE` in its own process group. */
export class ConfiguredBridge {
  grpcUrl = '';
  httpUrl = '';
  readonly process: LineProcess;

  private constructor(process: LineProcess) {
    this.process = process;
  }

  /** Writes `yaml` to a temporary loom.yaml and starts a bridge with it; waits for its ready line. */
  static async start(yaml: string, timeoutMs = 120_000): Promise<ConfiguredBridge> {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'loom-sdk-js-mcp-')), 'loom.yaml');
    writeFileSync(file, yaml);
    const [launcher, ...pre] = (process.env.LOOM_BRIDGE_LAUNCHER ?? path.join(REPO, 'loom'))
      .split(' ')
      .filter(Boolean) as [string, ...string[]];
    const bridge = new ConfiguredBridge(
      new LineProcess(launcher, [...pre, 'up', '--grpc-port', '0', '--http-port', '0', '--config', file], {
        detached: true,
      }),
    );
    try {
      const m = READY.exec(
        await bridge.process.nextLine((l) => READY.test(l), timeoutMs, 'the bridge ready line'),
      ) as RegExpExecArray;
      bridge.grpcUrl = m[1] as string;
      bridge.httpUrl = m[2] as string;
    } catch (error) {
      await bridge.stop();
      throw error;
    }
    return bridge;
  }

  /** `GET /v1/capabilities`. */
  async capabilities(): Promise<CapabilityView[]> {
    const response = await fetch(`${this.httpUrl}/v1/capabilities`, { signal: AbortSignal.timeout(5000) });
    if (!response.ok) throw new Error(`GET /v1/capabilities: HTTP ${response.status}`);
    return ((await response.json()) as { capabilities: CapabilityView[] }).capabilities;
  }

  #group(signal: NodeJS.Signals): void {
    const pid = this.process.child.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, signal);
    } catch {
      /* gone */
    }
  }

  /** SIGTERM to the process group (the bridge stops its MCP servers), SIGKILL after 10 s. */
  async stop(): Promise<void> {
    const child = this.process.child;
    if (child.exitCode === null && child.signalCode === null) {
      this.#group('SIGTERM');
      const timer = setTimeout(() => this.#group('SIGKILL'), 10_000);
      await this.process.exited;
      clearTimeout(timer);
    }
    this.#group('SIGKILL'); // anything left in the group (an MCP server the bridge did not stop)
  }
}

/** A loom.yaml whose bridge ingests server-everything over stdio as `everything`. */
export function everythingConfig(): string {
  return [
    'name: sdk-js-mcp-test',
    'mcp_servers:',
    '  - name: everything',
    '    command: node',
    `    args: [${JSON.stringify(EVERYTHING)}, stdio]`,
    `    cwd: ${JSON.stringify(MCP_NPM_DIR)}`,
    '',
  ].join('\n');
}
