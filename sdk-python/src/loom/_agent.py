"""The Agent base class."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from ._context import Context
from ._event import Event


class Agent:
    """Base class of a Loom agent. Set ``name`` and ``topics`` (patterns with ``*`` and ``>``),
    override :meth:`on_event`, and decorate methods with ``@capability`` to answer calls::

        class Greeter(loom.Agent):
            name = "greeter"
            topics = ["greetings.>"]

            async def on_event(self, ctx: loom.Context, event: loom.Event) -> None:
                if event.is_request:
                    await ctx.reply(event, {"hello": event.data["name"]})

            @loom.capability
            async def greet(self, name: str) -> str:
                return f"hello {name}"

    Run it with :func:`loom.run` (until SIGINT/SIGTERM) or :func:`loom.start_agent`. Events of one
    topic pattern reach :meth:`on_event` in order, one at a time; an exception there is logged
    and the agent goes on. ``capabilities`` may also list ``@capability`` module functions.
    """

    name: str = ""
    """Display name and stem of a generated agent id; default: the class name."""
    topics: Sequence[str] = ()
    """Patterns whose events go to :meth:`on_event`."""
    agent_id: str = ""
    """Stable agent id; default: ``LOOM_AGENT_ID`` (single agent) or ``<name>-<8 hex>``."""
    namespace: str = ""
    """Namespace (the default memory namespace); default ``LOOM_NAMESPACE`` or ``default``."""
    capabilities: Sequence[Any] = ()
    """Extra ``@capability`` functions this agent serves besides its decorated methods."""

    def __init__(
        self,
        *,
        name: Optional[str] = None,
        topics: Optional[Sequence[str]] = None,
        agent_id: Optional[str] = None,
        namespace: Optional[str] = None,
    ) -> None:
        if name is not None:
            self.name = name
        if topics is not None:
            self.topics = list(topics)
        if agent_id is not None:
            self.agent_id = agent_id
        if namespace is not None:
            self.namespace = namespace

    @property
    def display_name(self) -> str:
        return self.name or type(self).__name__

    async def on_start(self, ctx: Context) -> None:
        """Called once connected, before the runner waits for a signal."""

    async def on_event(self, ctx: Context, event: Event) -> None:
        """Handles one event of :attr:`topics`. Reply to requests with ``ctx.reply(event, ...)``."""

    async def on_stop(self, ctx: Context) -> None:
        """Called when the runner stops, before the connection drains."""
