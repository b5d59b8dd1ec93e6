"""Connection settings: a frozen dataclass; every field settable by keyword or ``LOOM_<FIELD>``."""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional

from ._errors import InvalidParamsError

SDK_VERSION = "0.1.0"

_AGENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}\Z")

# Smallest accepted capacity of each queue and frame option; the same in every SDK
# (tests/vectors/options.json).
_LEAST = {
    "outbound_queue_capacity": 16,
    "max_frame_messages": 1,
    "max_frame_bytes": 1024,
    "delivery_queue_capacity": 1,
}

# Durations may also be given in seconds (a number or a timedelta) under these names; they are
# stored in the ``*_ms`` fields, which stay because the LOOM_*_MS variables and the options
# vectors are shared by the three SDKs (docs/python.md, "Units").
SECONDS_ALIASES = {
    "heartbeat": "heartbeat_ms",
    "reconnect_initial": "reconnect_initial_ms",
    "reconnect_max": "reconnect_max_ms",
    "restart_settle": "restart_settle_ms",
    "connect_timeout": "connect_timeout_ms",
    "request_timeout": "request_timeout_ms",
    "call_timeout": "call_timeout_ms",
    "drain_timeout": "drain_timeout_ms",
}


def _ms_from_seconds(alias: str, value: Any) -> int:
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise InvalidParamsError(
            f"{alias} must be seconds (a number or a timedelta); got {value!r}.", path="/" + alias
        )
    if alias == "restart_settle" and seconds == -1:
        return -1
    if not seconds >= 0:
        raise InvalidParamsError(
            f"{alias} must be a non-negative number of seconds; got {value!r}.", path="/" + alias
        )
    return int(round(seconds * 1000))


def _apply_aliases(values: Dict[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for name, value in values.items():
        field_name = SECONDS_ALIASES.get(name)
        if field_name is None:
            out[name] = value
        elif value is not None:
            if values.get(field_name) is not None:
                raise InvalidParamsError(f"Give {name} (seconds) or {field_name}, not both.", path="/" + name)
            out[field_name] = _ms_from_seconds(name, value)
    return out


@dataclass(frozen=True)
class Config:
    """Settings of a :class:`~loom.Connection`. Duration fields end in ``_ms`` (milliseconds,
    like their ``LOOM_*_MS`` variables); :meth:`load`, :meth:`replace` and :func:`loom.connect`
    also take them in seconds (a number or a timedelta) without the suffix (``request_timeout=2.5``),
    and the properties of those names read them back in seconds.

    Precedence: keyword arguments, then ``LOOM_<FIELD NAME IN CAPITALS>`` environment variables
    (e.g. ``LOOM_URL``, ``LOOM_AGENT_ID``, ``LOOM_HEARTBEAT_MS``), then these defaults.
    ``LOOM_METADATA`` is ``key=value,key2=value2``.
    """

    url: str = "http://127.0.0.1:7070"
    """The bridge's gRPC address (``http://host:port`` or ``host:port``)."""
    agent_id: str = ""
    """Stable agent id, kept across reconnects; empty: ``<name>-<8 hex>``, fixed for the connection."""
    name: str = "python-agent"
    """Display name (and the stem of a generated agent id)."""
    namespace: str = ""
    """The agent's namespace (its default memory namespace); empty: ``default``."""
    metadata: Mapping[str, str] = field(default_factory=dict)
    """Free key/values sent with the registration."""
    heartbeat_ms: int = 0
    """Heartbeat interval asked of the bridge (clamped by it to 100..60000); 0: the bridge's default."""
    reconnect_initial_ms: int = 100
    """First reconnect delay; doubles per failed attempt."""
    reconnect_max_ms: int = 5000
    """Largest reconnect delay."""
    reconnect_jitter: float = 0.2
    """Random spread of each reconnect delay (0.2 = +/-20 %)."""
    restart_settle_ms: int = -1
    """After a reconnect to a bridge that restarted (it no longer knew this agent), how long to
    hold what was queued during the outage, so other agents re-subscribe before it is sent (on the
    ephemeral bus an event nobody is subscribed to is gone). -1: automatic, the longest a peer
    with the same reconnect settings can still be waiting to retry (twice the outage plus the first
    delay, at most ``reconnect_max_ms``, plus the jitter); 0: no hold."""
    connect_timeout_ms: int = 10000
    """Bound of one RegisterAgent + open-stream attempt."""
    request_timeout_ms: int = 10000
    """Default timeout of ``request`` and bound of subscribe acks and memory answers."""
    call_timeout_ms: int = 30000
    """Default timeout of ``invoke``/``tool``."""
    outbound_queue_capacity: int = 8192
    """Messages waiting to be written; a full queue makes senders wait (backpressure)."""
    max_frame_messages: int = 1024
    """Most messages in one outbound frame (also capped by the bridge's max_batch_messages)."""
    max_frame_bytes: int = 1024 * 1024
    """Byte budget of one outbound frame."""
    delivery_queue_capacity: int = 8192
    """Local queue of each subscription between the reader and the handler."""
    drain_timeout_ms: int = 5000
    """Bound of ``close()``/``drain()``: finishing calls, flushing writes, closing the stream."""
    sdk: str = "loom-python/" + SDK_VERSION
    """The ``sdk`` registration field."""
    tls_ca: str = ""
    """CA bundle (PEM file) the bridge's certificate must chain to; also turns TLS on for an
    ``http://`` url. Empty: an ``https://`` url is checked against grpcio's default roots."""
    tls_cert: str = ""
    """Client certificate (PEM file) for a bridge that asks for one (mutual TLS). Needs ``tls_key``."""
    tls_key: str = ""
    """The private key (PEM file) of ``tls_cert``."""
    token: str = ""
    """Bearer token (``loom token create``) sent with every call; only over TLS or to a loopback address."""

    @classmethod
    def load(cls, env: Optional[Mapping[str, str]] = None, **overrides: Any) -> "Config":
        """Defaults, then ``LOOM_*`` variables from ``env`` (default ``os.environ``), then the
        keyword arguments that are not None."""
        environ = os.environ if env is None else env
        values: Dict[str, Any] = {}
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name, f in fields.items():
            raw = environ.get("LOOM_" + name.upper())
            if raw is None or raw == "":
                continue
            values[name] = _parse(name, f.type, raw)
        for name, value in _apply_aliases(overrides).items():
            if name not in fields:
                raise InvalidParamsError(
                    f"Unknown option {name!r}; valid options: "
                    f"{', '.join(sorted(list(fields) + list(SECONDS_ALIASES)))}.",
                    path="/" + name,
                )
            if value is not None:
                values[name] = value
        config = cls(**values)
        config.validate()
        return config

    def replace(self, **changes: Any) -> "Config":
        config = dataclasses.replace(self, **_apply_aliases(changes))
        config.validate()
        return config

    def validate(self) -> None:
        if not self.url:
            raise InvalidParamsError("The bridge url is empty; pass url=... or set LOOM_URL.", path="/url")
        if self.agent_id and not _AGENT_ID.match(self.agent_id):
            raise InvalidParamsError(
                f"agent_id {self.agent_id!r} is invalid: use 1-128 characters from A-Z a-z 0-9 _ . : -.",
                path="/agent_id",
            )
        for name in (
            "heartbeat_ms",
            "reconnect_initial_ms",
            "reconnect_max_ms",
            "connect_timeout_ms",
            "request_timeout_ms",
            "call_timeout_ms",
            "drain_timeout_ms",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise InvalidParamsError(
                    f"{name} must be a non-negative integer (ms); got {value!r}.", path="/" + name
                )
        for name, least in _LEAST.items():
            value = getattr(self, name)
            if not isinstance(value, int) or value < least:
                raise InvalidParamsError(
                    f"{name} must be an integer of at least {least}; got {value!r}.", path="/" + name
                )
        if bool(self.tls_cert) != bool(self.tls_key):
            raise InvalidParamsError(
                "A client certificate needs its key: give both tls_cert (LOOM_TLS_CERT) and tls_key "
                "(LOOM_TLS_KEY), or neither.",
                path="/tls_key",
            )
        if not isinstance(self.restart_settle_ms, int) or self.restart_settle_ms < -1:
            raise InvalidParamsError(
                f"restart_settle_ms must be -1 (automatic), 0 (no hold) or a positive number of ms; got "
                f"{self.restart_settle_ms!r}.",
                path="/restart_settle_ms",
            )
        if not 0 <= self.reconnect_jitter <= 1:
            raise InvalidParamsError(
                f"reconnect_jitter must be between 0 and 1; got {self.reconnect_jitter!r}.",
                path="/reconnect_jitter",
            )

    # -- the durations in seconds --------------------------------------------------------------
    @property
    def heartbeat(self) -> float:
        return self.heartbeat_ms / 1000.0

    @property
    def reconnect_initial(self) -> float:
        return self.reconnect_initial_ms / 1000.0

    @property
    def reconnect_max(self) -> float:
        return self.reconnect_max_ms / 1000.0

    @property
    def restart_settle(self) -> float:
        """Seconds; -1.0 is automatic."""
        return -1.0 if self.restart_settle_ms < 0 else self.restart_settle_ms / 1000.0

    @property
    def connect_timeout(self) -> float:
        return self.connect_timeout_ms / 1000.0

    @property
    def request_timeout(self) -> float:
        return self.request_timeout_ms / 1000.0

    @property
    def call_timeout(self) -> float:
        return self.call_timeout_ms / 1000.0

    @property
    def drain_timeout(self) -> float:
        return self.drain_timeout_ms / 1000.0

    @property
    def tls(self) -> bool:
        """True when the connection uses TLS: an ``https://`` url, or a CA or client certificate given."""
        return self.url.startswith("https://") or bool(self.tls_ca) or bool(self.tls_cert)

    def __repr__(self) -> str:  # the token stays out of logs and tracebacks
        fields = ", ".join(
            f"{f.name}={'***' if f.name == 'token' and self.token else repr(getattr(self, f.name))}"
            for f in dataclasses.fields(self)
        )
        return f"Config({fields})"

    @property
    def target(self) -> str:
        """``host:port`` for grpcio."""
        url = self.url
        for prefix in ("http://", "https://", "grpc://", "h2c://"):
            if url.startswith(prefix):
                url = url[len(prefix) :]
        return url.rstrip("/")


def _parse(name: str, type_name: Any, raw: str) -> Any:
    var = "LOOM_" + name.upper()
    text = str(type_name)
    try:
        if text == "int":
            return int(raw)
        if text == "float":
            return float(raw)
    except ValueError:
        raise InvalidParamsError(f"{var}={raw!r} is not a {text}.", path="/" + name) from None
    if "Mapping" in text:
        result: Dict[str, str] = {}
        for item in raw.split(","):
            if not item.strip():
                continue
            key, sep, value = item.partition("=")
            if not sep:
                raise InvalidParamsError(f"{var} entry {item!r} is not key=value.", path="/" + name)
            result[key.strip()] = value.strip()
        return result
    return raw
