// Talks to the bridge that served the page: JSON views under /v1/ and live streams over
// Server-Sent Events read with fetch (EventSource cannot send the Authorization header).

export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const TOKEN_KEY = 'loom.dashboard.token';
let token = sessionStorage.getItem(TOKEN_KEY) ?? '';
const listeners = new Set<() => void>();

export function getToken(): string {
  return token;
}

export function setToken(value: string): void {
  token = value.trim();
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  for (const l of listeners) l();
}

export function onTokenChange(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function headers(extra: Record<string, string> = {}): Record<string, string> {
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function failure(response: Response): Promise<ApiError> {
  const text = await response.text();
  try {
    const body = JSON.parse(text) as { code?: string; message?: string };
    return new ApiError(body.message ?? text, response.status, body.code ?? String(response.status));
  } catch {
    return new ApiError(text.trim() || response.statusText, response.status, response.status === 401 ? 'UNAUTHENTICATED' : response.status === 403 ? 'PERMISSION_DENIED' : String(response.status));
  }
}

export async function getJson<T>(path: string, signal?: AbortSignal): Promise<T> {
  const response = await fetch(path, { headers: headers(), signal });
  if (!response.ok) throw await failure(response);
  return (await response.json()) as T;
}

export async function postJson<T>(path: string, body: string, signal?: AbortSignal): Promise<T> {
  const response = await fetch(path, { method: 'POST', headers: headers({ 'Content-Type': 'application/json' }), body, signal });
  if (!response.ok) throw await failure(response);
  return (await response.json()) as T;
}

export type StreamState = { state: 'connecting' | 'open' | 'error'; error?: ApiError };

/**
 * Reads an SSE stream, calling onEvent for each message; reconnects 2 s after the stream ends
 * (the bridge drops a client that does not keep up). Returns a function that stops it.
 */
export function openStream(path: string, onEvent: (event: string, data: string) => void, onState: (s: StreamState) => void): () => void {
  const controller = new AbortController();
  let stopped = false;
  const run = async (): Promise<void> => {
    while (!stopped) {
      onState({ state: 'connecting' });
      try {
        const response = await fetch(path, { headers: headers({ Accept: 'text/event-stream' }), signal: controller.signal });
        if (!response.ok || !response.body) throw await failure(response);
        onState({ state: 'open' });
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end: number;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let event = 'message';
            const data: string[] = [];
            for (const line of block.split('\n')) {
              if (line.startsWith('event: ')) event = line.slice(7);
              else if (line.startsWith('data: ')) data.push(line.slice(6));
            }
            if (data.length) onEvent(event, data.join('\n'));
          }
        }
      } catch (e) {
        if (stopped) return;
        onState({ state: 'error', error: e instanceof ApiError ? e : new ApiError(String(e), 0, 'UNAVAILABLE', { cause: e }) });
        if (e instanceof ApiError && (e.status === 401 || e.status === 403)) return; // wait for a token
      }
      if (!stopped) await new Promise((r) => setTimeout(r, 2000));
    }
  };
  void run();
  return () => {
    stopped = true;
    controller.abort();
  };
}

// ---- shapes of the bridge's JSON (snake_case as sent) ----

export interface AgentRow {
  agent_id: string;
  name: string;
  namespace: string;
  sdk: string;
  language: string;
  state: 'connected' | 'detached' | 'in-process' | 'gone';
  connected_at: string;
  last_seen_ms: number;
  gone_at?: string;
  topics: string[];
  capabilities: string[];
}

export interface OverviewPoint {
  t: number;
  events: number;
  deliveries: number;
  calls: number;
  errors: number;
  drops: Record<string, number>;
}

export interface Overview {
  /** At most 200 rows (live ones first); agents_total and agent_states count them all. */
  agents: AgentRow[];
  agents_total: number;
  agent_states: Record<string, number>;
  point: OverviewPoint;
  events_total: number;
  delivered_total: number;
  calls_total: number;
  errors_total: number;
  drops_total: Record<string, number>;
  queued_bytes: number;
  feed: { clients: number; clients_dropped: number; sampled_out: number; client_events_skipped: number; stream_bytes: number };
}

export interface RecordedEvent {
  seq: number;
  kind: 'event' | 'call';
  id: string;
  topic: string;
  sender: string;
  target: string;
  thread_id: string;
  correlation_id: string;
  reply_to: string;
  timestamp_unix_ms: number;
  end_unix_ms?: number;
  duration_ms?: number;
  error?: string;
  content_type: string;
  payload_bytes: number;
  payload?: string;
  payload_truncated: boolean;
  hop_count: number;
  qos: string;
  headers?: Record<string, string>;
}

/** A thread in GET /v1/threads (from the bridge's run records). */
export interface ThreadSummary {
  id: string;
  first_unix_ms: number;
  last_unix_ms: number;
  agents: string[];
  events: number;
  calls: number;
  collab: number;
  errors: number;
  count: number;
  truncated: boolean;
}

export interface ThreadList {
  threads: ThreadSummary[];
  total: number;
  offset: number;
  persistent: boolean;
}

/** One step of a run record: an event, a call (payload = input, output = result) or a collaboration step. */
export interface RunStep {
  seq: number;
  kind: 'event' | 'call' | 'collab';
  id: string;
  topic: string;
  sender: string;
  target: string;
  thread_id: string;
  correlation_id: string;
  reply_to: string;
  timestamp_unix_ms: number;
  end_unix_ms?: number;
  duration_ms?: number;
  error?: string;
  error_code?: string;
  error_message?: string;
  content_type: string;
  payload_bytes: number;
  payload?: string;
  payload_truncated: boolean;
  output?: string;
  output_bytes?: number;
  operation?: string;
  step?: string;
  op_id?: string;
  headers?: Record<string, string>;
}

/** GET /v1/threads/{id}: the thread's steps in order. */
export interface ThreadDetail extends ThreadSummary {
  steps: RunStep[];
}

export interface RateEdge {
  from: string;
  to: string;
  count: number;
  rate: number;
}

/** Cut on the bridge to the busiest `limit` nodes per column; the rest of a column is one "(N more …)" node. */
export interface Topology {
  publishes: RateEdge[];
  subscribes: { topic: string; agent: string; pattern: string; depth: number }[];
  calls: RateEdge[];
  provides: { agent: string; capability: string }[];
  limit: number;
  hidden: { publishers: number; topics: number; subscribers: number; callers: number; capabilities: number; providers: number };
}

export interface TopicView {
  topic: string;
  group: string;
  published: number;
  delivered: number;
  no_subscribers: number;
  dropped_total: number;
  dropped: Record<string, number>;
  subscriptions: { agent: string; pattern: string; qos: string; overflow: string; capacity: number; depth: number; dropped_total: number; dropped: Record<string, number> }[];
  subscriptions_total: number;
}

export interface TopicList {
  topics: TopicView[];
  truncated: boolean;
  total: number;
  matched: number;
}

export interface CapabilityView {
  name: string;
  version: string;
  description: string;
  tags: string[];
  input_schema: JsonSchema;
  output_schema: JsonSchema;
  providers: { agent_id: string; local: boolean; healthy: boolean; in_flight: number; calls: number; failures: number; latency_ewma_ms: number }[];
}

export interface CapabilityCallStats {
  name: string;
  calls: number;
  errors: number;
  errors_by_code: Record<string, number>;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
}

export interface CallResult {
  ok: boolean;
  output?: unknown;
  code?: string;
  message?: string;
  provider?: string;
  duration_ms: number;
}

export interface WhoAmI {
  auth: boolean;
  level: 'admin' | 'read' | 'none';
  identity?: string;
}

export interface JsonSchema {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  enum?: unknown[];
  description?: string;
  default?: unknown;
  items?: JsonSchema;
  minimum?: number;
  maximum?: number;
}
