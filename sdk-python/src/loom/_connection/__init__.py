"""One agent's connection to a bridge: a small facade (:class:`Connection`, connection.py) over one
part per job, each in its own file with the same names as in the .NET and TypeScript SDKs
(docs/architecture.md): Supervisor, Writer, Reader, SubscriptionRouter, PendingCalls,
CallRunner, Heartbeat, DurableStreams."""

from .connection import Connection, Stats, connect
from .subscription_router import Subscription
from .supervisor import Status

__all__ = ["Connection", "Stats", "Status", "Subscription", "connect"]
