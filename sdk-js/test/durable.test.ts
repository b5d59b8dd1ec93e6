// Durable streams end to end: a real bridge (`loom up --config loom.yaml --data-dir DIR`) with a
// stream `orders` capturing `orders.>`, the SDK over gRPC, and a restart on the same data directory.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  connect,
  type Connection,
  type ConsumerMessage,
  InvalidParamsError,
  type LoomEvent,
  type PublishAck,
} from '../src/mod.js';
import { Bridge, waitFor, within } from './helpers/processes.js';

const T = { timeout: 120_000 };
const dir = mkdtempSync(path.join(tmpdir(), 'loom-sdk-js-durable-'));
let bridge: Bridge;
const conns: Connection[] = [];
const options = {
  logLevel: 'silent' as const,
  reconnectInitialMs: 50,
  reconnectMaxMs: 400,
  heartbeatMs: 500,
};

async function open(name: string): Promise<Connection> {
  const connection = await connect(bridge.grpcUrl, { ...options, name });
  conns.push(connection);
  return connection;
}

/** Collects what a consumer delivers, in arrival order. */
function collect(received: ConsumerMessage[]): (m: ConsumerMessage) => void {
  return (m) => {
    received.push(m);
  };
}

before(async () => {
  const config = path.join(dir, 'loom.yaml');
  writeFileSync(
    config,
    [
      'streams:',
      '  - name: orders',
      '    subjects: [orders.>]',
      '  - name: jobs',
      '    subjects: [jobs.>]',
      '',
    ].join('\n'),
  );
  bridge = await Bridge.start([
    '--config',
    config,
    '--data-dir',
    path.join(dir, 'data'),
    '--heartbeat-ms',
    '500',
  ]);
});

after(async () => {
  await Promise.all(conns.map((c) => within(c.close(), 10_000, 'close')));
  await bridge.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('durable streams', () => {
  test(
    'publishDurable resolves with the stream and sequence; a repeated id is stored once; no stream is INVALID_PARAMS',
    T,
    async () => {
      const c = await open('dur-pub');
      const first = await c.publishDurable('orders.new', { n: 1 }, { id: 'order-1' });
      const second = await c.publishDurable('orders.new', { n: 2 }, { id: 'order-2' });
      assert.deepEqual(first, { stream: 'orders', sequence: 1, duplicate: false });
      assert.deepEqual(second, { stream: 'orders', sequence: 2, duplicate: false });
      assert.deepEqual(await c.publishDurable('orders.new', { n: 1 }, { id: 'order-1' }), {
        stream: 'orders',
        sequence: 1,
        duplicate: true,
      });
      const third = await c.publishDurable('orders.new', { n: 3 }); // a fresh id
      assert.equal(third.sequence, 3);

      await assert.rejects(c.publishDurable('chat.x', 'not durable'), (error: unknown) => {
        assert.ok(error instanceof InvalidParamsError);
        assert.equal(error.name, 'InvalidParamsError');
        assert.equal(error.code, 'INVALID_PARAMS');
        assert.match(error.message, /No durable stream captures topic 'chat\.x'/);
        return true;
      });
      await assert.rejects(c.publishDurable('orders.*', 1), { code: 'INVALID_PARAMS', path: '/topic' });
    },
  );

  test(
    'readStream reads from a sequence and from a time; an unknown stream is INVALID_PARAMS',
    T,
    async () => {
      const c = await open('dur-read');
      const start = Date.now();
      const acks: PublishAck[] = [];
      for (let i = 0; i < 5; i++) acks.push(await c.publishDurable('jobs.read', { i }));
      const from = acks[2]?.sequence ?? 0;
      const read = await c.readStream('jobs', { fromSequence: from, maxEvents: 2 });
      assert.deepEqual(
        read.events.map((e) => e.sequence),
        [from, from + 1],
      );
      assert.deepEqual(
        read.events.map((e) => e.event.json<{ i: number }>().i),
        [2, 3],
      );
      assert.equal(read.lastSequence, acks[4]?.sequence);
      assert.ok(read.firstSequence >= 1 && read.firstSequence <= (acks[0]?.sequence ?? 0));
      assert.equal(read.events[0]?.event.topic, 'jobs.read');
      assert.ok((read.events[0]?.storedUnixMs ?? 0) >= start - 1000);
      const byTime = await c.readStream('jobs', { fromTime: new Date(start - 1000) });
      assert.ok(byTime.events.length >= 5);
      await assert.rejects(c.readStream('nope'), { code: 'INVALID_PARAMS' });
      await assert.rejects(c.readStream('orders', { maxEvents: 5000 }), {
        code: 'INVALID_PARAMS',
        path: '/maxEvents',
      });
    },
  );

  test(
    'consume: messages carry sequence, delivery count and event; ack settles; nak is redelivered',
    T,
    async () => {
      const c = await open('dur-consume');
      const last = (await c.readStream('orders')).lastSequence;
      const consumer = await c.consume({
        stream: 'orders',
        name: 'acker',
        deliver: 'new',
        ackWaitMs: 30_000,
      });
      assert.equal(consumer.info.nextSequence, last + 1);
      assert.equal(consumer.info.maxDeliver, 5);
      const a = await c.publishDurable('orders.consume', { k: 'a' });
      const b = await c.publishDurable('orders.consume', { k: 'b' });
      const iterator = consumer[Symbol.asyncIterator]();
      const m1 = (await within(iterator.next(), 10_000, 'first delivery')).value as ConsumerMessage;
      const m2 = (await within(iterator.next(), 10_000, 'second delivery')).value as ConsumerMessage;
      assert.deepEqual([m1.sequence, m1.deliveryCount, m1.event.json()], [a.sequence, 1, { k: 'a' }]);
      assert.deepEqual([m2.sequence, m2.deliveryCount, m2.event.json()], [b.sequence, 1, { k: 'b' }]);
      assert.equal(m1.stream, 'orders');
      m1.ack();
      m2.nak(50);
      const again = (await within(iterator.next(), 10_000, 'the redelivery')).value as ConsumerMessage;
      assert.deepEqual([again.sequence, again.deliveryCount], [b.sequence, 2]);
      again.inProgress();
      again.ack();
      assert.ok(again.settled);
      await consumer.detach();
      // Attached again by name: it resumes after what was acked, nothing pending.
      const resumed = await c.consume({ stream: 'orders', name: 'acker' });
      assert.equal(resumed.info.ackFloor, b.sequence);
      assert.equal(resumed.info.pending, 0);
      await resumed.detach({ delete: true });
    },
  );

  test(
    'after maxDeliver deliveries the event goes to the dead-letter topic with its headers',
    T,
    async () => {
      const c = await open('dur-dead');
      const dead = await c.subscribe('dead.orders.>');
      const failed: number[] = [];
      const consumer = await c.consume(
        {
          stream: 'orders',
          name: 'failer',
          deliver: 'new',
          maxDeliver: 2,
          deadLetterTopic: 'dead.orders.failer',
        },
        (m) => {
          failed.push(m.deliveryCount);
          throw new Error('cannot handle it');
        },
      );
      const ack = await c.publishDurable('orders.poison', { bad: true });
      const letter = (await within(dead.next(), 20_000, 'the dead letter')).value as LoomEvent;
      assert.equal(letter.topic, 'dead.orders.failer');
      assert.deepEqual(letter.json(), { bad: true });
      assert.equal(letter.headers['loom-dead-topic'], 'orders.poison');
      assert.equal(letter.headers['loom-dead-stream'], 'orders');
      assert.equal(letter.headers['loom-dead-consumer'], 'failer');
      assert.equal(letter.headers['loom-dead-sequence'], String(ack.sequence));
      assert.equal(letter.headers['loom-dead-deliveries'], '2');
      assert.deepEqual(failed, [1, 2]);
      assert.equal(consumer.failed, 2);
      await consumer.detach({ delete: true });
      await dead.unsubscribe();
    },
  );

  test(
    'bad consumer options are INVALID_PARAMS naming the option; a second consume of the same name is refused',
    T,
    async () => {
      const c = await open('dur-bad');
      await assert.rejects(c.consume({ stream: 'orders', name: 'has space' }), {
        code: 'INVALID_PARAMS',
        path: '/name',
      });
      await assert.rejects(c.consume({ stream: 'orders', name: 'x', filter: 'a..b' }), {
        code: 'INVALID_PARAMS',
        path: '/filter',
      });
      await assert.rejects(c.consume({ stream: 'orders', name: 'x', deliver: 'by-sequence' }), {
        code: 'INVALID_PARAMS',
        path: '/startSequence',
      });
      await assert.rejects(c.consume({ stream: 'orders', name: 'x', maxAckPending: 200_000 }), {
        code: 'INVALID_PARAMS',
        path: '/maxAckPending',
      });
      await assert.rejects(c.consume({ stream: 'nope', name: 'x' }), (error: unknown) => {
        assert.ok(error instanceof InvalidParamsError);
        assert.match(error.message, /There is no durable stream 'nope'/);
        return true;
      });
      const consumer = await c.consume({ stream: 'orders', name: 'twice', deliver: 'new' });
      await assert.rejects(c.consume({ stream: 'orders', name: 'twice' }), {
        code: 'INVALID_PARAMS',
        path: '/name',
      });
      await consumer.detach({ delete: true });
    },
  );

  test('createStream / streamInfo / listStreams / deleteStream manage streams from an agent', T, async () => {
    const c = await open('dur-admin');
    const created = await c.createStream({
      name: 'audit',
      subjects: ['audit.>'],
      maxEvents: 1000,
      duplicateWindowMs: 60_000,
    });
    assert.equal(created.name, 'audit');
    assert.deepEqual(created.subjects, ['audit.>']);
    assert.equal(created.maxEvents, 1000);
    assert.equal(created.duplicateWindowMs, 60_000);
    assert.equal(created.lastSequence, 0);
    // Idempotent with the same settings; different settings are INVALID_PARAMS.
    assert.equal(
      (
        await c.createStream({
          name: 'audit',
          subjects: ['audit.>'],
          maxEvents: 1000,
          duplicateWindowMs: 60_000,
        })
      ).name,
      'audit',
    );
    await assert.rejects(c.createStream({ name: 'audit', subjects: ['other.>'] }), {
      code: 'INVALID_PARAMS',
    });
    const ack = await c.publishDurable('audit.login', { user: 'ada' });
    assert.deepEqual([ack.stream, ack.sequence], ['audit', 1]);
    const info = await c.streamInfo('audit');
    assert.deepEqual([info.lastSequence, info.events], [1, 1]);
    assert.ok(info.bytes > 0);
    const names = (await c.listStreams()).map((s) => s.name);
    assert.ok(names.includes('audit') && names.includes('orders'), names.join(','));
    await c.deleteStream('audit');
    await assert.rejects(c.streamInfo('audit'), { code: 'INVALID_PARAMS' });
    await assert.rejects(c.publishDurable('audit.login', 1), { code: 'INVALID_PARAMS' });
    await assert.rejects(c.createStream({ name: 'bad name', subjects: ['x.>'] }), {
      code: 'INVALID_PARAMS',
      path: '/name',
    });
    await assert.rejects(c.createStream({ name: 'nosubjects', subjects: [] }), {
      code: 'INVALID_PARAMS',
      path: '/subjects',
    });
  });

  test(
    'a consumer survives a bridge restart on the same data directory: it is attached again and resumes',
    T,
    async () => {
      const publisher = await open('dur-restart-pub');
      const worker = await open('dur-restart-worker');
      const received: ConsumerMessage[] = [];
      const consumer = await worker.consume(
        { stream: 'orders', name: 'survivor', deliver: 'new', ackWaitMs: 2000 },
        collect(received),
      );
      const before: PublishAck[] = [];
      for (let i = 0; i < 3; i++) before.push(await publisher.publishDurable('orders.restart', { i }));
      await waitFor('three deliveries before the restart', () => received.length >= 3, 20_000);
      assert.deepEqual(
        received.map((m) => m.sequence),
        before.map((a) => a.sequence),
      );
      // Let the acks reach the bridge and the consumer's position be saved (within 100 ms).
      await waitFor('the position saved', async () => {
        const probe = await publisher.readStream('orders', { fromSequence: before[2]?.sequence ?? 1 });
        return probe.events.length >= 1;
      });
      await new Promise((r) => setTimeout(r, 300));

      await bridge.restart();

      await waitFor(
        'both reconnected',
        () =>
          publisher.status.state === 'connected' &&
          worker.status.state === 'connected' &&
          worker.stats.reconnects >= 1,
        30_000,
      );
      const afterAcks: PublishAck[] = [];
      for (let i = 3; i < 6; i++) {
        afterAcks.push(
          await waitFor(
            `publish ${i} after the restart`,
            () =>
              publisher
                .publishDurable('orders.restart', { i }, { id: `restart-${i}` })
                .catch(() => undefined),
            20_000,
          ),
        );
      }
      assert.equal(afterAcks[0]?.sequence, (before[2]?.sequence ?? 0) + 1);
      await waitFor(
        'three deliveries after the restart',
        () => received.filter((m) => m.event.json<{ i: number }>().i >= 3).length >= 3,
        30_000,
      );
      const after = received.filter((m) => m.event.json<{ i: number }>().i >= 3).map((m) => m.sequence);
      assert.deepEqual(
        [...new Set(after)],
        afterAcks.map((a) => a.sequence),
      );
      // What was acked before the restart is not delivered again.
      const early = received.filter((m) => m.event.json<{ i: number }>().i < 3);
      assert.equal(early.length, 3);
      assert.equal(consumer.handled >= 6, true);
      await consumer.detach({ delete: true });
    },
  );
});
