"""Durable streams, as users see them (docs/durability.md): publish acknowledgements, durable
consumers and the messages they receive, stream reads and stream descriptions."""

from __future__ import annotations

import datetime as _dt
import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, List, Optional, Tuple, Union

from ._errors import InvalidParamsError
from ._event import Event
from ._proto import bridge_pb2 as pb

if TYPE_CHECKING:
    from ._connection.durable_streams import ConsumerState

Seconds = Union[float, int, _dt.timedelta]
"""A duration: seconds as a number, or a :class:`datetime.timedelta`."""

Instant = Union[float, int, _dt.datetime]
"""A point in time: Unix seconds as a number, or a :class:`datetime.datetime` (naive = UTC)."""


def seconds_of(value: Optional[Seconds], path: str, *, allow_zero: bool = True) -> Optional[float]:
    """A duration in seconds (None stays None); a negative one is an InvalidParamsError."""
    if value is None:
        return None
    if isinstance(value, _dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise InvalidParamsError(
            f"{path[1:]} must be seconds (a number or a timedelta); got {value!r}.", path=path
        )
    if seconds < 0 or (seconds == 0 and not allow_zero) or seconds != seconds:
        raise InvalidParamsError(f"{path[1:]} must be a positive duration; got {value!r}.", path=path)
    return seconds


def ms_of(value: Optional[Seconds], path: str, limit: int = 2**32 - 1) -> int:
    """A duration as whole milliseconds for the wire (0 when None), at most ``limit``."""
    seconds = seconds_of(value, path)
    if seconds is None:
        return 0
    ms = int(round(seconds * 1000))
    if seconds > 0 and ms == 0:
        ms = 1
    if ms > limit:
        raise InvalidParamsError(
            f"{path[1:]} of {seconds:g} s is too long; at most {limit / 1000:g} s.", path=path
        )
    return ms


def unix_ms_of(value: Instant, path: str) -> int:
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return int(value.timestamp() * 1000)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return int(value * 1000)
    raise InvalidParamsError(f"{path[1:]} must be Unix seconds or a datetime; got {value!r}.", path=path)


class DeliverPolicy(enum.IntEnum):
    """Where a **new** durable consumer starts (an existing one resumes where it was)."""

    ALL = pb.DELIVER_POLICY_ALL
    """From the first event the stream holds. The default."""
    NEW = pb.DELIVER_POLICY_NEW
    """From the next event stored."""
    BY_SEQUENCE = pb.DELIVER_POLICY_BY_SEQUENCE
    """From ``start_sequence``."""
    BY_TIME = pb.DELIVER_POLICY_BY_TIME
    """From the first event stored at or after ``start_time``."""


@dataclass(frozen=True)
class PublishAck:
    """The answer to :meth:`~loom.Connection.publish_durable`: the event is persisted."""

    stream: str
    sequence: int
    duplicate: bool
    """True when an event with the same id was already stored within the dedup window (nothing
    new was stored; ``sequence`` is the first copy's)."""
    id: str = ""
    """The envelope id (the message id used for deduplication)."""


@dataclass(frozen=True)
class ConsumerInfo:
    """A durable consumer's state in the bridge."""

    name: str
    stream: str
    filter: str
    ack_floor: int
    """Every sequence up to here is acknowledged."""
    next_sequence: int
    """The next sequence to deliver for the first time."""
    pending: int
    """Delivered, not yet acknowledged."""
    stream_last_sequence: int

    @classmethod
    def from_proto(cls, info: pb.ConsumerInfo) -> "ConsumerInfo":
        return cls(
            name=info.config.name,
            stream=info.config.stream,
            filter=info.config.filter,
            ack_floor=info.ack_floor,
            next_sequence=info.next_sequence,
            pending=info.pending,
            stream_last_sequence=info.stream_last_sequence,
        )


class ConsumerMessage:
    """One delivery of a durable consumer: the :attr:`event`, its stream :attr:`sequence`, its
    :attr:`delivery_count` (1 the first time), and how to settle it. A message the handler did
    not settle is acknowledged when the handler returns, and nak'ed when it raises."""

    __slots__ = ("event", "sequence", "delivery_count", "stream", "consumer", "_state", "_settled")

    def __init__(self, state: "ConsumerState", delivery: pb.Delivery) -> None:
        self.event = Event.from_proto(delivery.envelope)
        self.sequence: int = delivery.stream_sequence
        self.delivery_count: int = delivery.delivery_count
        self.stream: str = delivery.stream
        self.consumer: str = delivery.consumer
        self._state = state
        self._settled = False

    @property
    def settled(self) -> bool:
        return self._settled

    def ack(self) -> None:
        """Done: never delivered again."""
        self._settle(pb.ACK_KIND_ACK, 0)

    def nak(self, delay: Optional[Seconds] = None) -> None:
        """Failed: delivered again after ``delay`` (seconds or timedelta; counts toward max_deliver)."""
        self._settle(pb.ACK_KIND_NAK, ms_of(delay, "/delay"))

    def in_progress(self) -> None:
        """Still working: the ack wait starts again (may be sent more than once)."""
        self._state.settle(self.sequence, pb.ACK_KIND_IN_PROGRESS, 0)

    def term(self) -> None:
        """Never deliver again, and do not dead-letter it."""
        self._settle(pb.ACK_KIND_TERMINATE, 0)

    def _settle(self, kind: int, delay_ms: int) -> None:
        if not self._settled:
            self._settled = True
            self._state.settle(self.sequence, kind, delay_ms)

    def __repr__(self) -> str:
        return (
            f"ConsumerMessage(stream={self.stream!r}, consumer={self.consumer!r}, sequence={self.sequence}, "
            f"delivery_count={self.delivery_count}, topic={self.event.topic!r})"
        )


ConsumerHandler = Callable[[ConsumerMessage], Awaitable[Any]]


class Consumer:
    """A durable consumer attached through :meth:`~loom.Connection.consume`. Deliveries wait in
    a local queue as long as max_ack_pending (the bridge sends no more than that unacknowledged);
    the handler runs for them one at a time. ``await consumer.detach()`` (or ``async with``)
    stops receiving; the position stays in the bridge unless ``delete=True``."""

    def __init__(self, state: "ConsumerState") -> None:
        self._state = state

    @property
    def name(self) -> str:
        return self._state.name

    @property
    def stream(self) -> str:
        return self._state.stream

    @property
    def info(self) -> Optional[ConsumerInfo]:
        """The consumer's state when it was (last) attached."""
        return self._state.info

    @property
    def handled(self) -> int:
        """Deliveries the handler finished without raising."""
        return self._state.handled

    @property
    def failed(self) -> int:
        """Deliveries whose handler raised (each was nak'ed unless settled)."""
        return self._state.failed

    async def detach(self, *, delete: bool = False) -> None:
        """Stops receiving (safe to call twice); ``delete=True`` also removes the consumer's position."""
        await self._state.detach(delete)

    async def __aenter__(self) -> "Consumer":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.detach()


@dataclass(frozen=True)
class StoredEvent:
    """An event read from a stream, with its sequence and when it was stored (Unix ms)."""

    sequence: int
    stored_unix_ms: int
    event: Event


@dataclass(frozen=True)
class StreamRead:
    """The answer to :meth:`~loom.Connection.read_stream`."""

    events: List[StoredEvent]
    first_sequence: int
    """The stream's first held sequence."""
    last_sequence: int
    """The stream's last sequence."""

    @property
    def next_sequence(self) -> int:
        """Where to read on from (one past the last event returned, or the stream's end)."""
        return self.events[-1].sequence + 1 if self.events else self.last_sequence + 1


@dataclass(frozen=True)
class StreamInfo:
    """A stream's settings and state (:meth:`~loom.Connection.stream_info`)."""

    name: str
    subjects: Tuple[str, ...]
    max_age: Optional[float]
    """Seconds; None = no age limit."""
    max_bytes: int
    max_events: int
    duplicate_window: float
    """Seconds."""
    first_sequence: int
    last_sequence: int
    events: int
    bytes: int

    @classmethod
    def from_proto(cls, state: pb.StreamState) -> "StreamInfo":
        spec = state.spec
        return cls(
            name=spec.name,
            subjects=tuple(spec.subjects),
            max_age=spec.max_age_ms / 1000.0 if spec.max_age_ms else None,
            max_bytes=spec.max_bytes,
            max_events=spec.max_events,
            duplicate_window=(spec.duplicate_window_ms or 120000) / 1000.0,
            first_sequence=state.first_sequence,
            last_sequence=state.last_sequence,
            events=state.events,
            bytes=state.bytes,
        )
