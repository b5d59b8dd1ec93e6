"""Collaboration operations: gather (request/reply, fan-out/fan-in), barrier, contract-net.

They run in the bridge's core (service ``loom.v1.Collaboration``), so Python, TypeScript and .NET
agents get the same semantics; this module only builds requests and reads results. Outcomes are
values: a timeout, a failed responder or a missing participant is reported in the result, never
raised. Invalid requests raise :class:`InvalidParamsError`; cancelling the awaiting task cancels
the operation in the bridge (outstanding capability calls receive a cancel).

A local comparison (``compare=`` a function) or scorer (``scoring=`` a function) runs here: the
SDK gathers with strategy ALL (or first-k bids) through the core and applies the function to the
replies, with the same result shape as the core's declarative rules.
"""

from __future__ import annotations

import enum
import json
import math
import uuid
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

import grpc

from ._errors import InvalidParamsError, LoomError, UnavailableError, from_proto, from_rpc_error
from ._event import Event
from ._proto import collaboration_pb2 as cpb
from ._schema import to_json_bytes

if TYPE_CHECKING:
    from ._context import Context

SERVICE = "/loom.v1.Collaboration/"
KIND_HEADER = "loom-collab"
OP_HEADER = "loom-collab-op"
_GRACE_S = 5.0

T = TypeVar("T")


class JoinStrategy(enum.IntEnum):
    """How a gather joins its replies."""

    FIRST = cpb.JOIN_STRATEGY_FIRST
    """The first successful reply ("any")."""
    FIRST_K = cpb.JOIN_STRATEGY_FIRST_K
    """The first ``k`` successful replies."""
    MAJORITY = cpb.JOIN_STRATEGY_MAJORITY
    """A quorum of responders agreeing on a value."""
    ALL = cpb.JOIN_STRATEGY_ALL
    """Every known responder answered (or failed)."""


ANY = JoinStrategy.FIRST
"""Alias of :attr:`JoinStrategy.FIRST` (fan-in vocabulary)."""


class Outcome(str, enum.Enum):
    """How an operation ended; partial results come with every outcome."""

    UNSPECIFIED = "unspecified"
    COMPLETED = "completed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    NO_QUORUM = "no_quorum"
    FAILED = "failed"
    NO_BIDS = "no_bids"
    PENDING = "pending"

    @classmethod
    def from_number(cls, number: int) -> "Outcome":
        return _OUTCOMES.get(number, cls.UNSPECIFIED)


_OUTCOMES: Dict[int, Outcome] = {
    cpb.COLLAB_OUTCOME_COMPLETED: Outcome.COMPLETED,
    cpb.COLLAB_OUTCOME_TIMEOUT: Outcome.TIMEOUT,
    cpb.COLLAB_OUTCOME_CANCELLED: Outcome.CANCELLED,
    cpb.COLLAB_OUTCOME_NO_QUORUM: Outcome.NO_QUORUM,
    cpb.COLLAB_OUTCOME_FAILED: Outcome.FAILED,
    cpb.COLLAB_OUTCOME_NO_BIDS: Outcome.NO_BIDS,
    cpb.COLLAB_OUTCOME_PENDING: Outcome.PENDING,
}


def _parse(payload: bytes) -> Any:
    if not payload:
        return None
    try:
        return json.loads(payload)
    except ValueError:
        return payload


@dataclass(frozen=True)
class Reply:
    """One responder's answer (or failure) to a gather."""

    responder: str
    payload: bytes = b""
    content_type: str = ""
    error: Optional[LoomError] = None
    latency_ms: int = 0
    envelope_id: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def data(self) -> Any:
        """The payload parsed as JSON (bytes when it is not JSON, None when empty)."""
        return _parse(self.payload)

    @classmethod
    def from_proto(cls, r: cpb.Reply) -> "Reply":
        return cls(
            responder=r.responder,
            payload=r.payload,
            content_type=r.content_type,
            error=from_proto(r.error) if r.HasField("error") else None,
            latency_ms=r.latency_ms,
            envelope_id=r.envelope_id,
            headers=dict(r.headers),
        )


@dataclass(frozen=True)
class GatherResult:
    """The outcome of a gather: who answered, who timed out, who failed."""

    op_id: str
    outcome: Outcome
    replies: Tuple[Reply, ...] = ()
    answered: Tuple[str, ...] = ()
    timed_out: Tuple[str, ...] = ()
    failed: Tuple[str, ...] = ()
    expected: int = 0
    agreed_value: Any = None
    agreeing: Tuple[str, ...] = ()
    quorum: int = 0
    elapsed_ms: int = 0
    thread_id: str = ""

    @property
    def completed(self) -> bool:
        return self.outcome is Outcome.COMPLETED

    @property
    def values(self) -> List[Any]:
        """The parsed payloads of the successful replies, in arrival order."""
        return [r.data for r in self.replies if r.ok]

    @classmethod
    def from_proto(cls, r: cpb.GatherResult) -> "GatherResult":
        return cls(
            op_id=r.op_id,
            outcome=Outcome.from_number(r.outcome),
            replies=tuple(Reply.from_proto(x) for x in r.replies),
            answered=tuple(r.answered),
            timed_out=tuple(r.timed_out),
            failed=tuple(r.failed),
            expected=r.expected,
            agreed_value=_parse(r.agreed_value),
            agreeing=tuple(r.agreeing),
            quorum=r.quorum,
            elapsed_ms=r.elapsed_ms,
            thread_id=r.thread_id,
        )


@dataclass(frozen=True)
class BarrierResult:
    """Who reached a barrier, and who is missing."""

    barrier_id: str
    outcome: Outcome
    arrived: Tuple[str, ...] = ()
    missing: Tuple[str, ...] = ()
    expected: int = 0
    elapsed_ms: int = 0

    @property
    def completed(self) -> bool:
        return self.outcome is Outcome.COMPLETED

    @classmethod
    def from_proto(cls, r: cpb.BarrierResult) -> "BarrierResult":
        return cls(
            r.barrier_id,
            Outcome.from_number(r.outcome),
            tuple(r.arrived),
            tuple(r.missing),
            r.expected,
            r.elapsed_ms,
        )


@dataclass(frozen=True)
class Bid:
    """A bid of a contract-net, with its score."""

    bidder: str
    payload: bytes = b""
    score: float = 0.0
    valid: bool = True
    reason: str = ""
    latency_ms: int = 0

    @property
    def data(self) -> Any:
        return _parse(self.payload)

    @classmethod
    def from_proto(cls, b: cpb.Bid) -> "Bid":
        return cls(b.bidder, b.payload, b.score, b.valid, b.reason, b.latency_ms)


@dataclass(frozen=True)
class Attempt:
    """One awarded bidder's execution."""

    agent: str
    succeeded: bool
    error: Optional[LoomError] = None
    duration_ms: int = 0


@dataclass(frozen=True)
class ContractNetResult:
    """The outcome of a contract-net: ranked bids, attempts in order, the winner and its output."""

    op_id: str
    thread_id: str
    outcome: Outcome
    bids: Tuple[Bid, ...] = ()
    attempts: Tuple[Attempt, ...] = ()
    winner: str = ""
    output_json: bytes = b""
    no_bid: Tuple[str, ...] = ()
    elapsed_ms: int = 0

    @property
    def completed(self) -> bool:
        return self.outcome is Outcome.COMPLETED

    @property
    def output(self) -> Any:
        """The winner's output parsed as JSON."""
        return _parse(self.output_json)

    @classmethod
    def from_proto(cls, r: cpb.ContractNetResult) -> "ContractNetResult":
        return cls(
            op_id=r.op_id,
            thread_id=r.thread_id,
            outcome=Outcome.from_number(r.outcome),
            bids=tuple(Bid.from_proto(b) for b in r.bids),
            attempts=tuple(
                Attempt(
                    a.agent, a.succeeded, from_proto(a.error) if a.HasField("error") else None, a.duration_ms
                )
                for a in r.attempts
            ),
            winner=r.winner,
            output_json=r.output_json,
            no_bid=tuple(r.no_bid),
            elapsed_ms=r.elapsed_ms,
        )


def is_call_for_proposals(event: Event) -> bool:
    """True for a contract-net call for proposals: answer it with a bid (``ctx.reply(event, {...})``)."""
    return bool(event.reply_to) and event.headers.get(KIND_HEADER) == "cfp"


def is_collab_record(event: Event) -> bool:
    """True for a collaboration record on a thread (cfp/bid/award/fallback/result): not a request."""
    return not event.reply_to and KIND_HEADER in event.headers


# ---------------------------------------------------------------------------------------------
# The unary calls
# ---------------------------------------------------------------------------------------------


def _millis(timeout: float, path: str = "/timeout_ms") -> int:
    if timeout is None or timeout <= 0 or math.isnan(timeout):
        raise InvalidParamsError(f"A timeout must be positive; got {timeout!r} s.", path=path)
    return max(1, math.ceil(timeout * 1000))


async def _unary(ctx: "Context", method: str, request: Any, response_type: Any, timeout_s: float) -> Any:
    channel = getattr(ctx, "_channel", None)
    session_id = getattr(ctx, "session_id", "")
    if channel is None or not session_id:
        raise UnavailableError(
            f"Agent {ctx.agent_id} is not connected; collaboration operations need a live connection."
        )
    request.session_id = session_id
    call = channel.unary_unary(
        SERVICE + method,
        request_serializer=type(request).SerializeToString,
        response_deserializer=response_type.FromString,
    )
    try:
        return await call(request, timeout=timeout_s + _GRACE_S)
    except grpc.aio.AioRpcError as exc:
        raise from_rpc_error(exc, getattr(getattr(ctx, "config", None), "url", "the bridge")) from None


def _payload(data: Any, content_type: Optional[str]) -> Tuple[bytes, str]:
    if data is None:
        return b"{}", content_type or "application/json"
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data), content_type or "application/octet-stream"
    return to_json_bytes(data), content_type or "application/json"


Compare = Union[str, Callable[[Reply], Any]]


async def gather(
    ctx: "Context",
    topic: str = "",
    data: Any = None,
    *,
    capability: str = "",
    agents: Sequence[str] = (),
    strategy: JoinStrategy = JoinStrategy.FIRST,
    k: int = 0,
    quorum: int = 0,
    compare: Compare = "",
    timeout: float = 30.0,
    thread_id: str = "",
    op_id: str = "",
    headers: Optional[Mapping[str, str]] = None,
    content_type: Optional[str] = None,
    version: str = "",
) -> GatherResult:
    """One request to a ``topic`` (replies gathered by correlation id) or to the providers of a
    ``capability`` (``agents``, or every provider), joined by ``strategy`` within ``timeout``
    seconds. For MAJORITY, ``compare`` is a JSON pointer into each reply (``""`` = the whole
    reply) or a function of a :class:`Reply` returning the compared key (applied here, after a
    gather with strategy ALL). ``agents`` on a topic names the known responders (default: the
    topic's subscribers)."""
    if strategy is JoinStrategy.FIRST_K and k < 1:
        raise InvalidParamsError(f"FIRST_K needs k >= 1; got {k}.", path="/k")
    local = callable(compare)
    payload, ctype = _payload(data, content_type)
    request = cpb.GatherRequest(
        op_id=op_id,
        thread_id=thread_id,
        topic=topic,
        capability=capability,
        version=version,
        agents=list(agents),
        payload=payload,
        content_type=ctype,
        strategy=int(  # type: ignore[arg-type]
            JoinStrategy.ALL if local and strategy is JoinStrategy.MAJORITY else strategy
        ),
        k=k,
        quorum=quorum,
        compare_pointer="" if local else str(compare),
        timeout_ms=_millis(timeout),
    )
    for key, value in (headers or {}).items():
        request.headers[key] = value
    response = await _unary(ctx, "Gather", request, cpb.GatherResult, timeout)
    result = GatherResult.from_proto(response)
    if local and strategy is JoinStrategy.MAJORITY:
        assert callable(compare)
        result = apply_majority(result, compare, quorum)
    return result


def apply_majority(result: GatherResult, key: Callable[[Reply], Any], quorum: int = 0) -> GatherResult:
    """Majority with a local comparison over a finished gather: successful replies grouped by
    ``key`` (a None key abstains; keys are compared with ``==``), the first group in arrival order
    to reach the quorum (``quorum``, or more than half of the known responders) agrees."""
    needed = quorum or (result.expected // 2 + 1)
    groups: List[Tuple[Any, List[Reply]]] = []
    agreed: Optional[Tuple[Any, List[Reply]]] = None
    for reply in result.replies:
        if not reply.ok:
            continue
        value = key(reply)
        if value is None:
            continue
        for group in groups:
            if group[0] == value:
                group[1].append(reply)
                break
        else:
            group = (value, [reply])
            groups.append(group)
        if len(group[1]) >= needed:
            agreed = group
            break
    if agreed is not None:
        outcome = Outcome.COMPLETED
        value = agreed[1][0].data
        agreeing = tuple(r.responder for r in agreed[1])
    else:
        outcome = (
            Outcome.NO_QUORUM if result.outcome in (Outcome.COMPLETED, Outcome.FAILED) else result.outcome
        )
        value, agreeing = None, ()
    return GatherResult(
        op_id=result.op_id,
        outcome=outcome,
        replies=result.replies,
        answered=result.answered,
        timed_out=result.timed_out,
        failed=result.failed,
        expected=result.expected,
        agreed_value=value,
        agreeing=agreeing,
        quorum=needed,
        elapsed_ms=result.elapsed_ms,
        thread_id=result.thread_id,
    )


async def barrier(
    ctx: "Context",
    barrier_id: str,
    *,
    participants: Sequence[str] = (),
    count: int = 0,
    participant: str = "",
    observe: bool = False,
    timeout: float = 30.0,
    thread_id: str = "",
    no_wait: bool = False,
) -> BarrierResult:
    """Arrives at ``barrier_id`` (as this agent, or ``participant``; ``observe=True`` waits
    without arriving) and waits until every one of ``participants`` (or ``count`` distinct
    arrivals) is there, or ``timeout`` seconds pass. The first call names the expectation."""
    if participants and count:
        raise InvalidParamsError(
            "A barrier waits for named participants or for a count, not both.", path="/count"
        )
    request = cpb.BarrierRequest(
        barrier_id=barrier_id,
        participant=participant,
        observe=observe,
        participants=list(participants),
        count=count,
        timeout_ms=_millis(timeout),
        thread_id=thread_id,
        no_wait=no_wait,
    )
    response = await _unary(ctx, "Barrier", request, cpb.BarrierResult, timeout)
    return BarrierResult.from_proto(response)


_RULES: Dict[str, int] = {
    "lowest_cost": cpb.SCORING_RULE_LOWEST_COST,
    "fastest": cpb.SCORING_RULE_FASTEST,
    "min": cpb.SCORING_RULE_FIELD_MIN,
    "max": cpb.SCORING_RULE_FIELD_MAX,
}

Scoring = Union[str, Tuple[str, str], Callable[[Bid], float]]


async def contract_net(
    ctx: "Context",
    task: Any,
    *,
    capability: str,
    topic: str = "",
    thread_id: str = "",
    input: Any = None,
    scoring: Scoring = "lowest_cost",
    bid_timeout: float = 2.0,
    max_bids: int = 0,
    execution_timeout: Optional[float] = None,
    max_attempts: int = 0,
    timeout: float = 60.0,
    bidders: Sequence[str] = (),
    op_id: str = "",
    version: str = "",
) -> ContractNetResult:
    """A call for proposals (``task``) on ``topic`` (default ``thread.<thread_id>.broadcast``),
    bids collected for ``bid_timeout`` s (or ``max_bids``, or until every known bidder bid), the
    best bid by ``scoring`` awarded: ``"lowest_cost"`` (``/cost``), ``"fastest"``
    (``/latency_ms``), ``("min", "/pointer")``, ``("max", "/pointer")``, or a function of a
    :class:`Bid` returning a score (higher wins; applied here). The winner executes
    ``capability`` (input: ``input``, default ``task``); if it fails or exceeds
    ``execution_timeout``, the next bidder does. Recorded on the thread."""
    if not capability:
        raise InvalidParamsError(
            "contract_net needs capability: what the winner executes.", path="/capability"
        )
    task_bytes = to_json_bytes({} if task is None else task)
    request = cpb.ContractNetRequest(
        op_id=op_id,
        thread_id=thread_id,
        topic=topic,
        task=task_bytes,
        capability=capability,
        input_json=b"" if input is None else to_json_bytes(input),
        bid_timeout_ms=_millis(bid_timeout, "/bid_timeout_ms"),
        max_bids=max_bids,
        execution_timeout_ms=0
        if execution_timeout is None
        else _millis(execution_timeout, "/execution_timeout_ms"),
        max_attempts=max_attempts,
        timeout_ms=_millis(timeout),
        bidders=list(bidders),
        version=version,
    )
    if callable(scoring):
        op = op_id or uuid.uuid4().hex
        thread = thread_id or op
        gathered = await gather(
            ctx,
            topic or f"thread.{thread}.broadcast",
            task if task is not None else {},
            agents=bidders,
            strategy=JoinStrategy.FIRST_K if max_bids else JoinStrategy.ALL,
            k=max_bids,
            timeout=bid_timeout,
            thread_id=thread,
            op_id=op + "-cfp",
            headers={KIND_HEADER: "cfp", "loom-capability": capability},
        )
        request.op_id, request.thread_id = op, thread
        request.scoring = cpb.SCORING_RULE_GIVEN
        for reply in gathered.replies:
            if not reply.ok:
                continue
            bid = Bid(reply.responder, reply.payload, latency_ms=reply.latency_ms)
            try:
                score = float(scoring(bid))
            except (ValueError, TypeError, KeyError, LookupError):
                score = math.nan
            request.bids.append(
                cpb.Bid(bidder=bid.bidder, payload=bid.payload, score=score, latency_ms=bid.latency_ms)
            )
        if not request.bids:
            return ContractNetResult(
                op, thread, Outcome.NO_BIDS, no_bid=gathered.timed_out, elapsed_ms=gathered.elapsed_ms
            )
        response = await _unary(ctx, "ContractNet", request, cpb.ContractNetResult, timeout)
        result = ContractNetResult.from_proto(response)
        return ContractNetResult(
            result.op_id,
            result.thread_id,
            result.outcome,
            result.bids,
            result.attempts,
            result.winner,
            result.output_json,
            gathered.timed_out,
            result.elapsed_ms + gathered.elapsed_ms,
        )
    if isinstance(scoring, tuple):
        rule, pointer = scoring
        request.score_pointer = pointer
    else:
        rule = scoring
    if rule not in _RULES:
        raise InvalidParamsError(
            f"Unknown scoring {rule!r}: use 'lowest_cost', 'fastest', ('min', '/pointer'), ('max', "
            f"'/pointer') or a function.",
            path="/scoring",
        )
    request.scoring = _RULES[rule]  # type: ignore[assignment]
    response = await _unary(ctx, "ContractNet", request, cpb.ContractNetResult, timeout)
    return ContractNetResult.from_proto(response)
