/**
 * Loom's error taxonomy (docs/protocol.md §11) as typed JavaScript errors. Every error the SDK
 * throws or rejects with is a {@link LoomError} with a `name`, a `code` and, when it wraps
 * another failure, a `cause`.
 * @module
 */

/** The codes of `loom.v1.ErrorCode`, without their `ERROR_CODE_` prefix. */
export type ErrorCode =
  | 'UNSPECIFIED'
  | 'INVALID_PARAMS'
  | 'TIMEOUT'
  | 'CAPABILITY_NOT_FOUND'
  | 'PROVIDER_UNAVAILABLE'
  | 'TOOL_ERROR'
  | 'PERMISSION_DENIED'
  | 'RESOURCE_EXHAUSTED'
  | 'TTL_EXPIRED'
  | 'HOP_LIMIT_EXCEEDED'
  | 'SESSION_NOT_FOUND'
  | 'CANCELLED'
  | 'UNAVAILABLE'
  | 'INTERNAL'
  | 'UNAUTHENTICATED'
  | 'BUDGET_EXCEEDED';

/** Error codes in proto enum order (index = wire number). */
export const ERROR_CODES: readonly ErrorCode[] = [
  'UNSPECIFIED',
  'INVALID_PARAMS',
  'TIMEOUT',
  'CAPABILITY_NOT_FOUND',
  'PROVIDER_UNAVAILABLE',
  'TOOL_ERROR',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'TTL_EXPIRED',
  'HOP_LIMIT_EXCEEDED',
  'SESSION_NOT_FOUND',
  'CANCELLED',
  'UNAVAILABLE',
  'INTERNAL',
  'UNAUTHENTICATED',
  'BUDGET_EXCEEDED',
];

/** Extra information of a {@link LoomError}. */
export interface LoomErrorOptions {
  /** JSON pointer of the failing value (INVALID_PARAMS, TOOL_ERROR from an output schema). */
  path?: string | undefined;
  /** Extra string details sent by the bridge. */
  details?: Readonly<Record<string, string>> | undefined;
  /** True when the same request may succeed later. Default: derived from the code. */
  retryable?: boolean | undefined;
  /** The underlying failure. */
  cause?: unknown;
}

const RETRYABLE = new Set<ErrorCode>([
  'TIMEOUT',
  'PROVIDER_UNAVAILABLE',
  'RESOURCE_EXHAUSTED',
  'UNAVAILABLE',
]);

/** Base class of every error of the Loom SDK. */
export class LoomError extends Error {
  /** The Loom error code. */
  readonly code: ErrorCode;
  /** JSON pointer of the failing value, when known (e.g. `/items/0/name`). */
  readonly path: string | undefined;
  /** Extra details from the bridge (empty when none). */
  readonly details: Readonly<Record<string, string>>;
  /** True when the same request may succeed later. */
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: LoomErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'LoomError';
    this.code = code;
    this.path = options.path === '' ? undefined : options.path;
    this.details = options.details ?? {};
    this.retryable = options.retryable ?? RETRYABLE.has(code);
  }
}

/** A field or argument is wrong; {@link LoomError.path} names it. */
export class InvalidParamsError extends LoomError {
  constructor(message: string, options?: LoomErrorOptions) {
    super('INVALID_PARAMS', message, options);
    this.name = 'InvalidParamsError';
  }
}
/** A deadline passed (a request, call or reply was not answered in time). */
export class TimeoutError extends LoomError {
  constructor(message: string, options?: LoomErrorOptions) {
    super('TIMEOUT', message, options);
    this.name = 'TimeoutError';
  }
}
/** No provider is registered for the capability (or that version). */
export class CapabilityNotFoundError extends LoomError {
  constructor(message: string, options?: LoomErrorOptions) {
    super('CAPABILITY_NOT_FOUND', message, options);
    this.name = 'CapabilityNotFoundError';
  }
}
/** Providers exist but none can answer now. */
export class ProviderUnavailableError extends LoomError {
  constructor(message: string, options?: LoomErrorOptions) {
    super('PROVIDER_UNAVAILABLE', message, options);
    this.name = 'ProviderUnavailableError';
  }
}
/** The capability itself failed. */
export class ToolError extends LoomError {
  constructor(message: string, options?: LoomErrorOptions) {
    super('TOOL_ERROR', message, options);
    this.name = 'ToolError';
  }
}
/** Not allowed. */
export class PermissionDeniedError extends LoomError {
  constructor(message: string, options?: LoomErrorOptions) {
    super('PERMISSION_DENIED', message, options);
    this.name = 'PermissionDeniedError';
  }
}
/** A size, queue or rate limit was hit. */
export class ResourceExhaustedError extends LoomError {
  constructor(message: string, options?: LoomErrorOptions) {
    super('RESOURCE_EXHAUSTED', message, options);
    this.name = 'ResourceExhaustedError';
  }
}
/** An envelope's time to live passed. */
export class TtlExpiredError extends LoomError {
  constructor(message: string, options?: LoomErrorOptions) {
    super('TTL_EXPIRED', message, options);
    this.name = 'TtlExpiredError';
  }
}
/** Too many hops: an envelope is going round in a loop. */
export class HopLimitExceededError extends LoomError {
  constructor(message: string, options?: LoomErrorOptions) {
    super('HOP_LIMIT_EXCEEDED', message, options);
    this.name = 'HopLimitExceededError';
  }
}
/** The session is unknown or expired (the SDK re-registers by itself). */
export class SessionNotFoundError extends LoomError {
  constructor(message: string, options?: LoomErrorOptions) {
    super('SESSION_NOT_FOUND', message, options);
    this.name = 'SessionNotFoundError';
  }
}
/** The caller cancelled, or the connection was closed. */
export class CancelledError extends LoomError {
  constructor(message: string, options?: LoomErrorOptions) {
    super('CANCELLED', message, options);
    this.name = 'CancelledError';
  }
}
/** The bridge cannot be reached, is shutting down, or the connection broke. Retry later. */
export class UnavailableError extends LoomError {
  constructor(message: string, options?: LoomErrorOptions) {
    super('UNAVAILABLE', message, options);
    this.name = 'UnavailableError';
  }
}
/**
 * The bridge has auth on and this program sent no credential where one is required, or a bad one
 * (an expired token, a token signed with another key, a certificate and a token naming different
 * identities). The message says which; set `LOOM_TOKEN` (`loom token create`) or the client
 * certificate (`LOOM_TLS_CERT`/`LOOM_TLS_KEY`). Retrying the same request fails again.
 */
export class UnauthenticatedError extends LoomError {
  constructor(message: string, options?: LoomErrorOptions) {
    super('UNAUTHENTICATED', message, options);
    this.name = 'UnauthenticatedError';
  }
}
/** A bug in Loom (or a code this SDK does not know). */
export class InternalError extends LoomError {
  constructor(message: string, options?: LoomErrorOptions) {
    super('INTERNAL', message, options);
    this.name = 'InternalError';
  }
}

/** An agent's or a thread's token budget in the LLM gateway is spent (docs/llm.md). */
export class BudgetExceededError extends LoomError {
  constructor(message: string, options?: LoomErrorOptions) {
    super('BUDGET_EXCEEDED', message, options);
    this.name = 'BudgetExceededError';
  }
}

type ErrorClass = new (message: string, options?: LoomErrorOptions) => LoomError;

const CLASSES: Partial<Record<ErrorCode, ErrorClass>> = {
  INVALID_PARAMS: InvalidParamsError,
  TIMEOUT: TimeoutError,
  CAPABILITY_NOT_FOUND: CapabilityNotFoundError,
  PROVIDER_UNAVAILABLE: ProviderUnavailableError,
  TOOL_ERROR: ToolError,
  PERMISSION_DENIED: PermissionDeniedError,
  RESOURCE_EXHAUSTED: ResourceExhaustedError,
  TTL_EXPIRED: TtlExpiredError,
  HOP_LIMIT_EXCEEDED: HopLimitExceededError,
  SESSION_NOT_FOUND: SessionNotFoundError,
  CANCELLED: CancelledError,
  UNAVAILABLE: UnavailableError,
  INTERNAL: InternalError,
  UNAUTHENTICATED: UnauthenticatedError,
  BUDGET_EXCEEDED: BudgetExceededError,
};

/** Creates the subclass of {@link LoomError} that matches `code`. */
export function createError(code: ErrorCode, message: string, options?: LoomErrorOptions): LoomError {
  const Class = CLASSES[code];
  return Class ? new Class(message, options) : new LoomError(code, message, options);
}

/**
 * Parses an error code name, with or without the `ERROR_CODE_` prefix, in any case, or its wire
 * number. Unknown codes (from a newer bridge) give `INTERNAL`.
 */
export function parseErrorCode(value: string | number | null | undefined): ErrorCode {
  if (typeof value === 'number') return ERROR_CODES[value] ?? 'INTERNAL';
  if (!value) return 'INTERNAL';
  let name = value.trim().toUpperCase();
  if (name.startsWith('ERROR_CODE_')) name = name.slice('ERROR_CODE_'.length);
  return (ERROR_CODES as readonly string[]).includes(name) ? (name as ErrorCode) : 'INTERNAL';
}

/** The wire number of a code. */
export function errorCodeNumber(code: ErrorCode): number {
  const index = ERROR_CODES.indexOf(code);
  return index < 0 ? 13 : index;
}
