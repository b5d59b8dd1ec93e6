/**
 * Connection options, their defaults and the `LOOM_*` environment variables that set them.
 * @module
 */
import { InvalidParamsError } from './errors.js';

/** Where the SDK writes diagnostics. Any `console`-like object works. */
export interface Logger {
  debug(message: string, ...details: unknown[]): void;
  info(message: string, ...details: unknown[]): void;
  warn(message: string, ...details: unknown[]): void;
  error(message: string, ...details: unknown[]): void;
}

/** Log levels, least to most severe; `silent` logs nothing. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

/**
 * Settings of a connection (and of each agent started by `run`/`startAgent`). Every value has a
 * working default and can also be set by the environment variable `LOOM_<FIELD>` (the same names
 * as the Python SDK: `LOOM_URL`, `LOOM_AGENT_ID`, `LOOM_HEARTBEAT_MS`, ...); an explicit option
 * wins over the environment, which wins over the default. Durations are milliseconds.
 */
export interface ConnectOptions {
  /**
   * Stable agent id, kept across reconnects (`[A-Za-z0-9_.:-]{1,128}`). Env `LOOM_AGENT_ID`
   * (ignored by `run` with several agents).
   * @default `<name>-<8 hex>`, fixed for the life of the connection
   */
  agentId?: string;
  /**
   * Display name (and the stem of a generated agent id). Env `LOOM_NAME`.
   * @default "js-agent" (an agent's own name under `run`/`startAgent`)
   */
  name?: string;
  /** Namespace of the agent: its default memory namespace. Env `LOOM_NAMESPACE`. @default "" (the bridge uses "default") */
  namespace?: string;
  /** Free key/values shown in the bridge's directories. Env `LOOM_METADATA` (`k=v,k2=v2`). @default {} */
  metadata?: Record<string, string>;
  /** Heartbeat interval asked of the bridge, which clamps it to [100, 60000]. Env `LOOM_HEARTBEAT_MS`. @default 0 (the bridge's, 5000) */
  heartbeatMs?: number;
  /** Bound of RegisterAgent and of opening the stream, per attempt. Env `LOOM_CONNECT_TIMEOUT_MS`. @default 10000 */
  connectTimeoutMs?: number;
  /** First reconnect delay; doubles per failed attempt. Env `LOOM_RECONNECT_INITIAL_MS`. @default 100 */
  reconnectInitialMs?: number;
  /** Largest reconnect delay. Env `LOOM_RECONNECT_MAX_MS`. @default 5000 */
  reconnectMaxMs?: number;
  /** Random spread of each reconnect delay, as a fraction of it (0.2 = ±20 %). Env `LOOM_RECONNECT_JITTER`. @default 0.2 */
  reconnectJitter?: number;
  /**
   * After a reconnect to a bridge that restarted (it no longer knew this agent), how long to hold
   * what was queued during the outage, so other agents subscribe again before it is sent (on the
   * ephemeral bus an event nobody is subscribed to is gone). -1: automatic, the longest a peer with
   * the same reconnect settings can still be waiting to retry (twice the outage plus the first
   * delay, at most `reconnectMaxMs`, plus the jitter); 0: no hold. Env `LOOM_RESTART_SETTLE_MS`. @default -1
   */
  restartSettleMs?: number;
  /** Timeout of `invoke`/`tool` when the call names none. Env `LOOM_CALL_TIMEOUT_MS`. @default 30000 */
  callTimeoutMs?: number;
  /**
   * Timeout of `request`/`requestMany` when none is given, and bound of subscribe/unsubscribe acks
   * and memory answers. Env `LOOM_REQUEST_TIMEOUT_MS`. @default 10000
   */
  requestTimeoutMs?: number;
  /** Capacity of the outbound queue shared by everything sent; when full, `emit` waits (backpressure). At least 16. Env `LOOM_OUTBOUND_QUEUE_CAPACITY`. @default 8192 */
  outboundQueueCapacity?: number;
  /** Most messages in one outbound frame; also capped by the bridge's `max_batch_messages`. Env `LOOM_MAX_FRAME_MESSAGES`. @default 1024 */
  maxFrameMessages?: number;
  /** Byte budget of one outbound frame; also capped below the bridge's `max_message_bytes`. At least 1024. Env `LOOM_MAX_FRAME_BYTES`. @default 1048576 */
  maxFrameBytes?: number;
  /**
   * Capacity of each subscription's local queue between the stream reader and the consumer.
   * When full, the subscription's policy applies: realtime drops the oldest, normal the newest
   * (counted, logged once per episode), batch pauses the reader. Env `LOOM_DELIVERY_QUEUE_CAPACITY`. @default 8192
   */
  deliveryQueueCapacity?: number;
  /** Bound of `drain()`/`close()`: finishing calls, flushing queued messages, closing the stream. Env `LOOM_DRAIN_TIMEOUT_MS`. @default 5000 */
  drainTimeoutMs?: number;
  /** Value of the registration's `sdk` field. Env `LOOM_SDK`. @default "loom-js/0.1.0" */
  sdk?: string;
  /** Diagnostics sink. @default console, filtered by `logLevel` */
  logger?: Logger;
  /** Least severe level logged by the default logger. Env `LOOM_LOG_LEVEL`. @default "warn" */
  logLevel?: LogLevel;
  /** Extra @grpc/grpc-js channel options (merged over the SDK's). @default {} */
  channelOptions?: Record<string, string | number>;
  /**
   * CA bundle (PEM file) the bridge's certificate must chain to; also turns TLS on for an `http://` URL.
   * Env `LOOM_TLS_CA`. @default "" (an `https://` URL is checked against Node's default roots)
   */
  tlsCa?: string;
  /** Client certificate (PEM file) for a bridge that asks for one (mutual TLS). Needs `tlsKey`. Env `LOOM_TLS_CERT`. @default "" */
  tlsCert?: string;
  /** The private key (PEM file) of `tlsCert`. Env `LOOM_TLS_KEY`. @default "" */
  tlsKey?: string;
  /** Bearer token (`loom token create`) sent with every call; only over TLS or to a loopback address. Env `LOOM_TOKEN`. @default "" */
  token?: string;
}

/** Options with every default applied. */
export type ResolvedOptions = Required<Omit<ConnectOptions, 'agentId' | 'logger' | 'logLevel'>> & {
  agentId: string | undefined;
  logger: Logger;
};

/** The default bridge address. Env `LOOM_URL`. */
export const DEFAULT_URL = 'http://127.0.0.1:7070';

/** Every environment variable the SDK reads, mapped to its option. */
export const ENVIRONMENT_VARIABLES = {
  LOOM_URL: 'url',
  LOOM_AGENT_ID: 'agentId',
  LOOM_NAME: 'name',
  LOOM_NAMESPACE: 'namespace',
  LOOM_METADATA: 'metadata',
  LOOM_HEARTBEAT_MS: 'heartbeatMs',
  LOOM_CONNECT_TIMEOUT_MS: 'connectTimeoutMs',
  LOOM_RECONNECT_INITIAL_MS: 'reconnectInitialMs',
  LOOM_RECONNECT_MAX_MS: 'reconnectMaxMs',
  LOOM_RECONNECT_JITTER: 'reconnectJitter',
  LOOM_RESTART_SETTLE_MS: 'restartSettleMs',
  LOOM_CALL_TIMEOUT_MS: 'callTimeoutMs',
  LOOM_REQUEST_TIMEOUT_MS: 'requestTimeoutMs',
  LOOM_OUTBOUND_QUEUE_CAPACITY: 'outboundQueueCapacity',
  LOOM_MAX_FRAME_MESSAGES: 'maxFrameMessages',
  LOOM_MAX_FRAME_BYTES: 'maxFrameBytes',
  LOOM_DELIVERY_QUEUE_CAPACITY: 'deliveryQueueCapacity',
  LOOM_DRAIN_TIMEOUT_MS: 'drainTimeoutMs',
  LOOM_SDK: 'sdk',
  LOOM_LOG_LEVEL: 'logLevel',
  LOOM_TLS_CA: 'tlsCa',
  LOOM_TLS_CERT: 'tlsCert',
  LOOM_TLS_KEY: 'tlsKey',
  LOOM_TOKEN: 'token',
} as const;

const LEVELS: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3, silent: 4 };

/** A console logger that drops messages below `level`. */
export function consoleLogger(level: LogLevel = 'warn'): Logger {
  const min = LEVELS[level];
  const noop = (): void => undefined;
  return {
    debug: min <= 0 ? console.debug.bind(console, '[loom]') : noop,
    info: min <= 1 ? console.info.bind(console, '[loom]') : noop,
    warn: min <= 2 ? console.warn.bind(console, '[loom]') : noop,
    error: min <= 3 ? console.error.bind(console, '[loom]') : noop,
  };
}

type EnvName = keyof typeof ENVIRONMENT_VARIABLES;

function envNumber(env: NodeJS.ProcessEnv, name: EnvName): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) {
    throw new InvalidParamsError(`Environment variable ${name}='${raw}' is not a non-negative number.`, {
      path: `/env/${name}`,
    });
  }
  return value;
}

function envString(env: NodeJS.ProcessEnv, name: EnvName): string | undefined {
  const raw = env[name];
  return raw === undefined || raw.trim() === '' ? undefined : raw.trim();
}

function envMetadata(env: NodeJS.ProcessEnv): Record<string, string> | undefined {
  const raw = envString(env, 'LOOM_METADATA');
  if (raw === undefined) return undefined;
  const out: Record<string, string> = {};
  for (const pair of raw.split(',')) {
    const i = pair.indexOf('=');
    if (i <= 0)
      throw new InvalidParamsError(`LOOM_METADATA='${raw}' is not of the form key=value,key2=value2.`, {
        path: '/env/LOOM_METADATA',
      });
    out[pair.slice(0, i).trim()] = pair.slice(i + 1).trim();
  }
  return out;
}

/**
 * A numeric option checked against its bounds (the same in every SDK: tests/vectors/options.json);
 * out of bounds is INVALID_PARAMS naming the option.
 */
function bounded(
  name: string,
  value: number,
  least: number,
  most = Number.POSITIVE_INFINITY,
  integer = true,
): number {
  if (
    typeof value !== 'number' ||
    !Number.isFinite(value) ||
    (integer && !Number.isInteger(value)) ||
    value < least ||
    value > most
  ) {
    const range = most === Number.POSITIVE_INFINITY ? `at least ${least}` : `from ${least} to ${most}`;
    throw new InvalidParamsError(
      `The option ${name} is ${String(value)}; use ${integer ? 'an integer' : 'a number'} ${range}.`,
      { path: `/${name}` },
    );
  }
  return value;
}

function envSettle(env: NodeJS.ProcessEnv): number | undefined {
  const raw = envString(env, 'LOOM_RESTART_SETTLE_MS');
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (!Number.isFinite(value)) {
    throw new InvalidParamsError(
      `Environment variable LOOM_RESTART_SETTLE_MS='${raw}' is not a number; use -1 (automatic), 0 (no hold) or a number of ms.`,
      { path: '/env/LOOM_RESTART_SETTLE_MS' },
    );
  }
  return value;
}

function settle(value: number | undefined): number {
  if (value === undefined) return -1;
  if (!Number.isFinite(value) || value < -1) {
    throw new InvalidParamsError(
      `restartSettleMs must be -1 (automatic), 0 (no hold) or a positive number of ms; got ${String(value)}.`,
      { path: '/restartSettleMs' },
    );
  }
  return value;
}

/** The bridge URL: the argument, else `LOOM_URL`, else {@link DEFAULT_URL}. */
export function resolveUrl(url: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return url ?? envString(env, 'LOOM_URL') ?? DEFAULT_URL;
}

/** Applies the environment and the defaults to `options`. */
export function resolveOptions(
  options: ConnectOptions = {},
  env: NodeJS.ProcessEnv = process.env,
): ResolvedOptions {
  const level = options.logLevel ?? (envString(env, 'LOOM_LOG_LEVEL') as LogLevel | undefined) ?? 'warn';
  if (!(level in LEVELS))
    throw new InvalidParamsError(`Log level '${level}' is unknown; use debug, info, warn, error or silent.`, {
      path: '/logLevel',
    });
  return {
    agentId: options.agentId ?? envString(env, 'LOOM_AGENT_ID'),
    name: options.name ?? envString(env, 'LOOM_NAME') ?? 'js-agent',
    namespace: options.namespace ?? envString(env, 'LOOM_NAMESPACE') ?? '',
    metadata: options.metadata ?? envMetadata(env) ?? {},
    heartbeatMs: bounded('heartbeatMs', options.heartbeatMs ?? envNumber(env, 'LOOM_HEARTBEAT_MS') ?? 0, 0),
    connectTimeoutMs: bounded(
      'connectTimeoutMs',
      options.connectTimeoutMs ?? envNumber(env, 'LOOM_CONNECT_TIMEOUT_MS') ?? 10_000,
      0,
    ),
    reconnectInitialMs: bounded(
      'reconnectInitialMs',
      options.reconnectInitialMs ?? envNumber(env, 'LOOM_RECONNECT_INITIAL_MS') ?? 100,
      0,
    ),
    reconnectMaxMs: bounded(
      'reconnectMaxMs',
      options.reconnectMaxMs ?? envNumber(env, 'LOOM_RECONNECT_MAX_MS') ?? 5_000,
      0,
    ),
    reconnectJitter: bounded(
      'reconnectJitter',
      options.reconnectJitter ?? envNumber(env, 'LOOM_RECONNECT_JITTER') ?? 0.2,
      0,
      1,
      false,
    ),
    restartSettleMs: settle(options.restartSettleMs ?? envSettle(env)),
    callTimeoutMs: bounded(
      'callTimeoutMs',
      options.callTimeoutMs ?? envNumber(env, 'LOOM_CALL_TIMEOUT_MS') ?? 30_000,
      0,
    ),
    requestTimeoutMs: bounded(
      'requestTimeoutMs',
      options.requestTimeoutMs ?? envNumber(env, 'LOOM_REQUEST_TIMEOUT_MS') ?? 10_000,
      0,
    ),
    outboundQueueCapacity: bounded(
      'outboundQueueCapacity',
      options.outboundQueueCapacity ?? envNumber(env, 'LOOM_OUTBOUND_QUEUE_CAPACITY') ?? 8192,
      16,
    ),
    maxFrameMessages: bounded(
      'maxFrameMessages',
      options.maxFrameMessages ?? envNumber(env, 'LOOM_MAX_FRAME_MESSAGES') ?? 1024,
      1,
    ),
    maxFrameBytes: bounded(
      'maxFrameBytes',
      options.maxFrameBytes ?? envNumber(env, 'LOOM_MAX_FRAME_BYTES') ?? 1024 * 1024,
      1024,
    ),
    deliveryQueueCapacity: bounded(
      'deliveryQueueCapacity',
      options.deliveryQueueCapacity ?? envNumber(env, 'LOOM_DELIVERY_QUEUE_CAPACITY') ?? 8192,
      1,
    ),
    drainTimeoutMs: bounded(
      'drainTimeoutMs',
      options.drainTimeoutMs ?? envNumber(env, 'LOOM_DRAIN_TIMEOUT_MS') ?? 5_000,
      0,
    ),
    sdk: options.sdk ?? envString(env, 'LOOM_SDK') ?? 'loom-js/0.1.0',
    logger: options.logger ?? consoleLogger(level),
    channelOptions: options.channelOptions ?? {},
    tlsCa: options.tlsCa ?? envString(env, 'LOOM_TLS_CA') ?? '',
    tlsCert: options.tlsCert ?? envString(env, 'LOOM_TLS_CERT') ?? '',
    tlsKey: options.tlsKey ?? envString(env, 'LOOM_TLS_KEY') ?? '',
    token: options.token ?? envString(env, 'LOOM_TOKEN') ?? '',
  };
}
