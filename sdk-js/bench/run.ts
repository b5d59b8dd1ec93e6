// End-to-end benchmarks of the TypeScript SDK through a real bridge (docs/typescript.md).
//
//   node build/bench/run.js pubsub [--url U] [--events 1000000] [--runs 5] [--payload 100]
//     one TS publisher -> bridge -> one .NET subscriber (tests/Loom.TestAgent, QoS batch);
//     the rate is the subscriber's (first to last event), so every event is counted.
//   node build/bench/run.js calls [--url U] [--calls 50000] [--runs 5] [--concurrency 64]
//     a TS capability (`bench.echo`) answering calls from the .NET test agent's bench-call.
//   node build/bench/run.js all
//
// Without --url a bridge is started with ./loom up on random ports (LOOM_BRIDGE_LAUNCHER overrides).
// Prints one JSON line per run and a summary (median, min, max).
import { capability, connect } from '../src/mod.js';
import { Bridge, dotnetAgent, hasDotnetAgent, TEST_AGENT_DLL } from '../test/helpers/processes.js';

const args = process.argv.slice(2);
const scenario = args[0] ?? 'all';
const opt = (name: string, fallback: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const url = ((): string | undefined => {
  const i = args.indexOf('--url');
  return i >= 0 ? args[i + 1] : undefined;
})();

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
};
const summary = (name: string, unit: string, xs: number[]): void => {
  console.log(JSON.stringify({ summary: name, unit, median: Math.round(median(xs)), min: Math.round(Math.min(...xs)), max: Math.round(Math.max(...xs)), runs: xs.length }));
};

async function pubsub(bridgeUrl: string): Promise<void> {
  const events = opt('events', 1_000_000);
  const runs = opt('runs', 5);
  const payload = new Uint8Array(opt('payload', 100)).fill(97);
  const publisher = await connect(bridgeUrl, { name: 'bench-ts-publisher', logLevel: 'warn' });
  const rates: number[] = [];
  const publishRates: number[] = [];
  try {
    for (let run = 0; run < runs + 1; run++) {
      const topic = `bench.pubsub.r${run}`;
      const subscriber = dotnetAgent(['subscribe', '--url', bridgeUrl, '--topic', topic, '--count', String(events), '--timeout-s', '120']);
      await subscriber.ready(60_000);
      const framesBefore = publisher.stats.framesSent;
      const started = performance.now();
      for (let i = 0; i < events; i++) await publisher.emit(topic, payload);
      const published = performance.now();
      const result = await subscriber.json<{ received: number; seconds: number; events_per_second: number }>(180_000);
      await subscriber.stop();
      const frames = publisher.stats.framesSent - framesBefore;
      const publishRate = events / ((published - started) / 1000);
      const line = { scenario: 'pubsub', run: run === 0 ? 'warmup' : run, events, payload_bytes: payload.length, received: result.received, subscriber_events_per_second: result.events_per_second, publisher_events_per_second: Math.round(publishRate), messages_per_frame: Math.round(events / Math.max(1, frames)) };
      console.log(JSON.stringify(line));
      if (run > 0) {
        rates.push(result.events_per_second);
        publishRates.push(publishRate);
      }
    }
  } finally {
    await publisher.close();
  }
  summary('pubsub TS publisher -> .NET subscriber', 'events/s', rates);
  summary('pubsub TS publisher enqueue rate', 'events/s', publishRates);
}

async function calls(bridgeUrl: string): Promise<void> {
  const count = opt('calls', 50_000);
  const runs = opt('runs', 5);
  const concurrency = opt('concurrency', 64);
  const echo = capability({ name: 'bench.echo', handler: (input) => input });
  const provider = await connect(bridgeUrl, { name: 'bench-ts-provider', logLevel: 'warn' }, { capabilities: [echo] });
  const rates: number[] = [];
  try {
    for (let run = 0; run < runs + 1; run++) {
      const caller = dotnetAgent(['bench-call', '--url', bridgeUrl, '--capability', 'bench.echo', '--input', '{"n":1}', '--calls', String(count), '--concurrency', String(concurrency)]);
      const result = await caller.json<{ calls: number; calls_per_second: number; p50_us: number; p99_us: number; errors: number }>(300_000);
      await caller.stop();
      console.log(JSON.stringify({ scenario: 'calls', run: run === 0 ? 'warmup' : run, concurrency, ...result }));
      if (run > 0) rates.push(result.calls_per_second);
    }
  } finally {
    await provider.close();
  }
  summary(`TS capability called from .NET (concurrency ${concurrency})`, 'calls/s', rates);
}

async function main(): Promise<void> {
  if (!['pubsub', 'calls', 'all'].includes(scenario)) throw new Error(`Unknown scenario '${scenario}': use pubsub, calls or all.`);
  if (!hasDotnetAgent()) throw new Error(`${TEST_AGENT_DLL} is missing: dotnet build tests/Loom.TestAgent -c Release`);
  const bridge = url ? undefined : await Bridge.start();
  const bridgeUrl = url ?? (bridge as Bridge).grpcUrl;
  try {
    if (scenario === 'pubsub' || scenario === 'all') await pubsub(bridgeUrl);
    if (scenario === 'calls' || scenario === 'all') await calls(bridgeUrl);
  } finally {
    await bridge?.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
