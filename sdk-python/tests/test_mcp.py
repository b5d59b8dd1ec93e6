"""MCP ingestion seen from a Python agent: a bridge started with `loom up --config loom.yaml`
ingests @modelcontextprotocol/server-everything (stdio, installed from the committed lock file in
tests/Loom.Mcp.Tests/npm, the copy the C# suite uses); its tools are listed as `everything:*`
capabilities and called with `invoke` like any other capability."""

from __future__ import annotations

import asyncio
import base64
import fcntl
import json
import os
import shlex
import shutil
import subprocess
import time
from typing import Any, Dict, Iterator, List, Optional

import pytest

import loom
from conftest import REPO, BridgeProcess, http_get_json, poll

T = 20.0  # per-await bound
NPM_DIR = REPO / "tests" / "Loom.Mcp.Tests" / "npm"
EVERYTHING = NPM_DIR / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
INSTALL_TIMEOUT = 300.0


def _installed() -> bool:
    hidden = NPM_DIR / "node_modules" / ".package-lock.json"
    return (
        hidden.exists()
        and EVERYTHING.exists()
        and hidden.stat().st_mtime >= (NPM_DIR / "package-lock.json").stat().st_mtime
    )


def ensure_mcp_servers() -> None:
    """`npm ci` in tests/Loom.Mcp.Tests/npm unless node_modules is newer than the lock file, under
    the C# fixture's lock file (`.install.lock`; .NET's FileShare.None is an flock too)."""
    if _installed():
        return
    if shutil.which("npm") is None:
        pytest.fail("npm is needed to install the MCP test servers (Node.js 20+ with npm)")
    with open(NPM_DIR / ".install.lock", "a+b") as lock:
        deadline = time.monotonic() + INSTALL_TIMEOUT
        while True:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another process held {NPM_DIR / '.install.lock'} for {INSTALL_TIMEOUT}s")
                time.sleep(0.2)  # another test process is installing
        try:
            if _installed():
                return
            done = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=NPM_DIR,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
            if done.returncode != 0 or not _installed():
                pytest.fail(
                    f"npm ci in {NPM_DIR} failed (exit "
                    f"{done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
                )
        finally:
            # removed while still held, as the C# fixture's DeleteOnClose does: no stray file
            (NPM_DIR / ".install.lock").unlink(missing_ok=True)
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


class McpBridge:
    def __init__(self, proc: BridgeProcess) -> None:
        self.proc = proc
        self.url = "http://" + proc.grpc
        self.http = proc.http


@pytest.fixture(scope="module")
def mcp_bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpBridge]:
    ensure_mcp_servers()
    directory = tmp_path_factory.mktemp("mcp")
    config = directory / "loom.yaml"
    config.write_text(
        "name: sdk-python-mcp-test\n"
        "mcp_servers:\n"
        "  - name: everything\n"
        "    command: node\n"
        f"    args: [{json.dumps(str(EVERYTHING))}, stdio]\n"
        f"    cwd: {json.dumps(str(NPM_DIR))}\n",
        "utf-8",
    )
    base = os.environ.get("LOOM_BRIDGE_CMD") or f"{shlex.quote(str(REPO / 'loom'))} up"
    proc = BridgeProcess(log_dir=directory, command=f"{base} --config {shlex.quote(str(config))}")
    try:
        proc.wait_ready(float(os.environ.get("LOOM_BRIDGE_START_TIMEOUT_S", "180")))
    except Exception as exc:  # noqa: BLE001
        proc.stop()
        pytest.fail(f"could not start the bridge with {config}: {exc}")
    try:
        yield McpBridge(proc)
    finally:
        proc.stop()


async def capabilities(bridge: McpBridge) -> List[Dict[str, Any]]:
    status, body = await asyncio.to_thread(http_get_json, bridge.http, "/v1/capabilities")
    found: List[Dict[str, Any]] = body["capabilities"] if status == 200 and isinstance(body, dict) else []
    return found


async def wait_for_tools(bridge: McpBridge, *names: str) -> List[Dict[str, Any]]:
    async def listed() -> Optional[List[Dict[str, Any]]]:
        caps = await capabilities(bridge)
        have = {c["name"] for c in caps}
        return caps if all(n in have for n in names) else None

    what = f"{', '.join(names)} in GET /v1/capabilities (bridge log:\n{bridge.proc.log_tail()})"
    return await poll(listed, 60, what, interval=0.1)  # type: ignore[no-any-return]


async def test_mcp_tools_are_listed_as_capabilities(mcp_bridge: McpBridge) -> None:
    caps = await wait_for_tools(mcp_bridge, "everything:echo", "everything:get-sum")
    echo = next(c for c in caps if c["name"] == "everything:echo")
    assert echo["description"] == "Echoes back the input string"
    assert "mcp" in echo["tags"]
    assert [p["agent_id"] for p in echo["providers"]] == ["mcp:everything"]
    assert echo["input_schema"]["properties"]["message"]["type"] == "string"
    get_sum = next(c for c in caps if c["name"] == "everything:get-sum")
    assert {"a", "b"} <= set(get_sum["input_schema"]["properties"])
    # the server as an agent (sdk "mcp")
    status, body = await asyncio.to_thread(http_get_json, mcp_bridge.http, "/v1/agents")
    assert status == 200
    agent = next(a for a in body["agents"] if a["agent_id"] == "mcp:everything")
    assert agent["sdk"] == "mcp" and "everything:echo" in agent["capabilities"]


async def test_mcp_tools_called_from_python(mcp_bridge: McpBridge) -> None:
    await wait_for_tools(mcp_bridge, "everything:echo", "everything:get-sum", "everything:get-tiny-image")
    async with loom.connect(mcp_bridge.url, name="py-mcp-caller") as conn:
        echo = await conn.invoke("everything:echo", {"message": "hello from python ✓"}, timeout=T)
        assert echo == {"content": [{"type": "text", "text": "Echo: hello from python ✓"}]}

        total = await conn.tool("everything:get-sum", {"a": 2, "b": 3.5}, timeout=T)
        assert isinstance(total["content"], list) and total["content"][0]["type"] == "text"
        assert "5.5" in total["content"][0]["text"]
        assert "isError" not in total

        image = await conn.invoke("everything:get-tiny-image", {}, timeout=T)
        png = next(c for c in image["content"] if c["type"] == "image")
        assert png["mimeType"] == "image/png"
        assert base64.b64decode(png["data"])[:4] == b"\x89PNG"

        raw = await conn.invoke_raw("everything:echo", b'{"message":"raw"}', timeout=T)
        assert json.loads(raw)["content"][0]["text"] == "Echo: raw"


async def test_mcp_bad_arguments_are_invalid_params(mcp_bridge: McpBridge) -> None:
    await wait_for_tools(mcp_bridge, "everything:echo", "everything:get-sum")
    async with loom.connect(mcp_bridge.url, name="py-mcp-caller") as conn:
        with pytest.raises(loom.InvalidParamsError) as info:
            await conn.invoke("everything:get-sum", {"a": "two", "b": 3}, timeout=T)
        assert info.value.code is loom.ErrorCode.INVALID_PARAMS and info.value.path == "/a", info.value
        with pytest.raises(loom.InvalidParamsError) as missing:
            await conn.invoke("everything:echo", {}, timeout=T)
        assert "message" in missing.value.message
        with pytest.raises(loom.NotFoundError):
            await conn.invoke("everything:no-such-tool", {}, timeout=T)
        # the server still answers
        assert (await conn.invoke("everything:echo", {"message": "still here"}, timeout=T))["content"][0][
            "text"
        ] == "Echo: still here"
