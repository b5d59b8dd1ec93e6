"""Durable streams end to end (docs/durability.md): a real bridge (`loom up --config loom.yaml
--data-dir DIR`) with a stream `orders` capturing `orders.>`, the Python SDK over gRPC, and a
kill -9 + restart of the bridge on the same data directory."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest

import loom
from conftest import BRIDGE_DLL, REPO, Bridge, BridgeProcess, free_port, http_get_json, poll

pytestmark = pytest.mark.asyncio
T = 60

LOOM_YAML = """\
streams:
  - name: orders
    subjects: [orders.>]
    duplicate_window: 2m
"""


class DurableBridges:
    """Bridges on one data directory: start() another one (after stop()) to restart."""

    def __init__(self, tmp: Path) -> None:
        self.dir = tmp
        (tmp / "loom.yaml").write_text(LOOM_YAML)
        self.data = tmp / "data"
        self.started: List[BridgeProcess] = []

    def start(self, grpc_port: int = 0, http_port: int = 0) -> BridgeProcess:
        if BRIDGE_DLL.exists() and not os.environ.get("LOOM_BRIDGE_CMD"):
            base = f"DOTNET_ThreadPool_UnfairSemaphoreSpinLimit=0 dotnet {shlex.quote(str(BRIDGE_DLL))} up"
        else:
            base = os.environ.get("LOOM_BRIDGE_CMD") or f"{shlex.quote(str(REPO / 'loom'))} up"
        config = shlex.quote(str(self.dir / "loom.yaml"))
        command = f"{base} --config {config} --data-dir {shlex.quote(str(self.data))}"
        proc = BridgeProcess(grpc_port, http_port, log_dir=self.dir, command=command)
        self.started.append(proc)
        return proc.wait_ready(120)


@pytest.fixture
def durable(bridge: Bridge, tmp_path: Path) -> Iterator[DurableBridges]:
    # `bridge` first: the session bridge's start builds the CLI that these bridges run.
    bridges = DurableBridges(tmp_path)
    yield bridges
    for proc in bridges.started:
        proc.stop()


async def connect(proc: BridgeProcess, **options: Any) -> loom.Connection:
    options.setdefault("reconnect_initial_ms", 50)
    options.setdefault("reconnect_max_ms", 400)
    return await asyncio.wait_for(loom.connect("http://" + proc.grpc, **options), T)


def consumer_state(proc: BridgeProcess, name: str) -> Dict[str, Any]:
    status, body = http_get_json(proc.http, "/v1/streams")
    assert status == 200, status
    stream = next(s for s in body["streams"] if s["name"] == "orders")
    return next((c for c in stream["consumers"] if c["name"] == name), {})


async def test_publish_durable_acknowledges_deduplicates_and_reads_back(durable: DurableBridges) -> None:
    proc = durable.start()
    async with await connect(proc, name="pub") as conn:
        first = await conn.publish_durable("orders.new", {"n": 1}, id="id-1")
        second = await conn.publish_durable("orders.new", b"two", id="id-2")
        assert (first.stream, first.sequence, first.duplicate, first.id) == ("orders", 1, False, "id-1")
        assert (second.sequence, second.duplicate) == (2, False)
        again = await conn.publish_durable("orders.new", {"n": "again"}, id="id-1")
        assert (again.sequence, again.duplicate) == (1, True)
        auto = await conn.publish_durable("orders.paid", "three")
        assert auto.sequence == 3 and auto.id and not auto.duplicate

        with pytest.raises(loom.InvalidParamsError) as info:
            await conn.publish_durable("chat.x", "not durable")
        assert "No durable stream captures topic 'chat.x'" in info.value.message
        with pytest.raises(loom.InvalidParamsError):
            await conn.publish_durable("bad..topic", 1)

        read = await conn.read_stream("orders", start_sequence=2)
        assert [e.sequence for e in read.events] == [2, 3]
        assert [e.event.payload for e in read.events] == [b"two", b'"three"']
        assert read.events[1].event.topic == "orders.paid" and read.events[1].event.data == "three"
        assert (read.first_sequence, read.last_sequence, read.next_sequence) == (1, 3, 4)

        everything = await conn.read_stream("orders")
        assert [e.event.id for e in everything.events] == ["id-1", "id-2", auto.id]
        assert everything.events[0].event.json() == {"n": 1}
        stored = everything.events[2].stored_unix_ms
        by_time = await conn.read_stream("orders", start_time=stored / 1000.0)
        assert by_time.events and by_time.events[-1].sequence == 3
        assert all(e.stored_unix_ms >= stored for e in by_time.events)
        limited = await conn.read_stream("orders", max_events=1)
        assert [e.sequence for e in limited.events] == [1] and limited.next_sequence == 2

        with pytest.raises(loom.InvalidParamsError):
            await conn.read_stream("orders", max_events=5000)
        with pytest.raises(loom.LoomError):
            await conn.read_stream("nosuchstream")


async def test_consume_acks_and_a_nak_is_redelivered(durable: DurableBridges) -> None:
    proc = durable.start()
    async with await connect(proc, name="worker") as conn:
        for i in range(1, 6):
            await conn.publish_durable("orders.new", {"i": i})
        seen: List[tuple] = []

        async def handle(message: loom.ConsumerMessage) -> None:
            seen.append((message.sequence, message.delivery_count, message.event.data["i"]))
            if message.sequence == 2 and message.delivery_count == 1:
                message.nak(delay=0.05)  # settled explicitly: not acked on return
            elif message.sequence == 4 and message.delivery_count == 1:
                raise RuntimeError("fails once")  # a handler that raises naks

        consumer = await conn.consume("orders", "billing", handle, ack_wait=30)
        assert (
            consumer.info is not None
            and consumer.info.name == "billing"
            and consumer.info.stream_last_sequence == 5
        )
        await poll(lambda: len(seen) >= 7, T, "5 deliveries and 2 redeliveries")
        assert sorted(s for s, count, _ in seen if count == 1) == [1, 2, 3, 4, 5]
        assert (2, 2, 2) in seen and (4, 2, 4) in seen
        await poll(
            lambda: consumer_state(proc, "billing").get("ack_floor") == 5, T, "every delivery acknowledged"
        )
        assert consumer.handled == 6 and consumer.failed == 1

        # A second consume of the same name on this connection is refused; a detached one resumes.
        with pytest.raises(loom.InvalidParamsError):
            await conn.consume("orders", "billing", handle)
        await consumer.detach()
        await conn.publish_durable("orders.new", {"i": 6})
        later: List[int] = []

        async def handle_later(message: loom.ConsumerMessage) -> None:
            later.append(message.sequence)

        async with await conn.consume("orders", "billing", handle_later) as again:
            # Its position was kept (the info is taken once delivery restarted: 6 may be out already).
            assert again.info is not None and again.info.ack_floor == 5
            await poll(lambda: later == [6], T, "the event published while detached")


async def test_max_deliver_then_dead_letter(durable: DurableBridges) -> None:
    proc = durable.start()
    async with await connect(proc, name="dlq") as conn:
        dead: List[loom.Event] = []

        async def on_dead(event: loom.Event) -> None:
            dead.append(event)

        await conn.subscribe("loom.dead.>", on_dead)
        attempts: List[int] = []

        async def always_fails(message: loom.ConsumerMessage) -> None:
            attempts.append(message.delivery_count)
            message.nak()

        ack = await conn.publish_durable("orders.new", {"poison": True})
        await conn.consume("orders", "picky", always_fails, max_deliver=3, ack_wait=5, filter="orders.new")
        await poll(lambda: dead, T, "the event on the dead-letter topic")
        assert attempts == [1, 2, 3]
        event = dead[0]
        assert event.topic == "loom.dead.orders.picky"
        assert event.headers.get("loom-dead-topic") == "orders.new"
        assert event.headers.get("loom-dead-sequence") == str(ack.sequence)
        assert event.json() == {"poison": True}


async def test_ack_wait_redelivers_what_is_not_settled_and_term_stops_it(durable: DurableBridges) -> None:
    proc = durable.start()
    async with await connect(proc, name="slow") as conn:
        await conn.publish_durable("orders.new", 1)
        await conn.publish_durable("orders.new", 2)
        deliveries: List[tuple] = []

        async def handle(message: loom.ConsumerMessage) -> None:
            deliveries.append((message.sequence, message.delivery_count))
            if message.sequence == 1:
                message.term()
                return
            if message.delivery_count == 1:
                message.in_progress()  # restarts the ack wait once; then held past it, unsettled
                deadline = time.monotonic() + T
                while (2, 2) not in deliveries and time.monotonic() < deadline:
                    # The redelivery (the only other event outstanding) waits in the local queue behind this
                    # handler.
                    if consumer_queue().qsize() > 0:
                        break
                    await asyncio.sleep(0.05)

        consumer = await conn.consume("orders", "slow", handle, ack_wait=0.5, max_ack_pending=10)

        def consumer_queue() -> Any:
            return conn._durable.consumers[("orders", "slow")].queue

        await poll(lambda: (2, 2) in deliveries, T, "a redelivery of the event whose ack wait passed")
        assert (1, 1) in deliveries and (1, 2) not in deliveries  # terminated: never again
        await poll(lambda: consumer_state(proc, "slow").get("ack_floor") == 2, T, "both settled")
        assert consumer.handled >= 3


async def test_consumer_survives_a_bridge_restart_on_the_same_data_dir(durable: DurableBridges) -> None:
    grpc_port, http_port = free_port(), free_port()
    proc = durable.start(grpc_port, http_port)
    conn = await connect(proc, name="survivor")
    try:
        got: List[int] = []

        async def handle(message: loom.ConsumerMessage) -> None:
            got.append(message.sequence)

        consumer = await conn.consume("orders", "audit", handle)
        for i in range(1, 11):
            await conn.publish_durable("orders.new", {"i": i})
        await poll(lambda: len(set(got)) >= 10, T, "the first 10 events")
        await poll(
            lambda: consumer_state(proc, "audit").get("ack_floor") == 10, T, "the first 10 acknowledged"
        )

        proc.stop(signal.SIGKILL)
        await poll(
            lambda: conn.status is not loom.Status.CONNECTED, T, "the connection to notice the bridge is gone"
        )
        proc = durable.start(grpc_port, http_port)
        await conn.wait_status(loom.Status.CONNECTED, T)

        # The same connection's consumer is attached again by itself and gets what comes next.
        async with await connect(proc, name="publisher") as pub:
            deadline = time.monotonic() + T
            for i in range(11, 21):
                while True:
                    try:
                        ack = await pub.publish_durable("orders.new", {"i": i}, id=f"after-{i}")
                        break
                    except loom.UnavailableError:
                        if time.monotonic() > deadline:
                            raise
                        await asyncio.sleep(0.1)
                assert ack.sequence == i
            await poll(lambda: set(range(11, 21)) <= set(got), T, "the 10 events published after the restart")
        assert set(got) == set(range(1, 21))
        assert consumer.info is not None
        await poll(lambda: consumer_state(proc, "audit").get("ack_floor") == 20, T, "all 20 acknowledged")
    finally:
        await conn.close()


async def test_bad_consumer_options_are_clear_errors(durable: DurableBridges) -> None:
    proc = durable.start()
    async with await connect(proc, name="bad") as conn:

        async def handle(message: loom.ConsumerMessage) -> None:
            pass

        cases: List[Callable[[], Any]] = [
            lambda: conn.consume("orders", "bad name", handle),
            lambda: conn.consume("orders", "x", handle, deliver=loom.DeliverPolicy.BY_SEQUENCE),
            lambda: conn.consume("orders", "x", handle, deliver=loom.DeliverPolicy.BY_TIME),
            lambda: conn.consume("orders", "x", handle, ack_wait=-1),
            lambda: conn.consume("orders", "x", handle, filter="orders..x"),
            lambda: conn.consume("orders", "x", handle, max_deliver=-2),
        ]
        for make in cases:
            with pytest.raises(loom.InvalidParamsError) as info:
                await make()
            assert info.value.path
        with pytest.raises(loom.LoomError) as missing:
            await conn.consume("nosuchstream", "x", handle)
        assert missing.value.code in (loom.ErrorCode.INVALID_PARAMS, loom.ErrorCode.CAPABILITY_NOT_FOUND)
        # The failed attach left nothing behind: the same name can be consumed.
        async with await conn.consume("orders", "x", handle, deliver=loom.DeliverPolicy.NEW):
            pass


async def test_stream_administration(durable: DurableBridges) -> None:
    proc = durable.start()
    async with await connect(proc, name="admin", request_timeout=5) as conn:
        created = await conn.create_stream(
            "audit", ["audit.>"], max_age=3600, max_events=1000, duplicate_window=60
        )
        assert (created.name, created.subjects, created.max_age, created.max_events) == (
            "audit",
            ("audit.>",),
            3600.0,
            1000,
        )
        assert created.duplicate_window == 60.0 and created.last_sequence == 0
        # The same settings again: idempotent; different ones: refused.
        again = await conn.create_stream(
            "audit", ["audit.>"], max_age=3600, max_events=1000, duplicate_window=60
        )
        assert again.name == "audit"
        with pytest.raises(loom.InvalidParamsError):
            await conn.create_stream("audit", ["audit.other.>"])

        ack = await conn.publish_durable("audit.login", {"user": "ada"})
        assert (ack.stream, ack.sequence) == ("audit", 1)
        info = await conn.stream_info("audit")
        assert (info.events, info.first_sequence, info.last_sequence) == (1, 1, 1) and info.bytes > 0
        names = sorted(s.name for s in await conn.list_streams())
        assert names == ["audit", "orders"]

        await conn.delete_stream("audit")
        assert [s.name for s in await conn.list_streams()] == ["orders"]
        with pytest.raises(loom.LoomError):
            await conn.stream_info("audit")
        with pytest.raises(loom.InvalidParamsError):
            await conn.publish_durable("audit.login", {"user": "bob"})

        with pytest.raises(loom.InvalidParamsError) as bad:
            await conn.create_stream("bad name", ["x.>"])
        assert bad.value.path == "/name"
        with pytest.raises(loom.InvalidParamsError) as bad:
            await conn.create_stream("empty", [])
        assert bad.value.path == "/subjects"
        with pytest.raises(loom.InvalidParamsError) as bad:
            await conn.create_stream("wild", ["a..b"])
        assert bad.value.path == "/subjects/0"
