"""Unit tests without a bridge: wire encoding, configuration, errors, topics, events."""

from __future__ import annotations

import dataclasses

import pytest

import loom
from loom import _wire
from loom._errors import ErrorCode, error_for, from_proto
from loom._proto import bridge_pb2 as pb


def frame_of(*items: bytes) -> pb.ClientFrame:
    return pb.ClientFrame.FromString(b"".join(items))


def test_publish_item_matches_the_protobuf_runtime() -> None:
    prefix = _wire.topic_prefix("orders.eu.created", "application/json")
    payload = b"x" * 20000  # a length over two varint bytes
    item = _wire.publish_item(
        "id-1",
        prefix,
        payload,
        thread_id="t1",
        correlation_id="c1",
        reply_to="_inbox.a.1",
        ttl_ms=1500,
        qos=3,
        headers={"k": "v", "ü": "ß"},
        traceparent="00-abc-def-01",
        tracestate="x=1",
    )
    env = frame_of(item, item).messages[1].publish
    assert (env.id, env.topic, env.content_type, env.payload) == (
        "id-1",
        "orders.eu.created",
        "application/json",
        payload,
    )
    assert (env.thread_id, env.correlation_id, env.reply_to, env.ttl_ms, env.qos) == (
        "t1",
        "c1",
        "_inbox.a.1",
        1500,
        3,
    )
    assert dict(env.headers) == {"k": "v", "ü": "ß"}
    assert (env.traceparent, env.tracestate) == ("00-abc-def-01", "x=1")


def test_result_item_round_trips() -> None:
    ok = _wire.result_item("b1", "prov", 1234, b'{"a":1}', None)
    err = _wire.result_item("b2", "prov", 5, None, loom.InvalidParamsError("bad", path="/a").to_proto())
    frame = frame_of(ok, err)
    r1, r2 = frame.messages[0].result, frame.messages[1].result
    assert (r1.call_id, r1.output_json, r1.provider, r1.duration_us) == ("b1", b'{"a":1}', "prov", 1234)
    assert (
        r2.WhichOneof("outcome") == "error"
        and r2.error.path == "/a"
        and r2.error.code == pb.ERROR_CODE_INVALID_PARAMS
    )


def test_config_keywords_override_environment_and_defaults() -> None:
    env = {
        "LOOM_URL": "http://10.0.0.1:9",
        "LOOM_HEARTBEAT_MS": "250",
        "LOOM_METADATA": "a=1, b = 2",
        "LOOM_RECONNECT_JITTER": "0.5",
    }
    config = loom.Config.load(env=env, heartbeat_ms=300)
    assert config.url == "http://10.0.0.1:9" and config.target == "10.0.0.1:9"
    assert config.heartbeat_ms == 300 and config.reconnect_jitter == 0.5
    assert dict(config.metadata) == {"a": "1", "b": "2"}
    assert loom.Config.load(env={}).request_timeout_ms == 10000
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.url = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    "env, kwargs, path",
    [
        ({"LOOM_HEARTBEAT_MS": "soon"}, {}, "/heartbeat_ms"),
        ({}, {"agent_id": "has space"}, "/agent_id"),
        ({}, {"no_such_option": 1}, "/no_such_option"),
        ({}, {"reconnect_jitter": 2.0}, "/reconnect_jitter"),
    ],
)
def test_config_errors_name_the_option(env: dict, kwargs: dict, path: str) -> None:
    with pytest.raises(loom.InvalidParamsError) as info:
        loom.Config.load(env=env, **kwargs)
    assert info.value.path == path


def test_errors_map_every_code_and_carry_data() -> None:
    for code in ErrorCode:
        if code is ErrorCode.UNSPECIFIED:
            continue
        err = from_proto(pb.Error(code=code.number, message="m", path="/p", details={"k": "v"}))
        assert isinstance(err, loom.LoomError) and err.code is code
        assert (err.message, err.path, err.details) == ("m", "/p", {"k": "v"})
    assert isinstance(error_for(ErrorCode.TIMEOUT, "t"), loom.RequestTimeoutError)
    assert isinstance(error_for(ErrorCode.CAPABILITY_NOT_FOUND, "n"), loom.NotFoundError)
    assert error_for(ErrorCode.PROVIDER_UNAVAILABLE, "u").retryable
    assert from_proto(pb.Error(code=99, message="new")).code is ErrorCode.INTERNAL
    assert ErrorCode.parse("error_code_tool_error") is ErrorCode.TOOL_ERROR
    assert issubclass(loom.SchemaError, loom.InvalidParamsError)
    assert issubclass(loom.ConnectionClosedError, loom.UnavailableError)
    # A missing or bad credential: UNAUTHENTICATED (14), its own typed error, not retryable.
    unauthenticated = error_for(ErrorCode.UNAUTHENTICATED, "This bridge requires a credential")
    assert isinstance(unauthenticated, loom.UnauthenticatedError) and not unauthenticated.retryable
    assert (
        ErrorCode.UNAUTHENTICATED.number == 14
        and ErrorCode.parse("unauthenticated") is ErrorCode.UNAUTHENTICATED
    )
    assert "INVALID_PARAMS" in str(loom.InvalidParamsError("x", path="/a")) and "/a" in str(
        loom.InvalidParamsError("x", path="/a")
    )


@pytest.mark.parametrize("topic", ["", "a..b", "a.*", "a.>", "météo.x", ".a", "a."])
def test_invalid_topics_are_refused(topic: str) -> None:
    with pytest.raises(loom.InvalidParamsError):
        loom._topics.validate_topic(topic)


@pytest.mark.parametrize(
    "pattern, ok", [("a.*.c", True), ("a.>", True), (">", True), ("a.>.b", False), ("a*", False), ("", False)]
)
def test_patterns(pattern: str, ok: bool) -> None:
    if ok:
        loom._topics.validate_pattern(pattern)
    else:
        with pytest.raises(loom.InvalidParamsError):
            loom._topics.validate_pattern(pattern)


def test_matches() -> None:
    assert loom.matches("orders.*.created", "orders.eu.created")
    assert not loom.matches("orders.*.created", "orders.eu.x.created")
    assert loom.matches("orders.>", "orders.eu.created") and not loom.matches("orders.>", "orders")
    assert loom.matches(">", "a")


def test_event_view() -> None:
    env = pb.Envelope(
        id="e1",
        topic="a.b",
        sender="s",
        thread_id="t",
        correlation_id="c",
        reply_to="r",
        ttl_ms=5,
        hop_count=2,
        payload=b'{"x":1}',
        headers={"h": "1"},
    )
    event = loom.Event.from_proto(env, "sub")
    assert event.data == {"x": 1} and event.json() == {"x": 1} and event.hop == 2 and event.is_request
    assert (event.thread_id, event.correlation_id, event.sender, event.ttl_ms, event.headers) == (
        "t",
        "c",
        "s",
        5,
        {"h": "1"},
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.topic = "x"  # type: ignore[misc]
    with pytest.raises(loom.InvalidParamsError):
        loom.Event("a", b"not json").json()
    assert loom.Envelope is loom.Event
