#!/usr/bin/python3
"""Publisher for `./loom bench external`: publishes $LOOM_EVENTS envelopes of $LOOM_PAYLOAD bytes
on $LOOM_TOPIC to the bridge at $LOOM_URL, then closes (flushing), and exits 0.

  ./loom bench external --cmd "/usr/bin/python3 sdk-python/bench/publish.py"
"""

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import loom  # noqa: E402


async def main() -> None:
    topic, events, size = (
        os.environ["LOOM_TOPIC"],
        int(os.environ["LOOM_EVENTS"]),
        int(os.environ["LOOM_PAYLOAD"]),
    )
    payload = b"x" * size
    async with loom.connect(os.environ["LOOM_URL"], name="py-external-publisher") as conn:
        emit = conn.emit
        for _ in range(events):
            await emit(topic, payload, qos=loom.QoS.BATCH)
        await conn.drain()


asyncio.run(main())
