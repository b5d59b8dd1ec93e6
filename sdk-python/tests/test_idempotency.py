"""Idempotent calls (``idempotency_key=``) against a real bridge."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, Dict, List

import pytest

import loom
from conftest import Bridge

T = 20.0  # per-await bound


async def connect(bridge: Bridge, **options: Any) -> loom.Connection:
    options.setdefault("name", "pytest-idem")
    return await asyncio.wait_for(loom.connect(bridge.url, **options), T)  # type: ignore[no-any-return]


async def test_the_same_key_invokes_the_provider_once_and_a_new_key_again(bridge: Bridge) -> None:
    name = f"py.ticket.{uuid.uuid4().hex[:8]}"
    calls: List[str] = []

    @loom.capability(name)
    async def ticket(item: str) -> Dict[str, Any]:
        calls.append(item)
        return {"ticket": len(calls), "item": item}

    provider = await connect(bridge, capabilities=[ticket])
    caller = await connect(bridge)
    try:
        first = await caller.invoke(name, {"item": "tea"}, timeout=T, idempotency_key="order-1")
        again = await caller.invoke(name, {"item": "tea"}, timeout=T, idempotency_key="order-1")
        assert first == {"ticket": 1, "item": "tea"}
        assert again == first
        assert calls == ["tea"]

        other = await caller.invoke(name, {"item": "tea"}, timeout=T, idempotency_key="order-2")
        assert other == {"ticket": 2, "item": "tea"}
        assert len(calls) == 2

        # invoke_raw takes the key too; the input is compared as the bytes sent.
        raw = await caller.invoke_raw(name, b'{"item": "tea"}', timeout=T, idempotency_key="order-3")
        raw_again = await caller.invoke_raw(name, b'{"item": "tea"}', timeout=T, idempotency_key="order-3")
        assert json.loads(raw) == {"ticket": 3, "item": "tea"} and raw_again == raw
        assert len(calls) == 3

        with pytest.raises(loom.InvalidParamsError) as mismatch:
            await caller.invoke(name, {"item": "coffee"}, timeout=T, idempotency_key="order-1")
        assert "different input" in mismatch.value.message
        with pytest.raises(loom.InvalidParamsError) as too_long:
            await caller.invoke(name, {"item": "tea"}, timeout=T, idempotency_key="k" * 129)
        assert "idempotency_key" in too_long.value.message and "128" in too_long.value.message
        assert len(calls) == 3
    finally:
        await asyncio.gather(provider.close(), caller.close())
