"""The Context: what an agent (or any connection) can do on the bus."""

from __future__ import annotations

import json
import math
from typing import (
    TYPE_CHECKING,
    Any,
    Awaitable,
    Callable,
    Iterable,
    List,
    Mapping,
    Optional,
    Protocol,
    Tuple,
    Union,
)

from ._errors import InvalidParamsError
from ._event import Event, Overflow, QoS
from ._proto import bridge_pb2 as pb
from ._schema import to_json_bytes
from ._streams import (
    Consumer,
    ConsumerHandler,
    DeliverPolicy,
    Instant,
    PublishAck,
    Seconds,
    StreamInfo,
    StreamRead,
)
from ._topics import _TOKEN

if TYPE_CHECKING:
    from ._collab import BarrierResult, ContractNetResult, GatherResult
    from ._connection.durable_streams import DurableStreams
    from ._connection.subscription_router import Subscription
    from ._llm import Llm
    from ._memory import Memory
    from ._thread import Thread

JSON_CONTENT_TYPE = "application/json"
BYTES_CONTENT_TYPE = "application/octet-stream"

Handler = Callable[[Event], Awaitable[Any]]


def qos_value(qos: Optional[QoS]) -> int:
    """The wire value of an envelope's QoS (0 when unset); anything but a :class:`QoS` is refused."""
    if qos is None:
        return 0
    try:
        return int(QoS(qos))
    except ValueError:
        raise InvalidParamsError(
            f"qos {qos!r} is not a QoS class; use loom.QoS.REALTIME, NORMAL or BATCH.", path="/qos"
        ) from None


class Routing:
    """Routing policies for :meth:`Context.invoke` (``routing=``)."""

    ROUND_ROBIN = pb.ROUTING_POLICY_ROUND_ROBIN
    LEAST_LATENCY = pb.ROUTING_POLICY_LEAST_LATENCY
    LOWEST_COST = pb.ROUTING_POLICY_LOWEST_COST
    LOCAL_ONLY = pb.ROUTING_POLICY_LOCAL_ONLY


def encode_payload(data: Any, content_type: Optional[str] = None) -> Tuple[bytes, str]:
    """Bytes go as they are; None is an empty payload; anything else is JSON."""
    if data is None:
        return b"", content_type or ""
    if isinstance(data, bytes):
        return data, content_type or BYTES_CONTENT_TYPE
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data), content_type or BYTES_CONTENT_TYPE
    return to_json_bytes(data), content_type or JSON_CONTENT_TYPE


def ttl_ms(ttl: Optional[float]) -> int:
    if ttl is None:
        return 0
    if ttl <= 0:
        raise InvalidParamsError(f"A time to live must be positive; got {ttl!r} s.", path="/ttl_ms")
    return max(1, math.ceil(ttl * 1000))


class ContextPort(Protocol):
    """What a :class:`Context` runs on: the connection's parts (see loom._connection)."""

    _durable: "DurableStreams"

    @property
    def agent_id(self) -> str:
        ...

    @property
    def namespace(self) -> str:
        ...

    @property
    def memory(self) -> "Memory":
        ...

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
        ...

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
        ...

    async def _call(self, call: pb.ActionCall, timeout: Optional[float]) -> bytes:
        ...

    async def subscribe(
        self,
        pattern: str,
        handler: Handler,
        *,
        qos: QoS = QoS.NORMAL,
        overflow: Optional[Overflow] = None,
        queue_capacity: int = 0,
    ) -> "Subscription":
        ...


class Context:
    """What a handler or a capability can do: :meth:`emit`, :meth:`reply`, :meth:`request`
    (one reply) and :meth:`request_many` (first k), :meth:`invoke`/:meth:`tool` (call a
    capability by name), :attr:`memory`, :meth:`subscribe` and :meth:`join_thread`.

    Timeouts are in seconds. Payloads: ``bytes`` go as they are, anything else is sent as JSON
    (dataclasses, enums and pydantic models included). Every method raises typed
    :class:`~loom.LoomError` subclasses."""

    def __init__(self, port: "ContextPort") -> None:
        self._port = port

    @property
    def agent_id(self) -> str:
        return self._port.agent_id

    @property
    def namespace(self) -> str:
        return self._port.namespace

    @property
    def memory(self) -> "Memory":
        """Key-value memory held by the bridge (this agent's namespace)."""
        return self._port.memory

    @property
    def llm(self) -> "Llm":
        """Language models through the bridge's LLM gateway (docs/llm.md)."""
        from ._llm import Llm

        return Llm(self)

    async def subscribe(
        self,
        pattern: str,
        handler: Handler,
        *,
        qos: QoS = QoS.NORMAL,
        overflow: Optional[Overflow] = None,
        queue_capacity: int = 0,
    ) -> "Subscription":
        """Subscribes ``handler`` to a pattern (``*`` one token, ``>`` the rest). Events of one
        subscription reach the handler in order, one at a time; an exception in it is logged and
        the subscription goes on. Subscriptions survive reconnects."""
        return await self._port.subscribe(
            pattern, handler, qos=qos, overflow=overflow, queue_capacity=queue_capacity
        )

    # -- events ------------------------------------------------------------------------------
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
        """Publishes an event; returns its envelope id. Returns once the event is queued
        (waiting while the outbound queue is full); the bridge reports rejections
        asynchronously (logged and counted in ``stats``)."""
        if type(data) is bytes and content_type is None:
            payload, ctype = data, BYTES_CONTENT_TYPE
        else:
            payload, ctype = encode_payload(data, content_type)
        envelope_id, wait = self._port._publish_nowait(
            topic,
            payload,
            ctype,
            thread_id,
            correlation_id,
            reply_to,
            ttl_ms(ttl) if ttl is not None else 0,
            qos_value(qos),
            headers,
            traceparent,
            tracestate,
        )
        if wait is not None:
            await wait
        return envelope_id

    async def reply(
        self,
        request: Event,
        data: Any = None,
        *,
        headers: Optional[Mapping[str, str]] = None,
        content_type: Optional[str] = None,
        ttl: Optional[float] = None,
    ) -> str:
        """Replies to a request: publishes to its ``reply_to`` with its correlation id (or its
        id) and thread id."""
        if not request.reply_to:
            raise InvalidParamsError(
                f"Event {request.id!r} on {request.topic!r} has no reply_to; only requests can be replied "
                f"to.",
                path="/reply_to",
            )
        return await self.emit(
            request.reply_to,
            data,
            thread_id=request.thread_id,
            correlation_id=request.correlation_id or request.id,
            headers=headers,
            content_type=content_type,
            ttl=ttl,
        )

    async def request(
        self,
        topic: str,
        data: Any = None,
        *,
        timeout: Optional[float] = None,
        thread_id: str = "",
        headers: Optional[Mapping[str, str]] = None,
        content_type: Optional[str] = None,
        ttl: Optional[float] = None,
    ) -> Event:
        """Publishes a request (``reply_to`` = this agent's inbox, a fresh correlation id) and
        returns the first reply. Raises :class:`RequestTimeoutError` when none arrives within
        ``timeout`` seconds (default ``request_timeout_ms``)."""
        payload, ctype = encode_payload(data, content_type)
        options = {"thread_id": thread_id, "headers": headers, "ttl": ttl}
        replies = await self._port._request(topic, payload, ctype, 1, 1, timeout, options)
        return replies[0]

    async def request_many(
        self,
        topic: str,
        data: Any = None,
        *,
        count: int,
        timeout: Optional[float] = None,
        min_count: Optional[int] = None,
        thread_id: str = "",
        headers: Optional[Mapping[str, str]] = None,
        content_type: Optional[str] = None,
        ttl: Optional[float] = None,
    ) -> List[Event]:
        """First-k: publishes one request and returns as soon as ``count`` replies arrived (in
        arrival order). At the timeout, returns the replies so far if there are at least
        ``min_count`` (default: ``count``, so fewer raise :class:`RequestTimeoutError`, whose
        ``replies`` attribute holds what did arrive)."""
        if count < 1:
            raise InvalidParamsError(f"count must be at least 1; got {count}.", path="/count")
        minimum = count if min_count is None else min_count
        if not 0 <= minimum <= count:
            raise InvalidParamsError(
                f"min_count must be between 0 and count ({count}); got {minimum}.", path="/min_count"
            )
        payload, ctype = encode_payload(data, content_type)
        options = {"thread_id": thread_id, "headers": headers, "ttl": ttl}
        return await self._port._request(topic, payload, ctype, count, minimum, timeout, options)

    # -- capabilities ------------------------------------------------------------------------
    async def invoke_raw(
        self,
        capability: str,
        input_json: Union[bytes, str] = b"{}",
        *,
        timeout: Optional[float] = None,
        version: str = "",
        thread_id: str = "",
        routing: int = 0,
        target_agent: str = "",
        headers: Optional[Mapping[str, str]] = None,
        traceparent: str = "",
        idempotency_key: str = "",
    ) -> bytes:
        """Calls a capability with raw UTF-8 JSON input; returns its raw JSON output.

        ``idempotency_key``: calls with the same key (per caller identity and capability) within
        the bridge's idempotency window (default 24 h) get the first call's result instead of
        invoking a provider again, also after a bridge restart. At most 128 bytes of printable
        ASCII, e.g. a UUID (docs/durability.md)."""
        if not capability:
            raise InvalidParamsError("The capability name is empty.", path="/capability")
        if timeout is not None and timeout <= 0:
            raise InvalidParamsError(
                f"A call timeout must be positive; got {timeout!r} s.", path="/timeout_ms"
            )
        data = input_json.encode("utf-8") if isinstance(input_json, str) else input_json
        call = pb.ActionCall(
            capability=capability,
            version=version,
            input_json=data,
            thread_id=thread_id,
            routing=routing,  # type: ignore[arg-type]
            target_agent=target_agent,
            traceparent=traceparent,
            idempotency_key=idempotency_key,
        )
        if headers:
            for key, value in headers.items():
                call.headers[key] = value
        return await self._port._call(call, timeout)

    async def invoke(
        self,
        capability: str,
        args: Any = None,
        *,
        timeout: Optional[float] = None,
        version: str = "",
        thread_id: str = "",
        routing: int = 0,
        target_agent: str = "",
        headers: Optional[Mapping[str, str]] = None,
        traceparent: str = "",
        idempotency_key: str = "",
    ) -> Any:
        """Calls any capability by name (provided by this agent, another process, or the
        bridge) with ``args`` as JSON; returns the parsed JSON output.

        Raises :class:`InvalidParamsError` (with ``path``), :class:`NotFoundError`,
        :class:`ProviderUnavailableError`, :class:`ToolError`, :class:`RequestTimeoutError`
        or :class:`UnavailableError`. ``idempotency_key``: see :meth:`invoke_raw`."""
        output = await self.invoke_raw(
            capability,
            to_json_bytes({} if args is None else args),
            timeout=timeout,
            version=version,
            thread_id=thread_id,
            routing=routing,
            target_agent=target_agent,
            headers=headers,
            traceparent=traceparent,
            idempotency_key=idempotency_key,
        )
        return json.loads(output) if output else None

    tool = invoke
    """Alias of :meth:`invoke`."""

    # -- collaboration (run in the bridge's core; see loom._collab and docs/collaboration.md) ----
    async def gather(self, topic: str = "", data: Any = None, **options: Any) -> "GatherResult":
        """Request/reply and fan-out/fan-in: one request to a topic (or to the providers of
        ``capability=``), joined by ``strategy=`` (FIRST, FIRST_K with ``k=``, MAJORITY with
        ``compare=``, ALL) within ``timeout=`` s. Returns who answered, timed out and failed."""
        from ._collab import gather

        return await gather(self, topic, data, **options)

    fan_out = gather
    """Alias of :meth:`gather`."""

    async def barrier(self, barrier_id: str, **options: Any) -> "BarrierResult":
        """Arrives at a barrier and waits for ``participants=`` (or ``count=``) or ``timeout=`` s."""
        from ._collab import barrier

        return await barrier(self, barrier_id, **options)

    async def contract_net(self, task: Any, *, capability: str, **options: Any) -> "ContractNetResult":
        """Call for proposals, bids, award by ``scoring=``, execution of ``capability`` by the
        winner with fallback to the next bidder; recorded on the thread."""
        from ._collab import contract_net

        return await contract_net(self, task, capability=capability, **options)

    # -- durable streams (docs/durability.md) ------------------------------------------------------
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
        """Publishes to a topic a durable stream captures and returns once the bridge persisted
        it: :class:`PublishAck` (stream, sequence, duplicate). ``id`` (a fresh one when empty) is
        the message id: publishing it again within the stream's dedup window (e.g. a retry after
        a reconnect) stores nothing new and answers with the first copy's sequence.

        Raises :class:`InvalidParamsError` when no stream captures the topic,
        :class:`UnavailableError` when not connected (retry with the same id),
        :class:`RequestTimeoutError`."""
        return await self._port._durable.publish_durable(
            topic,
            data,
            id=id,
            thread_id=thread_id,
            headers=headers,
            content_type=content_type,
            timeout=timeout,
        )

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
        """Attaches to (creating it when new) the durable consumer ``name`` of ``stream`` and runs
        ``handler`` for each :class:`ConsumerMessage`, one at a time. A message the handler did
        not settle (``ack()``, ``nak(delay=)``, ``in_progress()``, ``term()``) is acked when it
        returns and nak'ed when it raises. ``ack_wait`` is in seconds (or a timedelta; default
        30), ``max_deliver`` deliveries (default 5) before the event goes to
        ``dead_letter_topic`` (default ``loom.dead.<stream>.<name>``), ``max_ack_pending``
        unacknowledged in flight (default 1000). The consumer is attached again after every
        reconnect; its position lives in the bridge, so it survives restarts of either side."""
        return await self._port._durable.consume(
            stream,
            name,
            handler,
            filter=filter,
            deliver=deliver,
            start_sequence=start_sequence,
            start_time=start_time,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            max_ack_pending=max_ack_pending,
            dead_letter_topic=dead_letter_topic,
        )

    async def read_stream(
        self,
        stream: str,
        *,
        start_sequence: int = 0,
        start_time: Optional[Instant] = None,
        max_events: int = 0,
        timeout: Optional[Seconds] = None,
    ) -> StreamRead:
        """Reads events of a stream from ``start_sequence`` or ``start_time`` (Unix seconds or a
        datetime; neither: from the first held), at most ``max_events`` (default 100, at most
        1000) per call; :attr:`StreamRead.next_sequence` is where to go on."""
        return await self._port._durable.read_stream(
            stream,
            start_sequence=start_sequence,
            start_time=start_time,
            max_events=max_events,
            timeout=timeout,
        )

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
        """Creates a durable stream capturing ``subjects`` (topic patterns); the same settings
        again succeed, different ones raise :class:`InvalidParamsError`. Needs the ``streams``
        permission when auth is on."""
        return await self._port._durable.create_stream(
            name,
            subjects,
            max_age=max_age,
            max_bytes=max_bytes,
            max_events=max_events,
            duplicate_window=duplicate_window,
        )

    async def stream_info(self, name: str) -> StreamInfo:
        """A stream's settings and state."""
        return await self._port._durable.stream_info(name)

    async def list_streams(self) -> List[StreamInfo]:
        """Every stream of the bridge."""
        return await self._port._durable.list_streams()

    async def delete_stream(self, name: str) -> None:
        """Deletes a stream, its events and its consumers."""
        await self._port._durable.delete_stream(name)

    # -- threads -------------------------------------------------------------------------------
    async def join_thread(
        self, thread_id: str, handler: Optional[Handler] = None, *, queue_capacity: int = 1024
    ) -> "Thread":
        """Joins a conversation: subscribes to ``thread.<id>.>``. With a handler, its events go
        there; without one, iterate the returned :class:`Thread` (``async for event in thread``)
        or call :meth:`Thread.next`. Leave with :meth:`Thread.leave` (or ``async with``)."""
        if not isinstance(thread_id, str) or not _TOKEN.match(thread_id):
            raise InvalidParamsError(
                f"Thread id {thread_id!r} is invalid: one topic token of A-Z a-z 0-9 _ - :.",
                path="/thread_id",
            )
        from ._thread import Thread

        thread = Thread(self, thread_id, queue_capacity)
        thread._subscription = await self.subscribe(f"thread.{thread_id}.>", handler or thread._offer)
        return thread
