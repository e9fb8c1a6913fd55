"""Calling RPC servers: connections, typed proxies, string bindings, a sync facade."""

from .binding import Binding, parse_binding
from .connection import Connection, connect
from .sync import SyncConnection, connect_sync

__all__ = ["Binding", "Connection", "SyncConnection", "connect", "connect_sync", "parse_binding"]
