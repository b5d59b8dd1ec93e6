"""Loom Python SDK: agents on an event-driven multi-agent runtime.

Quick start::

    import loom

    class Calculator(loom.Agent):
        name = "calculator"

        @loom.capability
        async def add(self, a: float, b: float) -> float:
            "Adds two numbers."
            return a + b

    loom.run(Calculator(), url="http://127.0.0.1:7070")

See docs/python.md for the reference.
"""

from ._agent import Agent
from ._collab import (
    ANY,
    Attempt,
    BarrierResult,
    Bid,
    ContractNetResult,
    GatherResult,
    JoinStrategy,
    Outcome,
    Reply,
    apply_majority,
    is_call_for_proposals,
    is_collab_record,
)
from ._capability import BoundCapability, CallInfo, CapabilityDefinition, capability, definition_of
from ._config import SDK_VERSION, Config
from ._connection import Connection, Stats, Status, Subscription, connect
from ._context import Context, ContextPort, Routing
from ._errors import (
    BudgetExceededError,
    CallCancelledError,
    ConnectionClosedError,
    ErrorCode,
    HopLimitExceededError,
    InternalError,
    InvalidParamsError,
    LoomError,
    NotFoundError,
    PermissionDeniedError,
    ProviderUnavailableError,
    RequestTimeoutError,
    ResourceExhaustedError,
    SchemaError,
    SessionNotFoundError,
    ToolError,
    TtlExpiredError,
    UnauthenticatedError,
    UnavailableError,
)
from ._event import Envelope, Event, Overflow, QoS
from ._llm import ChatResult, EmbedResult, Llm, StreamEvent, ToolCall
from ._memory import CasResult, Memory, MemoryItem
from ._runner import run, serve, start_agent
from ._thread import Thread
from ._streams import (
    Consumer,
    ConsumerInfo,
    ConsumerMessage,
    DeliverPolicy,
    PublishAck,
    StoredEvent,
    StreamInfo,
    StreamRead,
)
from ._topics import matches

__version__ = SDK_VERSION


def __getattr__(name: str) -> object:
    if name == "CancelledError":  # renamed: it shadowed asyncio.CancelledError in `from loom import *`
        import warnings

        warnings.warn(
            "loom.CancelledError is renamed loom.CallCancelledError (it is not asyncio.CancelledError).",
            DeprecationWarning,
            stacklevel=2,
        )
        return CallCancelledError
    raise AttributeError(f"module 'loom' has no attribute {name!r}")


__all__ = [
    "ANY",
    "Agent",
    "Attempt",
    "BarrierResult",
    "Bid",
    "ContractNetResult",
    "GatherResult",
    "JoinStrategy",
    "Outcome",
    "Reply",
    "apply_majority",
    "is_call_for_proposals",
    "is_collab_record",
    "BoundCapability",
    "BudgetExceededError",
    "CallCancelledError",
    "CallInfo",
    "CapabilityDefinition",
    "CasResult",
    "ChatResult",
    "Config",
    "Connection",
    "ConnectionClosedError",
    "Consumer",
    "ConsumerInfo",
    "ConsumerMessage",
    "Context",
    "ContextPort",
    "DeliverPolicy",
    "EmbedResult",
    "Envelope",
    "ErrorCode",
    "Event",
    "HopLimitExceededError",
    "InternalError",
    "InvalidParamsError",
    "Llm",
    "LoomError",
    "Memory",
    "MemoryItem",
    "NotFoundError",
    "Overflow",
    "PermissionDeniedError",
    "ProviderUnavailableError",
    "PublishAck",
    "QoS",
    "RequestTimeoutError",
    "ResourceExhaustedError",
    "Routing",
    "SchemaError",
    "SessionNotFoundError",
    "Stats",
    "Status",
    "StoredEvent",
    "StreamInfo",
    "StreamRead",
    "StreamEvent",
    "Subscription",
    "Thread",
    "ToolCall",
    "ToolError",
    "TtlExpiredError",
    "UnauthenticatedError",
    "UnavailableError",
    "__version__",
    "capability",
    "connect",
    "definition_of",
    "matches",
    "run",
    "serve",
    "start_agent",
]
