"""The Connection facade: wires the parts (Supervisor, Writer, Reader, SubscriptionRouter,
PendingCalls, CallRunner, Heartbeat, DurableStreams), holds no loop of its own, and keeps only
the publish hot path, which is too short to split."""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Dict, Iterable, List, Mapping, Optional, Tuple


from .. import _wire
from .._capability import BoundCapability, as_bound
from .._config import Config
from .._context import BYTES_CONTENT_TYPE, Context, Handler, qos_value
from .._errors import (
    ConnectionClosedError,
    InvalidParamsError,
    LoomError,
    RequestTimeoutError,
    ResourceExhaustedError,
    UnavailableError,
)
from .._event import Event, Overflow, QoS
from .._ids import IdGenerator, new_agent_id
from .._memory import Memory
from .._proto import bridge_pb2 as pb
from .._topics import validate_topic
from .call_runner import CallRunner
from .durable_streams import DurableStreams
from .heartbeat import Heartbeat
from .pending_calls import PendingCalls
from .reader import Reader
from .subscription_router import Subscription, SubscriptionRouter
from .supervisor import Status, Supervisor
from .writer import Writer

_log = logging.getLogger("loom.connection")


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


class Connection(Context):
    """A live connection of one agent to a bridge. Create it with :func:`loom.connect`.

    It offers everything a :class:`~loom.Context` does (emit, request, invoke, memory, durable
    streams, ...) and adds :meth:`subscribe`, :meth:`close` and :meth:`drain`, :attr:`status`
    and :attr:`stats`."""

    def __init__(self, config: Config, capabilities: Iterable[Any] = ()) -> None:
        self.config = config
        self._agent_id = config.agent_id or new_agent_id(config.name)
        self._namespace = config.namespace or "default"
        caps: Dict[str, BoundCapability] = {}
        for item in capabilities:
            bound = as_bound(item)
            if bound.name in caps:
                raise InvalidParamsError(
                    f"Capability {bound.name!r} is given twice; one agent provides each capability once.",
                    path="/capabilities",
                )
            caps[bound.name] = bound
        self._descriptors = [c.definition.descriptor() for c in caps.values()]
        self._ids = IdGenerator()
        self._id_prefix = secrets.token_hex(4) + "-"
        self._counter = itertools.count(1)
        self._prefixes: Dict[Tuple[str, str], bytes] = {}
        self._fast_prefixes: Dict[str, bytes] = {}
        self._shutdown_task: Optional["asyncio.Task[None]"] = None
        self._closing = False
        self._frozen = False
        self._started = False
        self._open = False
        self._connected = False
        self.stats = Stats()
        # The parts (docs/architecture.md); each holds this facade for the shared settings.
        self._pending = PendingCalls(self)
        self._writer = Writer(
            lambda: self._agent_id, config.outbound_queue_capacity, self.stats, self._pending.table
        )
        self._router = SubscriptionRouter(self)
        self._calls = CallRunner(self, caps)
        self._heartbeat = Heartbeat(self._writer)
        self._reader = Reader(self)
        self._supervisor = Supervisor(self)
        self._durable = DurableStreams(self)
        self._memory = Memory(self)
        # The publish hot path reads these directly (set by start() and each registration).
        self._out = self._writer.queue
        self._wake: Optional[asyncio.Event] = None
        self._max_payload = 1024 * 1024
        self._capacity = config.outbound_queue_capacity
        Context.__init__(self, self)

    # -- properties ----------------------------------------------------------------------------
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
        return self._supervisor.status

    @property
    def session_id(self) -> str:
        s = self._supervisor.session
        return s.session_id if s is not None and self._connected else ""

    @property
    def _channel(self) -> Optional[Any]:
        """The gRPC channel (the collaboration calls are unary calls on it); None when closed."""
        return self._supervisor.channel

    @property
    def limits(self) -> pb.Limits:
        """The bridge's limits from the last registration."""
        return self._supervisor.limits

    @property
    def inbox(self) -> str:
        """This agent's reply inbox pattern, ``_inbox.<agent>.>``."""
        return self._router.inbox_prefix + ".>"

    @property
    def capabilities(self) -> List[str]:
        return list(self._calls.capabilities)

    async def wait_status(self, status: Status, timeout: float) -> None:
        """Waits until the connection reaches ``status``; RequestTimeoutError after ``timeout`` s."""
        if not await self._supervisor.wait_status(status, timeout):
            raise RequestTimeoutError(
                f"Connection of {self._agent_id} is {self.status.value}, not {status.value}, after {timeout} "
                f"s."
            )

    # -- start -----------------------------------------------------------------------------------
    async def start(self) -> "Connection":
        """Registers and opens the stream. Raises a typed error (UnavailableError when the bridge
        cannot be reached, InvalidParamsError when it rejects the registration)."""
        if self._started:
            raise InvalidParamsError(
                "start() was already called on this connection; it reconnects by itself."
            )
        self._started = True
        self._writer.start()
        self._wake = self._writer.wake
        self._router.start()
        await self._supervisor.start()
        self._open = True
        return self

    def _on_stream_lost(self, generation: int, error: LoomError) -> None:
        self._pending.fail_all(error)
        self._calls.cancel_up_to(generation)
        self._router.unbind_all()

    # -- the port the Context verbs use ----------------------------------------------------------
    def _check_open(self) -> None:
        if self._closing or self.status is Status.CLOSED:
            raise ConnectionClosedError()
        if not self._started:
            raise UnavailableError(
                "The connection is not started; use `await loom.connect(...)`.", retryable=False
            )

    def _enqueue(self, item: bytes) -> None:
        self._writer.enqueue(item)

    async def _send_and_wait(self, key: str, item: bytes, timeout: float) -> pb.ServerMessage:
        return await self._pending.send_and_wait(key, item, timeout)

    async def _call(self, call: pb.ActionCall, timeout: Optional[float]) -> bytes:
        return await self._pending.call(call, timeout)

    async def _memory_request(self, request: pb.MemoryRequest, timeout: Optional[float]) -> pb.MemoryResponse:
        return await self._pending.memory(request, timeout)

    async def _request(
        self,
        topic: str,
        payload: bytes,
        content_type: str,
        count: int,
        min_count: int,
        timeout: Optional[float],
        options: Mapping[str, Any],
    ) -> List[Event]:
        return await self._pending.request(topic, payload, content_type, count, min_count, timeout, options)

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
        if self._closing or not self._started or self.status is Status.CLOSED:
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
        max_payload = self._max_payload
        if len(payload) > max_payload:
            raise ResourceExhaustedError(
                f"Payload of {len(payload)} bytes on topic {topic!r} exceeds the bridge's limit of "
                f"{max_payload} bytes.",
                path="/payload",
            )
        envelope_id = self._id_prefix + str(next(self._counter))
        item = _wire.publish_item(
            envelope_id,
            prefix,
            payload,
            thread_id,
            correlation_id,
            reply_to,
            ttl,
            qos,
            headers,
            traceparent,
            tracestate,
        )
        self._writer.enqueue(item)
        if len(self._out) >= self._capacity:
            return envelope_id, self._writer.wait_space()
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
            and not (
                thread_id
                or correlation_id
                or reply_to
                or ttl
                or headers
                or content_type
                or traceparent
                or tracestate
            )
        ):
            prefix = self._fast_prefixes.get(topic)
            if prefix is not None and len(data) <= self._max_payload:
                envelope_id = self._id_prefix + str(next(self._counter))
                q = self._out
                q.append(_wire.publish_item(envelope_id, prefix, data, qos=qos_value(qos)))
                self._wake.set()  # type: ignore[union-attr]
                if len(q) >= self._capacity:
                    await self._writer.wait_space()
                return envelope_id
        return await Context.emit(
            self,
            topic,
            data,
            thread_id=thread_id,
            correlation_id=correlation_id,
            reply_to=reply_to,
            ttl=ttl,
            qos=qos,
            headers=headers,
            content_type=content_type,
            traceparent=traceparent,
            tracestate=tracestate,
        )

    async def subscribe(
        self,
        pattern: str,
        handler: Handler,
        *,
        qos: QoS = QoS.NORMAL,
        overflow: Optional[Overflow] = None,
        queue_capacity: int = 0,
    ) -> Subscription:
        """Subscribes ``handler`` to a pattern (``*`` one token, ``>`` the rest). Events of one
        subscription reach the handler in order, one at a time; an exception in it is logged and
        the subscription goes on. Subscriptions survive reconnects."""
        return await self._router.subscribe(pattern, handler, qos, overflow, queue_capacity)

    # -- shutdown ------------------------------------------------------------------------------
    async def close(self) -> None:
        """Leaves within ``drain_timeout``: capability calls in flight finish, queued messages
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
            self._shutdown_task = asyncio.get_running_loop().create_task(
                self._do_shutdown(drain), name="loom-close"
            )
        await asyncio.shield(self._shutdown_task)

    async def _do_shutdown(self, drain: bool) -> None:
        supervisor = self._supervisor
        if not self._started:
            self._closing = True
            supervisor.status = Status.CLOSED
            return
        self._open = False
        deadline = time.monotonic() + self.config.drain_timeout
        session = supervisor.session
        graceful = session is not None and self._connected and not self._frozen and not session.ended.done()
        if graceful:
            assert session is not None
            while time.monotonic() < deadline and not session.ended.done():
                if not (self._calls.busy or (drain and not self._router.all_idle())):
                    break
                await asyncio.sleep(0.005)
        self._closing = True
        if graceful and session is not None:
            self._writer.half_close = True
            session.release.set()  # what is queued goes out now, held or not
            self._writer.wake.set()
            try:
                left = max(0.0, deadline - time.monotonic())
                await asyncio.wait_for(asyncio.shield(session.ended), max(left, 0.05))
            except asyncio.TimeoutError:
                _log.warning(
                    "agent %s: the bridge did not end the stream within the drain timeout", self._agent_id
                )
        await supervisor.stop()
        if session is not None:
            await supervisor.close_session(session)
        supervisor.set_status(Status.CLOSED)
        # What the writer never took: the publisher learns of it here, not from silence.
        unsent = self._writer.close()
        if unsent:
            self.stats.unsent_on_close += unsent
            _log.warning(
                "agent %s: %d queued messages were never sent: the connection closed first",
                self._agent_id,
                unsent,
            )
        self._on_stream_lost(1 << 62, ConnectionClosedError())
        await asyncio.gather(self._router.stop_all(), self._durable.stop_all(), return_exceptions=True)
        await supervisor.close_channel()
        _log.info("agent %s: connection closed", self._agent_id)

    async def __aenter__(self) -> "Connection":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- test hooks (outside the loops: they act on the session's tasks and call) -----------------
    def _freeze_for_test(self) -> None:
        """The process hangs: nothing is read or written (no heartbeats); the TCP connection stays."""
        self._frozen = True
        self._supervisor.freeze()

    def _break_stream_for_test(self) -> None:
        """A network blip: the current stream is cancelled; the connection reconnects."""
        session = self._supervisor.session
        if session is not None and session.call is not None:
            session.call.cancel()


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


def connect(
    url: Optional[str] = None,
    *,
    capabilities: Iterable[Any] = (),
    config: Optional[Config] = None,
    **options: Any,
) -> _Connect:
    """Connects to a bridge: ``async with loom.connect("http://127.0.0.1:7070") as conn: ...``
    or ``conn = await loom.connect(...)`` (then ``await conn.close()``).

    ``options`` are :class:`Config` fields (``agent_id``, ``name``, ``request_timeout`` in
    seconds, ...); unset ones come from ``LOOM_*`` environment variables, then the defaults.
    ``capabilities`` are ``@capability`` functions this connection serves."""
    if config is None:
        config = Config.load(url=url, **options)
    else:
        changes = {k: v for k, v in options.items() if v is not None}
        if url is not None:
            changes["url"] = url
        if changes:
            config = config.replace(**changes)
    return _Connect(Connection(config, capabilities))
