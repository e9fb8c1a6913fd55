"""Calling RPC servers: connections, typed proxies, string bindings, a sync facade."""

from .binding import Binding, parse_binding
from .connection import Connection, connect
from .sync import SyncConnection, SyncProxy, connect_sync

__all__ = ["Binding", "Connection", "SyncConnection", "SyncProxy", "connect", "connect_sync", "parse_binding"]
