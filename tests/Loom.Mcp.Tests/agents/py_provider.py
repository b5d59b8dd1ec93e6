"""A Python agent (sdk-python) whose capabilities the MCP exposure tests call through /mcp.
Run with /usr/bin/python3 and PYTHONPATH=<repo>/sdk-python/src:
  py_provider.py --url GRPC_URL [--agent-id ID]
Serves py.add, py.greet, py.whoami and py.fail; prints `ready` once registered; runs until
SIGTERM/SIGINT or until stdin closes."""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from typing import Any, Dict

import loom


@loom.capability("py.add")
async def py_add(a: float, b: float) -> Dict[str, float]:
    """Adds a and b (Python)."""
    return {"sum": a + b}


@loom.capability("py.greet")
def py_greet(name: str) -> str:
    """Greets someone by name (Python)."""
    return f"Hello, {name}!"


@loom.capability("py.whoami")
async def py_whoami(info: loom.CallInfo) -> Dict[str, str]:
    """Tells who called (Python)."""
    return {"caller": info.caller, "capability": info.capability}


@loom.capability("py.fail")
async def py_fail(reason: str) -> str:
    """Always fails (Python)."""
    raise RuntimeError(f"py.fail refused: {reason}")


def arg(name: str, default: str) -> str:
    args = sys.argv[1:]
    flag = f"--{name}"
    return args[args.index(flag) + 1] if flag in args and args.index(flag) + 1 < len(args) else default


async def main() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def watch_stdin() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    options: Dict[str, Any] = {"agent_id": arg("agent-id", "")} if arg("agent-id", "") else {}
    conn = await asyncio.wait_for(
        loom.connect(arg("url", "http://127.0.0.1:7070"), name="py-mcp-provider", capabilities=[py_add, py_greet, py_whoami, py_fail], **options),
        30,
    )
    print("ready", flush=True)
    await stop.wait()
    await asyncio.wait_for(conn.close(), 10)


if __name__ == "__main__":
    asyncio.run(main())
