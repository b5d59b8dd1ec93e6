#!/usr/bin/python3
"""CPU per published event of the Python SDK, for paired before/after runs on a loaded machine
(CPU time is steadier there than events/s). Publishes to the bridge at $LOOM_URL with the SDK in
SRC (default: this checkout's sdk-python/src):

  emit   the best of 5 × 200,000 emit() calls that never wait (outbound queue of 1,000,000):
         the publish hot path alone, in process CPU µs per call;
  flow   200,000 emits of 100 B with the default queue, then drain(): process CPU (user+sys,
         the writer loop included) µs per event, and events/s wall.

  git archive BASE sdk-python/src | tar -x -C /tmp/before
  for i in 1 2 3; do python3 sdk-python/bench/cpu_per_event.py /tmp/before/sdk-python/src;
                     python3 sdk-python/bench/cpu_per_event.py; done
"""

import asyncio
import os
import resource
import sys
import time
from pathlib import Path

SRC = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[1] / "src")
sys.path.insert(0, SRC)

import loom  # noqa: E402

N = 200_000
PAYLOAD = b"x" * 100


async def emit_only(url: str) -> float:
    async with loom.connect(url, name="py-cpu-emit", outbound_queue_capacity=1_000_000) as conn:
        emit = conn.emit
        await emit("bench.cpu", PAYLOAD)
        best = 1e9
        for _ in range(5):
            t0 = time.process_time()
            for _ in range(N):
                await emit("bench.cpu", PAYLOAD)
            best = min(best, (time.process_time() - t0) / N)
            await asyncio.sleep(0.5)
    return best * 1e6


async def flow(url: str) -> str:
    async with loom.connect(url, name="py-cpu-flow") as conn:
        emit = conn.emit
        for _ in range(2000):
            await emit("bench.cpu", PAYLOAD)
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        for _ in range(N):
            await emit("bench.cpu", PAYLOAD)
        await conn.drain()
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        t1 = time.perf_counter()
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return f"{cpu / N * 1e6:.2f} us-cpu/event, {N / (t1 - t0):.0f} events/s wall"


async def main() -> None:
    url = os.environ["LOOM_URL"]
    print(f"emit {await emit_only(url):.3f} us-cpu/call; flow {await flow(url)}  ({SRC})")


asyncio.run(main())
