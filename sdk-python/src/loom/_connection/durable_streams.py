"""DurableStreams: publish with an acknowledgement, durable consumers (attach, settle, detach,
attached again after every reconnect), stream reads and stream administration
(docs/durability.md; the wire is ClientMessage.publish_acked / consumer / read / stream_admin)."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from typing import TYPE_CHECKING, Any, Awaitable, Dict, Iterable, List, Mapping, Optional, Tuple

from .. import _wire
from .._context import encode_payload
from .._errors import ConnectionClosedError, InvalidParamsError, LoomError, RequestTimeoutError, from_proto
from .._event import Event
from .._proto import bridge_pb2 as pb
from .._streams import (
    Consumer,
    ConsumerHandler,
    ConsumerInfo,
    ConsumerMessage,
    DeliverPolicy,
    Instant,
    PublishAck,
    Seconds,
    StoredEvent,
    StreamInfo,
    StreamRead,
    ms_of,
    seconds_of,
    unix_ms_of,
)
from .._topics import validate_pattern, validate_topic
from .pending_calls import RequestTimedOut

if TYPE_CHECKING:
    from .connection import Connection

_log = logging.getLogger("loom.connection")

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def _check_name(value: str, what: str, path: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidParamsError(
            f"{what} {value!r} is invalid: 1-128 letters, digits, '-' or '_'.", path=path
        )


class ConsumerState:
    """One attached consumer: its config, its bounded delivery queue and its handler task."""

    def __init__(self, part: "DurableStreams", config: pb.ConsumerConfig, handler: ConsumerHandler) -> None:
        self.part = part
        self.config = config
        self.name = config.name
        self.stream = config.stream
        self.handler = handler
        self.info: Optional[ConsumerInfo] = None
        self.handled = 0
        self.failed = 0
        capacity = min(config.max_ack_pending or 1000, 100_000) + 16
        self.queue: "asyncio.Queue[pb.Delivery]" = asyncio.Queue(maxsize=capacity)
        self.task: Optional["asyncio.Task[None]"] = None
        self.handle = Consumer(self)

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name=f"loom-consumer-{self.stream}-{self.name}"
        )

    def offer(self, delivery: pb.Delivery) -> Optional[Awaitable[None]]:
        try:
            self.queue.put_nowait(delivery)
            return None
        except asyncio.QueueFull:
            return self.queue.put(delivery)  # the reader waits: backpressure up to the bridge

    async def _run(self) -> None:
        while True:
            delivery = await self.queue.get()
            message = ConsumerMessage(self, delivery)
            try:
                await self.handler(message)
            except asyncio.CancelledError:
                raise  # stopping: not settled, so the bridge delivers it again after the ack wait
            except Exception as exc:  # noqa: BLE001 - a handler failure naks, the consumer goes on
                self.failed += 1
                _log.warning(
                    "agent %s: consumer %s/%s failed on sequence %d: %s: %s",
                    self.part.conn.agent_id,
                    self.stream,
                    self.name,
                    message.sequence,
                    type(exc).__name__,
                    exc,
                    exc_info=_log.isEnabledFor(logging.DEBUG),
                )
                if not message.settled:
                    message.nak()
                continue
            self.handled += 1
            if not message.settled:
                message.ack()

    def settle(self, sequence: int, kind: int, delay_ms: int) -> None:
        # Fire and forget: a lost ack means a redelivery, which at-least-once allows.
        ack = pb.ConsumerAck(consumer=self.name, stream=self.stream, sequences=[sequence], delay_ms=delay_ms)
        ack.kind = kind  # type: ignore[assignment]
        self.part.conn._enqueue(_wire.item_of(pb.ClientMessage(consumer=pb.ConsumerRequest(ack=ack))))

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def detach(self, delete: bool) -> None:
        await self.part.detach(self, delete)


class DurableStreams:
    """The durable-stream part of a connection."""

    def __init__(self, conn: "Connection") -> None:
        self.conn = conn
        self.consumers: Dict[Tuple[str, str], ConsumerState] = {}
        self.unrouted = 0

    @property
    def _timeout(self) -> float:
        return self.conn.config.request_timeout_ms / 1000.0

    async def _ask(
        self, key: str, message: pb.ClientMessage, timeout: Optional[Seconds], what: str
    ) -> pb.ServerMessage:
        seconds = self._timeout if timeout is None else seconds_of(timeout, "/timeout", allow_zero=False)
        assert seconds is not None
        try:
            reply = await self.conn._send_and_wait(key, _wire.item_of(message), seconds)
        except RequestTimedOut:
            raise RequestTimeoutError(f"The bridge did not answer {what} within {seconds:g} s.") from None
        if reply.WhichOneof("kind") == "error":
            raise from_proto(reply.error.error)
        return reply

    # -- publish -----------------------------------------------------------------------------
    async def publish_durable(
        self,
        topic: str,
        data: Any = None,
        *,
        id: str = "",
        thread_id: str = "",
        headers: Optional[Mapping[str, str]] = None,
        content_type: Optional[str] = None,
        timeout: Optional[Seconds] = None,
    ) -> PublishAck:
        validate_topic(topic)
        payload, ctype = encode_payload(data, content_type)
        envelope_id = id or uuid.uuid4().hex
        envelope = pb.Envelope(
            id=envelope_id, topic=topic, payload=payload, content_type=ctype, thread_id=thread_id
        )
        for key, value in (headers or {}).items():
            envelope.headers[key] = value
        message = pb.ClientMessage(publish_acked=pb.PublishRequest(envelope=envelope))
        reply = await self._ask(
            envelope_id,
            message,
            timeout,
            f"the durable publish of {envelope_id!r} on {topic!r} (publish it again with the same id: it is "
            f"not stored twice)",
        )
        ack = reply.publish_ack
        return PublishAck(stream=ack.stream, sequence=ack.sequence, duplicate=ack.duplicate, id=envelope_id)

    # -- consumers ---------------------------------------------------------------------------
    async def consume(
        self,
        stream: str,
        name: str,
        handler: ConsumerHandler,
        *,
        filter: str = "",
        deliver: DeliverPolicy = DeliverPolicy.ALL,
        start_sequence: int = 0,
        start_time: Optional[Instant] = None,
        ack_wait: Optional[Seconds] = None,
        max_deliver: int = 0,
        max_ack_pending: int = 0,
        dead_letter_topic: str = "",
    ) -> Consumer:
        _check_name(stream, "Stream name", "/stream")
        _check_name(name, "Consumer name", "/name")
        if not callable(handler):
            raise InvalidParamsError(f"The handler of consumer {name!r} is not callable.", path="/handler")
        if filter:
            validate_pattern(filter)
        if dead_letter_topic:
            validate_topic(dead_letter_topic)
        policy = DeliverPolicy(deliver)
        if policy is DeliverPolicy.BY_SEQUENCE and start_sequence < 1:
            raise InvalidParamsError("deliver=BY_SEQUENCE needs start_sequence >= 1.", path="/start_sequence")
        if policy is DeliverPolicy.BY_TIME and start_time is None:
            raise InvalidParamsError(
                "deliver=BY_TIME needs start_time (Unix seconds or a datetime).", path="/start_time"
            )
        for value, path in (
            (max_deliver, "/max_deliver"),
            (max_ack_pending, "/max_ack_pending"),
            (start_sequence, "/start_sequence"),
        ):
            if not isinstance(value, int) or value < 0:
                raise InvalidParamsError(
                    f"{path[1:]} must be a non-negative integer; got {value!r}.", path=path
                )
        config = pb.ConsumerConfig(
            name=name,
            stream=stream,
            filter=filter,
            deliver=int(policy),  # type: ignore[arg-type]
            start_sequence=start_sequence,
            start_unix_ms=unix_ms_of(start_time, "/start_time") if start_time is not None else 0,
            ack_wait_ms=ms_of(ack_wait, "/ack_wait"),
            max_deliver=max_deliver,
            max_ack_pending=max_ack_pending,
            dead_letter_topic=dead_letter_topic,
        )
        key = (stream, name)
        if key in self.consumers:
            raise InvalidParamsError(
                f"Consumer {name!r} of stream {stream!r} is already consumed on this connection.",
                path="/name",
            )
        self.conn._check_open()
        state = ConsumerState(self, config, handler)
        self.consumers[key] = state
        state.start()
        try:
            state.info = await self._attach(config)
        except BaseException:
            self.consumers.pop(key, None)
            await state.stop()
            raise
        return state.handle

    async def _attach(self, config: pb.ConsumerConfig) -> ConsumerInfo:
        cid = self.conn._ids.next()
        message = pb.ClientMessage(
            consumer=pb.ConsumerRequest(correlation_id=cid, attach=pb.ConsumerAttach(config=config))
        )
        reply = await self._ask(
            cid, message, None, f"the attach of consumer {config.name!r} of stream {config.stream!r}"
        )
        return ConsumerInfo.from_proto(reply.consumer.info)

    def reattach(self) -> None:
        """After a reconnect: attach every consumer again (no waiter: the replies are dropped)."""
        for state in self.consumers.values():
            request = pb.ConsumerRequest(attach=pb.ConsumerAttach(config=state.config))
            self.conn._enqueue(_wire.item_of(pb.ClientMessage(consumer=request)))

    def on_delivery(self, delivery: pb.Delivery) -> Optional[Awaitable[None]]:
        state = self.consumers.get((delivery.stream, delivery.consumer))
        if state is None:
            self.unrouted += 1  # detached meanwhile: the bridge delivers it again after the ack wait
            return None
        return state.offer(delivery)

    async def detach(self, state: ConsumerState, delete: bool) -> None:
        key = (state.stream, state.name)
        if self.consumers.get(key) is not state:
            return
        del self.consumers[key]
        await state.stop()
        if self.conn.status.value != "connected":
            return  # the session ends or expires anyway; the bridge detaches it then
        cid = self.conn._ids.next()
        detach = pb.ConsumerDetach(consumer=state.name, stream=state.stream, delete=delete)
        try:
            await self._ask(
                cid,
                pb.ClientMessage(consumer=pb.ConsumerRequest(correlation_id=cid, detach=detach)),
                None,
                f"the detach of consumer {state.name!r}",
            )
        except LoomError as exc:
            if delete and not isinstance(exc, ConnectionClosedError):
                raise
            _log.debug("agent %s: detach of %s/%s: %s", self.conn.agent_id, state.stream, state.name, exc)

    async def stop_all(self) -> None:
        states = list(self.consumers.values())
        self.consumers.clear()
        await asyncio.gather(*(s.stop() for s in states), return_exceptions=True)

    # -- reads -------------------------------------------------------------------------------
    async def read_stream(
        self,
        stream: str,
        *,
        start_sequence: int = 0,
        start_time: Optional[Instant] = None,
        max_events: int = 0,
        timeout: Optional[Seconds] = None,
    ) -> StreamRead:
        _check_name(stream, "Stream name", "/stream")
        if not isinstance(start_sequence, int) or start_sequence < 0:
            raise InvalidParamsError(
                f"start_sequence must be a non-negative integer; got {start_sequence!r}.",
                path="/start_sequence",
            )
        if not isinstance(max_events, int) or not 0 <= max_events <= 1000:
            raise InvalidParamsError(
                f"max_events must be between 0 (= 100) and 1000; got {max_events!r}.", path="/max_events"
            )
        cid = self.conn._ids.next()
        request = pb.StreamReadRequest(
            correlation_id=cid,
            stream=stream,
            start_sequence=start_sequence,
            start_unix_ms=unix_ms_of(start_time, "/start_time") if start_time is not None else 0,
            max_events=max_events,
        )
        reply = await self._ask(
            cid, pb.ClientMessage(read=request), timeout, f"the read of stream {stream!r}"
        )
        read = reply.read
        if read.HasField("error") and read.error.code != 0:
            raise from_proto(read.error)
        events = [
            StoredEvent(e.sequence, e.stored_unix_ms, Event.from_proto(e.envelope)) for e in read.events
        ]
        return StreamRead(events=events, first_sequence=read.first_sequence, last_sequence=read.last_sequence)

    # -- administration ----------------------------------------------------------------------
    async def _admin(self, request: pb.StreamAdminRequest, what: str) -> List[StreamInfo]:
        request.correlation_id = cid = self.conn._ids.next()
        reply = await self._ask(cid, pb.ClientMessage(stream_admin=request), None, what)
        return [StreamInfo.from_proto(s) for s in reply.stream_admin.streams]

    async def create_stream(
        self,
        name: str,
        subjects: Iterable[str],
        *,
        max_age: Optional[Seconds] = None,
        max_bytes: int = 0,
        max_events: int = 0,
        duplicate_window: Optional[Seconds] = None,
    ) -> StreamInfo:
        _check_name(name, "Stream name", "/name")
        subject_list = [subjects] if isinstance(subjects, str) else list(subjects)
        if not subject_list:
            raise InvalidParamsError(
                f"Stream {name!r} needs at least one subject (a topic pattern).", path="/subjects"
            )
        for i, subject in enumerate(subject_list):
            try:
                validate_pattern(subject)
            except InvalidParamsError as exc:
                raise InvalidParamsError(exc.message, path=f"/subjects/{i}") from None
        for value, path in ((max_bytes, "/max_bytes"), (max_events, "/max_events")):
            if not isinstance(value, int) or value < 0:
                raise InvalidParamsError(
                    f"{path[1:]} must be a non-negative integer; got {value!r}.", path=path
                )
        spec = pb.StreamSpec(
            name=name,
            subjects=subject_list,
            max_age_ms=ms_of(max_age, "/max_age", 2**63 - 1),
            max_bytes=max_bytes,
            max_events=max_events,
            duplicate_window_ms=ms_of(duplicate_window, "/duplicate_window", 2**63 - 1),
        )
        streams = await self._admin(pb.StreamAdminRequest(create=spec), f"the creation of stream {name!r}")
        return streams[0]

    async def stream_info(self, name: str) -> StreamInfo:
        _check_name(name, "Stream name", "/name")
        streams = await self._admin(pb.StreamAdminRequest(info=name), f"the info of stream {name!r}")
        return streams[0]

    async def list_streams(self) -> List[StreamInfo]:
        return await self._admin(pb.StreamAdminRequest(list=True), "the list of streams")

    async def delete_stream(self, name: str) -> None:
        _check_name(name, "Stream name", "/name")
        await self._admin(pb.StreamAdminRequest(delete=name), f"the deletion of stream {name!r}")
