// A TypeScript (sdk-js/dist) worker for test_collaboration.py, the counterpart of the .NET
// `Loom.TestAgent worker`: answers requests on --topic with --answer (plus the request under
// "req") after --delay-ms, bids --bid-cost on calls for proposals, and provides --capability
// (default collab.work) answering {"worker": id, "input": ...} after --work-ms.
// Prints `ready` once subscribed and `working <call id>` per call; runs until SIGTERM or stdin ends.
import { capability, connect } from '../../sdk-js/dist/mod.js';

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  if (i >= 0 && args[i + 1] !== undefined) return args[i + 1];
  if (fallback === undefined) throw new Error(`--${name} is required`);
  return fallback;
};

const url = opt('url');
const agentId = opt('agent-id');
const topic = opt('topic');
const answer = JSON.parse(opt('answer', JSON.stringify({ worker: agentId })));
const delayMs = Number(opt('delay-ms', '0'));
const workMs = Number(opt('work-ms', '0'));
const bidCost = opt('bid-cost', '');
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const work = capability({
  name: opt('capability', 'collab.work'),
  description: 'Collaboration test work.',
  handler: async (input, info) => {
    process.stdout.write(`working ${info?.callId ?? ''}\n`);
    await sleep(workMs);
    return { worker: agentId, input };
  },
});

const conn = await connect(url, { agentId, name: agentId }, { capabilities: [work] });
const sub = await conn.subscribe(topic);
process.stdout.write('ready\n');

const stop = async () => {
  await sub.unsubscribe().catch(() => {});
  await conn.close().catch(() => {});
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.stdin.on('end', () => void stop());
process.stdin.resume();

const handle = async (event) => {
  if (!event.replyTo) return; // records (bid, award, ...) and plain events
  if (event.headers['loom-collab'] === 'cfp') {
    if (bidCost !== '') await conn.reply(event, { cost: Number(bidCost), bidder: agentId });
    return;
  }
  if (delayMs > 0) await sleep(delayMs);
  let req = null;
  try { req = event.json(); } catch { req = null; }
  await conn.reply(event, { ...answer, req });
};

for await (const event of sub) {
  void handle(event).catch((error) => process.stderr.write(`reply failed: ${error}\n`));
}
