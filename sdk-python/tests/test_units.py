"""Seconds in the public API (docs/python.md, "Units"), and names that no longer shadow asyncio's."""

from __future__ import annotations

import asyncio
import datetime
import warnings

import pytest

import loom
from loom._errors import ErrorCode, error_for


def test_config_durations_in_seconds_are_stored_in_the_ms_fields() -> None:
    config = loom.Config.load(env={}, request_timeout=2.5, reconnect_max=datetime.timedelta(milliseconds=750))
    assert (config.request_timeout_ms, config.reconnect_max_ms) == (2500, 750)
    assert (config.request_timeout, config.reconnect_max, config.call_timeout) == (2.5, 0.75, 30.0)
    assert loom.Config.load(env={}, restart_settle=-1).restart_settle == -1.0
    assert config.replace(drain_timeout=1).drain_timeout_ms == 1000
    # The environment keeps its LOOM_*_MS variables.
    assert loom.Config.load(env={"LOOM_CALL_TIMEOUT_MS": "1500"}).call_timeout == 1.5


@pytest.mark.parametrize(
    "options, path",
    [
        ({"request_timeout": -1}, "/request_timeout"),
        ({"request_timeout": "soon"}, "/request_timeout"),
        ({"request_timeout": 1, "request_timeout_ms": 1000}, "/request_timeout"),
        ({"heartbeat": True}, "/heartbeat"),
    ],
)
def test_bad_seconds_are_clear_errors(options: dict, path: str) -> None:
    with pytest.raises(loom.InvalidParamsError) as info:
        loom.Config.load(env={}, **options)
    assert info.value.path == path


def test_the_cancelled_code_is_call_cancelled_error_not_asyncio_s() -> None:
    error = error_for(ErrorCode.CANCELLED, "stopped")
    assert isinstance(error, loom.CallCancelledError) and isinstance(error, loom.LoomError)
    assert not isinstance(error, asyncio.CancelledError)
    assert "CancelledError" not in loom.__all__
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert loom.CancelledError is loom.CallCancelledError
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)


def test_durations_of_durable_options() -> None:
    from loom._streams import ms_of

    assert ms_of(1.5, "/ack_wait") == 1500
    assert ms_of(datetime.timedelta(seconds=2), "/ack_wait") == 2000
    assert ms_of(0.0001, "/ack_wait") == 1  # rounds up to the wire's smallest unit, never to "default"
    assert ms_of(None, "/ack_wait") == 0
    with pytest.raises(loom.InvalidParamsError) as info:
        ms_of(-1, "/ack_wait")
    assert info.value.path == "/ack_wait"
