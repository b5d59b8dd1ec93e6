"""Collaboration operations across languages against a real bridge: a Python coordinator with
.NET (tests/Loom.TestAgent `worker`), TypeScript (tests/ts_collab_worker.mjs over sdk-js/dist)
and Python workers. Every await is bounded; conditions are polled with deadlines."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List, Optional

import pytest

import loom
from conftest import REPO, Bridge, DotnetAgent, poll

T = 30.0  # per-await bound
HERE = Path(__file__).resolve().parent
TS_WORKER = HERE / "ts_collab_worker.mjs"
SDK_JS = REPO / "sdk-js"


def uid() -> str:
    return uuid.uuid4().hex[:8]


async def connect(bridge: Bridge, agent_id: str, **options: Any) -> loom.Connection:
    connecting = loom.connect(bridge.url, agent_id=agent_id, name=agent_id, **options)
    return await asyncio.wait_for(connecting, T)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------------------------


class TsWorker:
    """A TypeScript worker process (node, sdk-js/dist): prints `ready`, then `working <id>` per call."""

    def __init__(self, proc: asyncio.subprocess.Process, args: List[str]) -> None:
        self.proc = proc
        self.args = args

    async def line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not raw:
            err = b""
            if self.proc.stderr is not None:
                err = await asyncio.wait_for(self.proc.stderr.read(), 5)
            pytest.fail(f"ts worker {' '.join(self.args)} ended: {err.decode(errors='replace')[-2000:]}")
        return raw.decode().strip()

    async def ready(self, timeout: float = 60) -> None:
        while (await self.line(timeout)) != "ready":
            pass

    async def stop(self) -> None:
        if self.proc.returncode is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(self.proc.wait(), 10)
            except (ProcessLookupError, asyncio.TimeoutError):
                self.proc.kill()
                await asyncio.wait_for(self.proc.wait(), 10)


_ts_built: Optional[bool] = None


def ts_available() -> bool:
    """Builds sdk-js once (scripts/ensure-built.sh); False when node or the build is unavailable."""
    global _ts_built
    if _ts_built is None:
        if shutil.which("node") is None or os.environ.get("LOOM_SKIP_TS") == "1":
            _ts_built = False
        else:
            done = subprocess.run(
                ["bash", str(SDK_JS / "scripts" / "ensure-built.sh")],
                capture_output=True,
                text=True,
                timeout=600,
            )
            _ts_built = done.returncode == 0 and (SDK_JS / "dist" / "mod.js").exists()
    return _ts_built


@pytest.fixture
async def workers(
    dotnet: Callable[..., Awaitable[DotnetAgent]]
) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """start(lang, *args): a .NET or TypeScript worker, ready to serve."""
    started: List[TsWorker] = []

    async def start(lang: str, *args: str) -> Any:
        if lang == "dotnet":
            agent = await dotnet("worker", *args)
            await agent.ready(90)
            return agent
        if not ts_available():
            pytest.fail(
                "node or the sdk-js build is unavailable (set LOOM_SKIP_TS=1 to run without TypeScript "
                "workers)"
            )
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(TS_WORKER),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        worker = TsWorker(proc, list(args))
        started.append(worker)
        await worker.ready(60)
        return worker

    yield start
    for worker in started:
        await worker.stop()


def use_ts() -> bool:
    return os.environ.get("LOOM_SKIP_TS") != "1" and ts_available()


async def python_worker(
    bridge: Bridge, agent_id: str, topic: str, answer: Dict[str, Any], delay: float = 0.0
) -> loom.Connection:
    conn = await connect(bridge, agent_id)

    async def on_request(event: loom.Event) -> None:
        if not event.reply_to:
            return
        if delay:
            await asyncio.sleep(delay)
        await conn.reply(event, {**answer, "req": event.data})

    await asyncio.wait_for(conn.subscribe(topic, on_request), T)
    return conn


async def subscribed(bridge: Bridge, topic: str, agents: List[str]) -> None:
    """Waits until every agent's subscription to `topic` is known to the bridge."""
    from conftest import http_get_json

    async def check() -> bool:
        if not bridge.http:
            return True
        status, body = await asyncio.to_thread(http_get_json, bridge.http, "/v1/agents")
        if status != 200:
            return False
        topics = {a["agent_id"]: a.get("topics", []) for a in body["agents"]}
        return all(topic in topics.get(a, []) for a in agents)

    await poll(check, T, f"subscriptions of {agents} to {topic}")


# ---------------------------------------------------------------------------------------------
# Fan-out / fan-in with every join strategy
# ---------------------------------------------------------------------------------------------


async def test_fan_out_to_dotnet_and_typescript_workers_with_each_join_strategy(
    bridge: Bridge, workers: Callable[..., Awaitable[Any]]
) -> None:
    run = uid()
    topic = f"collab.{run}.ask"
    names = [f"dn-a-{run}", f"dn-b-{run}"]
    await workers(
        "dotnet",
        "--url",
        bridge.url,
        "--agent-id",
        names[0],
        "--topic",
        topic,
        "--answer",
        json.dumps({"v": 1, "by": names[0]}),
    )
    await workers(
        "dotnet",
        "--url",
        bridge.url,
        "--agent-id",
        names[1],
        "--topic",
        topic,
        "--answer",
        json.dumps({"v": 2, "by": names[1]}),
        "--delay-ms",
        "150",
    )
    if use_ts():
        names.append(f"ts-c-{run}")
        await workers(
            "ts",
            "--url",
            bridge.url,
            "--agent-id",
            names[2],
            "--topic",
            topic,
            "--answer",
            json.dumps({"v": 1, "by": names[2]}),
            "--delay-ms",
            "100",
        )
    py_id = f"py-d-{run}"
    names.append(py_id)
    py = await python_worker(bridge, py_id, topic, {"v": 1.0, "by": py_id}, delay=0.05)
    boss = await connect(bridge, f"boss-{run}")
    try:
        await subscribed(bridge, topic, names)

        first = await boss.gather(topic, {"n": 1}, strategy=loom.JoinStrategy.FIRST, timeout=10)
        assert first.outcome is loom.Outcome.COMPLETED and len(first.answered) == 1
        assert first.expected == len(names) and first.answered[0] in names
        assert first.replies[0].data["req"] == {"n": 1}

        k2 = await boss.gather(topic, {"n": 2}, strategy=loom.JoinStrategy.FIRST_K, k=2, timeout=10)
        assert k2.outcome is loom.Outcome.COMPLETED and len(k2.answered) == 2
        assert all(v["req"] == {"n": 2} for v in k2.values)

        every = await boss.gather(topic, {"n": 3}, strategy=loom.JoinStrategy.ALL, timeout=10)
        assert every.outcome is loom.Outcome.COMPLETED, every
        assert sorted(every.answered) == sorted(names) and not every.timed_out and not every.failed
        assert {v["by"] for v in every.values} == set(names)

        # Majority on the value at /v: 1 (.NET a, TS c) and 1.0 (Python d) against 2 (.NET b).
        majority = await boss.gather(
            topic, {"n": 4}, strategy=loom.JoinStrategy.MAJORITY, compare="/v", timeout=10
        )
        ones = [n for n in names if not n.startswith("dn-b")]
        assert majority.quorum == len(names) // 2 + 1
        assert majority.outcome is loom.Outcome.COMPLETED and majority.agreed_value == 1, majority
        assert sorted(majority.agreeing) == sorted(ones)

        # Majority with a local comparison: parity of v (1 is odd, 2 even).
        local = await boss.gather(
            topic,
            {"n": 5},
            strategy=loom.JoinStrategy.MAJORITY,
            compare=lambda r: int(r.data["v"]) % 2,
            quorum=2,
            timeout=10,
        )
        assert local.outcome is loom.Outcome.COMPLETED and local.quorum == 2 and len(local.agreeing) == 2

        # ANY is FIRST; ALL with a short deadline and a slow worker: partial results, the slow one timed out.
        slow_id = f"dn-slow-{run}"
        await workers(
            "dotnet",
            "--url",
            bridge.url,
            "--agent-id",
            slow_id,
            "--topic",
            topic,
            "--answer",
            json.dumps({"v": 9}),
            "--delay-ms",
            "3000",
        )
        await subscribed(bridge, topic, [slow_id])
        partial = await boss.gather(topic, {"n": 6}, strategy=loom.ANY, timeout=10)
        assert partial.completed and partial.answered[0] != slow_id
        partial = await boss.gather(topic, {"n": 7}, strategy=loom.JoinStrategy.ALL, timeout=1.5)
        assert partial.outcome is loom.Outcome.TIMEOUT
        assert partial.timed_out == (slow_id,) and sorted(partial.answered) == sorted(names)
        assert all(v["req"] == {"n": 7} for v in partial.values)

        # Fan-out to the providers of a capability, by agent: Python workers provide it here.
        cap = f"collab.py.{run}"

        @loom.capability(cap)
        async def work(x: int) -> Dict[str, int]:
            return {"x2": x * 2}

        p1 = await connect(bridge, f"py-p1-{run}", capabilities=[work])
        p2 = await connect(bridge, f"py-p2-{run}", capabilities=[work])
        try:
            calls = await boss.gather(
                capability=cap, data={"x": 21}, strategy=loom.JoinStrategy.ALL, timeout=10
            )
            assert calls.completed and sorted(calls.answered) == sorted([p1.agent_id, p2.agent_id])
            assert calls.values == [{"x2": 42}, {"x2": 42}]
        finally:
            await p1.close()
            await p2.close()

        # Bad input is a typed error with the path.
        with pytest.raises(loom.InvalidParamsError) as bad:
            await boss.gather(topic, {}, strategy=loom.JoinStrategy.MAJORITY, compare="v", timeout=5)
        assert bad.value.path == "/compare_pointer"
    finally:
        await boss.close()
        await py.close()


# ---------------------------------------------------------------------------------------------
# Contract-net: the winner is killed mid-task, the next bidder completes
# ---------------------------------------------------------------------------------------------


async def test_contract_net_falls_back_when_the_winner_is_killed_mid_task(
    bridge: Bridge, workers: Callable[..., Awaitable[Any]]
) -> None:
    run = uid()
    thread_id = f"cn-{run}"
    capability = f"collab.task.{run}"
    cheap, backup = f"dn-cheap-{run}", f"dn-backup-{run}"
    topic = f"thread.{thread_id}.broadcast"
    winner = await workers(
        "dotnet",
        "--url",
        bridge.url,
        "--agent-id",
        cheap,
        "--topic",
        topic,
        "--bid-cost",
        "1",
        "--capability",
        capability,
        "--work-ms",
        "60000",
        "--heartbeat-ms",
        "200",
    )
    await workers(
        "dotnet",
        "--url",
        bridge.url,
        "--agent-id",
        backup,
        "--topic",
        topic,
        "--bid-cost",
        "2",
        "--capability",
        capability,
    )
    bidders = [cheap, backup]
    if use_ts():
        ts = f"ts-bidder-{run}"
        bidders.append(ts)
        await workers(
            "ts",
            "--url",
            bridge.url,
            "--agent-id",
            ts,
            "--topic",
            topic,
            "--bid-cost",
            "3",
            "--capability",
            capability,
        )
    boss = await connect(bridge, f"boss-{run}")
    records: List[loom.Event] = []
    thread = await boss.join_thread(thread_id, lambda e: _append(records, e))
    try:
        await subscribed(bridge, topic, bidders)

        async def kill_the_winner() -> None:
            while True:
                line = await winner.line(T)
                if line.startswith("working"):
                    winner.proc.send_signal(signal.SIGKILL)
                    return

        killer = asyncio.ensure_future(kill_the_winner())
        result = await asyncio.wait_for(
            boss.contract_net(
                {"job": "render", "run": run},
                capability=capability,
                thread_id=thread_id,
                bid_timeout=5,
                execution_timeout=20,
                timeout=40,
            ),
            45,
        )
        await asyncio.wait_for(killer, 5)

        assert result.outcome is loom.Outcome.COMPLETED, result
        assert result.winner == backup
        assert [b.bidder for b in result.bids] == bidders  # ranked by cost
        assert [a.agent for a in result.attempts] == [cheap, backup]
        assert not result.attempts[0].succeeded and result.attempts[0].error is not None
        assert result.attempts[0].error.code in (loom.ErrorCode.PROVIDER_UNAVAILABLE, loom.ErrorCode.TIMEOUT)
        assert result.output["worker"] == backup and result.output["input"] == {"job": "render", "run": run}

        def kinds() -> List[str]:
            return [e.headers.get("loom-collab", "") for e in records]

        await poll(lambda: "result" in kinds(), T, "the result record on the thread")
        seen = kinds()
        assert seen[0] == "cfp" and seen.count("bid") == len(bidders)
        assert seen[-4:] == ["award", "fallback", "award", "result"], seen
        final = records[-1].data
        assert final["outcome"] == "completed" and final["winner"] == backup
        assert all(loom.is_collab_record(e) or loom.is_call_for_proposals(e) for e in records)

        # A caller-supplied scorer (applied in the SDK): the highest cost wins this time.
        second = await asyncio.wait_for(
            boss.contract_net(
                {"job": "again"},
                capability=capability,
                topic=topic,
                thread_id=f"{thread_id}-2",
                scoring=lambda bid: float(bid.data["cost"]),
                bid_timeout=5,
                timeout=30,
                bidders=bidders[1:],
            ),
            35,
        )
        assert second.completed and second.winner == bidders[-1]
    finally:
        await thread.leave()
        await boss.close()


async def _append(records: List[loom.Event], event: loom.Event) -> None:
    records.append(event)


# ---------------------------------------------------------------------------------------------
# Barrier
# ---------------------------------------------------------------------------------------------


async def test_barrier_with_a_missing_participant_times_out_with_the_right_report(
    bridge: Bridge, dotnet: Callable[..., Awaitable[DotnetAgent]]
) -> None:
    run = uid()
    py_id, dn_id, ghost = f"py-{run}", f"dn-{run}", f"ghost-{run}"
    participants = ",".join([py_id, dn_id, ghost])
    conn = await connect(bridge, py_id)
    try:
        dn = await dotnet(
            "barrier",
            "--url",
            bridge.url,
            "--agent-id",
            dn_id,
            "--barrier-id",
            f"b-{run}",
            "--participants",
            participants,
            "--timeout-ms",
            "4000",
        )
        await dn.ready(90)
        mine = await asyncio.wait_for(
            conn.barrier(f"b-{run}", participants=participants.split(","), timeout=4), T
        )
        theirs = await dn.json(T)

        assert mine.outcome is loom.Outcome.TIMEOUT
        assert mine.missing == (ghost,) and mine.expected == 3
        assert py_id in mine.arrived and ghost not in mine.arrived
        assert theirs["outcome"] == "COLLAB_OUTCOME_TIMEOUT"
        assert (
            theirs["missing"] == [ghost]
            and set(theirs["arrived"]) <= {py_id, dn_id}
            and dn_id in theirs["arrived"]
        )
        # Both were there at the end (the .NET one arrived before the Python deadline passed).
        assert set(mine.arrived) == {py_id, dn_id}

        # The same participants without the ghost complete.
        dn2 = await dotnet(
            "barrier",
            "--url",
            bridge.url,
            "--agent-id",
            dn_id,
            "--barrier-id",
            f"b2-{run}",
            "--participants",
            f"{py_id},{dn_id}",
            "--timeout-ms",
            "10000",
        )
        await dn2.ready(90)
        done = await asyncio.wait_for(conn.barrier(f"b2-{run}", participants=[py_id, dn_id], timeout=10), T)
        assert (
            done.outcome is loom.Outcome.COMPLETED
            and sorted(done.arrived) == sorted([py_id, dn_id])
            and not done.missing
        )
        assert (await dn2.json(T))["outcome"] == "COLLAB_OUTCOME_COMPLETED"

        # A count barrier: any two distinct arrivals.
        a = await connect(bridge, f"a-{run}")
        b = await connect(bridge, f"b-{run}")
        try:
            results = await asyncio.wait_for(
                asyncio.gather(
                    a.barrier(f"b3-{run}", count=2, timeout=10), b.barrier(f"b3-{run}", count=2, timeout=10)
                ),
                T,
            )
            assert all(r.completed and sorted(r.arrived) == sorted([a.agent_id, b.agent_id]) for r in results)
        finally:
            await a.close()
            await b.close()
    finally:
        await conn.close()


# ---------------------------------------------------------------------------------------------
# Request/reply under concurrency
# ---------------------------------------------------------------------------------------------


async def test_concurrent_request_reply_never_mixes_replies(
    bridge: Bridge, workers: Callable[..., Awaitable[Any]]
) -> None:
    run = uid()
    topic = f"collab.{run}.echo"
    names = [f"dn-e1-{run}", f"dn-e2-{run}"]
    await workers(
        "dotnet",
        "--url",
        bridge.url,
        "--agent-id",
        names[0],
        "--topic",
        topic,
        "--answer",
        json.dumps({"by": names[0]}),
    )
    await workers(
        "dotnet",
        "--url",
        bridge.url,
        "--agent-id",
        names[1],
        "--topic",
        topic,
        "--answer",
        json.dumps({"by": names[1]}),
        "--delay-ms",
        "20",
    )
    if use_ts():
        names.append(f"ts-e3-{run}")
        await workers(
            "ts",
            "--url",
            bridge.url,
            "--agent-id",
            names[2],
            "--topic",
            topic,
            "--answer",
            json.dumps({"by": names[2]}),
            "--delay-ms",
            "10",
        )
    py_id = f"py-e4-{run}"
    names.append(py_id)
    py = await python_worker(bridge, py_id, topic, {"by": py_id}, delay=0.03)
    boss = await connect(bridge, f"boss-{run}")
    try:
        await subscribed(bridge, topic, names)
        rng = random.Random(11)

        async def one(i: int) -> loom.GatherResult:
            strategy = rng.choice([loom.JoinStrategy.FIRST, loom.JoinStrategy.ALL, loom.JoinStrategy.FIRST_K])
            return await boss.gather(topic, {"n": i}, strategy=strategy, k=2, timeout=15)

        results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(60))), 60)
        for i, result in enumerate(results):
            assert result.outcome is loom.Outcome.COMPLETED, (i, result.outcome)
            assert result.replies, i
            for reply in result.replies:
                assert reply.data["req"] == {"n": i}, (i, reply.data)
            assert len(set(result.answered)) == len(result.answered)
        # FIRST and FIRST_K leave replies behind: they were counted late, never delivered to another request.
    finally:
        await boss.close()
        await py.close()


# ---------------------------------------------------------------------------------------------
# Local comparison (no bridge)
# ---------------------------------------------------------------------------------------------


def test_local_majority_groups_by_key_in_arrival_order() -> None:
    replies = tuple(
        loom.Reply(name, json.dumps({"label": label}).encode())
        for name, label in [("a", "Cat"), ("b", "dog"), ("c", "CAT"), ("d", "cat")]
    )
    gathered = loom.GatherResult(
        "op", loom.Outcome.COMPLETED, replies=replies, answered=("a", "b", "c", "d"), expected=4
    )
    result = loom.apply_majority(gathered, lambda r: r.data["label"].lower())
    assert result.outcome is loom.Outcome.COMPLETED and result.quorum == 3
    assert result.agreeing == ("a", "c", "d") and result.agreed_value == {"label": "Cat"}
    split = loom.apply_majority(gathered, lambda r: r.data["label"])
    assert split.outcome is loom.Outcome.NO_QUORUM and split.agreed_value is None
    timed_out = loom.apply_majority(
        loom.GatherResult("op", loom.Outcome.TIMEOUT, replies=replies[:1], expected=4), lambda r: 1
    )
    assert timed_out.outcome is loom.Outcome.TIMEOUT


async def test_cancelling_the_caller_cancels_the_operation_in_the_bridge(bridge: Bridge) -> None:
    run = uid()
    boss = await connect(bridge, f"boss-{run}")
    watcher = await connect(bridge, f"watch-{run}")
    records: List[loom.Event] = []
    try:
        await asyncio.wait_for(watcher.subscribe("_loom.collab.gather.>", lambda e: _append(records, e)), T)
        task = asyncio.ensure_future(
            boss.gather(
                f"collab.{run}.nobody", {}, strategy=loom.JoinStrategy.ALL, agents=["absent"], timeout=20
            )
        )
        await poll(
            lambda: any(e.topic.endswith(".started") and e.sender == boss.agent_id for e in records),
            T,
            "the gather started",
        )
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, T)
        done = await poll(
            lambda: [e for e in records if e.topic.endswith(".completed") and e.sender == boss.agent_id],
            T,
            "the gather's completed record",
        )
        assert done[0].data["outcome"] == "cancelled" and done[0].data["timed_out"] == ["absent"]
    finally:
        await boss.close()
        await watcher.close()
