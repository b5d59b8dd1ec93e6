// The gRPC channel of a connection: the bridge URL's address, TLS credentials and the bearer token.
import * as grpc from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';

import { InvalidParamsError } from '../../errors.js';
import type { ResolvedOptions } from '../../options.js';

function readPem(file: string, what: string, option: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new InvalidParamsError(
      `Cannot read the ${what} '${file}' (${option}): ${(error as Error).message}.`,
      { path: `/${option.split(',')[0] ?? option}` },
    );
  }
}

function isLoopback(address: string): boolean {
  const host = address.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

/**
 * TLS (grpc-js `credentials.createSsl` with the CA bundle and client certificate of the options) and
 * the bearer token (an interceptor adding `authorization: Bearer ...`, refused in the clear to another machine).
 */
export function channelSecurity(
  address: string,
  https: boolean,
  options: ResolvedOptions,
): { credentials: grpc.ChannelCredentials; interceptors: grpc.Interceptor[] } {
  const tls = https || options.tlsCa !== '' || options.tlsCert !== '';
  if ((options.tlsCert === '') !== (options.tlsKey === '')) {
    throw new InvalidParamsError(
      'A client certificate needs its key: give both tlsCert (LOOM_TLS_CERT) and tlsKey (LOOM_TLS_KEY), or neither.',
      { path: '/tlsKey' },
    );
  }
  const credentials = tls
    ? grpc.credentials.createSsl(
        options.tlsCa ? readPem(options.tlsCa, 'CA bundle', 'tlsCa, LOOM_TLS_CA') : null,
        options.tlsKey ? readPem(options.tlsKey, 'client key', 'tlsKey, LOOM_TLS_KEY') : null,
        options.tlsCert ? readPem(options.tlsCert, 'client certificate', 'tlsCert, LOOM_TLS_CERT') : null,
      )
    : grpc.credentials.createInsecure();
  const interceptors: grpc.Interceptor[] = [];
  if (options.token !== '') {
    if (!tls && !isLoopback(address)) {
      throw new InvalidParamsError(
        `A token is never sent in the clear to another machine: use an https:// URL (and LOOM_TLS_CA) for ${address}, or a loopback address.`,
        { path: '/token' },
      );
    }
    const header = `Bearer ${options.token}`;
    interceptors.push(
      (callOptions, nextCall) =>
        new grpc.InterceptingCall(nextCall(callOptions), {
          start(metadata, listener, next) {
            metadata.set('authorization', header);
            next(metadata, listener);
          },
        }),
    );
  }
  return { credentials, interceptors };
}

export function target(url: string): { address: string; secure: boolean } {
  const match = /^(https?):\/\/([^/]+)\/?$/.exec(url.trim());
  if (match) return { address: match[2] as string, secure: match[1] === 'https' };
  if (/^[^/:]+:\d+$/.test(url.trim())) return { address: url.trim(), secure: false };
  throw new InvalidParamsError(`Bridge URL '${url}' is not of the form http://host:port.`, { path: '/url' });
}

/** The gRPC client of a connection (one channel; grpc-js reconnects it with the connection's backoff). */
export function createClient(url: string, options: ResolvedOptions): grpc.Client {
  const { address, secure } = target(url);
  const backoff = Math.max(1, options.reconnectInitialMs);
  const security = channelSecurity(address, secure, options);
  return new grpc.Client(address, security.credentials, {
    ...(security.interceptors.length > 0 ? { interceptors: security.interceptors } : {}),
    'grpc.enable_http_proxy': 0,
    'grpc.initial_reconnect_backoff_ms': backoff,
    'grpc.min_reconnect_backoff_ms': backoff,
    'grpc.max_reconnect_backoff_ms': Math.max(backoff, options.reconnectMaxMs),
    'grpc.max_receive_message_length': 16 * 1024 * 1024,
    ...options.channelOptions,
  });
}
