"""Fixtures for the Python interop suite: generated stubs, a bridge process, a channel.

The suite talks to the bridge with the official grpcio client only (no Loom SDK). Stubs are
generated at session start with Debian's protoc and grpc_python_plugin, which match
python3-protobuf 3.21 and python3-grpcio 1.51.

Environment:
  LOOM_BRIDGE_CMD        command that starts the bridge (run by /bin/sh from the repo root);
                         default: <repo>/loom up --grpc-port 0 --http-port 0
  LOOM_BRIDGE_GRPC_ADDR  host:port of a bridge that is already running: start none
  LOOM_BRIDGE_HTTP_ADDR  host:port of that bridge's HTTP/1.1 port (for /healthz), optional
  LOOM_BRIDGE_START_TIMEOUT_S  how long to wait for the ready line (default 120: first build)
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import grpc
import pytest

REPO = Path(__file__).resolve().parents[3]
READY_LINE = re.compile(
    r"^listening grpc=http://(127\.0\.0\.1:\d+) http=http://(127\.0\.0\.1:\d+)\s*$"
)
# High on purpose: the oversized-message test must reach the bridge, not be stopped here.
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.enable_http_proxy", 0),
]


@pytest.fixture(scope="session")
def pb(tmp_path_factory):
    """Generates the Python modules from proto/ and imports them."""
    out = tmp_path_factory.mktemp("loom_proto_gen")
    cmd = [
        "protoc",
        "-I", "proto",
        f"--python_out={out}",
        f"--grpc_out={out}",
        "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin",
        "proto/loom/v1/bridge.proto",
        "proto/grpc/health/v1/health.proto",
    ]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        pytest.fail(f"protoc failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr}")

    # loom/ and loom/v1/ become regular packages first on sys.path, so an installed Loom SDK
    # (also a package named `loom`) cannot shadow them.
    for pkg in (out / "loom", out / "loom" / "v1"):
        (pkg / "__init__.py").touch()
    if "loom" in sys.modules:
        pytest.fail("a module named 'loom' is already imported; the generated loom.v1 stubs would clash")
    sys.path.insert(0, str(out))
    bridge_pb2 = importlib.import_module("loom.v1.bridge_pb2")
    bridge_pb2_grpc = importlib.import_module("loom.v1.bridge_pb2_grpc")

    # grpc/health/v1 cannot go on sys.path as a package: `grpc` is grpcio itself. Load the
    # message module by file under its own name; the health call is made with a generic stub.
    health_file = out / "grpc" / "health" / "v1" / "health_pb2.py"
    spec = importlib.util.spec_from_file_location("loom_interop_health_pb2", health_file)
    health_pb2 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(health_pb2)

    return types.SimpleNamespace(
        bridge=bridge_pb2, bridge_grpc=bridge_pb2_grpc, health=health_pb2
    )


class _BridgeProcess:
    def __init__(self, cmd: str, log_path: Path):
        self.cmd = cmd
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            cmd,
            shell=True,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,  # its own process group: teardown kills build + server
        )
        self._lines: "queue.Queue[str | None]" = queue.Queue()
        self.extra_stdout: list[str] = []
        threading.Thread(target=self._pump, name="bridge-stdout", daemon=True).start()

    def _pump(self):
        # Keeps draining stdout for the whole session so the bridge never blocks on a full pipe.
        for raw in self.proc.stdout:
            self._lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
        self._lines.put(None)

    def log_tail(self, n: int = 60) -> str:
        try:
            self._log.flush()
            text = self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-n:])

    def wait_ready(self, timeout_s: float):
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"bridge printed no ready line within {timeout_s:.0f}s "
                    f"(stdout so far: {self.extra_stdout!r})\nstderr tail:\n{self.log_tail()}"
                )
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                code = self.proc.wait(timeout=10)
                raise RuntimeError(
                    f"bridge exited with {code} before it was ready "
                    f"(stdout: {self.extra_stdout!r})\nstderr tail:\n{self.log_tail()}"
                )
            m = READY_LINE.match(line)
            if m:
                return m.group(1), m.group(2)
            self.extra_stdout.append(line)

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                sys.stderr.write("loom bridge did not stop within 15s of SIGTERM; killing\n")
        # Whatever is left of the group (build servers, children) goes too.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()


@pytest.fixture(scope="session")
def bridge(tmp_path_factory):
    """Addresses of a running bridge: started here unless LOOM_BRIDGE_GRPC_ADDR is set."""
    given = os.environ.get("LOOM_BRIDGE_GRPC_ADDR")
    if given:
        yield types.SimpleNamespace(grpc=given, http=os.environ.get("LOOM_BRIDGE_HTTP_ADDR"))
        return

    cmd = os.environ.get("LOOM_BRIDGE_CMD")
    if not cmd:
        launcher = REPO / "loom"
        if not launcher.exists():
            pytest.fail(f"{launcher} does not exist; set LOOM_BRIDGE_CMD or LOOM_BRIDGE_GRPC_ADDR")
        cmd = f"{shlex.quote(str(launcher))} up --grpc-port 0 --http-port 0"
    timeout_s = float(os.environ.get("LOOM_BRIDGE_START_TIMEOUT_S", "120"))
    log_path = tmp_path_factory.mktemp("bridge") / "bridge.stderr.log"
    proc = _BridgeProcess(cmd, log_path)
    try:
        grpc_addr, http_addr = proc.wait_ready(timeout_s)
    except Exception as exc:  # noqa: BLE001 - reported as a fixture failure
        proc.stop()
        pytest.fail(f"could not start the bridge with `{cmd}`: {exc}")
    try:
        yield types.SimpleNamespace(grpc=grpc_addr, http=http_addr, process=proc)
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def channel(bridge):
    ch = grpc.insecure_channel(bridge.grpc, options=CHANNEL_OPTIONS)
    try:
        grpc.channel_ready_future(ch).result(timeout=10)
    except grpc.FutureTimeoutError:
        ch.close()
        pytest.fail(f"no HTTP/2 connection to the bridge at {bridge.grpc} within 10s")
    yield ch
    ch.close()


@pytest.fixture(scope="session")
def stub(channel, pb):
    return pb.bridge_grpc.BridgeStub(channel)
