"""A joined conversation (:meth:`Context.join_thread`)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Optional

from ._errors import RequestTimeoutError
from ._event import Event

if TYPE_CHECKING:
    from ._connection.subscription_router import Subscription
    from ._context import Context


class Thread:
    """A joined conversation (``thread.<id>.broadcast`` / ``thread.<id>.reply``)."""

    def __init__(self, context: Context, thread_id: str, capacity: int) -> None:
        self.id = thread_id
        self._ctx = context
        self._queue: "asyncio.Queue[Event]" = asyncio.Queue(maxsize=max(1, capacity))
        self._subscription: Optional["Subscription"] = None
        self.dropped = 0

    @property
    def topic(self) -> str:
        """The thread's broadcast topic."""
        return f"thread.{self.id}.broadcast"

    async def _offer(self, event: Event) -> None:
        if self._queue.full():
            self.dropped += 1  # the oldest stays: count what could not be kept
            return
        self._queue.put_nowait(event)

    async def emit(self, data: Any = None, *, kind: str = "broadcast", **options: Any) -> str:
        """Publishes to ``thread.<id>.<kind>`` (``broadcast`` or ``reply`` by convention) with
        ``thread_id`` set."""
        return await self._ctx.emit(f"thread.{self.id}.{kind}", data, thread_id=self.id, **options)

    async def next(self, timeout: Optional[float] = None) -> Event:
        """The next event of the thread; raises :class:`RequestTimeoutError` after ``timeout`` s."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            raise RequestTimeoutError(f"No event on thread {self.id!r} within {timeout} s.") from None

    def __aiter__(self) -> "Thread":
        return self

    async def __anext__(self) -> Event:
        return await self._queue.get()

    async def leave(self) -> None:
        """Unsubscribes from the thread (safe to call twice)."""
        sub, self._subscription = self._subscription, None
        if sub is not None:
            await sub.unsubscribe()

    async def __aenter__(self) -> "Thread":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.leave()
