"""Heartbeat: the timer that pings the bridge when nothing else was written for half an
interval, and ends a session the bridge has been silent on for three intervals."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from .. import _wire
from .._errors import UnavailableError
from .._proto import bridge_pb2 as pb

if TYPE_CHECKING:
    from .supervisor import Session
    from .writer import Writer


class Heartbeat:
    def __init__(self, writer: "Writer") -> None:
        self._writer = writer
        self._sequence = 0

    async def run(self, session: "Session") -> None:
        interval = session.interval
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            silent = now - session.last_received
            if silent > 3 * interval:
                session.end(
                    UnavailableError(
                        f"Nothing arrived from the bridge for {silent * 1000:.0f} ms "
                        f"(3 heartbeat intervals of {interval * 1000:.0f} ms)."
                    )
                )
                return
            if now - session.last_write >= interval / 2:
                self._sequence += 1
                ping = pb.HeartbeatPing(sequence=self._sequence, sent_unix_ms=int(time.time() * 1000))
                self._writer.enqueue(_wire.item_of(pb.ClientMessage(heartbeat=ping)))
