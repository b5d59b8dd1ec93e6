"""Reader: the read loop of a stream. Decodes each ServerFrame and dispatches its messages by
kind to the parts (deliveries to the SubscriptionRouter or DurableStreams, pushed calls to the
CallRunner, answers to PendingCalls). A delivery that must wait (a full BLOCK queue, a full
consumer queue) holds the loop: backpressure reaches the bridge."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Awaitable, Optional

import grpc.aio

from .._errors import UnavailableError
from .._proto import bridge_pb2 as pb

if TYPE_CHECKING:
    from .connection import Connection
    from .supervisor import Session

_log = logging.getLogger("loom.connection")


class Reader:
    def __init__(self, conn: "Connection") -> None:
        self.conn = conn

    async def run(self, session: "Session") -> None:
        call = session.call
        stats = self.conn.stats
        dispatch = self.dispatch
        try:
            while True:
                frame = await call.read()
                if frame is grpc.aio.EOF:
                    break
                session.last_received = time.monotonic()
                messages = frame.messages
                stats.frames_received += 1
                stats.messages_received += len(messages)
                for message in messages:
                    wait = dispatch(message, session.generation)
                    if wait is not None:
                        await wait
            code = await asyncio.wait_for(call.code(), 5)
            details = await asyncio.wait_for(call.details(), 5)
            session.end(
                None
                if self.conn._closing
                else UnavailableError(f"the bridge ended the stream: {code.name} {details}")
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken stream ends the session; the supervisor reconnects
            session.end(exc)

    def dispatch(self, message: pb.ServerMessage, generation: int) -> Optional[Awaitable[None]]:
        conn = self.conn
        kind = message.WhichOneof("kind")
        if kind == "deliver":
            delivery = message.deliver
            if delivery.consumer:
                return conn._durable.on_delivery(delivery)
            return conn._router.deliver(delivery)
        pending = conn._pending
        if kind == "call":
            conn._calls.start(message.call, generation)
        elif kind == "result":
            pending.complete(message.result.call_id, message)
        elif kind == "ack":
            conn._router.on_ack(message)
        elif kind == "memory":
            pending.complete(message.memory.correlation_id, message)
        elif kind == "error":
            pending.on_error(message)
        elif kind == "cancel":
            conn._calls.cancel(message.cancel.call_id)
        elif kind == "heartbeat":
            pass
        elif kind == "publish_ack":
            pending.complete(message.publish_ack.correlation_id, message)
        elif kind == "consumer":
            if message.consumer.correlation_id:  # none on the attach after a reconnect
                pending.complete(message.consumer.correlation_id, message)
        elif kind == "read":
            pending.complete(message.read.correlation_id, message)
        elif kind == "stream_admin":
            pending.complete(message.stream_admin.correlation_id, message)
        else:
            _log.debug("agent %s: ignoring unknown server message kind %r", conn.agent_id, kind)
        return None
