"""Starting agents, and running them until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any, List, Optional

from ._agent import Agent
from ._capability import collect
from ._config import Config
from ._connection import Connection
from ._context import Context
from ._event import Event
from ._ids import new_agent_id

_log = logging.getLogger("loom.runner")


async def start_agent(
    agent: Agent, *, url: Optional[str] = None, config: Optional[Config] = None, **options: Any
) -> Connection:
    """Connects one agent: registers its topics and capabilities, opens the stream and calls
    :meth:`Agent.on_start`. Close the returned connection (``drain()``/``close()``) to stop it."""
    if not isinstance(agent, Agent):
        raise TypeError(f"start_agent takes a loom.Agent; got {type(agent).__name__}")
    capabilities = collect(agent).values()
    overrides = dict(options)
    overrides.setdefault("name", agent.display_name)
    if agent.agent_id:
        overrides["agent_id"] = agent.agent_id
    if agent.namespace:
        overrides["namespace"] = agent.namespace
    if url is not None:
        overrides["url"] = url
    if config is None:
        config = Config.load(**overrides)
    else:
        config = config.replace(**{k: v for k, v in overrides.items() if v is not None})
    connection = Connection(config, capabilities)

    def handler_for(ctx: Context) -> Any:
        async def handle(event: Event) -> None:
            await agent.on_event(ctx, event)

        return handle

    for pattern in dict.fromkeys(agent.topics):
        await connection.subscribe(pattern, handler_for(connection))
    await connection.start()
    try:
        await agent.on_start(connection)
    except BaseException:
        await connection.close()
        raise
    return connection


async def serve(
    *agents: Agent,
    url: Optional[str] = None,
    stop: Optional[asyncio.Event] = None,
    handle_signals: bool = True,
    **options: Any,
) -> None:
    """Runs agents until ``stop`` is set or SIGINT/SIGTERM arrives, then stops them cleanly
    (``on_stop``, then ``drain()``: handlers finish, calls finish, writes flush, bounded by
    ``drain_timeout_ms``)."""
    if not agents:
        raise ValueError("serve() needs at least one agent")
    stop_event = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: List[signal.Signals] = []
    if handle_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop_event.set)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
                pass
    connections: List[Connection] = []
    try:
        for agent in agents:
            opts = dict(options)
            if len(agents) > 1 and not agent.agent_id and "agent_id" not in opts:
                opts["agent_id"] = new_agent_id(agent.display_name)  # LOOM_AGENT_ID names one agent only
            connections.append(await start_agent(agent, url=url, **opts))
        _log.info("running %d agent(s): %s", len(connections), ", ".join(c.agent_id for c in connections))
        await stop_event.wait()
        _log.info("stopping %d agent(s)", len(connections))
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)

        async def stop_one(agent: Agent, connection: Connection) -> None:
            try:
                await asyncio.wait_for(agent.on_stop(connection), connection.config.drain_timeout)
            except Exception as exc:  # noqa: BLE001
                _log.error("agent %s: on_stop failed: %s: %s", connection.agent_id, type(exc).__name__, exc)
            await connection.drain()

        await asyncio.gather(*(stop_one(a, c) for a, c in zip(agents, connections)), return_exceptions=True)


def run(*agents: Agent, url: Optional[str] = None, **options: Any) -> None:
    """Runs agents until SIGINT/SIGTERM (blocking; creates the event loop)."""
    asyncio.run(serve(*agents, url=url, **options))
