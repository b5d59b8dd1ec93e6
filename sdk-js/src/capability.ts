/**
 * Capabilities: named, versioned functions an agent provides, with JSON Schemas for input and
 * output given directly or derived from zod 4 schemas.
 * @module
 */
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import * as z from 'zod';

import { InvalidParamsError, LoomError, ToolError } from './errors.js';
import type { PbCapability } from './internal/proto.js';
import { jsonPointer } from './internal/util.js';

/** A JSON Schema document (2020-12 subset the bridge understands; `{}` accepts anything). */
export type JsonSchema = { [keyword: string]: unknown } | boolean;

/** A schema: a zod 4 schema (classic or mini) or a raw JSON Schema. */
export type Schema = z.core.$ZodType | JsonSchema;

/** The value a schema describes after parsing (`unknown` for raw JSON Schema). */
export type Infer<S> = S extends z.core.$ZodType ? z.output<S> : unknown;
/** The value a schema accepts (`unknown` for raw JSON Schema). */
export type InferInput<S> = S extends z.core.$ZodType ? z.input<S> : unknown;

/** What a capability handler learns about the call it answers. */
export interface CallInfo {
  /** The bridge-assigned call id (unique per provider session). */
  readonly callId: string;
  /** The capability name. */
  readonly capability: string;
  /** The version the router chose. */
  readonly version: string;
  /** The calling agent's id (`anonymous` for ForwardAction without a session). */
  readonly caller: string;
  /** Conversation the call belongs to, or "". */
  readonly threadId: string;
  /** W3C trace context, or "". */
  readonly traceparent: string;
  /** Headers passed by the caller. */
  readonly headers: Readonly<Record<string, string>>;
  /** When the answer stops being useful (Unix ms). */
  readonly deadlineUnixMs: number;
  /** Aborted when the caller gives up, the deadline passes, or the connection closes. */
  readonly signal: AbortSignal;
}

/** The definition of a capability, as given to {@link capability}. */
export interface CapabilitySpec<I extends Schema | undefined, O extends Schema | undefined, C> {
  /** `[A-Za-z0-9_.:-]{1,128}`, e.g. `web.search`. */
  name: string;
  /** Semver. @default "1.0.0" */
  version?: string;
  /** For humans and LLM tool lists. @default "" */
  description?: string;
  /** Input schema: zod 4 or raw JSON Schema. @default {} (anything) */
  input?: I;
  /** Output schema: zod 4 or raw JSON Schema. @default {} (anything) */
  output?: O;
  /** Free labels. @default [] */
  tags?: string[];
  /** Relative cost, for LOWEST_COST routing. @default 0 */
  costHint?: number;
  /** Expected latency, seeds LEAST_LATENCY routing. @default 0 */
  latencyHintMs?: number;
  /** Calls this provider runs at once; 0 = unlimited. @default 0 */
  maxConcurrency?: number;
  /**
   * Answers one call. Its input is validated (and, for zod, parsed) first; its return value is
   * validated against the output schema and sent as JSON. A thrown {@link LoomError} keeps its
   * code; anything else becomes TOOL_ERROR. Either way the agent goes on.
   */
  handler: (input: Infer<I>, call: CallInfo, context: C) => Promise<InferInput<O>> | InferInput<O>;
}

/** A capability ready to be registered by an agent or a connection. */
export interface Capability<C = unknown> {
  readonly name: string;
  readonly version: string;
  /** @internal */
  readonly descriptor: PbCapability;
  /** @internal Validates and parses an input; throws INVALID_PARAMS with the failing JSON pointer. */
  parseInput(input: unknown): unknown;
  /** @internal Validates an output; throws TOOL_ERROR with the failing JSON pointer. */
  parseOutput(output: unknown): unknown;
  /** @internal */
  run(input: unknown, call: CallInfo, context: C): unknown;
  /** The input JSON Schema sent to the bridge. */
  readonly inputSchema: JsonSchema;
  /** The output JSON Schema sent to the bridge. */
  readonly outputSchema: JsonSchema;
}

const isZod = (schema: unknown): schema is z.core.$ZodType =>
  typeof schema === 'object' && schema !== null && '_zod' in schema;

let ajv: Ajv2020 | undefined;
const getAjv = (): Ajv2020 =>
  (ajv ??= new Ajv2020({ strict: false, allErrors: false, validateFormats: false }));

type Parser = (value: unknown) => { ok: true; value: unknown } | { ok: false; path: string; message: string };

function toJsonSchema(schema: Schema | undefined, io: 'input' | 'output', where: string): JsonSchema {
  if (schema === undefined) return {};
  if (!isZod(schema)) return schema;
  try {
    const json = z.toJSONSchema(schema, { target: 'draft-2020-12', io, unrepresentable: 'any' }) as Record<
      string,
      unknown
    >;
    delete json.$schema;
    return json;
  } catch (error) {
    throw new InvalidParamsError(
      `The ${where} zod schema cannot be expressed as JSON Schema: ${(error as Error).message}`,
      { path: `/${where}`, cause: error },
    );
  }
}

function ajvPointer(error: ErrorObject): string {
  if (error.keyword === 'required' && typeof error.params.missingProperty === 'string') {
    return `${error.instancePath}${jsonPointer([error.params.missingProperty])}`;
  }
  if (error.keyword === 'additionalProperties' && typeof error.params.additionalProperty === 'string') {
    return `${error.instancePath}${jsonPointer([error.params.additionalProperty])}`;
  }
  return error.instancePath;
}

function makeParser(schema: Schema | undefined, where: string): Parser {
  if (
    schema === undefined ||
    schema === true ||
    (typeof schema === 'object' && !isZod(schema) && Object.keys(schema).length === 0)
  ) {
    return (value) => ({ ok: true, value });
  }
  if (isZod(schema)) {
    return (value) => {
      const result = z.safeParse(schema, value);
      if (result.success) return { ok: true, value: result.data };
      const issue = result.error.issues[0];
      return { ok: false, path: jsonPointer(issue?.path ?? []), message: issue?.message ?? 'invalid' };
    };
  }
  let validate: ValidateFunction;
  try {
    validate = getAjv().compile(schema);
  } catch (error) {
    throw new InvalidParamsError(`The ${where} JSON Schema does not compile: ${(error as Error).message}`, {
      path: `/${where}`,
      cause: error,
    });
  }
  return (value) => {
    if (validate(value)) return { ok: true, value };
    const error = validate.errors?.[0];
    return {
      ok: false,
      path: error ? ajvPointer(error) : '',
      message: error?.message ?? 'does not match the schema',
    };
  };
}

const NAME = /^[A-Za-z0-9_.:-]{1,128}$/;

/**
 * Defines a capability. Schemas may be zod 4 schemas (converted with `z.toJSONSchema`, and used to
 * parse inputs, so the handler gets typed, transformed values) or raw JSON Schema objects
 * (validated with ajv 8). Invalid input fails the call with INVALID_PARAMS and the failing JSON
 * pointer as `path`; an output that does not match fails it with TOOL_ERROR.
 *
 * @example
 * const add = capability({
 *   name: 'math.add',
 *   input: z.object({ a: z.number(), b: z.number() }),
 *   output: z.object({ sum: z.number() }),
 *   handler: ({ a, b }) => ({ sum: a + b }),
 * });
 */
export function capability<
  I extends Schema | undefined = undefined,
  O extends Schema | undefined = undefined,
  C = AgentContextLike,
>(spec: CapabilitySpec<I, O, C>): Capability<C> {
  if (!NAME.test(spec.name)) {
    throw new InvalidParamsError(
      `Capability name '${spec.name}' is invalid; use 1-128 characters of A-Z a-z 0-9 _ . : -.`,
      { path: '/name' },
    );
  }
  if (typeof spec.handler !== 'function')
    throw new InvalidParamsError(`Capability '${spec.name}' has no handler function.`, { path: '/handler' });
  const inputSchema = toJsonSchema(spec.input, 'input', 'input');
  const outputSchema = toJsonSchema(spec.output, 'output', 'output');
  const inputParser = makeParser(spec.input, 'input');
  const outputParser = makeParser(spec.output, 'output');
  const version = spec.version ?? '1.0.0';
  const descriptor: PbCapability = {
    name: spec.name,
    version,
    description: spec.description ?? '',
    inputSchemaJson: JSON.stringify(inputSchema),
    outputSchemaJson: JSON.stringify(outputSchema),
    tags: spec.tags ?? [],
    costHint: spec.costHint ?? 0,
    latencyHintMs: spec.latencyHintMs ?? 0,
    maxConcurrency: spec.maxConcurrency ?? 0,
  };
  const handler = spec.handler as (input: unknown, call: CallInfo, context: C) => unknown;
  return {
    name: spec.name,
    version,
    descriptor,
    inputSchema,
    outputSchema,
    parseInput(input) {
      const result = inputParser(input);
      if (result.ok) return result.value;
      throw new InvalidParamsError(
        `The input of '${spec.name}' does not match its schema at '${result.path || '(root)'}': ${result.message}`,
        { path: result.path || '' },
      );
    },
    parseOutput(output) {
      const result = outputParser(output);
      if (result.ok) return result.value;
      throw new ToolError(
        `The output of '${spec.name}' does not match its schema at '${result.path || '(root)'}': ${result.message}`,
        { path: result.path || '' },
      );
    },
    run: (input, call, context) => handler(input, call, context),
  };
}

/** Placeholder for the default context type of a capability handler (the agent context). */
export type AgentContextLike = import('./connection.js').AgentContext;

/** Turns anything a handler threw into a Loom error: Loom errors keep their code, the rest is TOOL_ERROR. */
export function toLoomError(error: unknown, capabilityName: string): LoomError {
  if (error instanceof LoomError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new ToolError(`Capability '${capabilityName}' failed: ${message}`, { cause: error });
}
