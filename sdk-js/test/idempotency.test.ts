// Idempotent calls (the `idempotencyKey` option of invoke) against a real bridge started by the test.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { z } from 'zod';

import { capability, connect, type Connection, InvalidParamsError } from '../src/mod.js';
import { Bridge, within } from './helpers/processes.js';

const T = { timeout: 30_000 };
let bridge: Bridge;
const opened: Connection[] = [];

async function open(name: string, setup: Parameters<typeof connect>[2] = {}): Promise<Connection> {
  const conn = await connect(bridge.grpcUrl, { name, logLevel: 'error' }, setup);
  opened.push(conn);
  return conn;
}

before(async () => {
  bridge = await Bridge.start();
});

after(async () => {
  await Promise.all(opened.map((c) => within(c.close(), 10_000, 'close')));
  await bridge.stop();
});

test('the same idempotency key invokes the provider once and a new key again', T, async () => {
  const items: string[] = [];
  const ticket = capability({
    name: 'js.ticket',
    input: z.object({ item: z.string() }),
    handler: ({ item }) => {
      items.push(item);
      return { ticket: items.length, item };
    },
  });
  await open('ticket-provider', { capabilities: [ticket] });
  const caller = await open('ticket-caller');

  const first = await caller.invoke('js.ticket', { item: 'tea' }, { idempotencyKey: 'order-1' });
  const again = await caller.invoke('js.ticket', { item: 'tea' }, { idempotencyKey: 'order-1' });
  assert.deepEqual(first, { ticket: 1, item: 'tea' });
  assert.deepEqual(again, first);
  assert.deepEqual(items, ['tea']);

  assert.deepEqual(await caller.invoke('js.ticket', { item: 'tea' }, { idempotencyKey: 'order-2' }), {
    ticket: 2,
    item: 'tea',
  });
  assert.deepEqual(await caller.invoke('js.ticket', { item: 'tea' }), { ticket: 3, item: 'tea' });
  assert.equal(items.length, 3);

  await assert.rejects(
    caller.invoke('js.ticket', { item: 'coffee' }, { idempotencyKey: 'order-1' }),
    (e: InvalidParamsError) => {
      assert.equal(e.code, 'INVALID_PARAMS');
      assert.match(e.message, /different input/);
      return true;
    },
  );
  await assert.rejects(
    caller.invoke('js.ticket', { item: 'tea' }, { idempotencyKey: 'has space' }),
    (e: InvalidParamsError) => {
      assert.equal(e.code, 'INVALID_PARAMS');
      assert.match(e.message, /idempotency_key .*printable ASCII/);
      return true;
    },
  );
  assert.equal(items.length, 3);
});
