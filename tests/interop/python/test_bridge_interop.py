"""Interop: the Loom bridge driven directly by the official Python client (grpcio 1.51).

What each test checks is the contract in proto/loom/v1/bridge.proto and docs/protocol.md.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
import urllib.request

import grpc
import pytest

from loom_interop import (
    ERROR_CODE_TRAILER,
    AgentStream,
    describe,
    now_ms,
    register,
    trailer,
    uid,
)

FOUR_MIB = 4 * 1024 * 1024


def _health_check(channel, pb, service: str, timeout: float = 5.0):
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=pb.health.HealthCheckRequest.SerializeToString,
        response_deserializer=pb.health.HealthCheckResponse.FromString,
    )
    return check(pb.health.HealthCheckRequest(service=service), timeout=timeout)


def _provider(stub, pb, capability: str, input_schema: str = "{}"):
    return register(
        stub,
        pb,
        capabilities=[
            pb.bridge.CapabilityDescriptor(
                name=capability,
                version="1.0.0",
                description="interop test capability",
                input_schema_json=input_schema,
            )
        ],
    )


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["", "loom.v1.Bridge"])
def test_health_check_serving(channel, pb, service):
    resp = _health_check(channel, pb, service)
    assert resp.status == pb.health.HealthCheckResponse.SERVING


def test_healthz_http_port(bridge):
    if not bridge.http:
        pytest.skip("no HTTP address known (LOOM_BRIDGE_HTTP_ADDR not set)")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{bridge.http}/healthz", timeout=5) as resp:
        assert resp.status == 200


def test_register_agent(stub, pb):
    agent_id = f"interop-py-{uid()}"
    pattern = f"interop.reg.{uid()}.>"
    resp = register(stub, pb, agent_id=agent_id, subscriptions=[pb.bridge.Subscription(pattern=pattern)])
    assert resp.session_id
    assert resp.agent_id == agent_id
    assert resp.heartbeat_interval_ms > 0
    assert resp.limits.max_message_bytes == FOUR_MIB
    assert [s.pattern for s in resp.subscriptions] == [pattern]
    assert resp.subscriptions[0].subscription_id, "subscriptions come back with ids assigned"
    assert resp.reconnected is False

    again = register(stub, pb, agent_id=agent_id, subscriptions=[pb.bridge.Subscription(pattern=pattern)])
    assert again.agent_id == agent_id
    assert again.reconnected is True, "re-registering a known agent id reports reconnected"
    assert again.session_id


def test_event_stream_10000_messages_in_order(stub, pb):
    n = 10_000
    topic = f"interop.seq.{uid()}"
    batch = pb.bridge.QOS_CLASS_BATCH  # blocks when full: no drop can hide an ordering bug
    reg = register(stub, pb, subscriptions=[pb.bridge.Subscription(pattern=topic, qos=batch)])
    sub_id = reg.subscriptions[0].subscription_id if reg.subscriptions else None

    deadline = time.monotonic() + 45
    with AgentStream(stub, pb, reg.session_id, timeout=60) as stream:
        for i in range(n):
            stream.send(
                pb.bridge.ClientMessage(
                    publish=pb.bridge.Envelope(
                        id=f"{reg.agent_id}-{i}",
                        topic=topic,
                        qos=batch,
                        content_type="text/plain",
                        payload=str(i).encode(),
                    )
                )
            )
        for expected in range(n):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"only {expected} of {n} deliveries arrived within 45s"
            d = stream.next("deliver", timeout=remaining, what=f"delivery #{expected}")
            got = int(d.envelope.payload.decode())
            assert got == expected, f"delivery #{expected} carried payload {got}: out of order or lost"
            if expected == 0:
                assert d.envelope.topic == topic
                assert d.envelope.sender == reg.agent_id, "sender is set by the bridge from the session"
                if sub_id:
                    assert d.subscription_id == sub_id
        assert not stream.errors, f"ErrorReplies during publish: {stream.errors[:3]}"


def test_error_status_with_non_ascii_message(stub, pb):
    pattern = "météo.>.x"
    with pytest.raises(grpc.RpcError) as info:
        register(stub, pb, subscriptions=[pb.bridge.Subscription(pattern=pattern)])
    err = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, describe(err)
    assert pattern in (err.details() or ""), f"details {err.details()!r} do not echo {pattern!r}"
    assert trailer(err, ERROR_CODE_TRAILER) == "INVALID_PARAMS", describe(err)


def _assert_still_serving(channel, pb):
    """The bridge process survived what the test did (a crash shows up as UNAVAILABLE here)."""
    try:
        status = _health_check(channel, pb, "").status
    except grpc.RpcError as err:
        raise AssertionError(f"the bridge stopped serving: {describe(err)}") from err
    assert status == pb.health.HealthCheckResponse.SERVING


def test_forward_action_deadline_exceeded_cancels_provider(stub, pb, channel):
    capability = f"interop.slow.{uid()}"
    provider = _provider(stub, pb, capability)
    with AgentStream(stub, pb, provider.session_id) as ps:
        ps.subscribe(f"interop.ready.{uid()}")  # the stream is attached before the call
        req = pb.bridge.ForwardActionRequest(
            call=pb.bridge.ActionCall(call_id=f"dl-{uid()}", capability=capability, input_json=b'{"n":1}')
        )
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            stub.ForwardAction(req, timeout=0.3)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, describe(info.value)
        assert time.monotonic() - started < 5

        pushed = ps.next("call", lambda c: c.capability == capability, timeout=5, what="the pushed ActionCall")
        assert pushed.call_id
        ps.next(
            "cancel", lambda c: c.call_id == pushed.call_id, timeout=5,
            what=f"CancelCall for call_id={pushed.call_id}",
        )
    _assert_still_serving(channel, pb)


def test_forward_action_client_cancel_cancels_provider(stub, pb, channel):
    capability = f"interop.hang.{uid()}"
    provider = _provider(stub, pb, capability)
    with AgentStream(stub, pb, provider.session_id) as ps:
        ps.subscribe(f"interop.ready.{uid()}")
        req = pb.bridge.ForwardActionRequest(
            call=pb.bridge.ActionCall(call_id=f"cc-{uid()}", capability=capability, input_json=b"{}")
        )
        future = stub.ForwardAction.future(req, timeout=30)
        pushed = ps.next("call", lambda c: c.capability == capability, timeout=5, what="the pushed ActionCall")
        assert not future.done(), f"ForwardAction finished before cancel: {future.exception()}"
        assert future.cancel()
        with pytest.raises(grpc.FutureCancelledError):
            future.result(timeout=5)
        assert future.code() == grpc.StatusCode.CANCELLED
        ps.next(
            "cancel", lambda c: c.call_id == pushed.call_id, timeout=5,
            what=f"CancelCall for call_id={pushed.call_id}",
        )
    _assert_still_serving(channel, pb)


def test_unknown_method_is_unimplemented(channel):
    raw = channel.unary_unary(
        "/loom.v1.Bridge/NoSuchMethod",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    with pytest.raises(grpc.RpcError) as info:
        raw(b"", timeout=5)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED, describe(info.value)


def test_oversized_request_is_resource_exhausted(stub, pb, channel):
    with pytest.raises(grpc.RpcError) as info:
        register(stub, pb, metadata={"blob": "x" * (5 * 1024 * 1024)}, timeout=15)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, describe(info.value)
    _assert_still_serving(channel, pb)  # the connection and the bridge survive it


def test_capability_round_trip(stub, pb):
    capability = f"interop.echo.{uid()}"
    schema = json.dumps(
        {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    )
    provider = _provider(stub, pb, capability, input_schema=schema)
    call_input = {"text": "héllo wörld ✓"}

    with AgentStream(stub, pb, provider.session_id) as ps, \
            concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        ps.subscribe(f"interop.ready.{uid()}")

        def answer():
            call = ps.next("call", lambda c: c.capability == capability, timeout=10, what="the pushed ActionCall")
            out = {"echo": json.loads(call.input_json.decode("utf-8")), "call_id": call.call_id}
            ps.send(
                pb.bridge.ClientMessage(
                    result=pb.bridge.ActionResult(
                        call_id=call.call_id,
                        output_json=json.dumps(out).encode("utf-8"),
                        provider=provider.agent_id,
                        duration_us=5,
                    )
                )
            )
            return call

        answered = pool.submit(answer)
        before = now_ms()
        resp = stub.ForwardAction(
            pb.bridge.ForwardActionRequest(
                call=pb.bridge.ActionCall(
                    call_id=f"rt-{uid()}",
                    capability=capability,
                    input_json=json.dumps(call_input).encode("utf-8"),
                )
            ),
            timeout=10,
        )
        call = answered.result(timeout=10)

    assert call.capability == capability
    assert json.loads(call.input_json) == call_input
    assert call.deadline_unix_ms >= before, "the bridge sets deadline_unix_ms on pushed calls"
    assert json.loads(resp.output_json) == {"echo": call_input, "call_id": call.call_id}
    assert resp.provider == provider.agent_id


def test_event_stream_unknown_session_is_unauthenticated(stub, pb):
    with AgentStream(stub, pb, f"no-such-session-{uid()}", timeout=10) as stream:
        status = stream.wait_end(10)
    assert isinstance(status, grpc.RpcError), f"stream ended with {describe(status)}"
    assert status.code() == grpc.StatusCode.UNAUTHENTICATED, describe(status)
    assert trailer(status, ERROR_CODE_TRAILER) == "SESSION_NOT_FOUND", describe(status)
