// Publisher for `./loom bench external`: publishes $LOOM_EVENTS envelopes of $LOOM_PAYLOAD bytes on
// $LOOM_TOPIC to the bridge at $LOOM_URL, drains, and exits 0. Needs the built SDK (npm run build).
//   ./loom bench external --cmd "node sdk-js/bench/publish.mjs"
import { connect } from '../dist/mod.js';

const { LOOM_URL, LOOM_TOPIC, LOOM_EVENTS, LOOM_PAYLOAD } = process.env;
const events = Number(LOOM_EVENTS);
const payload = new Uint8Array(Number(LOOM_PAYLOAD)).fill(120);
const connection = await connect(LOOM_URL, { name: 'ts-external-publisher', logLevel: 'warn' });
for (let i = 0; i < events; i++) await connection.emit(LOOM_TOPIC, payload, { qos: 'batch' });
await connection.drain();
