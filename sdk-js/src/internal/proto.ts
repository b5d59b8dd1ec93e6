// The wire layer: the generated static codec (src/gen, from proto/loom/v1/bridge.proto) and the
// gRPC plumbing on @grpc/grpc-js. Internal to the SDK.
import * as grpc from '@grpc/grpc-js';

import { createError, type LoomError, parseErrorCode, UnavailableError, type ErrorCode } from '../errors.js';
import { loom } from '../gen/loom.js';

export const pb = loom.v1;
export type PbEnvelope = loom.v1.Envelope.$Properties;
export type PbClientMessage = loom.v1.ClientMessage.$Properties;
export type PbServerMessage = loom.v1.ServerMessage;
export type PbServerFrame = loom.v1.ServerFrame;
export type PbSubscription = loom.v1.Subscription.$Properties;
export type PbCapability = loom.v1.CapabilityDescriptor.$Properties;
export type PbRegisterRequest = loom.v1.RegisterAgentRequest.$Properties;
export type PbRegisterResponse = loom.v1.RegisterAgentResponse;
export type PbLimits = loom.v1.Limits.$Properties;
export type PbActionCall = loom.v1.ActionCall;
export type PbActionResult = loom.v1.ActionResult.$Properties;
export type PbError = loom.v1.Error.$Properties;
export type PbMemoryRequest = loom.v1.MemoryRequest.$Properties;
export type PbMemoryResponse = loom.v1.MemoryResponse.$Properties;
export type PbMemoryEntry = loom.v1.MemoryEntry.$Properties;
export type PbStreamState = loom.v1.StreamState.$Properties;

export const SERVICE = '/loom.v1.Bridge/';
export const SESSION_HEADER = 'loom-session-id';
export const CODE_TRAILER = 'loom-error-code';
export const PATH_TRAILER = 'loom-error-path';

/** int64 fields decode as `Long` objects when long.js is present; this makes them numbers. */
export function num(value: unknown): number {
  if (typeof value === 'number') return value;
  if (
    value !== null &&
    typeof value === 'object' &&
    'toNumber' in value &&
    typeof value.toNumber === 'function'
  ) {
    return (value as { toNumber(): number }).toNumber();
  }
  return Number(value ?? 0);
}

/** The generated (reflection-free) encoder; the SDK writes frames with frame-encoder.ts. */
export const serializeClientFrameGenerated = (frame: loom.v1.ClientFrame.$Properties): Buffer =>
  pb.ClientFrame.encode(frame).finish() as Buffer;
export const deserializeServerFrame = (bytes: Buffer): PbServerFrame => pb.ServerFrame.decode(bytes);

interface UnaryMethod<Req, Res> {
  path: string;
  serialize: (value: Req) => Buffer;
  deserialize: (bytes: Buffer) => Res;
}

export const registerAgent: UnaryMethod<PbRegisterRequest, PbRegisterResponse> = {
  path: SERVICE + 'RegisterAgent',
  serialize: (v) => pb.RegisterAgentRequest.encode(v).finish() as Buffer,
  deserialize: (b) => pb.RegisterAgentResponse.decode(b),
};

export const forwardAction: UnaryMethod<
  loom.v1.ForwardActionRequest.$Properties,
  loom.v1.ForwardActionResponse
> = {
  path: SERVICE + 'ForwardAction',
  serialize: (v) => pb.ForwardActionRequest.encode(v).finish() as Buffer,
  deserialize: (b) => pb.ForwardActionResponse.decode(b),
};

/** Runs a unary call with a deadline; failures become typed Loom errors. */
export function unary<Req, Res>(
  client: grpc.Client,
  method: UnaryMethod<Req, Res>,
  request: Req,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    const call = client.makeUnaryRequest(
      method.path,
      method.serialize,
      method.deserialize,
      request,
      new grpc.Metadata(),
      { deadline: Date.now() + timeoutMs },
      (error, response) => {
        signal?.removeEventListener('abort', onAbort);
        if (error) reject(fromStatus(error, client.getChannel().getTarget()));
        else if (response === undefined) reject(new UnavailableError('The bridge sent no response.'));
        else resolve(response);
      },
    );
    const onAbort = (): void => call.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

// A status without Loom's trailer: the inverse of the code -> status table (protocol §11.1,
// tests/vectors/errors.json); anything else is INTERNAL.
const STATUS_TO_CODE: Partial<Record<grpc.status, ErrorCode>> = {
  [grpc.status.CANCELLED]: 'CANCELLED',
  [grpc.status.INVALID_ARGUMENT]: 'INVALID_PARAMS',
  [grpc.status.DEADLINE_EXCEEDED]: 'TIMEOUT',
  [grpc.status.NOT_FOUND]: 'CAPABILITY_NOT_FOUND',
  [grpc.status.PERMISSION_DENIED]: 'PERMISSION_DENIED',
  [grpc.status.RESOURCE_EXHAUSTED]: 'RESOURCE_EXHAUSTED',
  [grpc.status.FAILED_PRECONDITION]: 'HOP_LIMIT_EXCEEDED',
  [grpc.status.UNAVAILABLE]: 'UNAVAILABLE',
  [grpc.status.UNAUTHENTICATED]: 'UNAUTHENTICATED',
};

/** Maps a gRPC status (with Loom's trailers, when present) to a typed error (protocol §11.1). */
export function fromStatus(
  status: Partial<grpc.StatusObject> & { message?: string },
  target = '',
): LoomError {
  const trailers = status.metadata;
  const codeValue = trailers?.get(CODE_TRAILER)[0];
  const pathValue = trailers?.get(PATH_TRAILER)[0];
  const detail = status.details ?? status.message ?? '';
  if (typeof codeValue === 'string' && codeValue.length > 0) {
    return createError(parseErrorCode(codeValue), detail, {
      path: typeof pathValue === 'string' ? pathValue : undefined,
      cause: status,
    });
  }
  const code = STATUS_TO_CODE[status.code ?? grpc.status.UNKNOWN] ?? 'INTERNAL';
  const message =
    code === 'UNAVAILABLE' && target && /ssl|tls|handshake|certificate/i.test(detail)
      ? `The TLS handshake with the bridge at ${target} failed (${detail}). Check that LOOM_TLS_CA (tlsCa) is the CA that signed the bridge's certificate, that the address's host is one the certificate names, and, for mutual TLS, LOOM_TLS_CERT and LOOM_TLS_KEY.`
      : code === 'UNAVAILABLE' && target
        ? `Cannot reach the bridge at ${target}: ${detail || 'unavailable'}`
        : detail || `gRPC status ${String(status.code)}`;
  return createError(code, message, { cause: status });
}

/** A Loom `Error` message as a typed error. */
export function fromProtoError(
  error: PbError | null | undefined,
  fallback = 'The bridge reported an error without details.',
): LoomError {
  if (!error) return createError('INTERNAL', fallback);
  const code = parseErrorCode(error.code ?? 0);
  // UNSPECIFIED (never sent on purpose) is treated like an unknown code: INTERNAL (protocol §11).
  return createError(code === 'UNSPECIFIED' ? 'INTERNAL' : code, error.message || fallback, {
    path: error.path ?? undefined,
    details: error.details ?? undefined,
    retryable: error.retryable === true ? true : undefined,
  });
}
