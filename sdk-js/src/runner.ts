/**
 * `run(agents)`: starts agents and stops them cleanly on SIGINT/SIGTERM.
 * @module
 */
import { type AgentDefinition, type RunningAgent, startAgent, type StartAgentOptions } from './agent.js';
import { InvalidParamsError } from './errors.js';
import { newAgentId } from './internal/util.js';

/** Options of {@link run}: connection options for every agent, plus how to stop. */
export interface RunOptions extends StartAgentOptions {
  /** Stop on SIGINT and SIGTERM (a second signal closes at once). @default true */
  handleSignals?: boolean;
  /** Called once every agent is connected. @default none */
  onReady?: (agents: readonly RunningAgent[]) => unknown;
}

/**
 * Starts the agents (each with its own connection) and runs them until SIGINT/SIGTERM or until
 * `options.signal` aborts; then drains them (calls in flight and queued events finish, bounded
 * by `drainTimeoutMs`) and resolves. With several agents, `LOOM_AGENT_ID` is ignored (it names one
 * agent): each agent gets a generated id unless its definition's `options.agentId` names one.
 * @throws {LoomError} an agent could not start (the others are stopped)
 */
export async function run(
  agents: AgentDefinition | readonly AgentDefinition[],
  options: RunOptions = {},
): Promise<void> {
  const list: readonly AgentDefinition[] = Array.isArray(agents) ? agents : [agents as AgentDefinition];
  const { handleSignals = true, onReady, ...startOptions } = options;
  if (list.length > 1 && startOptions.agentId !== undefined) {
    throw new InvalidParamsError(
      "run() with several agents takes no agentId: give each agent its own in its definition's options.",
      { path: '/agentId' },
    );
  }
  const running: RunningAgent[] = [];
  let signals = 0;
  let wake: () => void = () => undefined;
  const stopped = new Promise<void>((resolve) => {
    wake = resolve;
  });
  const onSignal = (): void => {
    signals++;
    if (signals === 1) wake();
    else for (const agent of running) void agent.close();
  };
  if (handleSignals) {
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  const onAbort = (): void => wake();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for (const definition of list) {
      // LOOM_AGENT_ID names one agent only: with several, each gets its own generated id.
      const agentId =
        list.length > 1 && !definition.options?.agentId ? newAgentId(definition.name) : undefined;
      running.push(await startAgent(definition, { ...startOptions, ...(agentId ? { agentId } : {}) }));
    }
    await onReady?.(running);
    if (!options.signal?.aborted) await stopped;
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    await Promise.all(running.map((agent) => agent.stop()));
    if (handleSignals) {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  }
}
