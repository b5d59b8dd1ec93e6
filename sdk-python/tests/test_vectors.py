"""Conformance vectors (tests/vectors/*.json, shared with the .NET and TypeScript suites): topic
validity and matching, error codes and statuses, frame bytes, option defaults and bounds.
Each vector is its own test case; a missing vectors folder fails the module."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
from google.protobuf import json_format

import loom
from loom import _errors, _topics, _wire
from loom._errors import ErrorCode
from loom._proto import bridge_pb2 as pb

VECTORS = Path(__file__).resolve().parents[2] / "tests" / "vectors"


def load(name: str) -> Dict[str, Any]:
    path = VECTORS / name
    if not path.is_file():
        raise FileNotFoundError(f"The conformance vectors file {path} is missing; the suites must run it.")
    with path.open(encoding="utf-8") as f:
        data: Dict[str, Any] = json.load(f)
    return data


TOPICS = load("topics.json")
ERRORS = load("errors.json")
FRAMES = load("frames.json")
OPTIONS = load("options.json")


def cases(items: List[Dict[str, Any]], key: str = "name") -> Any:
    return pytest.mark.parametrize("case", items, ids=[str(item[key]) for item in items])


# ---------------------------------------------------------------- topics


@cases(TOPICS["topics"])
def test_topic(case: Dict[str, Any]) -> None:
    if case["valid"]:
        _topics.validate_topic(case["value"])
    else:
        with pytest.raises(loom.InvalidParamsError) as info:
            _topics.validate_topic(case["value"])
        assert info.value.code.value == TOPICS["error"]["code"]
        assert info.value.path == TOPICS["error"]["topic_path"]
        assert info.value.message


@cases(TOPICS["patterns"])
def test_pattern(case: Dict[str, Any]) -> None:
    if case["valid"]:
        _topics.validate_pattern(case["value"])
    else:
        with pytest.raises(loom.InvalidParamsError) as info:
            _topics.validate_pattern(case["value"])
        assert info.value.code.value == TOPICS["error"]["code"]
        assert info.value.path == TOPICS["error"]["pattern_path"]
        assert info.value.message


@cases(TOPICS["matches"])
def test_match(case: Dict[str, Any]) -> None:
    assert loom.matches(case["pattern"], case["topic"]) is case["match"]


# ---------------------------------------------------------------- errors

CODES = [c for c in ERRORS["codes"] if "exception" in c]


@cases(ERRORS["codes"], "code")
def test_error_code_number_and_status(case: Dict[str, Any]) -> None:
    code = ErrorCode(case["code"])
    assert code.number == case["number"]
    assert pb.ErrorCode.Name(case["number"]) == "ERROR_CODE_" + case["code"]
    # Python has no code -> status table of its own (only the bridge sends statuses); the
    # reverse mapping is checked by test_error_from_status.


@cases(CODES, "code")
def test_error_type(case: Dict[str, Any]) -> None:
    code = ErrorCode(case["code"])
    expected = case["exception"]["python"]
    made = _errors.error_for(code, "m")
    assert type(made).__name__ == expected
    assert isinstance(made, loom.LoomError) and made.code is code
    assert made.retryable is case["retryable"]
    assert getattr(loom, expected) is type(made), f"loom.{expected} is not exported"
    parsed = _errors.from_proto(pb.Error(code=case["number"], message="m"))  # type: ignore[arg-type]
    assert type(parsed).__name__ == expected and parsed.code is code and parsed.retryable is case["retryable"]


@cases(ERRORS["from_error"])
def test_error_from_error_message(case: Dict[str, Any]) -> None:
    error = _errors.from_proto(pb.Error(code=case["number"], message="m"))  # type: ignore[arg-type]
    assert error.code.value == case["code"]
    assert type(error).__name__ == next(c["exception"]["python"] for c in CODES if c["code"] == case["code"])


class _Status:
    def __init__(self, name: str) -> None:
        self.name = name


class _RpcError(Exception):
    """Duck-types grpc.aio.AioRpcError (code(), details(), trailing_metadata())."""

    def __init__(self, status: str, trailers: Dict[str, str]) -> None:
        super().__init__(status)
        self._status = _Status(status)
        self._trailers: Tuple[Tuple[str, str], ...] = tuple(trailers.items())

    def code(self) -> _Status:
        return self._status

    def details(self) -> str:
        return "detail"

    def trailing_metadata(self) -> Tuple[Tuple[str, str], ...]:
        return self._trailers


@cases(ERRORS["from_status"])
def test_error_from_status(case: Dict[str, Any]) -> None:
    error = _errors.from_rpc_error(_RpcError(case["grpc_status"], case.get("trailers", {})), "127.0.0.1:1")
    assert error.code.value == case["code"]
    assert error.path == case.get("path", "")
    assert type(error).__name__ == next(c["exception"]["python"] for c in CODES if c["code"] == case["code"])


@cases(ERRORS["names"], "text")
def test_error_code_name(case: Dict[str, Any]) -> None:
    parsed = ErrorCode.parse(case["text"])
    assert (parsed.value if parsed is not None else None) == case["code"]


# ---------------------------------------------------------------- frames


def message_of(case: Dict[str, Any]) -> Any:
    type_name = case["type"].rsplit(".", 1)[1]
    message = getattr(pb, type_name)()
    json_format.Parse(json.dumps(case["json"]), message)
    return message


@cases(FRAMES["cases"])
def test_frame_bytes(case: Dict[str, Any]) -> None:
    message = message_of(case)
    expected = bytes.fromhex(case["hex"])
    assert message.SerializeToString(deterministic=True).hex() == case["hex"]
    decoded = type(message).FromString(expected)
    assert decoded == message
    assert decoded.SerializeToString(deterministic=True) == expected


def hand_item(message: pb.ClientMessage) -> bytes:
    """The SDK's hand encoding of one ClientFrame item (publishes and results), else the runtime's."""
    kind = message.WhichOneof("kind")
    if kind == "publish":
        e = message.publish
        return _wire.publish_item(
            e.id,
            _wire.topic_prefix(e.topic, e.content_type),
            e.payload,
            thread_id=e.thread_id,
            correlation_id=e.correlation_id,
            reply_to=e.reply_to,
            ttl_ms=e.ttl_ms,
            qos=e.qos,
            headers=dict(e.headers),
            traceparent=e.traceparent,
            tracestate=e.tracestate,
        )
    if kind == "result":
        r = message.result
        outcome = r.WhichOneof("outcome")
        return _wire.result_item(
            r.call_id,
            r.provider,
            r.duration_us,
            r.output_json if outcome == "output_json" else None,
            r.error if outcome == "error" else None,
        )
    return _wire.item_of(message)


CLIENT_FRAMES = [c for c in FRAMES["cases"] if c["type"] == "loom.v1.ClientFrame"]


@cases(CLIENT_FRAMES)
def test_hand_encoder_client_frame(case: Dict[str, Any]) -> None:
    # The hand encoder writes topic and content type first and always writes a result's provider
    # and duration, so its bytes may differ from the canonical ones; what it means must not.
    frame = message_of(case)
    encoded = b"".join(hand_item(m) for m in frame.messages)
    assert pb.ClientFrame.FromString(encoded) == frame


# ---------------------------------------------------------------- options


def option_cases() -> List[Dict[str, Any]]:
    return list(OPTIONS["options"])


def python_default(case: Dict[str, Any]) -> Any:
    sdk = case["sdk"]["python"]
    return sdk.get("default", case["default"])


@cases(option_cases())
def test_option_default(case: Dict[str, Any]) -> None:
    name = case["sdk"]["python"]["option"]
    assert getattr(loom.Config(), name) == python_default(case)


def bound_values(case: Dict[str, Any]) -> Tuple[List[Any], List[Any]]:
    """(accepted, rejected) values at the bounds."""
    least = case["min"]
    most: Optional[float] = case.get("max")
    if case["unit"] == "fraction":
        accepted = [least, most]
        rejected = [least - 0.1] + ([most + 0.1] if most is not None else [])
    else:
        accepted = [least, least + 1]
        rejected = [least - 1]
        if most is not None:
            accepted.append(most)
            rejected.append(most + 1)
    return accepted, rejected


@cases(option_cases())
def test_option_bounds(case: Dict[str, Any]) -> None:
    name = case["sdk"]["python"]["option"]
    accepted, rejected = bound_values(case)
    for value in accepted:
        assert getattr(loom.Config(**{name: value}).replace(), name) == value
    for value in rejected:
        with pytest.raises(loom.InvalidParamsError) as info:
            loom.Config.load({}, **{name: value})
        assert info.value.path == "/" + name
