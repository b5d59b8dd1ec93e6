from . import bridge_pb2 as _bridge_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

COLLAB_OUTCOME_CANCELLED: CollabOutcome
COLLAB_OUTCOME_COMPLETED: CollabOutcome
COLLAB_OUTCOME_FAILED: CollabOutcome
COLLAB_OUTCOME_NO_BIDS: CollabOutcome
COLLAB_OUTCOME_NO_QUORUM: CollabOutcome
COLLAB_OUTCOME_PENDING: CollabOutcome
COLLAB_OUTCOME_TIMEOUT: CollabOutcome
COLLAB_OUTCOME_UNSPECIFIED: CollabOutcome
DESCRIPTOR: _descriptor.FileDescriptor
JOIN_STRATEGY_ALL: JoinStrategy
JOIN_STRATEGY_FIRST: JoinStrategy
JOIN_STRATEGY_FIRST_K: JoinStrategy
JOIN_STRATEGY_MAJORITY: JoinStrategy
JOIN_STRATEGY_UNSPECIFIED: JoinStrategy
SCORING_RULE_FASTEST: ScoringRule
SCORING_RULE_FIELD_MAX: ScoringRule
SCORING_RULE_FIELD_MIN: ScoringRule
SCORING_RULE_GIVEN: ScoringRule
SCORING_RULE_LOWEST_COST: ScoringRule
SCORING_RULE_UNSPECIFIED: ScoringRule

class Attempt(_message.Message):
    __slots__ = ["agent", "duration_ms", "error", "succeeded"]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    agent: str
    duration_ms: int
    error: _bridge_pb2.Error
    succeeded: bool
    def __init__(self, agent: _Optional[str] = ..., succeeded: bool = ..., error: _Optional[_Union[_bridge_pb2.Error, _Mapping]] = ..., duration_ms: _Optional[int] = ...) -> None: ...

class BarrierRequest(_message.Message):
    __slots__ = ["barrier_id", "count", "no_wait", "observe", "participant", "participants", "session_id", "thread_id", "timeout_ms"]
    BARRIER_ID_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    NO_WAIT_FIELD_NUMBER: _ClassVar[int]
    OBSERVE_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    THREAD_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    barrier_id: str
    count: int
    no_wait: bool
    observe: bool
    participant: str
    participants: _containers.RepeatedScalarFieldContainer[str]
    session_id: str
    thread_id: str
    timeout_ms: int
    def __init__(self, session_id: _Optional[str] = ..., barrier_id: _Optional[str] = ..., participant: _Optional[str] = ..., observe: bool = ..., participants: _Optional[_Iterable[str]] = ..., count: _Optional[int] = ..., timeout_ms: _Optional[int] = ..., thread_id: _Optional[str] = ..., no_wait: bool = ...) -> None: ...

class BarrierResult(_message.Message):
    __slots__ = ["arrived", "barrier_id", "elapsed_ms", "expected", "missing", "outcome"]
    ARRIVED_FIELD_NUMBER: _ClassVar[int]
    BARRIER_ID_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    arrived: _containers.RepeatedScalarFieldContainer[str]
    barrier_id: str
    elapsed_ms: int
    expected: int
    missing: _containers.RepeatedScalarFieldContainer[str]
    outcome: CollabOutcome
    def __init__(self, barrier_id: _Optional[str] = ..., outcome: _Optional[_Union[CollabOutcome, str]] = ..., arrived: _Optional[_Iterable[str]] = ..., missing: _Optional[_Iterable[str]] = ..., expected: _Optional[int] = ..., elapsed_ms: _Optional[int] = ...) -> None: ...

class Bid(_message.Message):
    __slots__ = ["bidder", "latency_ms", "payload", "reason", "score", "valid"]
    BIDDER_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    VALID_FIELD_NUMBER: _ClassVar[int]
    bidder: str
    latency_ms: int
    payload: bytes
    reason: str
    score: float
    valid: bool
    def __init__(self, bidder: _Optional[str] = ..., payload: _Optional[bytes] = ..., score: _Optional[float] = ..., valid: bool = ..., reason: _Optional[str] = ..., latency_ms: _Optional[int] = ...) -> None: ...

class ContractNetRequest(_message.Message):
    __slots__ = ["bid_timeout_ms", "bidders", "bids", "capability", "execution_timeout_ms", "input_json", "max_attempts", "max_bids", "op_id", "score_pointer", "scoring", "session_id", "task", "thread_id", "timeout_ms", "topic", "version"]
    BIDDERS_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    BID_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    MAX_BIDS_FIELD_NUMBER: _ClassVar[int]
    OP_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_POINTER_FIELD_NUMBER: _ClassVar[int]
    SCORING_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    THREAD_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    bid_timeout_ms: int
    bidders: _containers.RepeatedScalarFieldContainer[str]
    bids: _containers.RepeatedCompositeFieldContainer[Bid]
    capability: str
    execution_timeout_ms: int
    input_json: bytes
    max_attempts: int
    max_bids: int
    op_id: str
    score_pointer: str
    scoring: ScoringRule
    session_id: str
    task: bytes
    thread_id: str
    timeout_ms: int
    topic: str
    version: str
    def __init__(self, session_id: _Optional[str] = ..., op_id: _Optional[str] = ..., thread_id: _Optional[str] = ..., topic: _Optional[str] = ..., task: _Optional[bytes] = ..., capability: _Optional[str] = ..., input_json: _Optional[bytes] = ..., bid_timeout_ms: _Optional[int] = ..., max_bids: _Optional[int] = ..., scoring: _Optional[_Union[ScoringRule, str]] = ..., score_pointer: _Optional[str] = ..., execution_timeout_ms: _Optional[int] = ..., max_attempts: _Optional[int] = ..., timeout_ms: _Optional[int] = ..., bids: _Optional[_Iterable[_Union[Bid, _Mapping]]] = ..., version: _Optional[str] = ..., bidders: _Optional[_Iterable[str]] = ...) -> None: ...

class ContractNetResult(_message.Message):
    __slots__ = ["attempts", "bids", "elapsed_ms", "no_bid", "op_id", "outcome", "output_json", "thread_id", "winner"]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    NO_BID_FIELD_NUMBER: _ClassVar[int]
    OP_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    THREAD_ID_FIELD_NUMBER: _ClassVar[int]
    WINNER_FIELD_NUMBER: _ClassVar[int]
    attempts: _containers.RepeatedCompositeFieldContainer[Attempt]
    bids: _containers.RepeatedCompositeFieldContainer[Bid]
    elapsed_ms: int
    no_bid: _containers.RepeatedScalarFieldContainer[str]
    op_id: str
    outcome: CollabOutcome
    output_json: bytes
    thread_id: str
    winner: str
    def __init__(self, op_id: _Optional[str] = ..., thread_id: _Optional[str] = ..., outcome: _Optional[_Union[CollabOutcome, str]] = ..., bids: _Optional[_Iterable[_Union[Bid, _Mapping]]] = ..., attempts: _Optional[_Iterable[_Union[Attempt, _Mapping]]] = ..., winner: _Optional[str] = ..., output_json: _Optional[bytes] = ..., no_bid: _Optional[_Iterable[str]] = ..., elapsed_ms: _Optional[int] = ...) -> None: ...

class GatherRequest(_message.Message):
    __slots__ = ["agents", "capability", "compare_pointer", "content_type", "headers", "k", "op_id", "payload", "quorum", "session_id", "strategy", "thread_id", "timeout_ms", "topic", "version"]
    class HeadersEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    COMPARE_POINTER_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    OP_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    QUORUM_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    THREAD_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedScalarFieldContainer[str]
    capability: str
    compare_pointer: str
    content_type: str
    headers: _containers.ScalarMap[str, str]
    k: int
    op_id: str
    payload: bytes
    quorum: int
    session_id: str
    strategy: JoinStrategy
    thread_id: str
    timeout_ms: int
    topic: str
    version: str
    def __init__(self, session_id: _Optional[str] = ..., op_id: _Optional[str] = ..., thread_id: _Optional[str] = ..., topic: _Optional[str] = ..., capability: _Optional[str] = ..., version: _Optional[str] = ..., agents: _Optional[_Iterable[str]] = ..., payload: _Optional[bytes] = ..., content_type: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ..., strategy: _Optional[_Union[JoinStrategy, str]] = ..., k: _Optional[int] = ..., quorum: _Optional[int] = ..., compare_pointer: _Optional[str] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class GatherResult(_message.Message):
    __slots__ = ["agreed_value", "agreeing", "answered", "elapsed_ms", "expected", "failed", "op_id", "outcome", "quorum", "replies", "thread_id", "timed_out"]
    AGREED_VALUE_FIELD_NUMBER: _ClassVar[int]
    AGREEING_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    OP_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    QUORUM_FIELD_NUMBER: _ClassVar[int]
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    THREAD_ID_FIELD_NUMBER: _ClassVar[int]
    TIMED_OUT_FIELD_NUMBER: _ClassVar[int]
    agreed_value: bytes
    agreeing: _containers.RepeatedScalarFieldContainer[str]
    answered: _containers.RepeatedScalarFieldContainer[str]
    elapsed_ms: int
    expected: int
    failed: _containers.RepeatedScalarFieldContainer[str]
    op_id: str
    outcome: CollabOutcome
    quorum: int
    replies: _containers.RepeatedCompositeFieldContainer[Reply]
    thread_id: str
    timed_out: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, op_id: _Optional[str] = ..., outcome: _Optional[_Union[CollabOutcome, str]] = ..., replies: _Optional[_Iterable[_Union[Reply, _Mapping]]] = ..., answered: _Optional[_Iterable[str]] = ..., timed_out: _Optional[_Iterable[str]] = ..., failed: _Optional[_Iterable[str]] = ..., expected: _Optional[int] = ..., agreed_value: _Optional[bytes] = ..., agreeing: _Optional[_Iterable[str]] = ..., quorum: _Optional[int] = ..., elapsed_ms: _Optional[int] = ..., thread_id: _Optional[str] = ...) -> None: ...

class Reply(_message.Message):
    __slots__ = ["content_type", "envelope_id", "error", "headers", "latency_ms", "payload", "responder"]
    class HeadersEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    RESPONDER_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    envelope_id: str
    error: _bridge_pb2.Error
    headers: _containers.ScalarMap[str, str]
    latency_ms: int
    payload: bytes
    responder: str
    def __init__(self, responder: _Optional[str] = ..., payload: _Optional[bytes] = ..., content_type: _Optional[str] = ..., error: _Optional[_Union[_bridge_pb2.Error, _Mapping]] = ..., latency_ms: _Optional[int] = ..., envelope_id: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ...) -> None: ...

class JoinStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class CollabOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class ScoringRule(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
