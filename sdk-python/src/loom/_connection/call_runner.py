"""CallRunner: the calls the bridge pushes to this agent's capabilities: one task each (held in
the in-flight table), cancelled by the bridge's CancelCall or a lost stream, answered with an
ActionResult."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Dict, Optional, Tuple

from .. import _wire
from .._capability import BoundCapability
from .._errors import LoomError, NotFoundError
from .._proto import bridge_pb2 as pb

if TYPE_CHECKING:
    from .connection import Connection

_log = logging.getLogger("loom.connection")


class CallRunner:
    def __init__(self, conn: "Connection", capabilities: Dict[str, BoundCapability]) -> None:
        self.conn = conn
        self.capabilities = capabilities
        self.inflight: Dict[str, Tuple["asyncio.Task[None]", int]] = {}

    def start(self, call: pb.ActionCall, generation: int) -> None:
        conn = self.conn
        capability = self.capabilities.get(call.capability)
        if capability is None:
            error = NotFoundError(f"Agent {conn.agent_id!r} does not provide {call.capability!r}.")
            conn._writer.enqueue(_wire.result_item(call.call_id, conn.agent_id, 0, None, error.to_proto()))
            return
        if call.call_id in self.inflight:
            _log.warning("agent %s: duplicate pushed call %s ignored", conn.agent_id, call.call_id)
            return
        task = asyncio.get_running_loop().create_task(
            self._run(call, capability), name=f"loom-call-{call.capability}"
        )
        self.inflight[call.call_id] = (task, generation)

    def cancel(self, call_id: str) -> None:
        entry = self.inflight.pop(call_id, None)
        if entry is not None:
            entry[0].cancel()

    def cancel_up_to(self, generation: int) -> None:
        """The stream of ``generation`` (and older) is lost: nobody waits for those results."""
        for call_id, (task, gen) in list(self.inflight.items()):
            if gen <= generation:
                del self.inflight[call_id]
                task.cancel()

    @property
    def busy(self) -> bool:
        return bool(self.inflight)

    async def _run(self, call: pb.ActionCall, capability: BoundCapability) -> None:
        # No local deadline timer: past the call's deadline the bridge answers the caller with
        # TIMEOUT and sends a cancel, which cancels this task (as does a broken stream).
        conn = self.conn
        started = time.perf_counter()
        call_id = call.call_id
        output: Optional[bytes] = None
        error: Optional[pb.Error] = None
        try:
            output = await capability.invoke(call.input_json, conn, call)
        except asyncio.CancelledError:
            # The bridge cancelled it, or the stream broke: nobody waits, send nothing.
            self._forget(call_id)
            raise
        except LoomError as exc:
            if exc.code.value == "TOOL_ERROR":
                _log.warning(
                    "agent %s: capability %s failed: %s",
                    conn.agent_id,
                    call.capability,
                    exc.details.get("exception", "error"),
                    exc_info=_log.isEnabledFor(logging.DEBUG),
                )
            error = exc.to_proto()
        if not self._forget(call_id):
            return  # cancelled meanwhile: nobody waits
        duration = int((time.perf_counter() - started) * 1e6)
        conn._writer.enqueue(_wire.result_item(call_id, conn.agent_id, duration, output, error))

    def _forget(self, call_id: str) -> bool:
        entry = self.inflight.get(call_id)
        if entry is None or entry[0] is not asyncio.current_task():
            return False
        del self.inflight[call_id]
        return True
