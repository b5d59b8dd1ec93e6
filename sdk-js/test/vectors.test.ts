// Conformance vectors (tests/vectors/*.json, shared with the .NET and Python suites): topic
// validity and matching, error codes and statuses, frame bytes, option defaults and bounds. Each
// vector is its own test; a missing vectors folder fails this file.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';

import * as sdk from '../src/mod.js';
import {
  createError,
  InvalidParamsError,
  LoomError,
  matches,
  parseErrorCode,
  resolveOptions,
  type ErrorCode,
} from '../src/mod.js';
import { encodeClientFrame } from '../src/internal/frame-encoder.js';
import { fromProtoError, fromStatus, pb } from '../src/internal/proto.js';
import { validatePattern, validateTopic } from '../src/internal/util.js';
import { REPO } from './helpers/processes.js';

const VECTORS = path.join(REPO, 'tests/vectors');

interface Validity {
  name: string;
  value: string;
  valid: boolean;
  reason?: string;
}
interface Match {
  name: string;
  pattern: string;
  topic: string;
  match: boolean;
}
interface Topics {
  error: { code: string; topic_path: string; pattern_path: string };
  topics: Validity[];
  patterns: Validity[];
  matches: Match[];
}
interface Code {
  code: ErrorCode;
  number: number;
  grpc_status: string;
  grpc_status_number: number;
  retryable: boolean;
  exception?: { dotnet: string; python: string; typescript: string };
}
interface FromStatus {
  name: string;
  grpc_status: string;
  grpc_status_number: number;
  trailers?: Record<string, string>;
  code: ErrorCode;
  path?: string;
}
interface Errors {
  codes: Code[];
  from_error: { name: string; number: number; code: ErrorCode }[];
  from_status: FromStatus[];
  names: { text: string; code: ErrorCode | null }[];
}
interface Frames {
  cases: { name: string; type: string; json: Record<string, unknown>; hex: string }[];
}
interface Option {
  name: string;
  unit: string;
  default: unknown;
  min: number;
  max?: number;
  sdk: { typescript: { option: string; default?: unknown } };
}
interface Options {
  options: Option[];
}

function load<T>(name: string): T {
  // No existence check: a missing file throws here and fails the whole file, as it must.
  return JSON.parse(readFileSync(path.join(VECTORS, name), 'utf8')) as T;
}

const topics = load<Topics>('topics.json');
const errors = load<Errors>('errors.json');
const frames = load<Frames>('frames.json');
const options = load<Options>('options.json');

// ------------------------------------------------------------------ topics

function expectInvalid(check: () => void, pathExpected: string): void {
  assert.throws(check, (error: unknown) => {
    assert.ok(error instanceof InvalidParamsError, `expected InvalidParamsError, got ${String(error)}`);
    assert.equal(error.code, topics.error.code);
    assert.equal(error.path, pathExpected);
    assert.ok(error.message.length > 0);
    return true;
  });
}

for (const c of topics.topics) {
  test(`vectors topics: topic ${c.name}`, () => {
    if (c.valid) validateTopic(c.value);
    else expectInvalid(() => validateTopic(c.value), topics.error.topic_path);
  });
}

for (const c of topics.patterns) {
  test(`vectors topics: pattern ${c.name}`, () => {
    if (c.valid) validatePattern(c.value);
    else expectInvalid(() => validatePattern(c.value), topics.error.pattern_path);
  });
}

for (const c of topics.matches) {
  test(`vectors topics: match ${c.name}`, () => {
    assert.equal(matches(c.pattern, c.topic), c.match);
  });
}

// ------------------------------------------------------------------ errors

const withType = errors.codes.filter(
  (c): c is Code & { exception: NonNullable<Code['exception']> } => c.exception !== undefined,
);
const typeOf = (code: string): string =>
  withType.find((c) => c.code === code)?.exception.typescript ?? '(none)';

for (const c of errors.codes) {
  test(`vectors errors: code ${c.code} is number ${c.number}`, () => {
    assert.equal(sdk.ERROR_CODES[c.number], c.code);
    assert.equal(pb.ErrorCode[`ERROR_CODE_${c.code}`], c.number);
  });
}

for (const c of withType) {
  test(`vectors errors: ${c.code} is ${c.exception.typescript}`, () => {
    const made = createError(c.code, 'm');
    assert.ok(made instanceof LoomError);
    assert.equal(made.constructor.name, c.exception.typescript);
    assert.equal(made.name, c.exception.typescript);
    assert.equal(made.code, c.code);
    assert.equal(made.retryable, c.retryable);
    assert.equal(
      (sdk as Record<string, unknown>)[c.exception.typescript],
      made.constructor,
      `${c.exception.typescript} is not exported`,
    );
    const parsed = fromProtoError({ code: c.number, message: 'm' });
    assert.equal(parsed.name, c.exception.typescript);
    assert.equal(parsed.code, c.code);
    assert.equal(parsed.retryable, c.retryable);
  });
}

for (const c of errors.from_error) {
  test(`vectors errors: from Error ${c.name}`, () => {
    const error = fromProtoError({ code: c.number, message: 'm' });
    assert.equal(error.code, c.code);
    assert.equal(error.name, typeOf(c.code));
  });
}

for (const c of errors.from_status) {
  test(`vectors errors: from status ${c.name}`, () => {
    const metadata = new grpc.Metadata();
    for (const [key, value] of Object.entries(c.trailers ?? {})) metadata.set(key, value);
    const status = grpc.status[c.grpc_status as keyof typeof grpc.status];
    assert.equal(status, c.grpc_status_number);
    const error = fromStatus({ code: status, details: 'detail', metadata }, '127.0.0.1:1');
    assert.equal(error.code, c.code);
    assert.equal(error.path, c.path);
    assert.equal(error.name, typeOf(c.code));
  });
}

for (const c of errors.names) {
  test(`vectors errors: name '${c.text}'`, () => {
    // parseErrorCode gives INTERNAL for names it does not know (§11: unknown codes are INTERNAL).
    assert.equal(parseErrorCode(c.text), c.code ?? 'INTERNAL');
  });
}

// ------------------------------------------------------------------ frames

// protobufjs reflection over the .proto files parses the proto3 JSON exactly (int64 as Long);
// the SDK's generated codec (src/gen, JS numbers) must then decode and re-encode the same bytes.
const root = protobuf.loadSync([path.join(REPO, 'proto/loom/v1/bridge.proto')]);
const asObject = { longs: String, enums: String, bytes: String } as const;

type Codec = { decode(bytes: Uint8Array): object; encode(message: object): { finish(): Uint8Array } };

for (const c of frames.cases) {
  test(`vectors frames: ${c.type} ${c.name}`, () => {
    const type = root.lookupType(c.type);
    const message = type.fromObject(c.json);
    const hex = Buffer.from(type.encode(message).finish()).toString('hex');
    assert.equal(hex, c.hex, 'protobufjs encoding of the JSON');
    const bytes = Buffer.from(c.hex, 'hex');
    assert.deepEqual(
      type.toObject(type.decode(bytes), asObject),
      type.toObject(message, asObject),
      'decoded bytes',
    );

    const generated = (pb as unknown as Record<string, Codec>)[c.type.split('.').pop() as string] as Codec;
    const decoded = generated.decode(bytes);
    assert.equal(
      Buffer.from(generated.encode(decoded).finish()).toString('hex'),
      c.hex,
      'the SDK codec re-encoding its decoding',
    );
    if (c.type === 'loom.v1.ClientFrame') {
      assert.equal(
        encodeClientFrame(decoded).toString('hex'),
        c.hex,
        'the SDK hand encoder (frame-encoder.ts)',
      );
    }
  });
}

// ------------------------------------------------------------------ options

for (const c of options.options) {
  const sdkOption = c.sdk.typescript;
  const name = sdkOption.option as keyof ReturnType<typeof resolveOptions>;
  test(`vectors options: ${c.name} (${name}) default`, () => {
    assert.equal(resolveOptions({}, {})[name], 'default' in sdkOption ? sdkOption.default : c.default);
  });
  test(`vectors options: ${c.name} (${name}) bounds`, () => {
    const fraction = c.unit === 'fraction';
    const max = c.max === undefined ? [] : [c.max];
    const accepted = fraction ? [c.min, ...max] : [c.min, c.min + 1, ...max];
    const rejected = [c.min - (fraction ? 0.1 : 1), ...max.map((m) => m + (fraction ? 0.1 : 1))];
    for (const value of accepted) assert.equal(resolveOptions({ [name]: value }, {})[name], value);
    for (const value of rejected) {
      assert.throws(
        () => resolveOptions({ [name]: value }, {}),
        (error: unknown) => error instanceof InvalidParamsError && error.path === `/${name}`,
      );
    }
  });
}
