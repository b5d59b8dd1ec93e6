"""Small helpers over the raw generated stubs: registration and an EventStream wrapper.

No Loom SDK: everything here is grpcio and the generated messages. Waits are on queues with
deadlines, never sleep-then-assert.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid

import grpc

SESSION_HEADER = "loom-session-id"
ERROR_CODE_TRAILER = "loom-error-code"


def uid() -> str:
    return uuid.uuid4().hex[:12]


def now_ms() -> int:
    return int(time.time() * 1000)


def trailer(err: grpc.RpcError, name: str):
    """Value of a trailing-metadata key of a failed call, or None."""
    for key, value in err.trailing_metadata() or ():
        if key == name:
            return value
    return None


def describe(err) -> str:
    if err is None:
        return "status OK"
    try:
        return f"{err.code()} {err.details()!r} trailers={list(err.trailing_metadata() or ())}"
    except Exception:  # noqa: BLE001
        return repr(err)


def register(stub, pb, *, agent_id=None, subscriptions=(), capabilities=(), metadata=None, timeout=10):
    req = pb.bridge.RegisterAgentRequest(
        agent_id=agent_id or f"interop-py-{uid()}",
        name="python interop test",
        sdk="interop-python/grpcio-" + grpc.__version__,
        subscriptions=list(subscriptions),
        capabilities=list(capabilities),
        metadata=metadata or {},
    )
    return stub.RegisterAgent(req, timeout=timeout)


_END = object()


class AgentStream:
    """One EventStream call: frames go out through a queue-fed request iterator, a reader
    thread puts every ServerMessage (as (kind, message)) on a queue. Server heartbeats are
    answered with a client heartbeat. Use as a context manager."""

    def __init__(self, stub, pb, session_id: str, *, timeout: float = 60.0):
        self._pb = pb
        self._send_q: "queue.Queue" = queue.Queue()
        self._recv_q: "queue.Queue" = queue.Queue()
        self._backlog: list = []
        self._heartbeat_seq = 0
        self.errors: list = []  # every ErrorReply seen, for failure messages
        self.status = None  # grpc.RpcError when the call ended with a non-OK status
        self.ended = threading.Event()
        self._call = stub.EventStream(
            self._requests(), metadata=((SESSION_HEADER, session_id),), timeout=timeout
        )
        self._reader = threading.Thread(target=self._read, name="event-stream-reader", daemon=True)
        self._reader.start()

    # -- sending
    def _requests(self):
        while True:
            frame = self._send_q.get()
            if frame is None:
                return
            yield frame

    def send(self, *messages):
        """Sends one ClientFrame carrying the given ClientMessages."""
        self._send_q.put(self._pb.bridge.ClientFrame(messages=list(messages)))

    def subscribe(self, pattern: str, timeout: float = 5.0, **subscription_fields):
        """Subscribes over the stream and waits for the Ack; also proves the stream is live."""
        pb = self._pb.bridge
        cid = f"sub-{uid()}"
        self.send(
            pb.ClientMessage(
                subscribe=pb.SubscribeRequest(
                    correlation_id=cid,
                    subscription=pb.Subscription(pattern=pattern, **subscription_fields),
                )
            )
        )
        kind, msg = self.next_of(
            ("ack", "error"), lambda k, m: m.correlation_id == cid, timeout=timeout,
            what=f"Ack for subscribe correlation_id={cid}",
        )
        assert kind == "ack", f"subscribe {pattern!r} failed: {msg}"
        return msg

    # -- receiving
    def _read(self):
        pb = self._pb.bridge
        try:
            for frame in self._call:
                for m in frame.messages:
                    kind = m.WhichOneof("kind")
                    if kind == "heartbeat":
                        self._heartbeat_seq += 1
                        self.send(
                            pb.ClientMessage(
                                heartbeat=pb.HeartbeatPing(
                                    sequence=self._heartbeat_seq, sent_unix_ms=now_ms()
                                )
                            )
                        )
                        continue
                    body = getattr(m, kind) if kind else None
                    if kind == "error":
                        self.errors.append(body)
                    self._recv_q.put((kind, body))
        except grpc.RpcError as err:
            self.status = err
        except Exception as err:  # noqa: BLE001 - surfaced through status
            self.status = err
        finally:
            self.ended.set()
            self._recv_q.put(_END)

    def next_of(self, kinds, pred=None, *, timeout: float = 5.0, what: str | None = None):
        """Returns the first (kind, message) with kind in kinds and pred(kind, msg) true.
        Messages that do not match stay queued for later calls."""
        kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
        ok = lambda k, m: k in kinds and (pred is None or pred(k, m))  # noqa: E731
        for i, (k, m) in enumerate(self._backlog):
            if ok(k, m):
                del self._backlog[i]
                return k, m
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what or kinds}; "
                    f"unmatched messages: {[k for k, _ in self._backlog][:20]}; "
                    f"ErrorReplies: {[str(e) for e in self.errors][:5]}"
                )
            try:
                item = self._recv_q.get(timeout=remaining)
            except queue.Empty:
                continue
            if item is _END:
                self._recv_q.put(_END)
                raise AssertionError(
                    f"EventStream ended ({describe(self.status)}) while waiting for {what or kinds}; "
                    f"ErrorReplies: {[str(e) for e in self.errors][:5]}"
                )
            k, m = item
            if ok(k, m):
                return k, m
            self._backlog.append(item)

    def next(self, kind: str, pred=None, *, timeout: float = 5.0, what: str | None = None):
        p = None if pred is None else (lambda k, m: pred(m))
        return self.next_of((kind,), p, timeout=timeout, what=what or kind)[1]

    def wait_end(self, timeout: float):
        if not self.ended.wait(timeout):
            raise AssertionError(f"EventStream did not end within {timeout}s")
        return self.status

    # -- lifetime
    def close(self):
        self._call.cancel()
        self._send_q.put(None)
        self._reader.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
