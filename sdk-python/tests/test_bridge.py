"""The SDK against a real bridge (and the .NET test agent for the cross-language cases)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, List, Optional

import pytest

import loom
from conftest import REPO, Bridge, BridgeProcess, DotnetAgent, free_port, http_get_json, poll

T = 20.0  # per-await bound


def uid() -> str:
    return uuid.uuid4().hex[:8]


@dataclass
class Line:
    sku: str
    qty: int


@dataclass
class Basket:
    customer: str
    lines: List[Line]


@loom.capability("py.basket.count")
async def basket_count(basket: Basket) -> Dict[str, int]:
    """Counts the items of a basket."""
    return {"items": sum(line.qty for line in basket.lines)}


@loom.capability("py.add")
def py_add(a: float, b: float) -> Dict[str, float]:
    return {"sum": a + b}


@loom.capability("py.fail")
async def py_fail(reason: str) -> str:
    raise RuntimeError(f"refused: {reason}")


@loom.capability("py.echo")
async def py_echo(value: Any) -> Any:
    return value


async def connect(bridge: Bridge, **options: Any) -> loom.Connection:
    options.setdefault("name", "pytest")
    return await asyncio.wait_for(loom.connect(bridge.url, **options), T)  # type: ignore[no-any-return]


async def agents_listing(bridge: Bridge) -> Optional[List[Dict[str, Any]]]:
    if not bridge.http:
        return None
    status, body = await asyncio.to_thread(http_get_json, bridge.http, "/v1/agents")
    return body["agents"] if status == 200 and isinstance(body, dict) else None


async def test_registration(bridge: Bridge) -> None:
    agent_id = f"py-reg-{uid()}"
    async with loom.connect(
        bridge.url, agent_id=agent_id, name="registration", capabilities=[py_add, basket_count]
    ) as conn:
        assert conn.status is loom.Status.CONNECTED and conn.agent_id == agent_id and conn.session_id
        assert conn.limits.max_message_bytes > 0 and conn.namespace == "default"
        if (await agents_listing(bridge)) is not None:
            found = await poll(lambda: _find_agent(bridge, agent_id), 10, "the agent in GET /v1/agents")
            names = {c["name"] if isinstance(c, dict) else c for c in found["capabilities"]}
            assert {"py.add", "py.basket.count"} <= names
    # close() left the bridge: the agent is gone at once (half-close), and close() twice is fine
    await conn.close()
    await conn.drain()
    if (await agents_listing(bridge)) is not None:
        await poll(lambda: _gone(bridge, agent_id), 10, "the agent to leave /v1/agents")


async def _find_agent(bridge: Bridge, agent_id: str) -> Optional[Dict[str, Any]]:
    for agent in (await agents_listing(bridge)) or []:
        if agent.get("agent_id") == agent_id:
            return agent
    return None


async def _gone(bridge: Bridge, agent_id: str) -> bool:
    return (await _find_agent(bridge, agent_id)) is None


async def test_python_capability_called_from_dotnet(
    bridge: Bridge, dotnet: Callable[..., Awaitable[DotnetAgent]]
) -> None:
    async with loom.connect(bridge.url, name="py-provider", capabilities=[py_add, basket_count, py_fail]):
        ok = await dotnet("call", "--url", bridge.url, "--capability", "py.add", "--input", '{"a":2,"b":40}')
        assert await ok.json(60) == {"ok": True, "output": {"sum": 42.0}}
        bad = await dotnet(
            "call",
            "--url",
            bridge.url,
            "--capability",
            "py.basket.count",
            "--input",
            '{"customer":"c","lines":[{"sku":"a","qty":1},{"sku":"b","qty":"two"}]}',
        )
        result = await bad.json(60)
        assert (
            result["ok"] is False and result["code"] == "INVALID_PARAMS" and result["path"] == "/lines/1/qty"
        ), result
        failing = await dotnet(
            "call", "--url", bridge.url, "--capability", "py.fail", "--input", '{"reason":"no"}'
        )
        result = await failing.json(60)
        assert (
            result["ok"] is False and result["code"] == "TOOL_ERROR" and "refused: no" in result["message"]
        ), result


async def test_dotnet_capability_called_from_python(
    bridge: Bridge, dotnet: Callable[..., Awaitable[DotnetAgent]]
) -> None:
    server = await dotnet("serve", "--url", bridge.url, "--agent-id", f"dotnet-{uid()}")
    await server.ready(60)
    conn = await connect(bridge)
    try:
        assert await conn.invoke("dotnet.echo", {"x": [1, "ü", None]}, timeout=10) == {"x": [1, "ü", None]}
        assert await conn.tool("dotnet.add", {"a": 1.5, "b": 2}, timeout=10) == {"sum": 3.5}
        with pytest.raises(loom.InvalidParamsError) as info:
            await conn.invoke("dotnet.add", {"b": 2}, timeout=10)
        assert info.value.path == "/a"
    finally:
        await conn.close()


async def test_call_time_errors_do_not_kill_the_agent(bridge: Bridge) -> None:
    provider = await connect(bridge, capabilities=[basket_count, py_fail, py_add])
    caller = await connect(bridge)
    try:
        with pytest.raises(loom.InvalidParamsError) as info:
            await caller.invoke("py.basket.count", {"customer": "c", "lines": [{"sku": "a"}]}, timeout=10)
        assert info.value.path == "/lines/0/qty" and info.value.code is loom.ErrorCode.INVALID_PARAMS
        with pytest.raises(loom.ToolError) as tool_error:
            await caller.invoke("py.fail", {"reason": "because"}, timeout=10)
        assert tool_error.value.message == "refused: because"
        # the provider still serves
        assert await caller.invoke(
            "py.basket.count", {"customer": "c", "lines": [{"sku": "a", "qty": 3}]}, timeout=10
        ) == {"items": 3}
        assert await caller.invoke("py.add", {"a": 1, "b": 1}, timeout=10) == {"sum": 2.0}
        with pytest.raises(loom.NotFoundError):
            await caller.invoke(f"py.missing.{uid()}", {}, timeout=10)
    finally:
        await asyncio.gather(provider.close(), caller.close())


async def test_pubsub_with_wildcards_and_envelope_fields(bridge: Bridge) -> None:
    base = f"pt{uid()}"
    pub = await connect(bridge, name="publisher")
    sub = await connect(bridge, name="subscriber")
    star: List[loom.Event] = []
    rest: List[loom.Event] = []

    async def on_star(event: loom.Event) -> None:
        star.append(event)

    async def on_rest(event: loom.Event) -> None:
        rest.append(event)

    try:
        await sub.subscribe(f"{base}.*.created", on_star)
        await sub.subscribe(f"{base}.>", on_rest)
        await pub.emit(f"{base}.eu.created", {"n": 1}, thread_id="th-1", headers={"k": "v"}, ttl=30)
        await pub.emit(f"{base}.eu.x.created", {"n": 2})
        await pub.emit(f"{base}.us.created", b"raw")
        await pub.emit(f"other{base}.eu.created", {"n": 4})
        await poll(lambda: len(rest) >= 3 and len(star) >= 2, 10, "deliveries")
        assert [e.topic for e in star] == [f"{base}.eu.created", f"{base}.us.created"]
        assert [e.topic for e in rest] == [f"{base}.eu.created", f"{base}.eu.x.created", f"{base}.us.created"]
        first = star[0]
        assert first.data == {"n": 1} and first.sender == pub.agent_id and first.thread_id == "th-1"
        assert first.headers == {"k": "v"} and first.ttl_ms == 30000 and first.hop == 1 and first.id
        assert first.content_type == "application/json" and star[1].payload == b"raw"
        with pytest.raises(loom.InvalidParamsError):
            await pub.emit(f"{base}.*", {})
        with pytest.raises(loom.InvalidParamsError):
            await sub.subscribe(f"{base}.>.x", on_rest)
    finally:
        await asyncio.gather(pub.close(), sub.close())


async def test_ordered_stream_of_ten_thousand(bridge: Bridge) -> None:
    topic = f"order{uid()}.seq"
    conn = await connect(bridge)
    got: List[int] = []

    async def on(event: loom.Event) -> None:
        got.append(int(event.payload))

    try:
        await conn.subscribe(topic, on, qos=loom.QoS.BATCH)
        for i in range(10_000):
            await conn.emit(topic, str(i).encode())
        await poll(lambda: len(got) >= 10_000, 30, "10,000 deliveries")
        assert got == list(range(10_000))
        assert conn.stats.frames_sent < 5_000  # coalesced
    finally:
        await conn.close()


async def test_emit_carries_its_qos_and_refuses_what_is_not_one(bridge: Bridge) -> None:
    topic = f"qos{uid()}.events"
    conn = await connect(bridge)
    got: List[loom.Event] = []

    async def on(event: loom.Event) -> None:
        got.append(event)

    try:
        await conn.subscribe(topic, on, qos=loom.QoS.BATCH)
        await conn.emit(topic, b"first")  # the first emit on a topic takes the full path
        await conn.emit(topic, b"second", qos=loom.QoS.BATCH)  # then bytes with a QoS take the fast path
        await conn.emit(topic, b"third", qos=loom.QoS.REALTIME)
        await poll(lambda: len(got) >= 3, 10, "three deliveries")
        assert [(e.payload, e.qos) for e in got] == [
            (b"first", 0),
            (b"second", int(loom.QoS.BATCH)),
            (b"third", int(loom.QoS.REALTIME)),
        ]
        for bad in (-1, 9):
            with pytest.raises(loom.InvalidParamsError) as info:
                await conn.emit(topic, b"x", qos=bad)  # type: ignore[arg-type]
            assert info.value.path == "/qos"
            with pytest.raises(loom.InvalidParamsError):
                await conn.emit(topic, {"json": True}, qos=bad)  # type: ignore[arg-type]
    finally:
        await conn.close()


async def test_request_reply_and_timeout(bridge: Bridge) -> None:
    topic = f"svc{uid()}.upper"
    server = await connect(bridge, name="server")
    client = await connect(bridge, name="client")

    async def on_request(event: loom.Event) -> None:
        await server.reply(event, {"text": event.data["text"].upper(), "thread": event.thread_id})

    try:
        await server.subscribe(topic, on_request)
        reply = await client.request(topic, {"text": "hello"}, timeout=10, thread_id="t-9")
        assert reply.data == {"text": "HELLO", "thread": "t-9"}
        assert reply.sender == server.agent_id and reply.thread_id == "t-9" and reply.correlation_id
        started = time.monotonic()
        with pytest.raises(loom.RequestTimeoutError):
            await client.request(f"svc{uid()}.nobody", {}, timeout=0.3)
        assert time.monotonic() - started < 5
        with pytest.raises(loom.InvalidParamsError):
            await client.reply(reply, {})  # a reply is not a request
    finally:
        await asyncio.gather(server.close(), client.close())


async def test_first_k_replies(bridge: Bridge) -> None:
    topic = f"bid{uid()}.ask"
    client = await connect(bridge, name="auctioneer")
    bidders = [await connect(bridge, name=f"bidder{i}") for i in range(3)]

    def answer(conn: loom.Connection, price: int) -> Callable[[loom.Event], Awaitable[None]]:
        async def on(event: loom.Event) -> None:
            await conn.reply(event, {"price": price})

        return on

    try:
        for i, bidder in enumerate(bidders):
            await bidder.subscribe(topic, answer(bidder, 10 + i))
        two = await client.request_many(topic, {"item": "lamp"}, count=2, timeout=10)
        assert len(two) == 2 and {e.data["price"] for e in two} <= {10, 11, 12}
        some = await client.request_many(topic, {}, count=5, min_count=3, timeout=1.0)
        assert sorted(e.data["price"] for e in some) == [10, 11, 12]
        with pytest.raises(loom.RequestTimeoutError) as info:
            await client.request_many(topic, {}, count=5, timeout=1.0)
        assert len(info.value.replies) == 3  # type: ignore[attr-defined]
    finally:
        await asyncio.gather(client.close(), *(b.close() for b in bidders))


async def test_memory_with_ttl(bridge: Bridge) -> None:
    conn = await connect(bridge, namespace=f"ns{uid()}")
    try:
        mem = conn.memory
        item = await mem.set("plan/today", {"step": 1})
        assert item.version >= 1 and item.json() == {"step": 1} and item.expires_unix_ms == 0
        assert await mem.get_json("plan/today") == {"step": 1}
        cas = await mem.compare_and_set("plan/today", item.version, b"raw")
        assert (
            cas.swapped
            and cas.item is not None
            and cas.item.version > item.version
            and cas.item.value == b"raw"
        )
        assert not (await mem.compare_and_set("plan/today", item.version, b"stale")).swapped
        assert (await mem.compare_and_set("plan/new", 0, "created")).swapped
        assert [i.key for i in await mem.list("plan/")] == ["plan/new", "plan/today"]
        short = await mem.set("ephemeral", "soon gone", ttl=0.3)
        assert short.expires_unix_ms > 0
        assert (await mem.get("ephemeral")) is not None
        await poll(lambda: _absent(mem, "ephemeral"), 10, "the entry to expire")
        assert await mem.delete("plan/new") and not await mem.delete("plan/new")
        assert await mem.get("never") is None
        other = mem.with_namespace(f"other{uid()}")
        assert await other.get("plan/today") is None
        with pytest.raises(loom.InvalidParamsError):
            await mem.set("", b"x")
    finally:
        await conn.close()


async def _absent(mem: loom.Memory, key: str) -> bool:
    return (await mem.get(key)) is None


async def test_agent_class_runner_and_threads(bridge: Bridge) -> None:
    prefix = f"ag{uid()}"
    seen: List[loom.Event] = []

    class Greeter(loom.Agent):
        name = "greeter"
        topics = [f"{prefix}.greet.*"]

        async def on_event(self, ctx: loom.Context, event: loom.Event) -> None:
            seen.append(event)
            if event.is_request:
                await ctx.reply(event, {"hello": event.data["name"]})

        @loom.capability(f"{prefix}.shout")
        async def shout(self, ctx: loom.Context, text: str) -> str:
            await ctx.emit(f"{prefix}.greet.shouted", {"text": text})
            return text.upper() + "!"

    stop = asyncio.Event()
    runner = asyncio.create_task(loom.serve(Greeter(), url=bridge.url, stop=stop, handle_signals=False))
    client = await connect(bridge)
    try:
        reply = await poll(
            lambda: _try_request(client, f"{prefix}.greet.ann", {"name": "Ann"}), 20, "the agent to answer"
        )
        assert reply.data == {"hello": "Ann"}
        assert await client.invoke(f"{prefix}.shout", {"text": "hi"}, timeout=10) == "HI!"
        await poll(lambda: any(e.topic == f"{prefix}.greet.shouted" for e in seen), 10, "the emitted event")
        request = next(e for e in seen if e.topic == f"{prefix}.greet.ann")
        assert (
            request.reply_to.startswith("_inbox.")
            and request.correlation_id
            and request.sender == client.agent_id
        )

        async with await client.join_thread(f"th{uid()}") as thread:
            await thread.emit({"say": "one"})
            event = await thread.next(timeout=10)
            assert (
                event.data == {"say": "one"} and event.thread_id == thread.id and event.topic == thread.topic
            )
    finally:
        stop.set()
        await asyncio.wait_for(runner, T)
        await client.close()


async def _try_request(client: loom.Connection, topic: str, data: Any) -> Optional[loom.Event]:
    try:
        return await client.request(topic, data, timeout=0.5)
    except loom.RequestTimeoutError:
        return None


async def test_python_publisher_to_dotnet_subscriber(
    bridge: Bridge, dotnet: Callable[..., Awaitable[DotnetAgent]]
) -> None:
    topic = f"cross{uid()}.events"
    pattern = topic.split(".")[0] + ".*"  # a wildcard subscription on the .NET side
    sub = await dotnet(
        "subscribe", "--url", bridge.url, "--topic", pattern, "--count", "2000", "--timeout-s", "60"
    )
    await sub.ready(60)
    conn = await connect(bridge)
    try:
        for i in range(2000):
            await conn.emit(topic, b"x" * 100)
        result = await sub.json(60)
        assert result["received"] == 2000
    finally:
        await conn.close()


async def test_reconnect_after_bridge_restart(private_bridge: Callable[..., BridgeProcess]) -> None:
    grpc_port, http_port = free_port(), free_port()
    first = private_bridge(grpc_port, http_port)
    url = "http://" + first.grpc
    got: List[loom.Event] = []

    async def on(event: loom.Event) -> None:
        got.append(event)

    provider = await asyncio.wait_for(
        loom.connect(url, name="survivor", capabilities=[py_add], reconnect_max_ms=500), T
    )
    try:
        await provider.subscribe("restart.>", on)
        first.stop()
        await poll(
            lambda: provider.status is not loom.Status.CONNECTED, 20, "the provider to notice the restart"
        )
        second = private_bridge(grpc_port, http_port)
        await provider.wait_status(loom.Status.CONNECTED, 30)
        assert provider.stats.reconnects >= 1
        caller = await asyncio.wait_for(loom.connect("http://" + second.grpc, name="caller"), T)
        try:
            assert await caller.invoke("py.add", {"a": 20, "b": 22}, timeout=10) == {"sum": 42.0}
            await caller.emit("restart.after", {"ok": True})
            await poll(
                lambda: any(e.topic == "restart.after" for e in got), 10, "a delivery after the restart"
            )
        finally:
            await caller.close()
    finally:
        await provider.close()


FLOW = 15_000


async def restart_mid_flow(
    private_bridge: Callable[..., BridgeProcess], pub_options: Dict[str, Any], sub_options: Dict[str, Any]
) -> Dict[str, int]:
    """A publisher and a subscriber (two connections, each with its own channel and reconnect loop)
    flow FLOW numbered events; the bridge is killed (SIGKILL) in the middle and started again on the
    same ports while the publisher goes on publishing (it queues). Returns the counts: what was
    published, received, lost, and the bound: events numbered from it on were never written to the
    killed bridge, so the SDKs must deliver every one of them."""
    grpc_port, http_port = free_port(), free_port()
    first = private_bridge(grpc_port, http_port)
    url = "http://" + first.grpc
    topic = f"flow.{uid()}"
    got: set[int] = set()

    async def on(event: loom.Event) -> None:
        got.add(int.from_bytes(event.payload, "big"))

    sub = await asyncio.wait_for(loom.connect(url, name="flow-sub", **sub_options), T)
    pub = await asyncio.wait_for(loom.connect(url, name="flow-pub", **pub_options), T)
    try:
        # BATCH: a large queue on the bridge that makes the publisher wait rather than drop.
        await sub.subscribe(topic + ".>", on, qos=loom.QoS.BATCH)
        published = 0

        async def publish() -> None:
            nonlocal published
            for seq in range(FLOW):
                await pub.emit(topic + ".n", seq.to_bytes(4, "big"))
                published = seq + 1
                if seq % 100 == 99:
                    await asyncio.sleep(0.01)  # about 10,000 events/s

        flow = asyncio.get_running_loop().create_task(publish())
        await poll(lambda: published >= FLOW // 3, 60, "a third of the flow to be published")
        first.stop(signal.SIGKILL)
        await poll(lambda: pub.status is loom.Status.RECONNECTING, 20, "the publisher to notice the kill")
        # Publishes in the order they were numbered: all from `bound` on were never written to the killed
        # bridge.
        bound = pub.stats.messages_sent + pub.stats.lost_on_break
        await asyncio.to_thread(private_bridge, grpc_port, http_port)
        await asyncio.wait_for(flow, 120)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(seq in got for seq in range(bound, FLOW)):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # stragglers of the first part, if any, are counted too
        missing = [seq for seq in range(FLOW) if seq not in got]
        return {
            "published": FLOW,
            "received": len(got),
            "lost": len(missing),
            "lost_after_bound": sum(1 for seq in missing if seq >= bound),
            "bound": bound,
            "lost_on_break": pub.stats.lost_on_break,
            "reconnects": pub.stats.reconnects + sub.stats.reconnects,
        }
    finally:
        await pub.close()
        await sub.close()


async def test_bridge_restart_mid_flow_loses_only_what_was_in_flight(
    private_bridge: Callable[..., BridgeProcess]
) -> None:
    # The subscriber retries every 5 s, the publisher every 100 ms: after the restart the publisher
    # is back first, the case where what it queued during the outage reached nobody (a bridge's
    # first answers after a cold start can take a second or two, and retries that land in that
    # window all come back together, so the subscriber's delay is longer than that). The publisher
    # holds its queue for 8 s after a restart, so the subscriber is back before it is sent.
    counts = await restart_mid_flow(
        private_bridge,
        {
            "reconnect_initial_ms": 100,
            "reconnect_max_ms": 100,
            "reconnect_jitter": 0,
            "restart_settle_ms": int(os.environ.get("LOOM_TEST_RESTART_SETTLE_MS", "8000")),
        },
        {"reconnect_initial_ms": 5000, "reconnect_max_ms": 5000, "reconnect_jitter": 0},
    )
    print("restart mid-flow, slow subscriber:", counts)
    assert counts["reconnects"] == 2, counts
    assert counts["lost_after_bound"] == 0, f"events queued after the kill were lost: {counts}"
    assert counts["lost"] <= counts["bound"], counts


async def test_bridge_restart_mid_flow_with_default_reconnect_settings(
    private_bridge: Callable[..., BridgeProcess]
) -> None:
    # Default settings on both sides: the automatic hold covers a peer with the same backoff.
    counts = await restart_mid_flow(private_bridge, {}, {})
    print("restart mid-flow, default settings:", counts)
    assert counts["lost_after_bound"] == 0, f"events queued after the kill were lost: {counts}"
    assert counts["lost"] <= counts["bound"], counts


async def test_events_still_queued_at_close_are_counted(private_bridge: Callable[..., BridgeProcess]) -> None:
    proc = private_bridge()
    conn = await asyncio.wait_for(
        loom.connect("http://" + proc.grpc, name="unsent", reconnect_initial_ms=200, reconnect_max_ms=200), T
    )
    try:
        proc.stop(signal.SIGKILL)
        await poll(lambda: conn.status is loom.Status.RECONNECTING, 20, "the connection to notice the kill")
        for i in range(7):
            await conn.emit("unsent.n", i.to_bytes(4, "big"))
    finally:
        await conn.close()
    assert conn.stats.unsent_on_close == 7, conn.stats


async def test_bridge_notices_an_agent_that_stops_heartbeating(bridge: Bridge) -> None:
    agent_id = f"py-frozen-{uid()}"
    cap = f"py.frozen.{uid()}"

    @loom.capability(cap)
    async def frozen_echo(x: int) -> int:
        return x

    frozen = await connect(bridge, agent_id=agent_id, heartbeat_ms=200, capabilities=[frozen_echo])
    caller = await connect(bridge)
    try:
        assert await caller.invoke(cap, {"x": 1}, timeout=5) == 1
        frozen._freeze_for_test()
        use_listing = (await agents_listing(bridge)) is not None

        async def gone() -> bool:
            if use_listing:
                return await _gone(bridge, agent_id)
            try:
                await caller.invoke(cap, {"x": 2}, timeout=0.5)
            except (loom.NotFoundError, loom.ProviderUnavailableError, loom.RequestTimeoutError):
                return True
            return False

        started = time.monotonic()
        await poll(gone, 15, "the bridge to expire the silent agent")
        assert time.monotonic() - started < 10
        await poll(lambda: _not_found(caller, cap), 10, "its capability to be unregistered")
    finally:
        await asyncio.gather(frozen.close(), caller.close())


async def _not_found(caller: loom.Connection, cap: str) -> bool:
    try:
        await caller.invoke(cap, {"x": 3}, timeout=1)
    except loom.NotFoundError:
        return True
    except loom.LoomError:
        return False
    return False


async def test_run_stops_cleanly_on_sigterm(bridge: Bridge) -> None:
    cap = f"py.sig.{uid()}"
    script = (
        "import loom\n"
        "class A(loom.Agent):\n"
        "    name = 'sig'\n"
        f"    @loom.capability({cap!r})\n"
        "    async def ping(self) -> str:\n"
        "        return 'pong'\n"
        f"loom.run(A(), url={bridge.url!r})\n"
        "print('stopped', flush=True)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO / "sdk-python" / "src"))
    proc = await asyncio.create_subprocess_exec(
        "/usr/bin/python3",
        "-c",
        script,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    caller = await connect(bridge)
    try:

        async def answers() -> bool:
            try:
                return await caller.invoke(cap, {}, timeout=1) == "pong"  # type: ignore[no-any-return]
            except loom.LoomError:
                return False

        await poll(answers, 30, "the runner's agent to serve")
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), T)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert b"stopped" in out
        await poll(lambda: _not_found(caller, cap), 10, "the agent to have left")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await caller.close()


async def test_closed_connection_refuses_work(bridge: Bridge) -> None:
    conn = await connect(bridge)
    await conn.close()
    await conn.close()
    assert conn.status is loom.Status.CLOSED
    with pytest.raises(loom.ConnectionClosedError):
        await conn.emit("a.b", b"x")
    with pytest.raises(loom.ConnectionClosedError):
        await conn.invoke("x", {})


async def test_unreachable_bridge_is_a_typed_error() -> None:
    with pytest.raises(loom.UnavailableError):
        await asyncio.wait_for(loom.connect(f"http://127.0.0.1:{free_port()}", connect_timeout_ms=2000), T)
