"""Writer: the bounded outbound queue and the single write loop of a stream. Everything sent goes
through one queue; the loop joins what is pending (up to the frame limits) into one ClientFrame
per write."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import TYPE_CHECKING, Callable, Deque, List, Mapping, Union

from .._errors import ConnectionClosedError

if TYPE_CHECKING:
    from .connection import Stats
    from .supervisor import Session

_log = logging.getLogger("loom.connection")


class OutboundRequest:
    """A queued request whose answer someone waits for; skipped at write time once abandoned."""

    __slots__ = ("key", "data")

    def __init__(self, key: str, data: bytes) -> None:
        self.key = key
        self.data = data


Item = Union[bytes, OutboundRequest]


class Writer:
    def __init__(
        self, agent: Callable[[], str], capacity: int, stats: "Stats", pending: Mapping[str, object]
    ) -> None:
        self._agent = agent
        self.capacity = capacity
        self.stats = stats
        self._pending = pending
        self.queue: Deque[Item] = collections.deque()
        # Created by start() (inside the running loop).
        self.wake: asyncio.Event = None  # type: ignore[assignment]
        self.space: asyncio.Event = None  # type: ignore[assignment]
        self.half_close = False
        self.closed = False

    def start(self) -> None:
        self.wake = asyncio.Event()
        self.space = asyncio.Event()

    def enqueue(self, item: Item) -> None:
        self.queue.append(item)
        wake = self.wake
        if wake is not None:
            wake.set()

    async def wait_space(self) -> None:
        space = self.space
        while len(self.queue) >= self.capacity:
            if self.closed:
                raise ConnectionClosedError()
            space.clear()
            await space.wait()

    def close(self) -> int:
        """The connection closed: wakes who waits for space; returns how many messages nobody
        waits an answer for were never written (requests are not counted: their waiters fail)."""
        self.closed = True
        unsent = sum(1 for item in self.queue if type(item) is bytes)
        self.queue.clear()
        if self.space is not None:
            self.space.set()
        return unsent

    async def run(self, session: "Session") -> None:
        q = self.queue
        call = session.call
        wake = self.wake
        space = self.space
        stats = self.stats
        capacity = self.capacity
        pending = self._pending
        taken = 0
        try:
            if not session.release.is_set():
                await session.release.wait()
            while True:
                if not q:
                    if self.half_close:
                        await call.done_writing()
                        return
                    wake.clear()
                    await wake.wait()
                    continue
                parts: List[bytes] = []
                size = 0
                max_msgs = session.max_msgs
                max_bytes = session.max_bytes
                while q and len(parts) < max_msgs:
                    item = q[0]
                    data = item if type(item) is bytes else item.data  # type: ignore[union-attr]
                    if parts and size + len(data) > max_bytes:
                        break
                    q.popleft()
                    if type(item) is OutboundRequest and item.key not in pending:
                        continue  # its waiter gave up: do not send
                    parts.append(data)  # type: ignore[arg-type]
                    size += len(data)
                if len(q) < capacity:
                    space.set()
                if not parts:
                    continue
                taken = len(parts)
                await call.write(b"".join(parts))
                taken = 0
                session.last_write = time.monotonic()
                stats.frames_sent += 1
                stats.messages_sent += len(parts)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken stream ends the session; the supervisor reconnects
            session.end(exc)
        finally:
            if taken:
                stats.lost_on_break += taken
                _log.warning("agent %s: %d messages were lost when the stream broke", self._agent(), taken)
