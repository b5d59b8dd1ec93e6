#!/usr/bin/python3
"""End-to-end benchmarks of the Python SDK against a real bridge and the .NET test agent.

  publish: one Python publisher -> bridge -> one .NET subscriber (100-byte payloads);
           the figure is the subscriber's events/s (first to last event received).
  calls:   a Python capability (async, echoes its input) called from .NET
           (`Loom.TestAgent bench-call`, C concurrent callers); the figure is calls/s.

Usage (from the repository root):
  /usr/bin/python3 sdk-python/bench/bench.py publish [--events 300000] [--runs 3] [--url URL]
  /usr/bin/python3 sdk-python/bench/bench.py calls [--calls 20000] [--concurrency 64] [--runs 3] [--url URL]

Without --url a bridge is started (`./loom up --grpc-port 0 --http-port 0`) and stopped.
The .NET test agent is built if missing (dotnet build tests/Loom.TestAgent -c Release).
Prints one JSON line per run and a summary line with the median and the spread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "sdk-python" / "src"))

import loom  # noqa: E402

TEST_AGENT = REPO / "tests" / "Loom.TestAgent" / "bin" / "Release" / "net10.0" / "Loom.TestAgent.dll"
READY = re.compile(r"^listening grpc=(http://127\.0\.0\.1:\d+) http=(http://127\.0\.0\.1:\d+)\s*$")


def start_bridge() -> Tuple[subprocess.Popen, str]:  # type: ignore[type-arg]
    proc = subprocess.Popen(
        [str(REPO / "loom"), "up", "--grpc-port", "0", "--http-port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = READY.match(line.strip())
        if m:
            return proc, m.group(1)
    proc.kill()
    raise SystemExit("the bridge did not start")


def stop(proc: "subprocess.Popen[Any]") -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)


def ensure_test_agent() -> None:
    if not TEST_AGENT.exists():
        subprocess.run(
            [
                "dotnet",
                "build",
                str(REPO / "tests" / "Loom.TestAgent"),
                "-c",
                "Release",
                "-nologo",
                "-v",
                "quiet",
            ],
            check=True,
        )


async def read_line(stream: asyncio.StreamReader, timeout: float) -> str:
    line = await asyncio.wait_for(stream.readline(), timeout)
    return line.decode().strip()


async def publish_run(url: str, events: int, payload_size: int) -> Dict[str, Any]:
    topic = f"bench.py.{os.getpid()}.{time.monotonic_ns()}"
    sub = await asyncio.create_subprocess_exec(
        "dotnet",
        str(TEST_AGENT),
        "subscribe",
        "--url",
        url,
        "--topic",
        topic,
        "--count",
        str(events),
        "--timeout-s",
        "120",
        stdout=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    assert sub.stdout is not None
    try:
        if await read_line(sub.stdout, 60) != "ready":
            raise SystemExit("the .NET subscriber did not get ready")
        payload = b"x" * payload_size
        async with loom.connect(url, name="py-bench-publisher") as conn:
            started = time.perf_counter()
            emit = conn.emit
            for _ in range(events):
                await emit(topic, payload)
            queued = time.perf_counter() - started
            result: Dict[str, Any] = json.loads(await read_line(sub.stdout, 180))
            frames = conn.stats.frames_sent
        result["publisher_seconds_to_queue"] = round(queued, 3)
        result["frames_sent"] = frames
        return result
    finally:
        if sub.returncode is None:
            sub.kill()
        await sub.wait()


@loom.capability("py.bench.echo")
async def echo(text: str) -> Dict[str, str]:
    return {"text": text}


async def calls_run(url: str, calls: int, concurrency: int) -> Dict[str, Any]:
    async with loom.connect(url, name="py-bench-provider", capabilities=[echo]):
        proc = await asyncio.create_subprocess_exec(
            "dotnet",
            str(TEST_AGENT),
            "bench-call",
            "--url",
            url,
            "--capability",
            "py.bench.echo",
            "--input",
            json.dumps({"text": "hello"}),
            "--calls",
            str(calls),
            "--concurrency",
            str(concurrency),
            stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        try:
            return json.loads(await read_line(proc.stdout, 300))  # type: ignore[no-any-return]
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()


def summarize(name: str, values: List[float]) -> Dict[str, Any]:
    return {
        "metric": name,
        "runs": len(values),
        "median": round(statistics.median(values)),
        "min": round(min(values)),
        "max": round(max(values)),
    }


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["publish", "calls"])
    parser.add_argument("--url")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--payload", type=int, default=100)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args(argv)
    ensure_test_agent()
    bridge = None
    url = args.url
    if url is None:
        bridge, url = start_bridge()
    try:
        values: List[float] = []
        for _ in range(args.runs):
            if args.mode == "publish":
                result = asyncio.run(publish_run(url, args.events, args.payload))
                values.append(float(result["events_per_second"]))
            else:
                result = asyncio.run(calls_run(url, args.calls, args.concurrency))
                values.append(float(result["calls_per_second"]))
            print(json.dumps(result), flush=True)
        print(
            json.dumps(
                summarize("events_per_second" if args.mode == "publish" else "calls_per_second", values)
            )
        )
    finally:
        if bridge is not None:
            stop(bridge)


if __name__ == "__main__":
    main()
