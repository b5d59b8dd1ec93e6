"""One agent's connection to a bridge: RegisterAgent, then one EventStream with one reader, one
writer and one heartbeat task. Everything sent goes through one bounded queue; the writer joins
all that is pending (up to the frame limits) into one ClientFrame per write. A stream that breaks,
or a bridge silent for three heartbeat intervals, is re-established with jittered exponential
backoff, registering again with the same agent id, subscriptions and capabilities. Requests in
flight on a broken stream fail with a retryable UnavailableError; nothing waits forever."""

from __future__ import annotations

import asyncio
import collections
import enum
import itertools
import logging
import math
import random
import secrets
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Deque, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import grpc
import grpc.aio

from . import _security, _wire
from ._capability import BoundCapability, as_bound
from ._config import Config
from ._context import BYTES_CONTENT_TYPE, Context, Handler, qos_value
from ._errors import (
    ConnectionClosedError,
    InvalidParamsError,
    LoomError,
    NotFoundError,
    RequestTimeoutError,
    ResourceExhaustedError,
    UnavailableError,
    from_proto,
    from_rpc_error,
)
from ._event import Event, Overflow, QoS
from ._ids import IdGenerator, inbox_token, new_agent_id
from ._memory import Memory
from ._proto import bridge_pb2 as pb
from ._topics import validate_pattern, validate_topic

_log = logging.getLogger("loom.connection")

_SESSION_HEADER = "loom-session-id"
_FRAME_HEADROOM = 64 * 1024
_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.enable_http_proxy", 0),
]


class Status(str, enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


@dataclass
class Stats:
    """Counters since the connection was created."""

    frames_sent: int = 0
    messages_sent: int = 0
    frames_received: int = 0
    messages_received: int = 0
    reconnects: int = 0
    deliveries_dropped: int = 0
    deliveries_unrouted: int = 0
    publish_errors: int = 0
    late_replies: int = 0
    late_responses: int = 0
    lost_on_break: int = 0
    unsent_on_close: int = 0
    """Messages nobody waits an answer for (publishes, results, unsubscribes) still queued, never
    written, when the connection closed (e.g. closed while reconnecting)."""


class _Timeout(Exception):
    pass


class _Req:
    """A queued request whose answer someone waits for; skipped at write time once abandoned."""

    __slots__ = ("key", "data")

    def __init__(self, key: str, data: bytes) -> None:
        self.key = key
        self.data = data


class _ReplyWaiter:
    __slots__ = ("future", "count", "replies")

    def __init__(self, future: "asyncio.Future[List[Event]]", count: int) -> None:
        self.future = future
        self.count = count
        self.replies: List[Event] = []


def _backoff(attempt: int, initial_ms: int, max_ms: int, jitter: float) -> float:
    if initial_ms <= 0:
        return 0.0
    ms = min(float(max_ms), initial_ms * math.pow(2, min(attempt, 30)))
    if jitter > 0:
        ms *= 1 + jitter * (2 * random.random() - 1)
    return max(0.0, ms) / 1000.0


def _expire(future: "asyncio.Future[Any]") -> None:
    if not future.done():
        future.set_exception(_Timeout())


async def _wait(future: "asyncio.Future[Any]", timeout: float) -> Any:
    """Awaits a future with a deadline (cheaper than asyncio.wait_for: no extra task)."""
    handle = asyncio.get_running_loop().call_later(timeout, _expire, future)
    try:
        return await future
    finally:
        handle.cancel()


class Subscription:
    """A subscription handle: ``await sub.unsubscribe()`` (safe to call twice)."""

    def __init__(self, connection: "Connection", entry: "_SubEntry") -> None:
        self._conn = connection
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
        await self._conn._unsubscribe(self._entry)


class _SubEntry:
    """One local subscription: a bounded queue between the reader and an in-order handler."""

    def __init__(
        self,
        conn: "Connection",
        pattern: str,
        qos: int,
        overflow: int,
        bridge_capacity: int,
        handler: Optional[Handler],
        local_capacity: int,
        direct: Any = None,
    ) -> None:
        self.conn = conn
        self.pattern = pattern
        self.qos = qos or int(QoS.NORMAL)
        self.spec = pb.Subscription(pattern=pattern, qos=self.qos, overflow=overflow, queue_capacity=bridge_capacity)  # type: ignore[arg-type]
        self.handler = handler
        self.direct = direct
        self.bridge_id: Optional[str] = None
        self.capacity = max(1, local_capacity)
        policy = overflow or {1: 1, 2: 2, 3: 3}.get(self.qos, 2)
        self.policy = policy
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
                    self.conn.agent_id, self.pattern, self.capacity, "oldest" if self.policy == 1 else "newest",
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
                    self.conn.agent_id, self.pattern, envelope.topic, type(exc).__name__, exc,
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


class _Session:
    def __init__(self, generation: int, response: pb.RegisterAgentResponse, max_msgs: int, max_bytes: int) -> None:
        self.generation = generation
        self.session_id = response.session_id
        self.interval = (response.heartbeat_interval_ms or 5000) / 1000.0
        self.max_msgs = max_msgs
        self.max_bytes = max_bytes
        self.call: Any = None
        self.last_received = time.monotonic()
        self.last_write = time.monotonic()
        self.ended: "asyncio.Future[Optional[BaseException]]" = asyncio.get_running_loop().create_future()
        self.tasks: List["asyncio.Task[None]"] = []
        self.writer: Optional["asyncio.Task[None]"] = None
        # Set once the writer may send: at once, or after the settle that follows a bridge restart.
        self.release = asyncio.Event()
        self.release.set()
        self.release_timer: Optional[asyncio.TimerHandle] = None

    def end(self, error: Optional[BaseException]) -> None:
        if not self.ended.done():
            self.ended.set_result(error)


class Connection(Context):
    """A live connection of one agent to a bridge. Create it with :func:`loom.connect`.

    It is a :class:`~loom.Context` (emit, request, invoke, memory, ...) and adds
    :meth:`subscribe`, :meth:`close` and :meth:`drain`, :attr:`status` and :attr:`stats`."""

    def __init__(self, config: Config, capabilities: Iterable[Any] = ()) -> None:
        self.config = config
        self._agent_id = config.agent_id or new_agent_id(config.name)
        self._namespace = config.namespace or "default"
        self._caps: Dict[str, BoundCapability] = {}
        for item in capabilities:
            bound = as_bound(item)
            if bound.name in self._caps:
                raise InvalidParamsError(
                    f"Capability {bound.name!r} is given twice; one agent provides each capability once.",
                    path="/capabilities",
                )
            self._caps[bound.name] = bound
        self._descriptors = [c.definition.descriptor() for c in self._caps.values()]
        self._ids = IdGenerator()
        self._id_prefix = secrets.token_hex(4) + "-"
        self._counter = itertools.count(1)
        self._out: Deque[Union[bytes, _Req]] = collections.deque()
        self._capacity = config.outbound_queue_capacity
        self._wake: Optional[asyncio.Event] = None
        self._space: Optional[asyncio.Event] = None
        self._pending: Dict[str, "asyncio.Future[pb.ServerMessage]"] = {}
        self._pending_subs: Dict[str, _SubEntry] = {}
        self._replies: Dict[str, _ReplyWaiter] = {}
        self._inflight: Dict[str, Tuple["asyncio.Task[None]", int]] = {}
        self._entries: List[_SubEntry] = []
        self._routes: Dict[str, List[_SubEntry]] = {}
        self._prefixes: Dict[Tuple[str, str], bytes] = {}
        self._inbox_prefix = "_inbox." + inbox_token(self._agent_id)
        self._inbox: Optional[_SubEntry] = None
        self._status = Status.CONNECTING
        self._status_changed: Optional[asyncio.Event] = None
        self._session: Optional[_Session] = None
        self._supervisor: Optional["asyncio.Task[None]"] = None
        self._shutdown_task: Optional["asyncio.Task[None]"] = None
        self._channel: Optional[grpc.aio.Channel] = None
        self._generation = 0
        self._heartbeat_seq = 0
        self._lost_at: Optional[float] = None
        self._limits = pb.Limits()
        self._max_payload = 1024 * 1024
        self._closing = False
        self._half_close = False
        self._frozen = False
        self._unfrozen: Optional[asyncio.Event] = None
        self._started = False
        self._open = False
        self._fast_prefixes: Dict[str, bytes] = {}
        self.stats = Stats()
        self._memory = Memory(self)

    # ------------------------------------------------------------------------------------------
    # Properties
    # ------------------------------------------------------------------------------------------

    @property
    def agent_id(self) -> str:
        return self._agent_id

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def memory(self) -> Memory:
        return self._memory

    @property
    def status(self) -> Status:
        return self._status

    @property
    def session_id(self) -> str:
        s = self._session
        return s.session_id if s is not None and self._status is Status.CONNECTED else ""

    @property
    def limits(self) -> pb.Limits:
        """The bridge's limits from the last registration."""
        return self._limits

    @property
    def inbox(self) -> str:
        """This agent's reply inbox pattern, ``_inbox.<agent>.>``."""
        return self._inbox_prefix + ".>"

    @property
    def capabilities(self) -> List[str]:
        return list(self._caps)

    async def wait_status(self, status: Status, timeout: float) -> None:
        """Waits until the connection reaches ``status``; RequestTimeoutError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while self._status is not status:
            left = deadline - time.monotonic()
            if left <= 0 or self._status is Status.CLOSED:
                raise RequestTimeoutError(f"Connection of {self._agent_id} is {self._status.value}, not {status.value}, after {timeout} s.")
            assert self._status_changed is not None
            self._status_changed.clear()
            try:
                await asyncio.wait_for(self._status_changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    def _set_status(self, status: Status) -> None:
        if self._status is status or self._status is Status.CLOSED:
            return
        _log.info("agent %s: %s -> %s", self._agent_id, self._status.value, status.value)
        self._status = status
        if self._status_changed is not None:
            self._status_changed.set()

    # ------------------------------------------------------------------------------------------
    # Connecting and reconnecting
    # ------------------------------------------------------------------------------------------

    async def start(self) -> "Connection":
        """Registers and opens the stream. Raises a typed error (UnavailableError when the bridge
        cannot be reached, InvalidParamsError when it rejects the registration)."""
        if self._started:
            raise InvalidParamsError("start() was already called on this connection; it reconnects by itself.")
        self._started = True
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._status_changed = asyncio.Event()
        self._unfrozen = asyncio.Event()
        self._inbox = _SubEntry(self, self.inbox, int(QoS.NORMAL), 0, 0, None, 1, direct=self._on_reply)
        for entry in self._entries:
            entry.start()
        try:
            session = await self._establish()
        except BaseException:
            self._status = Status.CLOSED
            await self._close_channel()
            raise
        self._set_status(Status.CONNECTED)
        self._open = True
        self._subscribe_missing()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise(session), name="loom-supervisor")
        return self

    def _new_channel(self) -> grpc.aio.Channel:
        # Not grpc.min_reconnect_backoff_ms: grpc-core also uses it as the connect timeout (the
        # wait for the server's SETTINGS), and a loaded bridge may take longer than a backoff.
        options = _CHANNEL_OPTIONS + [
            ("grpc.initial_reconnect_backoff_ms", max(100, self.config.reconnect_initial_ms)),
            ("grpc.max_reconnect_backoff_ms", max(1000, self.config.reconnect_max_ms)),
        ]
        credentials = _security.channel_credentials(self.config)
        if credentials is None:
            return grpc.aio.insecure_channel(self.config.target, options=options)
        return grpc.aio.secure_channel(self.config.target, credentials, options=options)

    async def _close_channel(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            try:
                await asyncio.wait_for(channel.close(), 2)
            except Exception:  # noqa: BLE001 - gone either way
                pass

    def _registration(self) -> pb.RegisterAgentRequest:
        request = pb.RegisterAgentRequest(
            agent_id=self._agent_id,
            name=self.config.name,
            namespace=self.config.namespace,
            sdk=self.config.sdk,
            heartbeat_interval_ms=self.config.heartbeat_ms,
            capabilities=self._descriptors,
        )
        for key, value in self.config.metadata.items():
            request.metadata[key] = value
        entries = ([self._inbox] if self._inbox else []) + self._entries
        for entry in entries:
            if not any(entry.same(s) for s in request.subscriptions):
                request.subscriptions.append(entry.spec)
        return request

    def _bind(self, response: pb.RegisterAgentResponse) -> List[str]:
        """Binds local subscriptions to the ids of a (re-)registration; returns unwanted ids."""
        entries = ([self._inbox] if self._inbox else []) + self._entries
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
        self._rebuild_routes()
        return stale

    def _rebuild_routes(self) -> None:
        routes: Dict[str, List[_SubEntry]] = {}
        entries = ([self._inbox] if self._inbox else []) + self._entries
        for entry in entries:
            if entry.bridge_id is not None:
                routes.setdefault(entry.bridge_id, []).append(entry)
        self._routes = routes

    async def _establish(self) -> _Session:
        if self._channel is None:
            self._channel = self._new_channel()
        channel = self._channel
        timeout = self.config.connect_timeout_ms / 1000.0
        register = channel.unary_unary(
            "/loom.v1.Bridge/RegisterAgent",
            request_serializer=pb.RegisterAgentRequest.SerializeToString,
            response_deserializer=pb.RegisterAgentResponse.FromString,
        )
        # The registration carries every subscription and capability, and its answer confirms them
        # (with the subscriptions' ids): all are in place before anything queued is written. One
        # added while the registration was on its way is carried by one more registration.
        bridge_knew_us = False
        for round_ in range(3):
            try:
                response: pb.RegisterAgentResponse = await register(self._registration(), timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAVAILABLE:
                    tls = _security.describe_handshake_failure(self.config, exc.details() or "")
                    if tls is not None:
                        raise UnavailableError(tls) from None
                raise from_rpc_error(exc, self.config.url) from None
            if round_ == 0:
                bridge_knew_us = response.reconnected
            if response.agent_id and response.agent_id != self._agent_id:
                break
            held = response.subscriptions
            if all(any(e.same(h) for h in held) for e in self._entries):
                break
        limits = response.limits
        self._limits = limits
        self._max_payload = limits.max_payload_bytes or 1024 * 1024
        max_msgs = self.config.max_frame_messages
        if limits.max_batch_messages:
            max_msgs = min(max_msgs, limits.max_batch_messages)
        max_bytes = self.config.max_frame_bytes
        if limits.max_message_bytes > 2 * _FRAME_HEADROOM:
            max_bytes = min(max_bytes, limits.max_message_bytes - _FRAME_HEADROOM)
        if response.agent_id and response.agent_id != self._agent_id:
            self._agent_id = response.agent_id
        stale = self._bind(response)
        self._generation += 1
        session = _Session(self._generation, response, max_msgs, max_bytes)
        stream = channel.stream_stream(
            "/loom.v1.Bridge/EventStream", request_serializer=None, response_deserializer=pb.ServerFrame.FromString
        )
        call = stream(metadata=((_SESSION_HEADER, response.session_id),))
        session.call = call
        try:
            await asyncio.wait_for(call.initial_metadata(), timeout)
        except grpc.aio.AioRpcError as exc:
            call.cancel()
            raise from_rpc_error(exc, self.config.url) from None
        except asyncio.TimeoutError:
            call.cancel()
            raise UnavailableError(f"The bridge at {self.config.url} did not open the event stream within {timeout} s.") from None
        session.last_received = time.monotonic()
        self._session = session
        loop = asyncio.get_running_loop()
        lost_at, self._lost_at = self._lost_at, None
        if lost_at is not None and not bridge_knew_us:
            # Below the bridge's expiry (3 silent heartbeat intervals): nothing, not even a ping, is written meanwhile.
            settle = min(self._restart_settle(time.monotonic() - lost_at), 2 * session.interval)
            if settle > 0:
                # The bridge restarted (or dropped this agent): other agents' subscriptions are gone
                # until they register again, and what this one queued meanwhile would reach nobody.
                _log.warning(
                    "agent %s: the bridge did not know this agent (it restarted); holding %d queued messages "
                    "for %.0f ms so that other agents subscribe again first",
                    self._agent_id, len(self._out), settle * 1000,
                )
                session.release.clear()
                session.release_timer = loop.call_later(settle, session.release.set)
        session.writer = loop.create_task(self._write_loop(session), name="loom-writer")
        session.tasks = [
            loop.create_task(self._read_loop(session), name="loom-reader"),
            session.writer,
            loop.create_task(self._heartbeat_loop(session), name="loom-heartbeat"),
        ]
        for sub_id in stale:
            self._enqueue(_wire.item_of(pb.ClientMessage(unsubscribe=pb.UnsubscribeRequest(correlation_id=self._ids.next(), subscription_id=sub_id))))
        _log.info(
            "agent %s registered: session %s, reconnected=%s, %d subscriptions, %d capabilities, heartbeat %d ms",
            self._agent_id, response.session_id, response.reconnected, len(response.subscriptions),
            len(self._descriptors), response.heartbeat_interval_ms,
        )
        return session

    def _restart_settle(self, outage: float) -> float:
        """Seconds to hold the queue after a bridge restart: a peer with the same reconnect settings,
        disconnected at the same moment, retries within its current delay; the delays double, so
        that is at most about the outage plus the first delay (twice that to cover the jitter of
        the delays before), capped at the largest delay, plus the jitter of the delay itself."""
        configured = self.config.restart_settle_ms
        if configured >= 0:
            return configured / 1000.0
        initial = self.config.reconnect_initial_ms / 1000.0
        largest = max(initial, self.config.reconnect_max_ms / 1000.0)
        return min(2 * outage + initial, largest) * (1 + self.config.reconnect_jitter) + 0.05

    async def _supervise(self, session: _Session) -> None:
        try:
            while True:
                error = await session.ended
                await self._close_session(session)
                if self._closing:
                    return
                why = _describe(error)
                self._lost_at = time.monotonic()
                _log.warning("agent %s: stream lost (%s); reconnecting", self._agent_id, why)
                self._set_status(Status.RECONNECTING)
                self._on_stream_lost(
                    session.generation,
                    UnavailableError(
                        f"The connection to the bridge was lost ({why}); the request may or may not have been "
                        "carried out. Retry once the connection is back."
                    ),
                )
                attempt = 0
                while True:
                    delay = _backoff(attempt, self.config.reconnect_initial_ms, self.config.reconnect_max_ms, self.config.reconnect_jitter)
                    await asyncio.sleep(delay)
                    if self._closing:
                        return
                    try:
                        await self._close_channel()  # a fresh channel: no stale subchannel backoff
                        session = await self._establish()
                        break
                    except LoomError as exc:
                        attempt += 1
                        _log.info("agent %s: reconnect attempt %d failed: %s", self._agent_id, attempt, exc.message)
                if self._closing:
                    session.end(None)
                    await self._close_session(session)
                    return
                self.stats.reconnects += 1
                self._set_status(Status.CONNECTED)
                self._subscribe_missing()
        except asyncio.CancelledError:
            pass
        except Exception:  # noqa: BLE001
            _log.exception("agent %s: connection supervisor failed", self._agent_id)

    async def _close_session(self, session: _Session) -> None:
        session.end(None)
        if session.release_timer is not None:
            session.release_timer.cancel()
        session.release.set()
        if session.call is not None:
            session.call.cancel()
        current = asyncio.current_task()
        tasks = [t for t in session.tasks if t is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    def _on_stream_lost(self, generation: int, error: LoomError) -> None:
        for cid in list(self._pending):
            future = self._pending.pop(cid)
            if not future.done():
                future.set_exception(error)
        self._pending_subs.clear()
        for cid in list(self._replies):
            waiter = self._replies.pop(cid)
            if not waiter.future.done():
                waiter.future.set_exception(error)
        for call_id, (task, gen) in list(self._inflight.items()):
            if gen <= generation:
                del self._inflight[call_id]
                task.cancel()
        for entry in ([self._inbox] if self._inbox else []) + self._entries:
            entry.bridge_id = None
        self._rebuild_routes()

    def _subscribe_missing(self) -> None:
        done: List[_SubEntry] = []
        for entry in self._entries:
            if entry.bridge_id is None and not any(e.same(entry.spec) for e in done):
                done.append(entry)
                asyncio.get_running_loop().create_task(self._send_subscribe(entry))

    # ------------------------------------------------------------------------------------------
    # The loops
    # ------------------------------------------------------------------------------------------

    async def _read_loop(self, session: _Session) -> None:
        call = session.call
        stats = self.stats
        try:
            while True:
                if self._frozen:
                    assert self._unfrozen is not None
                    await self._unfrozen.wait()
                frame = await call.read()
                if frame is grpc.aio.EOF:
                    break
                session.last_received = time.monotonic()
                messages = frame.messages
                stats.frames_received += 1
                stats.messages_received += len(messages)
                for message in messages:
                    wait = self._dispatch(message, session)
                    if wait is not None:
                        await wait
            code = await asyncio.wait_for(call.code(), 5)
            details = await asyncio.wait_for(call.details(), 5)
            session.end(None if self._closing else UnavailableError(f"the bridge ended the stream: {code.name} {details}"))
        except asyncio.CancelledError:
            session.end(None)
        except Exception as exc:  # noqa: BLE001
            session.end(exc)

    def _dispatch(self, message: pb.ServerMessage, session: _Session) -> Optional[Awaitable[None]]:
        kind = message.WhichOneof("kind")
        if kind == "deliver":
            delivery = message.deliver
            entries = self._routes.get(delivery.subscription_id)
            if entries is None:
                self.stats.deliveries_unrouted += 1
                _log.debug("agent %s: delivery for unknown subscription %s", self._agent_id, delivery.subscription_id)
                return None
            if len(entries) == 1:
                return entries[0].offer(delivery.envelope, delivery.subscription_id)
            waits = [w for w in (e.offer(delivery.envelope, delivery.subscription_id) for e in entries) if w is not None]
            return _all(waits) if waits else None
        if kind == "call":
            self._start_call(message.call, session)
        elif kind == "result":
            self._complete(message.result.call_id, message)
        elif kind == "ack":
            self._on_ack(message)
        elif kind == "memory":
            self._complete(message.memory.correlation_id, message)
        elif kind == "error":
            self._on_error(message)
        elif kind == "cancel":
            entry = self._inflight.pop(message.cancel.call_id, None)
            if entry is not None:
                entry[0].cancel()
        elif kind == "heartbeat":
            pass
        else:
            _log.debug("agent %s: ignoring unknown server message kind %r", self._agent_id, kind)
        return None

    def _complete(self, correlation_id: str, message: pb.ServerMessage) -> None:
        future = self._pending.pop(correlation_id, None)
        if future is None:
            self.stats.late_responses += 1
            _log.debug("agent %s: late or unknown answer %s", self._agent_id, correlation_id)
        elif not future.done():
            future.set_result(message)

    def _on_ack(self, message: pb.ServerMessage) -> None:
        ack = message.ack
        entry = self._pending_subs.pop(ack.correlation_id, None)
        if entry is not None:
            for e in self._entries:
                if e is entry or (e.bridge_id is None and e.same(entry.spec)):
                    e.bridge_id = ack.subscription_id
            self._rebuild_routes()
        future = self._pending.pop(ack.correlation_id, None)
        if future is not None and not future.done():
            future.set_result(message)

    def _on_error(self, message: pb.ServerMessage) -> None:
        reply = message.error
        if reply.correlation_id and reply.correlation_id in self._pending:
            self._pending_subs.pop(reply.correlation_id, None)
            self._complete(reply.correlation_id, message)
            return
        error = reply.error
        if not reply.correlation_id:
            _log.error("agent %s: session error from the bridge: %s %s", self._agent_id, pb.ErrorCode.Name(error.code), error.message)
        else:
            self.stats.publish_errors += 1
            _log.warning(
                "agent %s: the bridge rejected envelope %s: %s %s",
                self._agent_id, reply.correlation_id, pb.ErrorCode.Name(error.code), error.message,
            )

    def _on_reply(self, envelope: pb.Envelope) -> None:
        cid = envelope.correlation_id
        prefix = self._inbox_prefix + "."
        if not cid and envelope.topic.startswith(prefix):
            cid = envelope.topic[len(prefix):]
        waiter = self._replies.get(cid)
        if waiter is None:
            self.stats.late_replies += 1
            _log.debug("agent %s: reply %s nobody waits for (late?)", self._agent_id, cid)
            return
        waiter.replies.append(Event.from_proto(envelope, self._inbox.bridge_id or "" if self._inbox else ""))
        if len(waiter.replies) >= waiter.count:
            del self._replies[cid]
            if not waiter.future.done():
                waiter.future.set_result(waiter.replies)

    async def _write_loop(self, session: _Session) -> None:
        q = self._out
        call = session.call
        wake = self._wake
        space = self._space
        assert wake is not None and space is not None
        stats = self.stats
        capacity = self._capacity
        pending = self._pending
        taken = 0
        try:
            if not session.release.is_set():
                await session.release.wait()
            while True:
                if not q or self._frozen:
                    if self._half_close and not q:
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
                    if type(item) is _Req and item.key not in pending:
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
            pass
        except Exception as exc:  # noqa: BLE001
            session.end(exc)
        finally:
            if taken:
                stats.lost_on_break += taken
                _log.warning("agent %s: %d messages were lost when the stream broke", self._agent_id, taken)

    async def _heartbeat_loop(self, session: _Session) -> None:
        interval = session.interval
        try:
            while True:
                await asyncio.sleep(interval)
                if self._frozen:
                    continue
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
                    self._heartbeat_seq += 1
                    ping = pb.HeartbeatPing(sequence=self._heartbeat_seq, sent_unix_ms=int(time.time() * 1000))
                    self._enqueue(_wire.item_of(pb.ClientMessage(heartbeat=ping)))
        except asyncio.CancelledError:
            pass

    # ------------------------------------------------------------------------------------------
    # Pushed calls (this agent as a provider)
    # ------------------------------------------------------------------------------------------

    def _start_call(self, call: pb.ActionCall, session: _Session) -> None:
        capability = self._caps.get(call.capability)
        if capability is None:
            error = NotFoundError(f"Agent {self._agent_id!r} does not provide {call.capability!r}.")
            self._enqueue(_wire.result_item(call.call_id, self._agent_id, 0, None, error.to_proto()))
            return
        if call.call_id in self._inflight:
            _log.warning("agent %s: duplicate pushed call %s ignored", self._agent_id, call.call_id)
            return
        task = asyncio.get_running_loop().create_task(self._run_call(call, capability))
        self._inflight[call.call_id] = (task, session.generation)

    async def _run_call(self, call: pb.ActionCall, capability: BoundCapability) -> None:
        # No local deadline timer: past the call's deadline the bridge answers the caller with
        # TIMEOUT and sends a cancel, which cancels this task (as does a broken stream).
        started = time.perf_counter()
        call_id = call.call_id
        output: Optional[bytes] = None
        error: Optional[pb.Error] = None
        try:
            output = await capability.invoke(call.input_json, self, call)
        except asyncio.CancelledError:
            return  # the bridge cancelled it, or the stream broke: nobody waits, send nothing
        except LoomError as exc:
            if exc.code.value == "TOOL_ERROR":
                _log.warning(
                    "agent %s: capability %s failed: %s", self._agent_id, call.capability,
                    exc.details.get("exception", "error"),
                    exc_info=_log.isEnabledFor(logging.DEBUG),
                )
            error = exc.to_proto()
        entry = self._inflight.get(call_id)
        if entry is None or entry[0] is not asyncio.current_task():
            return  # cancelled meanwhile: nobody waits
        del self._inflight[call_id]
        duration = int((time.perf_counter() - started) * 1e6)
        self._enqueue(_wire.result_item(call_id, self._agent_id, duration, output, error))

    # ------------------------------------------------------------------------------------------
    # Sending
    # ------------------------------------------------------------------------------------------

    def _enqueue(self, item: Union[bytes, _Req]) -> None:
        self._out.append(item)
        wake = self._wake
        if wake is not None:
            wake.set()

    async def _wait_space(self) -> None:
        space = self._space
        assert space is not None
        while len(self._out) >= self._capacity:
            if self._status is Status.CLOSED:
                raise ConnectionClosedError()
            space.clear()
            await space.wait()

    def _check_open(self) -> None:
        if self._closing or self._status is Status.CLOSED:
            raise ConnectionClosedError()
        if not self._started:
            raise UnavailableError("The connection is not started; use `await loom.connect(...)`.", retryable=False)

    def _publish_nowait(
        self,
        topic: str,
        payload: bytes,
        content_type: str,
        thread_id: str,
        correlation_id: str,
        reply_to: str,
        ttl: int,
        qos: int,
        headers: Optional[Mapping[str, str]],
        traceparent: str,
        tracestate: str,
    ) -> Tuple[str, Optional[Awaitable[None]]]:
        if self._closing or self._status is Status.CLOSED or not self._started:
            self._check_open()
        key = (topic, content_type)
        prefix = self._prefixes.get(key)
        if prefix is None:
            validate_topic(topic)
            if len(self._prefixes) >= 1024:
                self._prefixes.clear()
            prefix = self._prefixes[key] = _wire.topic_prefix(topic, content_type)
            if content_type == BYTES_CONTENT_TYPE:
                if len(self._fast_prefixes) >= 1024:
                    self._fast_prefixes.clear()
                self._fast_prefixes[topic] = prefix
        if len(payload) > self._max_payload:
            raise ResourceExhaustedError(
                f"Payload of {len(payload)} bytes on topic {topic!r} exceeds the bridge's limit of {self._max_payload} bytes.",
                path="/payload",
            )
        envelope_id = self._id_prefix + str(next(self._counter))
        item = _wire.publish_item(
            envelope_id, prefix, payload, thread_id, correlation_id, reply_to, ttl, qos, headers, traceparent, tracestate
        )
        q = self._out
        q.append(item)
        wake = self._wake
        if wake is not None:
            wake.set()
        if len(q) >= self._capacity:
            return envelope_id, self._wait_space()
        return envelope_id, None

    async def emit(
        self,
        topic: str,
        data: Any = None,
        *,
        thread_id: str = "",
        correlation_id: str = "",
        reply_to: str = "",
        ttl: Optional[float] = None,
        qos: Optional[QoS] = None,
        headers: Optional[Mapping[str, str]] = None,
        content_type: Optional[str] = None,
        traceparent: str = "",
        tracestate: str = "",
    ) -> str:
        # Hot path: raw bytes, no options but the QoS, an open connection, a topic seen before.
        if (
            type(data) is bytes
            and self._open
            and not (thread_id or correlation_id or reply_to or ttl or headers or content_type or traceparent or tracestate)
        ):
            prefix = self._fast_prefixes.get(topic)
            if prefix is not None and len(data) <= self._max_payload:
                envelope_id = self._id_prefix + str(next(self._counter))
                q = self._out
                q.append(_wire.publish_item(envelope_id, prefix, data, qos=qos_value(qos)))
                self._wake.set()  # type: ignore[union-attr]
                if len(q) >= self._capacity:
                    await self._wait_space()
                return envelope_id
        return await Context.emit(
            self, topic, data, thread_id=thread_id, correlation_id=correlation_id, reply_to=reply_to, ttl=ttl, qos=qos,
            headers=headers, content_type=content_type, traceparent=traceparent, tracestate=tracestate,
        )

    async def _send_and_wait(self, key: str, item: bytes, timeout: float) -> pb.ServerMessage:
        self._check_open()
        if self._status is not Status.CONNECTED:
            raise UnavailableError(f"Not connected to the bridge (status {self._status.value}); retry once the connection is back.")
        future: "asyncio.Future[pb.ServerMessage]" = asyncio.get_running_loop().create_future()
        if key in self._pending:
            raise InvalidParamsError(f"Id {key!r} is already in flight; use a unique id per request.", path="/call_id")
        self._pending[key] = future
        self._enqueue(_Req(key, item))
        try:
            return await _wait(future, timeout)  # type: ignore[no-any-return]
        finally:
            self._pending.pop(key, None)

    async def _call(self, call: pb.ActionCall, timeout: Optional[float]) -> bytes:
        seconds = timeout if timeout is not None else self.config.call_timeout_ms / 1000.0
        call.call_id = self._ids.next()
        call.timeout_ms = max(1, math.ceil(seconds * 1000))
        grace = min(1.0, 0.1 + seconds * 0.05)
        try:
            reply = await self._send_and_wait(call.call_id, _wire.item_of(pb.ClientMessage(call=call)), seconds + grace)
        except _Timeout:
            self._enqueue(_wire.item_of(pb.ClientMessage(cancel=pb.CancelCall(call_id=call.call_id))))
            raise RequestTimeoutError(f"Call to {call.capability!r} got no result within {seconds:g} s.") from None
        except asyncio.CancelledError:
            if self._status is Status.CONNECTED:
                self._enqueue(_wire.item_of(pb.ClientMessage(cancel=pb.CancelCall(call_id=call.call_id))))
            raise
        if reply.WhichOneof("kind") == "error":
            raise from_proto(reply.error.error)
        result = reply.result
        if result.WhichOneof("outcome") == "error":
            raise from_proto(result.error)
        return result.output_json

    async def _memory_request(self, request: pb.MemoryRequest, timeout: Optional[float]) -> pb.MemoryResponse:
        seconds = timeout if timeout is not None else self.config.request_timeout_ms / 1000.0
        request.correlation_id = self._ids.next()
        try:
            reply = await self._send_and_wait(request.correlation_id, _wire.item_of(pb.ClientMessage(memory=request)), seconds)
        except _Timeout:
            raise RequestTimeoutError(f"The bridge did not answer the memory {request.WhichOneof('op')} within {seconds:g} s.") from None
        if reply.WhichOneof("kind") == "error":
            raise from_proto(reply.error.error)
        response = reply.memory
        if response.HasField("error") and response.error.code != 0:
            raise from_proto(response.error)
        return response

    async def _request(
        self, topic: str, payload: bytes, content_type: str, count: int, min_count: int, timeout: Optional[float], options: Mapping[str, Any]
    ) -> List[Event]:
        seconds = timeout if timeout is not None else self.config.request_timeout_ms / 1000.0
        if seconds <= 0:
            raise InvalidParamsError(f"A request timeout must be positive; got {seconds!r} s.", path="/timeout")
        cid = self._ids.next()
        waiter = _ReplyWaiter(asyncio.get_running_loop().create_future(), count)
        self._replies[cid] = waiter
        try:
            ttl = options.get("ttl")
            _, wait = self._publish_nowait(
                topic, payload, content_type, options.get("thread_id") or "", cid, self._inbox_prefix + "." + cid,
                max(1, math.ceil(ttl * 1000)) if ttl else 0, 0, options.get("headers"), "", "",
            )
            if wait is not None:
                await wait
            try:
                return await _wait(waiter.future, seconds)  # type: ignore[no-any-return]
            except _Timeout:
                if len(waiter.replies) >= min_count and waiter.replies:
                    return list(waiter.replies)
                error = RequestTimeoutError(
                    f"{len(waiter.replies)} of {count} replies to the request on {topic!r} arrived within {seconds:g} s."
                    if count > 1
                    else f"No reply to the request on {topic!r} within {seconds:g} s."
                )
                error.replies = list(waiter.replies)  # type: ignore[attr-defined]
                raise error from None
        finally:
            self._replies.pop(cid, None)

    # ------------------------------------------------------------------------------------------
    # Subscriptions
    # ------------------------------------------------------------------------------------------

    async def subscribe(
        self,
        pattern: str,
        handler: Handler,
        *,
        qos: QoS = QoS.NORMAL,
        overflow: Optional[Overflow] = None,
        queue_capacity: int = 0,
    ) -> Subscription:
        if self._closing or self._status is Status.CLOSED:
            raise ConnectionClosedError()
        validate_pattern(pattern)
        if not callable(handler):
            raise InvalidParamsError(f"The handler of {pattern!r} is not callable.", path="/handler")
        entry = _SubEntry(
            self, pattern, int(qos), int(overflow) if overflow is not None else 0, queue_capacity, handler,
            self.config.delivery_queue_capacity,
        )
        self._entries.append(entry)
        handle = Subscription(self, entry)
        if not self._started:
            return handle  # the first registration carries it
        entry.start()
        twin = next((e for e in self._entries if e is not entry and e.bridge_id is not None and e.same(entry.spec)), None)
        if twin is not None:
            entry.bridge_id = twin.bridge_id
            self._rebuild_routes()
            return handle
        if self._status is not Status.CONNECTED:
            return handle  # the re-registration carries it
        await self._send_subscribe(entry, raise_errors=True)
        return handle

    async def _send_subscribe(self, entry: _SubEntry, raise_errors: bool = False) -> None:
        cid = self._ids.next()
        self._pending_subs[cid] = entry
        item = _wire.item_of(pb.ClientMessage(subscribe=pb.SubscribeRequest(correlation_id=cid, subscription=entry.spec)))
        timeout = self.config.request_timeout_ms / 1000.0
        try:
            reply = await self._send_and_wait(cid, item, timeout)
        except UnavailableError:
            return  # the stream broke meanwhile: the re-registration carries it
        except _Timeout:
            self._pending_subs.pop(cid, None)
            await self._remove_entry(entry)
            error = RequestTimeoutError(f"The bridge did not acknowledge the subscription to {entry.pattern!r} within {timeout:g} s.")
            if raise_errors:
                raise error from None
            _log.error("agent %s: %s", self._agent_id, error.message)
            return
        if reply.WhichOneof("kind") == "error":
            await self._remove_entry(entry)
            loom_error = from_proto(reply.error.error)
            if raise_errors:
                raise loom_error
            _log.error("agent %s: subscription to %r failed: %s", self._agent_id, entry.pattern, loom_error)

    async def _remove_entry(self, entry: _SubEntry) -> None:
        if entry in self._entries:
            self._entries.remove(entry)
        self._rebuild_routes()
        await entry.stop()

    async def _unsubscribe(self, entry: _SubEntry) -> None:
        if entry not in self._entries:
            return
        bridge_id = entry.bridge_id
        await self._remove_entry(entry)
        last = not any(e.same(entry.spec) for e in self._entries)
        if not last or bridge_id is None or self._closing or self._status is not Status.CONNECTED:
            return
        cid = self._ids.next()
        item = _wire.item_of(pb.ClientMessage(unsubscribe=pb.UnsubscribeRequest(correlation_id=cid, subscription_id=bridge_id)))
        try:
            reply = await self._send_and_wait(cid, item, self.config.request_timeout_ms / 1000.0)
            if reply.WhichOneof("kind") == "error":
                _log.warning("agent %s: unsubscribe of %r failed: %s", self._agent_id, entry.pattern, reply.error.error.message)
        except (_Timeout, LoomError) as exc:
            _log.warning("agent %s: unsubscribe of %r failed: %s", self._agent_id, entry.pattern, exc)

    # ------------------------------------------------------------------------------------------
    # Shutdown
    # ------------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Leaves within ``drain_timeout_ms``: capability calls in flight finish, queued messages
        are written, the stream is half-closed (the bridge takes that as the agent leaving).
        Handlers still running are cancelled; what still waits fails with ConnectionClosedError.
        Safe to call twice."""
        await self._shutdown(drain=False)

    async def drain(self) -> None:
        """Like :meth:`close`, but first lets every subscription handler finish the events
        already received. Safe to call twice."""
        await self._shutdown(drain=True)

    async def _shutdown(self, drain: bool) -> None:
        if self._shutdown_task is None:
            self._shutdown_task = asyncio.get_running_loop().create_task(self._do_shutdown(drain))
        await asyncio.shield(self._shutdown_task)

    async def _do_shutdown(self, drain: bool) -> None:
        if not self._started:
            self._closing = True
            self._status = Status.CLOSED
            return
        self._open = False
        deadline = time.monotonic() + self.config.drain_timeout_ms / 1000.0
        session = self._session
        graceful = session is not None and self._status is Status.CONNECTED and not self._frozen and not session.ended.done()
        if graceful:
            assert session is not None
            try:
                while time.monotonic() < deadline and not session.ended.done():
                    busy = bool(self._inflight) or (drain and not all(e.idle for e in self._entries))
                    if not busy:
                        break
                    await asyncio.sleep(0.005)
            except asyncio.CancelledError:
                pass
        self._closing = True
        if graceful and session is not None:
            self._half_close = True
            session.release.set()  # what is queued goes out now, held or not
            if self._wake is not None:
                self._wake.set()
            try:
                left = max(0.0, deadline - time.monotonic())
                await asyncio.wait_for(asyncio.shield(session.ended), max(left, 0.05))
            except asyncio.TimeoutError:
                _log.warning("agent %s: the bridge did not end the stream within the drain timeout", self._agent_id)
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        if session is not None:
            await self._close_session(session)
        self._set_status(Status.CLOSED)
        # What the writer never took: the publisher learns of it here, not from silence.
        # Requests (_Req) are not counted: their waiters fail with ConnectionClosedError.
        unsent = sum(1 for item in self._out if type(item) is bytes)
        self._out.clear()
        if unsent:
            self.stats.unsent_on_close += unsent
            _log.warning("agent %s: %d queued messages were never sent: the connection closed first", self._agent_id, unsent)
        closed = ConnectionClosedError()
        self._on_stream_lost(1 << 62, closed)
        await asyncio.gather(*(e.stop() for e in self._entries), return_exceptions=True)
        if self._space is not None:
            self._space.set()
        await self._close_channel()
        _log.info("agent %s: connection closed", self._agent_id)

    async def __aenter__(self) -> "Connection":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------------------------------
    # Test hooks
    # ------------------------------------------------------------------------------------------

    def _freeze_for_test(self) -> None:
        """The process hangs: nothing is read or written (no heartbeats); the TCP connection stays."""
        self._frozen = True

    def _break_stream_for_test(self) -> None:
        """A network blip: the current stream is cancelled; the connection reconnects."""
        session = self._session
        if session is not None and session.call is not None:
            session.call.cancel()


def _all(waits: List[Awaitable[None]]) -> Awaitable[None]:
    async def run() -> None:
        for w in waits:
            await w

    return run()


def _describe(error: Optional[BaseException]) -> str:
    if error is None:
        return "the bridge ended the stream"
    if isinstance(error, LoomError):
        return error.message
    code = getattr(error, "code", None)
    if callable(code):
        try:
            details = getattr(error, "details")()
            return f"{code().name}: {details}"
        except Exception:  # noqa: BLE001
            pass
    return f"{type(error).__name__}: {error}"


class _Connect:
    """What :func:`connect` returns: ``await`` it for a started Connection, or use
    ``async with`` to close it at the end of the block."""

    def __init__(self, connection: Connection) -> None:
        self._conn = connection

    def __await__(self) -> Any:
        return self._conn.start().__await__()

    async def __aenter__(self) -> Connection:
        return await self._conn.start()

    async def __aexit__(self, *exc: object) -> None:
        await self._conn.close()


def connect(url: Optional[str] = None, *, capabilities: Iterable[Any] = (), config: Optional[Config] = None, **options: Any) -> _Connect:
    """Connects to a bridge: ``async with loom.connect("http://127.0.0.1:7070") as conn: ...``
    or ``conn = await loom.connect(...)`` (then ``await conn.close()``).

    ``options`` are :class:`Config` fields (``agent_id``, ``name``, ``heartbeat_ms``, ...);
    unset ones come from ``LOOM_*`` environment variables, then the defaults. ``capabilities``
    are ``@capability`` functions this connection serves."""
    if config is None:
        config = Config.load(url=url, **options)
    else:
        changes = {k: v for k, v in options.items() if v is not None}
        if url is not None:
            changes["url"] = url
        if changes:
            config = config.replace(**changes)
    return _Connect(Connection(config, capabilities))
