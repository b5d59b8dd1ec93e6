"""SubscriptionRouter: local subscriptions (one bounded queue and one in-order handler task each),
their binding to the bridge's subscription ids, delivery by subscription id, re-subscription
after a reconnect, and the agent's reply inbox."""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Deque, Dict, List, Optional, Set, Tuple

from .. import _wire
from .._context import Handler
from .._errors import (
    ConnectionClosedError,
    InvalidParamsError,
    LoomError,
    RequestTimeoutError,
    UnavailableError,
    from_proto,
)
from .._event import Event, Overflow, QoS
from .._ids import inbox_token
from .._proto import bridge_pb2 as pb
from .._topics import validate_pattern
from .pending_calls import RequestTimedOut

if TYPE_CHECKING:
    from .connection import Connection

_log = logging.getLogger("loom.connection")


class Subscription:
    """A subscription handle: ``await sub.unsubscribe()`` (safe to call twice)."""

    def __init__(self, router: "SubscriptionRouter", entry: "SubEntry") -> None:
        self._router = router
        self._entry = entry

    @property
    def pattern(self) -> str:
        return self._entry.pattern

    @property
    def id(self) -> Optional[str]:
        """The bridge's subscription id (None while not bound)."""
        return self._entry.bridge_id

    @property
    def delivered(self) -> int:
        return self._entry.delivered

    @property
    def dropped(self) -> int:
        return self._entry.dropped

    async def unsubscribe(self) -> None:
        await self._router.unsubscribe(self._entry)


class SubEntry:
    """One local subscription: a bounded queue between the reader and an in-order handler."""

    def __init__(
        self,
        agent: Callable[[], str],
        pattern: str,
        qos: int,
        overflow: int,
        bridge_capacity: int,
        handler: Optional[Handler],
        local_capacity: int,
        direct: Optional[Callable[[pb.Envelope], None]] = None,
    ) -> None:
        self.agent = agent
        self.pattern = pattern
        self.qos = qos or int(QoS.NORMAL)
        self.spec = pb.Subscription(pattern=pattern, queue_capacity=bridge_capacity)
        self.spec.qos = self.qos  # type: ignore[assignment]
        self.spec.overflow = overflow  # type: ignore[assignment]
        self.handler = handler
        self.direct = direct
        self.bridge_id: Optional[str] = None
        self.capacity = max(1, local_capacity)
        self.policy = overflow or {1: 1, 2: 2, 3: 3}.get(self.qos, 2)
        self.queue: Deque[Tuple[pb.Envelope, str]] = collections.deque()
        self.wake = asyncio.Event()
        self.space = asyncio.Event()
        self.busy = False
        self.delivered = 0
        self.dropped = 0
        self._dropping = False
        self.task: Optional["asyncio.Task[None]"] = None

    def same(self, sub: pb.Subscription) -> bool:
        return sub.pattern == self.pattern and (sub.qos or int(QoS.NORMAL)) == self.qos

    def start(self) -> None:
        if self.handler is not None and self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run(), name=f"loom-sub-{self.pattern}")

    def offer(self, envelope: pb.Envelope, subscription_id: str) -> Optional[Awaitable[None]]:
        if self.direct is not None:
            self.direct(envelope)
            return None
        q = self.queue
        if len(q) >= self.capacity:
            if self.policy == int(Overflow.BLOCK):
                return self._offer_blocking(envelope, subscription_id)
            self.dropped += 1
            if not self._dropping:
                self._dropping = True
                _log.warning(
                    "agent %s: local queue of subscription %r is full (%d); dropping (%s) until it drains",
                    self.agent(),
                    self.pattern,
                    self.capacity,
                    "oldest" if self.policy == 1 else "newest",
                )
            if self.policy == int(Overflow.DROP_OLDEST):
                q.popleft()
            else:
                return None
        q.append((envelope, subscription_id))
        self.wake.set()
        return None

    async def _offer_blocking(self, envelope: pb.Envelope, subscription_id: str) -> None:
        while len(self.queue) >= self.capacity and self.task is not None and not self.task.done():
            self.space.clear()
            await self.space.wait()
        self.queue.append((envelope, subscription_id))
        self.wake.set()

    async def _run(self) -> None:
        q = self.queue
        handler = self.handler
        assert handler is not None
        while True:
            if not q:
                self.wake.clear()
                await self.wake.wait()
                continue
            envelope, subscription_id = q.popleft()
            if len(q) < self.capacity:
                self.space.set()
                if self._dropping and len(q) < self.capacity // 2:
                    self._dropping = False
            self.busy = True
            try:
                await handler(Event.from_proto(envelope, subscription_id))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a handler failure never stops the subscription
                _log.error(
                    "agent %s: handler of %r failed on an event of %r: %s: %s",
                    self.agent(),
                    self.pattern,
                    envelope.topic,
                    type(exc).__name__,
                    exc,
                    exc_info=_log.isEnabledFor(logging.DEBUG),
                )
            finally:
                self.busy = False
                self.delivered += 1

    @property
    def idle(self) -> bool:
        return not self.queue and not self.busy

    async def stop(self) -> None:
        task, self.task = self.task, None
        self.space.set()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class SubscriptionRouter:
    def __init__(self, conn: "Connection") -> None:
        self.conn = conn
        self.entries: List[SubEntry] = []
        self.routes: Dict[str, List[SubEntry]] = {}
        self.pending: Dict[str, SubEntry] = {}
        self.inbox_prefix = "_inbox." + inbox_token(conn.agent_id)
        self.inbox: Optional[SubEntry] = None
        self._tasks: Set["asyncio.Task[None]"] = set()

    def _agent(self) -> str:
        return self.conn.agent_id

    def start(self) -> None:
        self.inbox = SubEntry(
            self._agent, self.inbox_prefix + ".>", int(QoS.NORMAL), 0, 0, None, 1, direct=self._on_reply
        )
        for entry in self.entries:
            entry.start()

    def _on_reply(self, envelope: pb.Envelope) -> None:
        inbox = self.inbox
        self.conn._pending.on_reply(envelope, self.inbox_prefix, (inbox.bridge_id or "") if inbox else "")

    def _all(self) -> List[SubEntry]:
        return ([self.inbox] if self.inbox else []) + self.entries

    # -- registration --------------------------------------------------------------------------
    def add_to(self, request: pb.RegisterAgentRequest) -> None:
        for entry in self._all():
            if not any(entry.same(s) for s in request.subscriptions):
                request.subscriptions.append(entry.spec)

    def all_held(self, held: Any) -> bool:
        return all(any(e.same(h) for h in held) for e in self.entries)

    def bind(self, response: pb.RegisterAgentResponse) -> List[str]:
        """Binds local subscriptions to the ids of a (re-)registration; returns unwanted ids."""
        entries = self._all()
        for entry in entries:
            entry.bridge_id = None
        stale = []
        for held in response.subscriptions:
            wanted = False
            for entry in entries:
                if entry.same(held):
                    entry.bridge_id = held.subscription_id
                    wanted = True
            if not wanted:
                stale.append(held.subscription_id)
        self.rebuild_routes()
        return stale

    def rebuild_routes(self) -> None:
        routes: Dict[str, List[SubEntry]] = {}
        for entry in self._all():
            if entry.bridge_id is not None:
                routes.setdefault(entry.bridge_id, []).append(entry)
        self.routes = routes

    def unbind_all(self) -> None:
        """The stream is lost: no bridge id holds any more."""
        self.pending.clear()
        for entry in self._all():
            entry.bridge_id = None
        self.rebuild_routes()

    def subscribe_missing(self) -> None:
        """After a (re)connect: subscribe what the registration did not carry."""
        done: List[SubEntry] = []
        for entry in self.entries:
            if entry.bridge_id is None and not any(e.same(entry.spec) for e in done):
                done.append(entry)
                task = asyncio.get_running_loop().create_task(self.send_subscribe(entry))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    # -- from the reader -------------------------------------------------------------------------
    def deliver(self, delivery: pb.Delivery) -> Optional[Awaitable[None]]:
        entries = self.routes.get(delivery.subscription_id)
        if entries is None:
            self.conn.stats.deliveries_unrouted += 1
            _log.debug(
                "agent %s: delivery for unknown subscription %s", self._agent(), delivery.subscription_id
            )
            return None
        if len(entries) == 1:
            return entries[0].offer(delivery.envelope, delivery.subscription_id)
        waits = [
            w
            for w in (e.offer(delivery.envelope, delivery.subscription_id) for e in entries)
            if w is not None
        ]
        return _all(waits) if waits else None

    def on_ack(self, message: pb.ServerMessage) -> None:
        ack = message.ack
        entry = self.pending.pop(ack.correlation_id, None)
        if entry is not None:
            for e in self.entries:
                if e is entry or (e.bridge_id is None and e.same(entry.spec)):
                    e.bridge_id = ack.subscription_id
            self.rebuild_routes()
        self.conn._pending.complete_if_waiting(ack.correlation_id, message)

    def forget_pending(self, correlation_id: str) -> None:
        self.pending.pop(correlation_id, None)

    # -- the API ---------------------------------------------------------------------------------
    async def subscribe(
        self, pattern: str, handler: Handler, qos: QoS, overflow: Optional[Overflow], queue_capacity: int
    ) -> Subscription:
        conn = self.conn
        if conn._closing or conn.status.value == "closed":
            raise ConnectionClosedError()
        validate_pattern(pattern)
        if not callable(handler):
            raise InvalidParamsError(f"The handler of {pattern!r} is not callable.", path="/handler")
        entry = SubEntry(
            self._agent,
            pattern,
            int(qos),
            int(overflow) if overflow is not None else 0,
            queue_capacity,
            handler,
            conn.config.delivery_queue_capacity,
        )
        self.entries.append(entry)
        handle = Subscription(self, entry)
        if not conn._started:
            return handle  # the first registration carries it
        entry.start()
        twin = next(
            (e for e in self.entries if e is not entry and e.bridge_id is not None and e.same(entry.spec)),
            None,
        )
        if twin is not None:
            entry.bridge_id = twin.bridge_id
            self.rebuild_routes()
            return handle
        if not conn._connected:
            return handle  # the re-registration carries it
        await self.send_subscribe(entry, raise_errors=True)
        return handle

    async def send_subscribe(self, entry: SubEntry, raise_errors: bool = False) -> None:
        conn = self.conn
        cid = conn._ids.next()
        self.pending[cid] = entry
        item = _wire.item_of(
            pb.ClientMessage(subscribe=pb.SubscribeRequest(correlation_id=cid, subscription=entry.spec))
        )
        timeout = conn.config.request_timeout
        try:
            reply = await conn._pending.send_and_wait(cid, item, timeout)
        except UnavailableError:
            return  # the stream broke meanwhile: the re-registration carries it
        except RequestTimedOut:
            self.pending.pop(cid, None)
            await self.remove(entry)
            error = RequestTimeoutError(
                f"The bridge did not acknowledge the subscription to {entry.pattern!r} within {timeout:g} s."
            )
            if raise_errors:
                raise error from None
            _log.error("agent %s: %s", self._agent(), error.message)
            return
        if reply.WhichOneof("kind") == "error":
            await self.remove(entry)
            loom_error = from_proto(reply.error.error)
            if raise_errors:
                raise loom_error
            _log.error("agent %s: subscription to %r failed: %s", self._agent(), entry.pattern, loom_error)

    async def remove(self, entry: SubEntry) -> None:
        if entry in self.entries:
            self.entries.remove(entry)
        self.rebuild_routes()
        await entry.stop()

    async def unsubscribe(self, entry: SubEntry) -> None:
        if entry not in self.entries:
            return
        conn = self.conn
        bridge_id = entry.bridge_id
        await self.remove(entry)
        last = not any(e.same(entry.spec) for e in self.entries)
        if not last or bridge_id is None or conn._closing or not conn._connected:
            return
        cid = conn._ids.next()
        request = pb.UnsubscribeRequest(correlation_id=cid, subscription_id=bridge_id)
        try:
            reply = await conn._pending.send_and_wait(
                cid, _wire.item_of(pb.ClientMessage(unsubscribe=request)), conn.config.request_timeout
            )
            if reply.WhichOneof("kind") == "error":
                _log.warning(
                    "agent %s: unsubscribe of %r failed: %s",
                    self._agent(),
                    entry.pattern,
                    reply.error.error.message,
                )
        except (RequestTimedOut, LoomError) as exc:
            _log.warning("agent %s: unsubscribe of %r failed: %s", self._agent(), entry.pattern, exc)

    def all_idle(self) -> bool:
        return all(e.idle for e in self.entries)

    async def stop_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, *(e.stop() for e in self.entries), return_exceptions=True)


def _all(waits: List[Awaitable[None]]) -> Awaitable[None]:
    async def run() -> None:
        for w in waits:
            await w

    return run()
