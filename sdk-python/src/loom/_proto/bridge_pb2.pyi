from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

ACK_KIND_ACK: AckKind
ACK_KIND_IN_PROGRESS: AckKind
ACK_KIND_NAK: AckKind
ACK_KIND_TERMINATE: AckKind
ACK_KIND_UNSPECIFIED: AckKind
DELIVER_POLICY_ALL: DeliverPolicy
DELIVER_POLICY_BY_SEQUENCE: DeliverPolicy
DELIVER_POLICY_BY_TIME: DeliverPolicy
DELIVER_POLICY_NEW: DeliverPolicy
DELIVER_POLICY_UNSPECIFIED: DeliverPolicy
DESCRIPTOR: _descriptor.FileDescriptor
ERROR_CODE_BUDGET_EXCEEDED: ErrorCode
ERROR_CODE_CANCELLED: ErrorCode
ERROR_CODE_CAPABILITY_NOT_FOUND: ErrorCode
ERROR_CODE_HOP_LIMIT_EXCEEDED: ErrorCode
ERROR_CODE_INTERNAL: ErrorCode
ERROR_CODE_INVALID_PARAMS: ErrorCode
ERROR_CODE_PERMISSION_DENIED: ErrorCode
ERROR_CODE_PROVIDER_UNAVAILABLE: ErrorCode
ERROR_CODE_RESOURCE_EXHAUSTED: ErrorCode
ERROR_CODE_SESSION_NOT_FOUND: ErrorCode
ERROR_CODE_TIMEOUT: ErrorCode
ERROR_CODE_TOOL_ERROR: ErrorCode
ERROR_CODE_TTL_EXPIRED: ErrorCode
ERROR_CODE_UNAUTHENTICATED: ErrorCode
ERROR_CODE_UNAVAILABLE: ErrorCode
ERROR_CODE_UNSPECIFIED: ErrorCode
OVERFLOW_POLICY_BLOCK: OverflowPolicy
OVERFLOW_POLICY_DROP_NEWEST: OverflowPolicy
OVERFLOW_POLICY_DROP_OLDEST: OverflowPolicy
OVERFLOW_POLICY_UNSPECIFIED: OverflowPolicy
QOS_CLASS_BATCH: QosClass
QOS_CLASS_NORMAL: QosClass
QOS_CLASS_REALTIME: QosClass
QOS_CLASS_UNSPECIFIED: QosClass
ROUTING_POLICY_LEAST_LATENCY: RoutingPolicy
ROUTING_POLICY_LOCAL_ONLY: RoutingPolicy
ROUTING_POLICY_LOWEST_COST: RoutingPolicy
ROUTING_POLICY_ROUND_ROBIN: RoutingPolicy
ROUTING_POLICY_UNSPECIFIED: RoutingPolicy

class Ack(_message.Message):
    __slots__ = ["correlation_id", "subscription_id"]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    correlation_id: str
    subscription_id: str
    def __init__(self, correlation_id: _Optional[str] = ..., subscription_id: _Optional[str] = ...) -> None: ...

class ActionCall(_message.Message):
    __slots__ = ["call_id", "caller", "capability", "deadline_unix_ms", "headers", "idempotency_key", "input_json", "routing", "target_agent", "thread_id", "timeout_ms", "traceparent", "version"]
    class HeadersEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CALLER_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    TARGET_AGENT_FIELD_NUMBER: _ClassVar[int]
    THREAD_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    caller: str
    capability: str
    deadline_unix_ms: int
    headers: _containers.ScalarMap[str, str]
    idempotency_key: str
    input_json: bytes
    routing: RoutingPolicy
    target_agent: str
    thread_id: str
    timeout_ms: int
    traceparent: str
    version: str
    def __init__(self, call_id: _Optional[str] = ..., capability: _Optional[str] = ..., version: _Optional[str] = ..., input_json: _Optional[bytes] = ..., timeout_ms: _Optional[int] = ..., deadline_unix_ms: _Optional[int] = ..., caller: _Optional[str] = ..., thread_id: _Optional[str] = ..., traceparent: _Optional[str] = ..., routing: _Optional[_Union[RoutingPolicy, str]] = ..., target_agent: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class ActionResult(_message.Message):
    __slots__ = ["call_id", "duration_us", "error", "output_json", "provider", "replayed"]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    DURATION_US_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    duration_us: int
    error: Error
    output_json: bytes
    provider: str
    replayed: bool
    def __init__(self, call_id: _Optional[str] = ..., output_json: _Optional[bytes] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., provider: _Optional[str] = ..., duration_us: _Optional[int] = ..., replayed: bool = ...) -> None: ...

class CancelCall(_message.Message):
    __slots__ = ["call_id"]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    def __init__(self, call_id: _Optional[str] = ...) -> None: ...

class CapabilityDescriptor(_message.Message):
    __slots__ = ["cost_hint", "description", "input_schema_json", "latency_hint_ms", "max_concurrency", "name", "output_schema_json", "tags", "version"]
    COST_HINT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    INPUT_SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    LATENCY_HINT_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    cost_hint: float
    description: str
    input_schema_json: str
    latency_hint_ms: int
    max_concurrency: int
    name: str
    output_schema_json: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., description: _Optional[str] = ..., input_schema_json: _Optional[str] = ..., output_schema_json: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., cost_hint: _Optional[float] = ..., latency_hint_ms: _Optional[int] = ..., max_concurrency: _Optional[int] = ...) -> None: ...

class ClientFrame(_message.Message):
    __slots__ = ["messages"]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ClientMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[ClientMessage, _Mapping]]] = ...) -> None: ...

class ClientMessage(_message.Message):
    __slots__ = ["call", "cancel", "consumer", "heartbeat", "memory", "publish", "publish_acked", "read", "result", "stream_admin", "subscribe", "unsubscribe"]
    CALL_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_ACKED_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_FIELD_NUMBER: _ClassVar[int]
    READ_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    STREAM_ADMIN_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    UNSUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    call: ActionCall
    cancel: CancelCall
    consumer: ConsumerRequest
    heartbeat: HeartbeatPing
    memory: MemoryRequest
    publish: Envelope
    publish_acked: PublishRequest
    read: StreamReadRequest
    result: ActionResult
    stream_admin: StreamAdminRequest
    subscribe: SubscribeRequest
    unsubscribe: UnsubscribeRequest
    def __init__(self, publish: _Optional[_Union[Envelope, _Mapping]] = ..., subscribe: _Optional[_Union[SubscribeRequest, _Mapping]] = ..., unsubscribe: _Optional[_Union[UnsubscribeRequest, _Mapping]] = ..., call: _Optional[_Union[ActionCall, _Mapping]] = ..., result: _Optional[_Union[ActionResult, _Mapping]] = ..., heartbeat: _Optional[_Union[HeartbeatPing, _Mapping]] = ..., memory: _Optional[_Union[MemoryRequest, _Mapping]] = ..., cancel: _Optional[_Union[CancelCall, _Mapping]] = ..., publish_acked: _Optional[_Union[PublishRequest, _Mapping]] = ..., consumer: _Optional[_Union[ConsumerRequest, _Mapping]] = ..., read: _Optional[_Union[StreamReadRequest, _Mapping]] = ..., stream_admin: _Optional[_Union[StreamAdminRequest, _Mapping]] = ...) -> None: ...

class ConsumerAck(_message.Message):
    __slots__ = ["consumer", "delay_ms", "kind", "sequences", "stream"]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    consumer: str
    delay_ms: int
    kind: AckKind
    sequences: _containers.RepeatedScalarFieldContainer[int]
    stream: str
    def __init__(self, consumer: _Optional[str] = ..., stream: _Optional[str] = ..., sequences: _Optional[_Iterable[int]] = ..., kind: _Optional[_Union[AckKind, str]] = ..., delay_ms: _Optional[int] = ...) -> None: ...

class ConsumerAttach(_message.Message):
    __slots__ = ["config"]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: ConsumerConfig
    def __init__(self, config: _Optional[_Union[ConsumerConfig, _Mapping]] = ...) -> None: ...

class ConsumerConfig(_message.Message):
    __slots__ = ["ack_wait_ms", "dead_letter_topic", "deliver", "filter", "max_ack_pending", "max_deliver", "name", "start_sequence", "start_unix_ms", "stream"]
    ACK_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_TOPIC_FIELD_NUMBER: _ClassVar[int]
    DELIVER_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    MAX_ACK_PENDING_FIELD_NUMBER: _ClassVar[int]
    MAX_DELIVER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    START_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    START_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    ack_wait_ms: int
    dead_letter_topic: str
    deliver: DeliverPolicy
    filter: str
    max_ack_pending: int
    max_deliver: int
    name: str
    start_sequence: int
    start_unix_ms: int
    stream: str
    def __init__(self, name: _Optional[str] = ..., stream: _Optional[str] = ..., filter: _Optional[str] = ..., deliver: _Optional[_Union[DeliverPolicy, str]] = ..., start_sequence: _Optional[int] = ..., start_unix_ms: _Optional[int] = ..., ack_wait_ms: _Optional[int] = ..., max_deliver: _Optional[int] = ..., max_ack_pending: _Optional[int] = ..., dead_letter_topic: _Optional[str] = ...) -> None: ...

class ConsumerDetach(_message.Message):
    __slots__ = ["consumer", "delete", "stream"]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    consumer: str
    delete: bool
    stream: str
    def __init__(self, consumer: _Optional[str] = ..., stream: _Optional[str] = ..., delete: bool = ...) -> None: ...

class ConsumerInfo(_message.Message):
    __slots__ = ["ack_floor", "config", "next_sequence", "pending", "stream_last_sequence"]
    ACK_FLOOR_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    NEXT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    STREAM_LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ack_floor: int
    config: ConsumerConfig
    next_sequence: int
    pending: int
    stream_last_sequence: int
    def __init__(self, config: _Optional[_Union[ConsumerConfig, _Mapping]] = ..., ack_floor: _Optional[int] = ..., next_sequence: _Optional[int] = ..., pending: _Optional[int] = ..., stream_last_sequence: _Optional[int] = ...) -> None: ...

class ConsumerReply(_message.Message):
    __slots__ = ["correlation_id", "info"]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    correlation_id: str
    info: ConsumerInfo
    def __init__(self, correlation_id: _Optional[str] = ..., info: _Optional[_Union[ConsumerInfo, _Mapping]] = ...) -> None: ...

class ConsumerRequest(_message.Message):
    __slots__ = ["ack", "attach", "correlation_id", "detach"]
    ACK_FIELD_NUMBER: _ClassVar[int]
    ATTACH_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    DETACH_FIELD_NUMBER: _ClassVar[int]
    ack: ConsumerAck
    attach: ConsumerAttach
    correlation_id: str
    detach: ConsumerDetach
    def __init__(self, correlation_id: _Optional[str] = ..., attach: _Optional[_Union[ConsumerAttach, _Mapping]] = ..., ack: _Optional[_Union[ConsumerAck, _Mapping]] = ..., detach: _Optional[_Union[ConsumerDetach, _Mapping]] = ...) -> None: ...

class Delivery(_message.Message):
    __slots__ = ["consumer", "delivery_count", "envelope", "stream", "stream_sequence", "subscription_id"]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_COUNT_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    STREAM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    consumer: str
    delivery_count: int
    envelope: Envelope
    stream: str
    stream_sequence: int
    subscription_id: str
    def __init__(self, subscription_id: _Optional[str] = ..., envelope: _Optional[_Union[Envelope, _Mapping]] = ..., consumer: _Optional[str] = ..., stream: _Optional[str] = ..., stream_sequence: _Optional[int] = ..., delivery_count: _Optional[int] = ...) -> None: ...

class Envelope(_message.Message):
    __slots__ = ["content_type", "correlation_id", "deadline_unix_ms", "headers", "hop_count", "id", "payload", "qos", "reply_to", "sender", "thread_id", "timestamp_unix_ms", "topic", "traceparent", "tracestate", "ttl_ms"]
    class HeadersEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    HOP_COUNT_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    QOS_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    THREAD_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    TRACESTATE_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    correlation_id: str
    deadline_unix_ms: int
    headers: _containers.ScalarMap[str, str]
    hop_count: int
    id: str
    payload: bytes
    qos: QosClass
    reply_to: str
    sender: str
    thread_id: str
    timestamp_unix_ms: int
    topic: str
    traceparent: str
    tracestate: str
    ttl_ms: int
    def __init__(self, id: _Optional[str] = ..., topic: _Optional[str] = ..., sender: _Optional[str] = ..., thread_id: _Optional[str] = ..., correlation_id: _Optional[str] = ..., reply_to: _Optional[str] = ..., ttl_ms: _Optional[int] = ..., deadline_unix_ms: _Optional[int] = ..., hop_count: _Optional[int] = ..., qos: _Optional[_Union[QosClass, str]] = ..., timestamp_unix_ms: _Optional[int] = ..., content_type: _Optional[str] = ..., payload: _Optional[bytes] = ..., headers: _Optional[_Mapping[str, str]] = ..., traceparent: _Optional[str] = ..., tracestate: _Optional[str] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ["code", "details", "message", "path", "retryable"]
    class DetailsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    code: ErrorCode
    details: _containers.ScalarMap[str, str]
    message: str
    path: str
    retryable: bool
    def __init__(self, code: _Optional[_Union[ErrorCode, str]] = ..., message: _Optional[str] = ..., path: _Optional[str] = ..., details: _Optional[_Mapping[str, str]] = ..., retryable: bool = ...) -> None: ...

class ErrorReply(_message.Message):
    __slots__ = ["correlation_id", "error"]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    correlation_id: str
    error: Error
    def __init__(self, correlation_id: _Optional[str] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class ForwardActionRequest(_message.Message):
    __slots__ = ["call", "session_id"]
    CALL_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    call: ActionCall
    session_id: str
    def __init__(self, call: _Optional[_Union[ActionCall, _Mapping]] = ..., session_id: _Optional[str] = ...) -> None: ...

class ForwardActionResponse(_message.Message):
    __slots__ = ["duration_us", "output_json", "provider"]
    DURATION_US_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    duration_us: int
    output_json: bytes
    provider: str
    def __init__(self, output_json: _Optional[bytes] = ..., provider: _Optional[str] = ..., duration_us: _Optional[int] = ...) -> None: ...

class HeartbeatPing(_message.Message):
    __slots__ = ["sent_unix_ms", "sequence"]
    SENT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    sent_unix_ms: int
    sequence: int
    def __init__(self, sequence: _Optional[int] = ..., sent_unix_ms: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ["sequence", "session_id"]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    session_id: str
    def __init__(self, session_id: _Optional[str] = ..., sequence: _Optional[int] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ["heartbeat_interval_ms", "server_unix_ms"]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    SERVER_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    heartbeat_interval_ms: int
    server_unix_ms: int
    def __init__(self, heartbeat_interval_ms: _Optional[int] = ..., server_unix_ms: _Optional[int] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ["default_ttl_ms", "max_batch_messages", "max_hops", "max_inflight_calls", "max_message_bytes", "max_payload_bytes", "max_subscriptions", "outbound_queue_capacity"]
    DEFAULT_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_HOPS_FIELD_NUMBER: _ClassVar[int]
    MAX_INFLIGHT_CALLS_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_PAYLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    OUTBOUND_QUEUE_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    default_ttl_ms: int
    max_batch_messages: int
    max_hops: int
    max_inflight_calls: int
    max_message_bytes: int
    max_payload_bytes: int
    max_subscriptions: int
    outbound_queue_capacity: int
    def __init__(self, max_message_bytes: _Optional[int] = ..., max_payload_bytes: _Optional[int] = ..., max_batch_messages: _Optional[int] = ..., max_inflight_calls: _Optional[int] = ..., outbound_queue_capacity: _Optional[int] = ..., max_hops: _Optional[int] = ..., default_ttl_ms: _Optional[int] = ..., max_subscriptions: _Optional[int] = ...) -> None: ...

class MemoryCompareAndSet(_message.Message):
    __slots__ = ["expected_version", "key", "ttl_ms", "value"]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    expected_version: int
    key: str
    ttl_ms: int
    value: bytes
    def __init__(self, key: _Optional[str] = ..., expected_version: _Optional[int] = ..., value: _Optional[bytes] = ..., ttl_ms: _Optional[int] = ...) -> None: ...

class MemoryDelete(_message.Message):
    __slots__ = ["key"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class MemoryEntry(_message.Message):
    __slots__ = ["expires_unix_ms", "key", "value", "version"]
    EXPIRES_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    expires_unix_ms: int
    key: str
    value: bytes
    version: int
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ..., version: _Optional[int] = ..., expires_unix_ms: _Optional[int] = ...) -> None: ...

class MemoryGet(_message.Message):
    __slots__ = ["key"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class MemoryList(_message.Message):
    __slots__ = ["limit", "prefix"]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    limit: int
    prefix: str
    def __init__(self, prefix: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class MemoryRequest(_message.Message):
    __slots__ = ["compare_and_set", "correlation_id", "delete", "get", "list", "namespace", "set"]
    COMPARE_AND_SET_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    GET_FIELD_NUMBER: _ClassVar[int]
    LIST_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    compare_and_set: MemoryCompareAndSet
    correlation_id: str
    delete: MemoryDelete
    get: MemoryGet
    list: MemoryList
    namespace: str
    set: MemorySet
    def __init__(self, correlation_id: _Optional[str] = ..., namespace: _Optional[str] = ..., get: _Optional[_Union[MemoryGet, _Mapping]] = ..., set: _Optional[_Union[MemorySet, _Mapping]] = ..., delete: _Optional[_Union[MemoryDelete, _Mapping]] = ..., list: _Optional[_Union[MemoryList, _Mapping]] = ..., compare_and_set: _Optional[_Union[MemoryCompareAndSet, _Mapping]] = ...) -> None: ...

class MemoryResponse(_message.Message):
    __slots__ = ["correlation_id", "entries", "error", "found"]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    correlation_id: str
    entries: _containers.RepeatedCompositeFieldContainer[MemoryEntry]
    error: Error
    found: bool
    def __init__(self, correlation_id: _Optional[str] = ..., found: bool = ..., entries: _Optional[_Iterable[_Union[MemoryEntry, _Mapping]]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class MemorySet(_message.Message):
    __slots__ = ["key", "ttl_ms", "value"]
    KEY_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    ttl_ms: int
    value: bytes
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ..., ttl_ms: _Optional[int] = ...) -> None: ...

class PublishAck(_message.Message):
    __slots__ = ["correlation_id", "duplicate", "sequence", "stream"]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    correlation_id: str
    duplicate: bool
    sequence: int
    stream: str
    def __init__(self, correlation_id: _Optional[str] = ..., stream: _Optional[str] = ..., sequence: _Optional[int] = ..., duplicate: bool = ...) -> None: ...

class PublishRequest(_message.Message):
    __slots__ = ["envelope"]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    envelope: Envelope
    def __init__(self, envelope: _Optional[_Union[Envelope, _Mapping]] = ...) -> None: ...

class RegisterAgentRequest(_message.Message):
    __slots__ = ["agent_id", "capabilities", "heartbeat_interval_ms", "metadata", "name", "namespace", "sdk", "subscriptions"]
    class MetadataEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SDK_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    capabilities: _containers.RepeatedCompositeFieldContainer[CapabilityDescriptor]
    heartbeat_interval_ms: int
    metadata: _containers.ScalarMap[str, str]
    name: str
    namespace: str
    sdk: str
    subscriptions: _containers.RepeatedCompositeFieldContainer[Subscription]
    def __init__(self, agent_id: _Optional[str] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ..., subscriptions: _Optional[_Iterable[_Union[Subscription, _Mapping]]] = ..., capabilities: _Optional[_Iterable[_Union[CapabilityDescriptor, _Mapping]]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., sdk: _Optional[str] = ..., heartbeat_interval_ms: _Optional[int] = ...) -> None: ...

class RegisterAgentResponse(_message.Message):
    __slots__ = ["agent_id", "bridge_version", "heartbeat_interval_ms", "limits", "reconnected", "session_id", "subscriptions"]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    BRIDGE_VERSION_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    RECONNECTED_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    bridge_version: str
    heartbeat_interval_ms: int
    limits: Limits
    reconnected: bool
    session_id: str
    subscriptions: _containers.RepeatedCompositeFieldContainer[Subscription]
    def __init__(self, session_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., heartbeat_interval_ms: _Optional[int] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., bridge_version: _Optional[str] = ..., subscriptions: _Optional[_Iterable[_Union[Subscription, _Mapping]]] = ..., reconnected: bool = ...) -> None: ...

class ServerFrame(_message.Message):
    __slots__ = ["messages"]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ServerMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[ServerMessage, _Mapping]]] = ...) -> None: ...

class ServerMessage(_message.Message):
    __slots__ = ["ack", "call", "cancel", "consumer", "deliver", "error", "heartbeat", "memory", "publish_ack", "read", "result", "stream_admin"]
    ACK_FIELD_NUMBER: _ClassVar[int]
    CALL_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    DELIVER_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_ACK_FIELD_NUMBER: _ClassVar[int]
    READ_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    STREAM_ADMIN_FIELD_NUMBER: _ClassVar[int]
    ack: Ack
    call: ActionCall
    cancel: CancelCall
    consumer: ConsumerReply
    deliver: Delivery
    error: ErrorReply
    heartbeat: HeartbeatPing
    memory: MemoryResponse
    publish_ack: PublishAck
    read: StreamReadResponse
    result: ActionResult
    stream_admin: StreamAdminReply
    def __init__(self, deliver: _Optional[_Union[Delivery, _Mapping]] = ..., call: _Optional[_Union[ActionCall, _Mapping]] = ..., result: _Optional[_Union[ActionResult, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., heartbeat: _Optional[_Union[HeartbeatPing, _Mapping]] = ..., error: _Optional[_Union[ErrorReply, _Mapping]] = ..., memory: _Optional[_Union[MemoryResponse, _Mapping]] = ..., cancel: _Optional[_Union[CancelCall, _Mapping]] = ..., publish_ack: _Optional[_Union[PublishAck, _Mapping]] = ..., consumer: _Optional[_Union[ConsumerReply, _Mapping]] = ..., read: _Optional[_Union[StreamReadResponse, _Mapping]] = ..., stream_admin: _Optional[_Union[StreamAdminReply, _Mapping]] = ...) -> None: ...

class StoredEvent(_message.Message):
    __slots__ = ["envelope", "sequence", "stored_unix_ms"]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STORED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    envelope: Envelope
    sequence: int
    stored_unix_ms: int
    def __init__(self, sequence: _Optional[int] = ..., stored_unix_ms: _Optional[int] = ..., envelope: _Optional[_Union[Envelope, _Mapping]] = ...) -> None: ...

class StreamAdminReply(_message.Message):
    __slots__ = ["correlation_id", "streams"]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    correlation_id: str
    streams: _containers.RepeatedCompositeFieldContainer[StreamState]
    def __init__(self, correlation_id: _Optional[str] = ..., streams: _Optional[_Iterable[_Union[StreamState, _Mapping]]] = ...) -> None: ...

class StreamAdminRequest(_message.Message):
    __slots__ = ["correlation_id", "create", "delete", "info", "list"]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    LIST_FIELD_NUMBER: _ClassVar[int]
    correlation_id: str
    create: StreamSpec
    delete: str
    info: str
    list: bool
    def __init__(self, correlation_id: _Optional[str] = ..., create: _Optional[_Union[StreamSpec, _Mapping]] = ..., info: _Optional[str] = ..., list: bool = ..., delete: _Optional[str] = ...) -> None: ...

class StreamReadRequest(_message.Message):
    __slots__ = ["correlation_id", "max_events", "start_sequence", "start_unix_ms", "stream"]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_EVENTS_FIELD_NUMBER: _ClassVar[int]
    START_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    START_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    correlation_id: str
    max_events: int
    start_sequence: int
    start_unix_ms: int
    stream: str
    def __init__(self, correlation_id: _Optional[str] = ..., stream: _Optional[str] = ..., start_sequence: _Optional[int] = ..., start_unix_ms: _Optional[int] = ..., max_events: _Optional[int] = ...) -> None: ...

class StreamReadResponse(_message.Message):
    __slots__ = ["correlation_id", "error", "events", "first_sequence", "last_sequence"]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    correlation_id: str
    error: Error
    events: _containers.RepeatedCompositeFieldContainer[StoredEvent]
    first_sequence: int
    last_sequence: int
    def __init__(self, correlation_id: _Optional[str] = ..., events: _Optional[_Iterable[_Union[StoredEvent, _Mapping]]] = ..., first_sequence: _Optional[int] = ..., last_sequence: _Optional[int] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class StreamSpec(_message.Message):
    __slots__ = ["duplicate_window_ms", "max_age_ms", "max_bytes", "max_events", "name", "subjects"]
    DUPLICATE_WINDOW_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_EVENTS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    duplicate_window_ms: int
    max_age_ms: int
    max_bytes: int
    max_events: int
    name: str
    subjects: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., subjects: _Optional[_Iterable[str]] = ..., max_age_ms: _Optional[int] = ..., max_bytes: _Optional[int] = ..., max_events: _Optional[int] = ..., duplicate_window_ms: _Optional[int] = ...) -> None: ...

class StreamState(_message.Message):
    __slots__ = ["bytes", "events", "first_sequence", "last_sequence", "spec"]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    bytes: int
    events: int
    first_sequence: int
    last_sequence: int
    spec: StreamSpec
    def __init__(self, spec: _Optional[_Union[StreamSpec, _Mapping]] = ..., first_sequence: _Optional[int] = ..., last_sequence: _Optional[int] = ..., events: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ["correlation_id", "subscription"]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    correlation_id: str
    subscription: Subscription
    def __init__(self, correlation_id: _Optional[str] = ..., subscription: _Optional[_Union[Subscription, _Mapping]] = ...) -> None: ...

class Subscription(_message.Message):
    __slots__ = ["block_timeout_ms", "overflow", "pattern", "qos", "queue_capacity", "subscription_id"]
    BLOCK_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    OVERFLOW_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    QOS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    block_timeout_ms: int
    overflow: OverflowPolicy
    pattern: str
    qos: QosClass
    queue_capacity: int
    subscription_id: str
    def __init__(self, pattern: _Optional[str] = ..., qos: _Optional[_Union[QosClass, str]] = ..., overflow: _Optional[_Union[OverflowPolicy, str]] = ..., queue_capacity: _Optional[int] = ..., block_timeout_ms: _Optional[int] = ..., subscription_id: _Optional[str] = ...) -> None: ...

class UnsubscribeRequest(_message.Message):
    __slots__ = ["correlation_id", "subscription_id"]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ID_FIELD_NUMBER: _ClassVar[int]
    correlation_id: str
    subscription_id: str
    def __init__(self, correlation_id: _Optional[str] = ..., subscription_id: _Optional[str] = ...) -> None: ...

class QosClass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class OverflowPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class RoutingPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class DeliverPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class AckKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
