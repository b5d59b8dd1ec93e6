"""The envelope as handlers see it: a frozen dataclass view."""

from __future__ import annotations

import enum
import json as _json
from dataclasses import dataclass, field
from typing import Any, Mapping

from ._errors import InvalidParamsError
from ._proto import bridge_pb2 as pb


class QoS(enum.IntEnum):
    """Quality-of-service class of a subscription or an event."""

    REALTIME = 1
    """Small queue (1,024), drop oldest: fresh data wins."""
    NORMAL = 2
    """Medium queue (8,192), drop newest. The default."""
    BATCH = 3
    """Large queue (65,536), block the publisher up to a deadline."""


class Overflow(enum.IntEnum):
    """Full-queue policy of a subscription (default: its QoS class's)."""

    DROP_OLDEST = 1
    DROP_NEWEST = 2
    BLOCK = 3


_MISSING = object()


@dataclass(frozen=True)
class Event:
    """One delivered envelope. ``payload`` is the raw bytes; :meth:`json` / :attr:`data` decode
    them as JSON, :attr:`text` as UTF-8."""

    topic: str
    payload: bytes = b""
    id: str = ""
    sender: str = ""
    thread_id: str = ""
    correlation_id: str = ""
    reply_to: str = ""
    ttl_ms: int = 0
    deadline_unix_ms: int = 0
    hop: int = 0
    qos: int = 0
    timestamp_unix_ms: int = 0
    content_type: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    traceparent: str = ""
    tracestate: str = ""
    subscription_id: str = ""

    @property
    def hop_count(self) -> int:
        return self.hop

    @property
    def is_request(self) -> bool:
        """True when the sender expects a reply (``reply_to`` is set)."""
        return bool(self.reply_to)

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")

    def json(self) -> Any:
        """The payload parsed as JSON (an empty payload is None)."""
        if not self.payload:
            return None
        try:
            return _json.loads(self.payload)
        except ValueError as exc:
            raise InvalidParamsError(
                f"The payload of event {self.id!r} on {self.topic!r} is not JSON: {exc}", path="/payload"
            ) from None

    @property
    def data(self) -> Any:
        """The payload parsed as JSON, cached."""
        cached = self.__dict__.get("_data", _MISSING)
        if cached is _MISSING:
            cached = self.json()
            object.__setattr__(self, "_data", cached)
        return cached

    @classmethod
    def from_proto(cls, env: pb.Envelope, subscription_id: str = "") -> "Event":
        return cls(
            topic=env.topic,
            payload=env.payload,
            id=env.id,
            sender=env.sender,
            thread_id=env.thread_id,
            correlation_id=env.correlation_id,
            reply_to=env.reply_to,
            ttl_ms=env.ttl_ms,
            deadline_unix_ms=env.deadline_unix_ms,
            hop=env.hop_count,
            qos=env.qos,
            timestamp_unix_ms=env.timestamp_unix_ms,
            content_type=env.content_type,
            headers=dict(env.headers) if env.headers else {},
            traceparent=env.traceparent,
            tracestate=env.tracestate,
            subscription_id=subscription_id,
        )


Envelope = Event
"""Alias: the envelope a handler receives is an :class:`Event`."""
