// A TypeScript agent (sdk-js/dist) whose capabilities the MCP exposure tests call through /mcp.
//   node ts_provider.mjs --url GRPC_URL [--agent-id ID]
// Serves ts.multiply (object in and out), ts.shout (a string in and out), ts.whoami and ts.fail;
// prints `ready` once registered; runs until SIGTERM/SIGINT or until stdin closes.
import { capability, connect } from '../../../sdk-js/dist/mod.js';

const args = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : fallback;
};

const capabilities = [
  capability({
    name: 'ts.multiply',
    description: 'Multiplies a and b (TypeScript).',
    input: { type: 'object', properties: { a: { type: 'number' }, b: { type: 'number' } }, required: ['a', 'b'], additionalProperties: false },
    output: { type: 'object', properties: { product: { type: 'number' } }, required: ['product'] },
    handler: ({ a, b }) => ({ product: a * b }),
  }),
  capability({
    name: 'ts.shout',
    description: 'Upper-cases a string (TypeScript).',
    input: { type: 'string', minLength: 1 },
    output: { type: 'string' },
    handler: (text) => `${text.toUpperCase()}!`,
  }),
  capability({
    name: 'ts.whoami',
    description: 'Tells who called (TypeScript).',
    input: { type: 'object' },
    handler: (_input, call) => ({ caller: call.caller }),
  }),
  capability({
    name: 'ts.fail',
    description: 'Always fails (TypeScript).',
    input: { type: 'object' },
    handler: () => { throw new Error('ts.fail on purpose'); },
  }),
];

const agentId = arg('agent-id', '');
const conn = await connect(arg('url', 'http://127.0.0.1:7070'), { name: 'ts-mcp-provider', logLevel: 'silent', ...(agentId ? { agentId } : {}) }, { capabilities });
process.stdout.write('ready\n');
let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await conn.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.resume();
