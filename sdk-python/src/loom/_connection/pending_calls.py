"""PendingCalls: the correlation table of requests awaiting a reply (calls, memory, subscribe
acks, publish acks, consumer and stream replies, replies to requests on the bus), with
deadlines, and failing them all when the stream is lost."""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional

from .. import _wire
from .._errors import InvalidParamsError, LoomError, RequestTimeoutError, UnavailableError, from_proto
from .._event import Event
from .._proto import bridge_pb2 as pb
from .writer import OutboundRequest

if TYPE_CHECKING:
    from .connection import Connection

_log = logging.getLogger("loom.connection")


class RequestTimedOut(Exception):
    """Internal: a pending request's deadline passed (each caller turns it into a typed error)."""


def _expire(future: "asyncio.Future[Any]") -> None:
    if not future.done():
        future.set_exception(RequestTimedOut())


async def wait_with_deadline(future: "asyncio.Future[Any]", timeout: float) -> Any:
    """Awaits a future with a deadline (cheaper than asyncio.wait_for: no extra task)."""
    handle = asyncio.get_running_loop().call_later(timeout, _expire, future)
    try:
        return await future
    finally:
        handle.cancel()


class ReplyWaiter:
    __slots__ = ("future", "count", "replies")

    def __init__(self, future: "asyncio.Future[List[Event]]", count: int) -> None:
        self.future = future
        self.count = count
        self.replies: List[Event] = []


class PendingCalls:
    def __init__(self, conn: "Connection") -> None:
        self.conn = conn
        self.table: Dict[str, "asyncio.Future[pb.ServerMessage]"] = {}
        self.replies: Dict[str, ReplyWaiter] = {}

    async def send_and_wait(self, key: str, item: bytes, timeout: float) -> pb.ServerMessage:
        conn = self.conn
        conn._check_open()
        if not conn._connected:
            raise UnavailableError(
                f"Not connected to the bridge (status {conn.status.value}); retry once the connection is "
                f"back."
            )
        if key in self.table:
            raise InvalidParamsError(
                f"Id {key!r} is already in flight; use a unique id per request.", path="/call_id"
            )
        future: "asyncio.Future[pb.ServerMessage]" = asyncio.get_running_loop().create_future()
        self.table[key] = future
        conn._writer.enqueue(OutboundRequest(key, item))
        try:
            return await wait_with_deadline(future, timeout)  # type: ignore[no-any-return]
        finally:
            self.table.pop(key, None)

    def complete(self, correlation_id: str, message: pb.ServerMessage) -> None:
        future = self.table.pop(correlation_id, None)
        if future is None:
            self.conn.stats.late_responses += 1
            _log.debug("agent %s: late or unknown answer %s", self.conn.agent_id, correlation_id)
        elif not future.done():
            future.set_result(message)

    def complete_if_waiting(self, correlation_id: str, message: pb.ServerMessage) -> None:
        future = self.table.pop(correlation_id, None)
        if future is not None and not future.done():
            future.set_result(message)

    def on_error(self, message: pb.ServerMessage) -> None:
        reply = message.error
        conn = self.conn
        if reply.correlation_id and reply.correlation_id in self.table:
            conn._router.forget_pending(reply.correlation_id)
            self.complete(reply.correlation_id, message)
            return
        error = reply.error
        if not reply.correlation_id:
            _log.error(
                "agent %s: session error from the bridge: %s %s",
                conn.agent_id,
                pb.ErrorCode.Name(error.code),
                error.message,
            )
        else:
            conn.stats.publish_errors += 1
            _log.warning(
                "agent %s: the bridge rejected envelope %s: %s %s",
                conn.agent_id,
                reply.correlation_id,
                pb.ErrorCode.Name(error.code),
                error.message,
            )

    def on_reply(self, envelope: pb.Envelope, inbox_prefix: str, subscription_id: str) -> None:
        cid = envelope.correlation_id
        prefix = inbox_prefix + "."
        if not cid and envelope.topic.startswith(prefix):
            cid = envelope.topic[len(prefix) :]
        waiter = self.replies.get(cid)
        if waiter is None:
            self.conn.stats.late_replies += 1
            _log.debug("agent %s: reply %s nobody waits for (late?)", self.conn.agent_id, cid)
            return
        waiter.replies.append(Event.from_proto(envelope, subscription_id))
        if len(waiter.replies) >= waiter.count:
            del self.replies[cid]
            if not waiter.future.done():
                waiter.future.set_result(waiter.replies)

    def fail_all(self, error: LoomError) -> None:
        for cid in list(self.table):
            future = self.table.pop(cid)
            if not future.done():
                future.set_exception(error)
        for cid in list(self.replies):
            waiter = self.replies.pop(cid)
            if not waiter.future.done():
                waiter.future.set_exception(error)

    # -- requests ------------------------------------------------------------------------------
    async def call(self, call: pb.ActionCall, timeout: Optional[float]) -> bytes:
        conn = self.conn
        seconds = timeout if timeout is not None else conn.config.call_timeout
        call.call_id = conn._ids.next()
        call.timeout_ms = max(1, math.ceil(seconds * 1000))
        grace = min(1.0, 0.1 + seconds * 0.05)
        cancel = _wire.item_of(pb.ClientMessage(cancel=pb.CancelCall(call_id=call.call_id)))
        try:
            reply = await self.send_and_wait(
                call.call_id, _wire.item_of(pb.ClientMessage(call=call)), seconds + grace
            )
        except RequestTimedOut:
            conn._writer.enqueue(cancel)
            raise RequestTimeoutError(
                f"Call to {call.capability!r} got no result within {seconds:g} s."
            ) from None
        except asyncio.CancelledError:
            if conn._connected:
                conn._writer.enqueue(cancel)
            raise
        if reply.WhichOneof("kind") == "error":
            raise from_proto(reply.error.error)
        result = reply.result
        if result.WhichOneof("outcome") == "error":
            raise from_proto(result.error)
        return result.output_json

    async def memory(self, request: pb.MemoryRequest, timeout: Optional[float]) -> pb.MemoryResponse:
        conn = self.conn
        seconds = timeout if timeout is not None else conn.config.request_timeout
        request.correlation_id = conn._ids.next()
        item = _wire.item_of(pb.ClientMessage(memory=request))
        try:
            reply = await self.send_and_wait(request.correlation_id, item, seconds)
        except RequestTimedOut:
            raise RequestTimeoutError(
                f"The bridge did not answer the memory {request.WhichOneof('op')} within {seconds:g} s."
            ) from None
        if reply.WhichOneof("kind") == "error":
            raise from_proto(reply.error.error)
        response = reply.memory
        if response.HasField("error") and response.error.code != 0:
            raise from_proto(response.error)
        return response

    async def request(
        self,
        topic: str,
        payload: bytes,
        content_type: str,
        count: int,
        min_count: int,
        timeout: Optional[float],
        options: Mapping[str, Any],
    ) -> List[Event]:
        conn = self.conn
        seconds = timeout if timeout is not None else conn.config.request_timeout
        if seconds <= 0:
            raise InvalidParamsError(
                f"A request timeout must be positive; got {seconds!r} s.", path="/timeout"
            )
        cid = conn._ids.next()
        waiter = ReplyWaiter(asyncio.get_running_loop().create_future(), count)
        self.replies[cid] = waiter
        try:
            ttl = options.get("ttl")
            _, wait = conn._publish_nowait(
                topic,
                payload,
                content_type,
                options.get("thread_id") or "",
                cid,
                conn._router.inbox_prefix + "." + cid,
                max(1, math.ceil(ttl * 1000)) if ttl else 0,
                0,
                options.get("headers"),
                "",
                "",
            )
            if wait is not None:
                await wait
            try:
                return await wait_with_deadline(waiter.future, seconds)  # type: ignore[no-any-return]
            except RequestTimedOut:
                if len(waiter.replies) >= min_count and waiter.replies:
                    return list(waiter.replies)
                error = RequestTimeoutError(
                    f"{len(waiter.replies)} of {count} replies to the request on {topic!r} arrived within "
                    f"{seconds:g} s."
                    if count > 1
                    else f"No reply to the request on {topic!r} within {seconds:g} s."
                )
                error.replies = list(waiter.replies)  # type: ignore[attr-defined]
                raise error from None
        finally:
            self.replies.pop(cid, None)
