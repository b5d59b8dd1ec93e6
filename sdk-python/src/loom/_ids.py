"""Cheap ids unique per process and connection: a random prefix and a counter."""

from __future__ import annotations

import itertools
import re
import secrets


class IdGenerator:
    __slots__ = ("_prefix", "_counter")

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(4) + "-"
        self._counter = itertools.count(1)

    def next(self) -> str:
        return self._prefix + str(next(self._counter))


_BAD = re.compile(r"[^A-Za-z0-9_.:-]")


def new_agent_id(name: str) -> str:
    stem = _BAD.sub("-", name or "agent")[:100] or "agent"
    return f"{stem}-{secrets.token_hex(4)}"


def inbox_token(agent_id: str) -> str:
    """A topic token for an agent id (dots would add tokens)."""
    return agent_id.replace(".", "_")
