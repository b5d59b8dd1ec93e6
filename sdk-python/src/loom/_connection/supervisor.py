"""Supervisor: RegisterAgent, the EventStream, the status machine, and reconnecting with jittered
exponential backoff. A stream that breaks, or a bridge silent for three heartbeat intervals, is
re-established with the same agent id, subscriptions and capabilities; requests in flight on the
broken stream fail with a retryable UnavailableError. After a bridge restart what was queued
during the outage is held for a settle time, and the re-registration carries every subscription
(and durable consumers are attached again) before anything queued is written."""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import random
import time
from typing import TYPE_CHECKING, Any, List, Optional

import grpc
import grpc.aio

from .. import _security, _wire
from .._errors import LoomError, UnavailableError, from_rpc_error
from .._proto import bridge_pb2 as pb

if TYPE_CHECKING:
    from .connection import Connection

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


class Session:
    """One registration and its EventStream, with the tasks of its loops."""

    def __init__(
        self, generation: int, response: pb.RegisterAgentResponse, max_msgs: int, max_bytes: int
    ) -> None:
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
        # Set once the writer may send: at once, or after the settle that follows a bridge restart.
        self.release = asyncio.Event()
        self.release.set()
        self.release_timer: Optional[asyncio.TimerHandle] = None

    def end(self, error: Optional[BaseException]) -> None:
        if not self.ended.done():
            self.ended.set_result(error)


def backoff(attempt: int, initial: float, largest: float, jitter: float) -> float:
    """Seconds before reconnect attempt ``attempt`` (0-based)."""
    if initial <= 0:
        return 0.0
    seconds = min(largest, initial * math.pow(2, min(attempt, 30)))
    if jitter > 0:
        seconds *= 1 + jitter * (2 * random.random() - 1)
    return max(0.0, seconds)


def describe(error: Optional[BaseException]) -> str:
    if error is None:
        return "the bridge ended the stream"
    if isinstance(error, LoomError):
        return error.message
    code = getattr(error, "code", None)
    if callable(code):
        try:
            details = getattr(error, "details")()
            return f"{code().name}: {details}"
        except Exception:  # noqa: BLE001 - only a description
            pass
    return f"{type(error).__name__}: {error}"


class Supervisor:
    def __init__(self, conn: "Connection") -> None:
        self.conn = conn
        self.status = Status.CONNECTING
        self.status_changed: Optional[asyncio.Event] = None
        self.session: Optional[Session] = None
        self.task: Optional["asyncio.Task[None]"] = None
        self.channel: Optional[grpc.aio.Channel] = None
        self.generation = 0
        self.lost_at: Optional[float] = None
        self.limits = pb.Limits()
        self.max_payload = 1024 * 1024

    # -- status ----------------------------------------------------------------------------------
    def set_status(self, status: Status) -> None:
        if self.status is status or self.status is Status.CLOSED:
            return
        _log.info("agent %s: %s -> %s", self.conn.agent_id, self.status.value, status.value)
        self.status = status
        self.conn._connected = status is Status.CONNECTED
        if self.status_changed is not None:
            self.status_changed.set()

    async def wait_status(self, status: Status, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.status is not status:
            left = deadline - time.monotonic()
            if left <= 0 or self.status is Status.CLOSED:
                return False
            assert self.status_changed is not None
            self.status_changed.clear()
            try:
                await asyncio.wait_for(self.status_changed.wait(), left)
            except asyncio.TimeoutError:
                pass
        return True

    # -- the first connect -----------------------------------------------------------------------
    async def start(self) -> None:
        self.status_changed = asyncio.Event()
        try:
            session = await self._establish()
        except BaseException:
            self.status = Status.CLOSED
            await self.close_channel()
            raise
        self.set_status(Status.CONNECTED)
        self.conn._router.subscribe_missing()
        self.task = asyncio.get_running_loop().create_task(self._supervise(session), name="loom-supervisor")

    # -- the channel -----------------------------------------------------------------------------
    def _new_channel(self) -> grpc.aio.Channel:
        config = self.conn.config
        # Not grpc.min_reconnect_backoff_ms: grpc-core also uses it as the connect timeout (the
        # wait for the server's SETTINGS), and a loaded bridge may take longer than a backoff.
        options = _CHANNEL_OPTIONS + [
            ("grpc.initial_reconnect_backoff_ms", max(100, config.reconnect_initial_ms)),
            ("grpc.max_reconnect_backoff_ms", max(1000, config.reconnect_max_ms)),
        ]
        credentials = _security.channel_credentials(config)
        if credentials is None:
            return grpc.aio.insecure_channel(config.target, options=options)
        return grpc.aio.secure_channel(config.target, credentials, options=options)

    async def close_channel(self) -> None:
        channel, self.channel = self.channel, None
        if channel is not None:
            try:
                await asyncio.wait_for(channel.close(), 2)
            except Exception:  # noqa: BLE001 - gone either way
                pass

    def _registration(self) -> pb.RegisterAgentRequest:
        conn = self.conn
        config = conn.config
        request = pb.RegisterAgentRequest(
            agent_id=conn.agent_id,
            name=config.name,
            namespace=config.namespace,
            sdk=config.sdk,
            heartbeat_interval_ms=config.heartbeat_ms,
            capabilities=conn._descriptors,
        )
        for key, value in config.metadata.items():
            request.metadata[key] = value
        conn._router.add_to(request)
        return request

    async def _establish(self) -> Session:
        conn = self.conn
        config = conn.config
        if self.channel is None:
            self.channel = self._new_channel()
        channel = self.channel
        timeout = config.connect_timeout
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
                    tls = _security.describe_handshake_failure(config, exc.details() or "")
                    if tls is not None:
                        raise UnavailableError(tls) from None
                raise from_rpc_error(exc, config.url) from None
            if round_ == 0:
                bridge_knew_us = response.reconnected
            if response.agent_id and response.agent_id != conn.agent_id:
                break
            if conn._router.all_held(response.subscriptions):
                break
        limits = response.limits
        self.limits = limits
        self.max_payload = conn._max_payload = limits.max_payload_bytes or 1024 * 1024
        max_msgs = config.max_frame_messages
        if limits.max_batch_messages:
            max_msgs = min(max_msgs, limits.max_batch_messages)
        max_bytes = config.max_frame_bytes
        if limits.max_message_bytes > 2 * _FRAME_HEADROOM:
            max_bytes = min(max_bytes, limits.max_message_bytes - _FRAME_HEADROOM)
        if response.agent_id and response.agent_id != conn.agent_id:
            conn._agent_id = response.agent_id
        stale = conn._router.bind(response)
        self.generation += 1
        session = Session(self.generation, response, max_msgs, max_bytes)
        stream = channel.stream_stream(
            "/loom.v1.Bridge/EventStream",
            request_serializer=None,
            response_deserializer=pb.ServerFrame.FromString,
        )
        call = stream(metadata=((_SESSION_HEADER, response.session_id),))
        session.call = call
        try:
            await asyncio.wait_for(call.initial_metadata(), timeout)
        except grpc.aio.AioRpcError as exc:
            call.cancel()
            raise from_rpc_error(exc, config.url) from None
        except asyncio.TimeoutError:
            call.cancel()
            raise UnavailableError(
                f"The bridge at {config.url} did not open the event stream within {timeout} s."
            ) from None
        session.last_received = time.monotonic()
        self.session = session
        loop = asyncio.get_running_loop()
        lost_at, self.lost_at = self.lost_at, None
        if lost_at is not None and not bridge_knew_us:
            # Below the bridge's expiry (3 silent heartbeat intervals): nothing, not even a ping, is written
            # meanwhile.
            settle = min(self._restart_settle(time.monotonic() - lost_at), 2 * session.interval)
            if settle > 0:
                # The bridge restarted (or dropped this agent): other agents' subscriptions are gone
                # until they register again, and what this one queued meanwhile would reach nobody.
                _log.warning(
                    "agent %s: the bridge did not know this agent (it restarted); holding %d queued messages "
                    "for %.0f ms so that other agents subscribe again first",
                    conn.agent_id,
                    len(conn._writer.queue),
                    settle * 1000,
                )
                session.release.clear()
                session.release_timer = loop.call_later(settle, session.release.set)
        session.tasks = [
            loop.create_task(conn._reader.run(session), name="loom-reader"),
            loop.create_task(conn._writer.run(session), name="loom-writer"),
            loop.create_task(conn._heartbeat.run(session), name="loom-heartbeat"),
        ]
        for sub_id in stale:
            request = pb.UnsubscribeRequest(correlation_id=conn._ids.next(), subscription_id=sub_id)
            conn._writer.enqueue(_wire.item_of(pb.ClientMessage(unsubscribe=request)))
        _log.info(
            "agent %s registered: session %s, reconnected=%s, %d subscriptions, %d capabilities, heartbeat "
            "%d ms",
            conn.agent_id,
            response.session_id,
            response.reconnected,
            len(response.subscriptions),
            len(conn._descriptors),
            response.heartbeat_interval_ms,
        )
        return session

    def _restart_settle(self, outage: float) -> float:
        """Seconds to hold the queue after a bridge restart: a peer with the same reconnect settings,
        disconnected at the same moment, retries within its current delay; the delays double, so
        that is at most about the outage plus the first delay (twice that to cover the jitter of
        the delays before), capped at the largest delay, plus the jitter of the delay itself."""
        config = self.conn.config
        if config.restart_settle_ms >= 0:
            return config.restart_settle
        initial = config.reconnect_initial
        largest = max(initial, config.reconnect_max)
        return min(2 * outage + initial, largest) * (1 + config.reconnect_jitter) + 0.05

    # -- reconnecting ----------------------------------------------------------------------------
    async def _supervise(self, session: Session) -> None:
        conn = self.conn
        config = conn.config
        try:
            while True:
                error = await session.ended
                await self.close_session(session)
                if conn._closing:
                    return
                why = describe(error)
                self.lost_at = time.monotonic()
                _log.warning("agent %s: stream lost (%s); reconnecting", conn.agent_id, why)
                self.set_status(Status.RECONNECTING)
                conn._on_stream_lost(
                    session.generation,
                    UnavailableError(
                        f"The connection to the bridge was lost ({why}); the request may or may not have "
                        f"been "
                        "carried out. Retry once the connection is back."
                    ),
                )
                attempt = 0
                while True:
                    await asyncio.sleep(
                        backoff(
                            attempt, config.reconnect_initial, config.reconnect_max, config.reconnect_jitter
                        )
                    )
                    if conn._closing:
                        return
                    try:
                        await self.close_channel()  # a fresh channel: no stale subchannel backoff
                        session = await self._establish()
                        break
                    except LoomError as exc:
                        attempt += 1
                        _log.info(
                            "agent %s: reconnect attempt %d failed: %s", conn.agent_id, attempt, exc.message
                        )
                if conn._closing:
                    session.end(None)
                    await self.close_session(session)
                    return
                conn.stats.reconnects += 1
                self.set_status(Status.CONNECTED)
                conn._router.subscribe_missing()
                conn._durable.reattach()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - logged; the connection is then unusable, close() still works
            _log.exception("agent %s: connection supervisor failed", conn.agent_id)

    async def close_session(self, session: Session) -> None:
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

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def freeze(self) -> None:
        """Test hook: the loops of the current session stop; the stream stays open (a hung process)."""
        session = self.session
        if session is not None:
            for task in session.tasks:
                task.cancel()
