"""Namespaced key-value memory with TTL, held by the bridge."""

from __future__ import annotations

import json as _json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, List, Optional

from ._errors import InvalidParamsError
from ._proto import bridge_pb2 as pb
from ._schema import to_json_bytes

if TYPE_CHECKING:
    from ._connection import Connection


@dataclass(frozen=True)
class MemoryItem:
    """One entry: ``value`` bytes, ``version`` (increases on every write), expiry (0 = never)."""

    key: str
    value: bytes
    version: int
    expires_unix_ms: int = 0

    @property
    def text(self) -> str:
        return self.value.decode("utf-8")

    def json(self) -> Any:
        return _json.loads(self.value) if self.value else None

    @classmethod
    def from_proto(cls, entry: pb.MemoryEntry) -> "MemoryItem":
        return cls(entry.key, entry.value, entry.version, entry.expires_unix_ms)


@dataclass(frozen=True)
class CasResult:
    """Outcome of :meth:`Memory.compare_and_set`: whether it swapped, and the entry as it is now."""

    swapped: bool
    item: Optional[MemoryItem]


def _value_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return to_json_bytes(value)


def _ttl_ms(ttl: Optional[float]) -> int:
    if ttl is None:
        return 0
    if ttl <= 0:
        raise InvalidParamsError(
            f"A time to live must be positive; got {ttl!r} s. Pass None for no expiry.", path="/ttl_ms"
        )
    return max(1, math.ceil(ttl * 1000))


class Memory:
    """Key-value memory in one namespace (the agent's own by default). Values are bytes;
    anything else is stored as JSON. ``ttl`` is in seconds. Errors are typed: INVALID_PARAMS
    for a bad key, RESOURCE_EXHAUSTED when a value or the namespace is too large."""

    def __init__(self, connection: "Connection", namespace: str = "") -> None:
        self._conn = connection
        self._ns = namespace

    @property
    def namespace(self) -> str:
        return self._ns or self._conn.namespace

    def with_namespace(self, namespace: str) -> "Memory":
        """A view of another namespace."""
        if not namespace:
            raise InvalidParamsError("The namespace is empty.", path="/namespace")
        return Memory(self._conn, namespace)

    async def _run(self, request: pb.MemoryRequest, timeout: Optional[float]) -> pb.MemoryResponse:
        request.namespace = self._ns
        return await self._conn._memory_request(request, timeout)

    async def get(self, key: str, *, timeout: Optional[float] = None) -> Optional[MemoryItem]:
        """The entry, or None when the key is absent or expired."""
        response = await self._run(pb.MemoryRequest(get=pb.MemoryGet(key=key)), timeout)
        if response.found and response.entries:
            return MemoryItem.from_proto(response.entries[0])
        return None

    async def get_json(self, key: str, default: Any = None, *, timeout: Optional[float] = None) -> Any:
        """The value parsed as JSON, or ``default`` when absent."""
        item = await self.get(key, timeout=timeout)
        return default if item is None else item.json()

    async def set(
        self, key: str, value: Any, *, ttl: Optional[float] = None, timeout: Optional[float] = None
    ) -> MemoryItem:
        """Writes the value (replacing any), expiring after ``ttl`` seconds if given."""
        data = _value_bytes(value)
        response = await self._run(
            pb.MemoryRequest(set=pb.MemorySet(key=key, value=data, ttl_ms=_ttl_ms(ttl))), timeout
        )
        if response.entries:
            return MemoryItem.from_proto(response.entries[0])
        return MemoryItem(key, data, 0, 0)

    async def delete(self, key: str, *, timeout: Optional[float] = None) -> bool:
        """Deletes the key; True when it existed."""
        response = await self._run(pb.MemoryRequest(delete=pb.MemoryDelete(key=key)), timeout)
        return response.found

    async def list(
        self, prefix: str = "", limit: int = 1000, *, timeout: Optional[float] = None
    ) -> List[MemoryItem]:
        """Entries whose key starts with ``prefix``, in ordinal key order, at most ``limit``."""
        if limit <= 0:
            raise InvalidParamsError(f"limit must be positive; got {limit}.", path="/limit")
        response = await self._run(pb.MemoryRequest(list=pb.MemoryList(prefix=prefix, limit=limit)), timeout)
        return [MemoryItem.from_proto(e) for e in response.entries]

    async def compare_and_set(
        self,
        key: str,
        expected_version: int,
        value: Any,
        *,
        ttl: Optional[float] = None,
        timeout: Optional[float] = None,
    ) -> CasResult:
        """Writes only if the key is at ``expected_version`` (0: only if it does not exist)."""
        op = pb.MemoryCompareAndSet(
            key=key, expected_version=expected_version, value=_value_bytes(value), ttl_ms=_ttl_ms(ttl)
        )
        response = await self._run(pb.MemoryRequest(compare_and_set=op), timeout)
        item = MemoryItem.from_proto(response.entries[0]) if response.entries else None
        return CasResult(response.found, item)
