"""Serving RPC interfaces: the Server, the call context, and dispatch."""

from .context import CallContext, current_call
from .server import Server

__all__ = ["CallContext", "Server", "current_call"]
