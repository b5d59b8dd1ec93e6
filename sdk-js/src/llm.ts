/**
 * Language models through the bridge's LLM gateway: thin wrappers over the `llm.chat`,
 * `llm.embed` and `llm.usage` capabilities (docs/llm.md). The same names exist in the .NET
 * (`ctx.Llm.ChatAsync`) and Python (`ctx.llm.chat`) SDKs.
 * @module
 */
import { randomUUID } from 'node:crypto';
import type { InvokeOptions } from './connection.js';
import type { Subscription } from './subscription.js';
import type { LoomEvent } from './event.js';
import type { SubscribeOptions } from './subscription.js';

/** What the helpers need of a connection. */
export interface LlmHost {
  invoke<T = unknown>(capability: string, input?: unknown, options?: InvokeOptions): Promise<T>;
  subscribe(pattern: string, options?: SubscribeOptions): Promise<Subscription>;
}

/** A message of a conversation. */
export interface LlmMessage {
  role: 'system' | 'user' | 'assistant' | 'tool';
  content?: string;
  /** For a tool message: the id of the call it answers. */
  tool_call_id?: string;
  /** For an assistant message: the tool calls it made. */
  tool_calls?: LlmToolCall[];
}

/** A tool the model may call. */
export interface LlmTool {
  name: string;
  description?: string;
  /** JSON Schema of the arguments. */
  parameters?: Record<string, unknown>;
}

/** A tool call the model made. */
export interface LlmToolCall {
  id: string;
  name: string;
  arguments: Record<string, unknown>;
}

/** An llm.chat request (snake_case, as on the wire). */
export interface LlmChatRequest {
  messages: LlmMessage[];
  /** A model name from loom.yaml llm.models; default: the agent's, else the gateway's. */
  model?: string;
  tools?: LlmTool[];
  tool_choice?: 'auto' | 'none' | 'required';
  response_format?: {
    type: 'text' | 'json' | 'json_schema';
    schema?: Record<string, unknown>;
    name?: string;
  };
  temperature?: number;
  max_tokens?: number;
  stop?: string[];
  /** false: neither served from nor stored in the cache, and not coalesced. */
  cache?: boolean;
}

/** An llm.chat answer. */
export interface LlmChatResult {
  model: string;
  provider: string;
  content: string;
  /** The content parsed, when a JSON response format was asked for. */
  json?: unknown;
  tool_calls: LlmToolCall[];
  finish_reason: string | null;
  /** Tokens spent upstream (0 for cache hits and coalesced calls). */
  usage: { input_tokens: number; output_tokens: number };
  cost_usd: number;
  cached: boolean;
  coalesced: boolean;
  attempts: number;
  fallback_from?: string;
}

/** One event of {@link Llm.streamChat}. */
export type LlmStreamEvent =
  | { type: 'delta'; text: string }
  | { type: 'restart'; model: string }
  | { type: 'result'; result: LlmChatResult };

/** An llm.embed answer. */
export interface LlmEmbedResult {
  model: string;
  embeddings: number[][];
  usage: { input_tokens: number };
  cost_usd: number;
  /** Texts served from the cache. */
  cached: number;
}

/** What an agent spent through the gateway; budgets of 0 are unlimited. */
export interface LlmUsage {
  agent: string;
  tokens: number;
  cost_usd: number;
  budget_tokens: number;
  thread?: { id: string; tokens: number; cost_usd: number; budget_tokens: number };
}

const DEFAULT_TIMEOUT_MS = 120_000;
const STREAM_TAIL_MS = 10_000;

/** `ctx.llm`: chat, streamed chat, embeddings and usage through the bridge's gateway. */
export class Llm {
  readonly #host: LlmHost;

  constructor(host: LlmHost) {
    this.#host = host;
  }

  /** One chat completion: a prompt, or a full request. */
  async chat(request: string | LlmChatRequest, options: InvokeOptions = {}): Promise<LlmChatResult> {
    const body = typeof request === 'string' ? { messages: [{ role: 'user', content: request }] } : request;
    return this.#host.invoke<LlmChatResult>('llm.chat', body, { timeoutMs: DEFAULT_TIMEOUT_MS, ...options });
  }

  /**
   * A chat completion streamed: `delta` events as the model writes (a `restart` voids the pieces
   * so far: a retry or fallback starts over), then one `result`. The pieces travel as events on a
   * topic under `llm.stream.` this agent subscribes to for the call.
   */
  async *streamChat(
    request: string | LlmChatRequest,
    options: InvokeOptions = {},
  ): AsyncGenerator<LlmStreamEvent> {
    const body: LlmChatRequest =
      typeof request === 'string' ? { messages: [{ role: 'user', content: request }] } : request;
    const topic = `llm.stream.${randomUUID().replaceAll('-', '')}`;
    const subscription = await this.#host.subscribe(topic, { overflow: 'block', queueCapacity: 4096 });
    const call = this.#host.invoke<LlmChatResult>(
      'llm.chat',
      { ...body, stream_topic: topic },
      { timeoutMs: DEFAULT_TIMEOUT_MS, ...options },
    );
    call.catch(() => undefined); // observed below
    const iterator = subscription[Symbol.asyncIterator]();
    try {
      for (;;) {
        const next = iterator.next();
        const first = await Promise.race([
          next.then((r) => ({ kind: 'event' as const, r })),
          call.then(() => ({ kind: 'call' as const })),
        ]);
        let item: IteratorResult<LoomEvent>;
        if (first.kind === 'call') {
          let timer: NodeJS.Timeout | undefined;
          const tail = new Promise<undefined>((resolve) => {
            timer = setTimeout(() => resolve(undefined), STREAM_TAIL_MS);
          });
          const late = await Promise.race([next, tail]);
          clearTimeout(timer);
          if (late === undefined) break; // the stream events were lost; the result still stands
          item = late;
        } else {
          item = first.r;
        }

        if (item.done) break;
        const data = item.value.json<{ type: string; text?: string; model?: string }>();
        if (data.type === 'done') break;
        if (data.type === 'delta') yield { type: 'delta', text: data.text ?? '' };
        else if (data.type === 'restart') yield { type: 'restart', model: data.model ?? '' };
      }

      yield { type: 'result', result: await call };
    } finally {
      await subscription.unsubscribe();
    }
  }

  /** Embeddings of one text or several (one vector per text, in order). */
  async embed(
    input: string | string[],
    options: InvokeOptions & { model?: string } = {},
  ): Promise<LlmEmbedResult> {
    const { model, ...invoke } = options;
    return this.#host.invoke<LlmEmbedResult>(
      'llm.embed',
      { input: typeof input === 'string' ? [input] : input, ...(model ? { model } : {}) },
      { timeoutMs: DEFAULT_TIMEOUT_MS, ...invoke },
    );
  }

  /** Tokens and cost this agent (and the thread of `options`) spent, with the budgets. */
  async usage(options: InvokeOptions = {}): Promise<LlmUsage> {
    return this.#host.invoke<LlmUsage>('llm.usage', {}, options);
  }
}
