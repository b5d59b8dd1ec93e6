"""Fixtures: a real bridge (started on port 0, or given by LOOM_BRIDGE_GRPC_ADDR /
LOOM_BRIDGE_HTTP_ADDR), the .NET test agent, and polling helpers. Tests never sleep-then-assert:
they poll a condition until a deadline, and every await has a timeout."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "sdk-python" / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

READY_LINE = re.compile(r"^listening grpc=http://(127\.0\.0\.1:\d+) http=http://(127\.0\.0\.1:\d+)\s*$")
TEST_AGENT = REPO / "tests" / "Loom.TestAgent" / "bin" / "Release" / "net10.0" / "Loom.TestAgent.dll"


class BridgeProcess:
    """A bridge started with `./loom up`; stop() ends its whole process group."""

    def __init__(
        self,
        grpc_port: int = 0,
        http_port: int = 0,
        log_dir: Optional[Path] = None,
        command: Optional[str] = None,
    ) -> None:
        cmd = command or os.environ.get("LOOM_BRIDGE_CMD") or f"{shlex.quote(str(REPO / 'loom'))} up"
        cmd += f" --grpc-port {grpc_port} --http-port {http_port}"
        self.log_path = (log_dir or Path("/tmp")) / f"bridge-{os.getpid()}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd,
            shell=True,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
        )
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.grpc = ""
        self.http = ""

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
        self._lines.put(None)

    def wait_ready(self, timeout: float) -> "BridgeProcess":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"bridge exited before it was ready:\n{self.log_tail()}")
            m = READY_LINE.match(line)
            if m:
                self.grpc, self.http = m.group(1), m.group(2)
                return self
        raise TimeoutError(f"bridge not ready within {timeout}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text("utf-8", "replace").splitlines()[-n:])

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()


class Bridge:
    def __init__(self, grpc: str, http: Optional[str]) -> None:
        self.grpc = grpc
        self.http = http
        self.url = "http://" + grpc


@pytest.fixture(scope="session")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    given = os.environ.get("LOOM_BRIDGE_GRPC_ADDR")
    if given:
        yield Bridge(given, os.environ.get("LOOM_BRIDGE_HTTP_ADDR"))
        return
    proc = BridgeProcess(log_dir=tmp_path_factory.mktemp("bridge"))
    try:
        proc.wait_ready(float(os.environ.get("LOOM_BRIDGE_START_TIMEOUT_S", "180")))
    except Exception as exc:  # noqa: BLE001
        proc.stop()
        pytest.fail(f"could not start the bridge: {exc}")
    try:
        yield Bridge(proc.grpc, proc.http)
    finally:
        proc.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


BRIDGE_DLL = REPO / "bridge" / "Loom.Cli" / "bin" / "Release" / "net10.0" / "loom.dll"


@pytest.fixture
def private_bridge(bridge: Bridge, tmp_path: Path) -> Iterator[Callable[..., BridgeProcess]]:
    """Starts bridges on chosen ports (for restart tests); all are stopped at the end. Runs the
    CLI built for the session bridge directly, so no rebuild happens between a stop and a start."""
    started: List[BridgeProcess] = []
    command = (
        f"DOTNET_ThreadPool_UnfairSemaphoreSpinLimit=0 dotnet {shlex.quote(str(BRIDGE_DLL))} up"
        if BRIDGE_DLL.exists() and not os.environ.get("LOOM_BRIDGE_CMD")
        else None
    )

    def start(grpc_port: int = 0, http_port: int = 0) -> BridgeProcess:
        proc = BridgeProcess(grpc_port, http_port, log_dir=tmp_path, command=command)
        started.append(proc)
        return proc.wait_ready(120)

    yield start
    for proc in started:
        proc.stop()


async def poll(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Polls a (sync or async) condition until it is truthy; fails with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await asyncio.wait_for(value, max(0.05, deadline - time.monotonic()))
        if value:
            return value
        last = value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        await asyncio.sleep(interval)


def http_get_json(http_addr: str, path: str, timeout: float = 5) -> Tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://{http_addr}{path}", timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None


class DotnetAgent:
    """A running `Loom.TestAgent` command: lines of stdout with deadlines."""

    def __init__(self, proc: asyncio.subprocess.Process, args: List[str]) -> None:
        self.proc = proc
        self.args = args

    async def line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        try:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except asyncio.TimeoutError:
            pytest.fail(f"Loom.TestAgent {' '.join(self.args)} printed nothing within {timeout}s")
        if not raw:
            err = b""
            if self.proc.stderr is not None:
                try:
                    err = await asyncio.wait_for(self.proc.stderr.read(), 5)
                except asyncio.TimeoutError:
                    pass
            pytest.fail(
                f"Loom.TestAgent {' '.join(self.args)} ended without output: "
                f"{err.decode(errors='replace')[-2000:]}"
            )
        return raw.decode().strip()

    async def json(self, timeout: float) -> Dict[str, Any]:
        while True:
            text = await self.line(timeout)
            if text.startswith("{"):
                return json.loads(text)  # type: ignore[no-any-return]

    async def ready(self, timeout: float = 60) -> None:
        while (await self.line(timeout)) != "ready":
            pass

    async def stop(self) -> None:
        if self.proc.returncode is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(self.proc.wait(), 10)
            except (ProcessLookupError, asyncio.TimeoutError):
                self.proc.kill()
                await asyncio.wait_for(self.proc.wait(), 10)


@pytest.fixture
async def dotnet() -> AsyncIterator[Callable[..., Awaitable[DotnetAgent]]]:
    if not TEST_AGENT.exists():
        pytest.fail(f"{TEST_AGENT} is missing; run `dotnet build tests/Loom.TestAgent -c Release`")
    running: List[DotnetAgent] = []

    async def start(*args: str) -> DotnetAgent:
        proc = await asyncio.create_subprocess_exec(
            "dotnet",
            str(TEST_AGENT),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        agent = DotnetAgent(proc, list(args))
        running.append(agent)
        return agent

    yield start
    for agent in running:
        await agent.stop()
