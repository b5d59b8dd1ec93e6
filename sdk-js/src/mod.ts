/**
 * Loom SDK for TypeScript and JavaScript: connect agents to a Loom bridge, publish and subscribe
 * to events, request/reply, call and provide capabilities, use memory and threads.
 * @module
 */
export { connect, Connection } from './connection.js';
export type {
  AgentContext,
  ConnectionSetup,
  ConnectionStats,
  ConnectionStatus,
  InvokeOptions,
  MemoryWriteOptions,
  RequestManyOptions,
  RequestOptions,
  RoutingPolicy,
} from './connection.js';
export { defineAgent, startAgent } from './agent.js';
export type { AgentDefinition, RunningAgent, StartAgentOptions, TopicSpec } from './agent.js';
export { run } from './runner.js';
export type { RunOptions } from './runner.js';
export { capability } from './capability.js';
export type {
  CallInfo,
  Capability,
  CapabilitySpec,
  Infer,
  InferInput,
  JsonSchema,
  Schema,
} from './capability.js';
export { LoomEvent } from './event.js';
export type { EmitOptions, OverflowPolicy, Qos } from './event.js';
export { Subscription } from './subscription.js';
export type { SubscribeOptions } from './subscription.js';
export { Memory, MemoryItem } from './memory.js';
export { Llm } from './llm.js';
export type {
  LlmChatRequest,
  LlmChatResult,
  LlmEmbedResult,
  LlmHost,
  LlmMessage,
  LlmStreamEvent,
  LlmTool,
  LlmToolCall,
  LlmUsage,
} from './llm.js';
export type { CompareAndSetResult, MemoryOptions, MemorySetOptions } from './memory.js';
export { Thread } from './thread.js';
export { Consumer, ConsumerMessage } from './durable.js';
export type {
  ConsumeOptions,
  ConsumerInfo,
  DeliverPolicy,
  DetachOptions,
  PublishAck,
  PublishDurableOptions,
  ReadStreamOptions,
  StoredEvent,
  StreamReadResult,
  StreamSpec,
  StreamState,
} from './durable.js';
export { matches } from './topics.js';
export {
  applyMajority,
  barrier,
  COLLAB_KIND_HEADER,
  contractNet,
  gather,
  isCallForProposals,
  isCollabRecord,
} from './collab.js';
export type {
  Attempt,
  BarrierOptions,
  BarrierResult,
  Bid,
  CollabOutcome,
  ContractNetOptions,
  ContractNetResult,
  GatherOptions,
  GatherResult,
  JoinStrategy,
  Reply,
  Scoring,
} from './collab.js';
export type { JoinThreadOptions } from './thread.js';
export {
  BudgetExceededError,
  CancelledError,
  CapabilityNotFoundError,
  createError,
  ERROR_CODES,
  HopLimitExceededError,
  InternalError,
  InvalidParamsError,
  LoomError,
  parseErrorCode,
  PermissionDeniedError,
  ProviderUnavailableError,
  ResourceExhaustedError,
  SessionNotFoundError,
  TimeoutError,
  ToolError,
  TtlExpiredError,
  UnauthenticatedError,
  UnavailableError,
} from './errors.js';
export type { ErrorCode, LoomErrorOptions } from './errors.js';
export { consoleLogger, DEFAULT_URL, ENVIRONMENT_VARIABLES, resolveOptions } from './options.js';
export type { ConnectOptions, Logger, LogLevel } from './options.js';
