/**
 * Agents: a name, topics with an event handler, and capabilities, started against a bridge.
 * @module
 */
import type { Capability } from './capability.js';
import { type AgentContext, type Connection, createConnection } from './connection.js';
import { InvalidParamsError } from './errors.js';
import type { LoomEvent } from './event.js';
import { validatePattern } from './internal/util.js';
import type { ConnectOptions } from './options.js';
import type { SubscribeOptions, Subscription } from './subscription.js';

/** A topic pattern with its subscription options. */
export interface TopicSpec extends SubscribeOptions {
  /** Pattern (`*` one token, `>` the rest). */
  pattern: string;
}

/** The definition of an agent, as given to {@link defineAgent}. */
export interface AgentDefinition {
  /** Display name and the stem of a generated agent id. */
  readonly name: string;
  /** Patterns whose events go to `onEvent`. @default [] */
  readonly topics?: readonly (string | TopicSpec)[];
  /** Capabilities the agent provides. @default [] */
  readonly capabilities?: readonly Capability<AgentContext>[];
  /**
   * Handles one event of `topics`. Events of one pattern arrive in order, one at a time; a
   * thrown error is logged and the agent goes on. Reply to requests with `context.reply(event, ...)`.
   */
  readonly onEvent?: (event: LoomEvent, context: AgentContext) => unknown;
  /** Runs once the agent is connected. A thrown error stops the agent's start. @default none */
  readonly onStart?: (context: AgentContext) => unknown;
  /** Connection options of this agent (over the runner's). @default {} */
  readonly options?: ConnectOptions;
}

/**
 * Defines an agent. Checks the definition (name, topic patterns, unique capability names) at once.
 * @example
 * const echo = defineAgent({
 *   name: 'echo',
 *   topics: ['echo.requests'],
 *   onEvent: (event, ctx) => ctx.reply(event, event.json()),
 * });
 */
export function defineAgent<const T extends AgentDefinition>(definition: T): T {
  if (!definition.name) throw new InvalidParamsError('An agent needs a name.', { path: '/name' });
  (definition.topics ?? []).forEach((topic, i) =>
    validatePattern(typeof topic === 'string' ? topic : topic.pattern, `/topics/${i}`),
  );
  const names = new Set<string>();
  (definition.capabilities ?? []).forEach((c, i) => {
    if (names.has(c.name))
      throw new InvalidParamsError(`Capability '${c.name}' is given twice.`, { path: `/capabilities/${i}` });
    names.add(c.name);
  });
  if ((definition.topics?.length ?? 0) > 0 && !definition.onEvent) {
    throw new InvalidParamsError(`Agent '${definition.name}' has topics but no onEvent handler.`, {
      path: '/onEvent',
    });
  }
  return Object.freeze(definition);
}

/** Options of {@link startAgent}. */
export interface StartAgentOptions extends ConnectOptions {
  /** The bridge URL. @default `LOOM_URL`, else http://127.0.0.1:7070 */
  url?: string;
  /** Aborts the start. @default none */
  signal?: AbortSignal;
}

/** A started agent. */
export interface RunningAgent {
  /** The definition. */
  readonly definition: AgentDefinition;
  /** The agent's connection (its context). */
  readonly context: Connection;
  /** The agent id. */
  readonly agentId: string;
  /**
   * Drains and leaves: no new events are taken, `onEvent` finishes the queued ones, calls in
   * flight finish, writes flush, then the stream half-closes (bounded by `drainTimeoutMs`).
   * Safe to call twice.
   */
  stop(): Promise<void>;
  /** Leaves now. Safe to call twice. */
  close(): Promise<void>;
}

/** Connects one agent: registers its topics and capabilities, then runs `onEvent` for its events. */
export async function startAgent(
  definition: AgentDefinition,
  options: StartAgentOptions = {},
): Promise<RunningAgent> {
  const { url, signal, ...rest } = options;
  const connection = createConnection(
    url,
    { name: definition.name, ...rest, ...definition.options },
    { capabilities: definition.capabilities ?? [] },
  );
  const subscriptions: Subscription[] = [];
  const loops: Promise<void>[] = [];
  try {
    // Before the first registration these are only recorded: the registration carries them all.
    for (const topic of definition.topics ?? []) {
      const spec = typeof topic === 'string' ? { pattern: topic } : topic;
      const { pattern, ...subscribeOptions } = spec;
      subscriptions.push(await connection.subscribe(pattern, subscribeOptions));
    }
    await connection.start(signal);
    const onEvent = definition.onEvent;
    if (onEvent) {
      for (const subscription of subscriptions) loops.push(consume(subscription, onEvent, connection));
    }
    await definition.onStart?.(connection);
  } catch (error) {
    await connection.close();
    throw error;
  }
  let stopping: Promise<void> | undefined;
  const drainMs = connection.drainTimeoutMs;
  const waitLoops = (ms: number): Promise<unknown> =>
    Promise.race([Promise.all(loops), new Promise((r) => setTimeout(r, ms).unref())]);
  const stop = async (): Promise<void> => {
    // Take no more events; the handlers finish what is queued (they can still emit and reply),
    // then the connection drains: calls in flight finish, writes flush, the stream half-closes.
    for (const subscription of subscriptions) subscription.close();
    await waitLoops(drainMs);
    await connection.drain();
  };
  const close = async (): Promise<void> => {
    await connection.close();
    await waitLoops(1000);
  };
  return {
    definition,
    context: connection,
    agentId: connection.agentId,
    stop: () => (stopping ??= stop()),
    close: () => (stopping ??= close()),
  };
}

async function consume(
  subscription: Subscription,
  onEvent: NonNullable<AgentDefinition['onEvent']>,
  context: Connection,
): Promise<void> {
  for (;;) {
    let result: IteratorResult<LoomEvent>;
    try {
      result = await subscription.next();
    } catch {
      return;
    }
    if (result.done) return;
    try {
      await onEvent(result.value, context);
    } catch (error) {
      context.logger.warn(
        `${context.agentId}: onEvent threw for '${result.value.topic}': ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }
}
