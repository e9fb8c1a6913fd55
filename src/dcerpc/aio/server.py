"""The asyncio end of one accepted server connection: a :class:`~.stream.StreamProtocol` that asks
its server to take the connection, and knows who the peer is.

    server.listen_tcp -> loop.create_server(lambda: ServerProtocol(server.accept, "ncacn_ip_tcp"))
    connection_made   -> peer, local address, SO_PEERCRED (ncalrpc) -> accept(protocol)
                         accept attaches an association and its dispatch (``server.dispatch``), or
                         refuses: False, and the connection is aborted

A full write buffer stops reads as well (backpressure: new requests would only make more answers).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from typing import Any

from ..protocol.framing import Inbox
from .stream import StreamProtocol

__all__ = ["ServerProtocol", "peer_credentials"]


def peer_credentials(transport: asyncio.BaseTransport) -> tuple[int, int, int] | None:
    """(pid, uid, gid) of a Unix-socket peer (SO_PEERCRED); None for other transports."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family != socket.AF_UNIX or not hasattr(socket, "SO_PEERCRED"):
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


class ServerProtocol(StreamProtocol):
    """One accepted connection.

    Args:
        accept: called once connected; attaches the connection's owner (:meth:`attach`) and
            returns True, or returns False to refuse it.
        transport_name: "ncacn_ip_tcp" or "ncalrpc" (what the owner reports to implementations).

    Attributes:
        peer, local: the transport's peer and local addresses.
        credentials: the peer's (pid, uid, gid) over ncalrpc, else None.
    """

    pause_reading_when_full = True

    def __init__(self, accept: Callable[[ServerProtocol], bool], transport_name: str) -> None:
        # Reads go to this inbox, made now so that the transport can be given its get_buffer before
        # the association (made on accept) exists.
        super().__init__(Inbox())
        self._accept = accept
        self.transport_name = transport_name
        self.peer: Any = None
        self.local: Any = None
        self.credentials: tuple[int, int, int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.peer = transport.get_extra_info("peername")
        self.local = transport.get_extra_info("sockname")
        if self.transport_name == "ncalrpc":  # asking a TCP transport for its socket costs a wrapper
            self.credentials = peer_credentials(transport)
        if not self._accept(self):
            self.abort()
