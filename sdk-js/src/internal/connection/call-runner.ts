// CallRunner: calls the bridge pushes to this agent's capabilities. Each runs as its own promise
// (the reader never waits on it) with an AbortSignal that fires on the caller's cancel, the
// deadline, a broken stream or close; its result (or typed error) is queued back.
import { type CallInfo, type Capability, toLoomError } from '../../capability.js';
import type { AgentContext } from '../../connection-types.js';
import {
  CancelledError,
  CapabilityNotFoundError,
  createError,
  errorCodeNumber,
  InvalidParamsError,
  type LoomError,
  TimeoutError,
} from '../../errors.js';
import { num, type PbActionCall, type PbActionResult } from '../proto.js';
import { jsonBytes, parseJsonBytes } from '../util.js';
import type { ConnectionState } from './state.js';
import type { Writer } from './writer.js';

interface Inflight {
  controller: AbortController;
  timer: NodeJS.Timeout;
  generation: number;
}

export function toProtoError(error: LoomError): NonNullable<PbActionResult['error']> {
  return {
    code: errorCodeNumber(error.code),
    message: error.message,
    path: error.path ?? '',
    details: { ...error.details },
    retryable: error.retryable,
  };
}

export class CallRunner {
  readonly #state: ConnectionState;
  readonly #writer: Writer;
  readonly #capabilities = new Map<string, Capability<AgentContext>>();
  readonly #inflight = new Map<string, Inflight>();
  #context: AgentContext | undefined;

  constructor(state: ConnectionState, writer: Writer, capabilities: readonly Capability<AgentContext>[]) {
    this.#state = state;
    this.#writer = writer;
    for (const cap of capabilities) {
      if (this.#capabilities.has(cap.name)) {
        throw new InvalidParamsError(
          `Capability '${cap.name}' is given twice; one agent provides each capability once.`,
          { path: '/capabilities' },
        );
      }
      this.#capabilities.set(cap.name, cap);
    }
  }

  /** The context handlers receive (the connection facade). */
  set context(context: AgentContext) {
    this.#context = context;
  }

  /** Calls running now. */
  get running(): number {
    return this.#inflight.size;
  }

  /** The capability descriptors a registration carries. */
  descriptors(): Capability<AgentContext>['descriptor'][] {
    return [...this.#capabilities.values()].map((c) => c.descriptor);
  }

  onCall(call: PbActionCall, generation: number): void {
    const callId = call.callId;
    const agentId = this.#state.agentId;
    const cap = this.#capabilities.get(call.capability);
    if (!cap) {
      const error = new CapabilityNotFoundError(`Agent '${agentId}' does not provide '${call.capability}'.`);
      this.#writer.enqueue({ result: { callId, provider: agentId, error: toProtoError(error) } });
      return;
    }
    if (this.#inflight.has(callId)) return;
    if (this.#state.closing) {
      // Leaving: the broker fails over to another provider of the capability, if any.
      const error = createError('PROVIDER_UNAVAILABLE', `Agent '${agentId}' is shutting down.`);
      this.#writer.enqueue({ result: { callId, provider: agentId, error: toProtoError(error) } });
      return;
    }
    const now = Date.now();
    const deadline = num(call.deadlineUnixMs) || now + this.#state.options.callTimeoutMs;
    const controller = new AbortController();
    const timer = setTimeout(
      () => {
        if (this.#inflight.get(callId) === inflight) {
          this.#inflight.delete(callId);
          controller.abort(
            new TimeoutError(`The deadline of call '${callId}' to '${call.capability}' passed.`),
          );
        }
      },
      Math.max(1, deadline - now),
    );
    const inflight: Inflight = { controller, timer, generation };
    this.#inflight.set(callId, inflight);
    const info: CallInfo = {
      callId,
      capability: call.capability,
      version: call.version,
      caller: call.caller,
      threadId: call.threadId,
      traceparent: call.traceparent,
      headers: call.headers,
      deadlineUnixMs: deadline,
      signal: controller.signal,
    };
    void this.#run(cap, call, info, inflight, now);
  }

  async #run(
    cap: Capability<AgentContext>,
    call: PbActionCall,
    info: CallInfo,
    inflight: Inflight,
    started: number,
  ): Promise<void> {
    const agentId = this.#state.agentId;
    const result: PbActionResult = { callId: call.callId, provider: agentId };
    try {
      let input: unknown;
      try {
        input = parseJsonBytes(call.inputJson);
      } catch (error) {
        throw new InvalidParamsError(
          `The input of '${call.capability}' is not JSON: ${(error as Error).message}`,
          { cause: error },
        );
      }
      const output = cap.parseOutput(
        await cap.run(cap.parseInput(input), info, this.#context as AgentContext),
      );
      result.outputJson = jsonBytes(output);
    } catch (error) {
      const loomError = toLoomError(error, call.capability);
      if (loomError.code === 'TOOL_ERROR' || loomError.code === 'INTERNAL') {
        this.#state.warn(`capability '${call.capability}' failed: ${loomError.message}`);
      }
      result.error = toProtoError(loomError);
    }
    // Not in the map any more: cancelled, timed out, or the stream broke; nobody waits.
    if (this.#inflight.get(call.callId) !== inflight) return;
    this.#inflight.delete(call.callId);
    clearTimeout(inflight.timer);
    result.durationUs = Math.max(0, Math.round((Date.now() - started) * 1000));
    this.#writer.enqueue({ result });
    if (this.#inflight.size === 0) this.#writer.notifyIdle();
  }

  /** The caller cancelled call `id`. */
  cancel(id: string): void {
    const call = this.#inflight.get(id);
    if (call) {
      this.#inflight.delete(id);
      clearTimeout(call.timer);
      call.controller.abort(new CancelledError('The caller cancelled the call.'));
    }
  }

  /** Calls pushed on streams up to `generation` stop with `error` (their results would reach nobody). */
  abortAll(error: LoomError, generation: number): void {
    for (const [id, call] of this.#inflight) {
      if (call.generation <= generation) {
        this.#inflight.delete(id);
        clearTimeout(call.timer);
        call.controller.abort(error);
      }
    }
  }
}
