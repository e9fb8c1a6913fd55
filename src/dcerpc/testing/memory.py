"""Our client and our Server joined in memory: whole-stack tests with no sockets, in one event loop.

    server = Server(EchoServer())
    async with connect_in_memory(server) as conn:
        echo = await conn.bind(Echo)
        assert await echo.AddOne(41) == 42

Theory of operation. :func:`connect_in_memory` makes the client with the public
:func:`dcerpc.connect` (every option it has: authentication, level, limits, timeouts), from a
binding with no endpoint, for which ``connect`` opens nothing yet (it would ask the endpoint mapper
at the first bind); then it joins the client's protocol to the protocol the Server gives an accepted
connection with :func:`~dcerpc.testing.transport.transport_pair`. From there on, everything is what
runs over TCP (the server sees an ncacn_ip_tcp connection from ``client_address`` to
``server_address``), except that octets move between two objects on the same loop.

:func:`serve_in_memory` joins any protocol (a test's raw peer, sending hand-made or hostile
octets) to the Server; :func:`connect_in_memory` given a protocol instead of a Server joins our
client to it (a scripted, misbehaving server).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ..aio.server import ServerProtocol
from ..auth.base import ClientCredentials
from ..client.connection import Connection, connect
from ..protocol.limits import Limits
from ..server.server import Server
from .transport import MemoryTransport, transport_pair

__all__ = ["connect_in_memory", "serve_in_memory"]

CLIENT_ADDRESS = ("127.0.0.1", 50000)
SERVER_ADDRESS = ("127.0.0.1", 49152)


def _protocol_for(owner: Server | Connection) -> asyncio.BaseProtocol:
    """The protocol object that serves (a Server) or carries (a client Connection) one connection:
    the ones a listener and a connect would make."""
    if isinstance(owner, Server):
        return ServerProtocol(owner.accept, "ncacn_ip_tcp")
    return owner.protocol


def serve_in_memory(
    server: Server,
    protocol: asyncio.BaseProtocol,
    *,
    client_address: Any = CLIENT_ADDRESS,
    server_address: Any = SERVER_ADDRESS,
) -> tuple[MemoryTransport, MemoryTransport]:
    """Give ``server`` a connection from ``protocol``; returns (``protocol``'s transport, the
    server's). Call it where the event loop runs; the server's ``connection_made`` comes first.

        peer = MyRawPeer()                         # any asyncio.Protocol
        transport, _ = serve_in_memory(server, peer)
        transport.write(bind_pdu)                  # the server reads it on the next turn
    """
    return transport_pair(
        protocol, _protocol_for(server), client_address=client_address, server_address=server_address
    )


@asynccontextmanager
async def connect_in_memory(
    target: Server | asyncio.BaseProtocol,
    *,
    auth: ClientCredentials | None = None,
    level: str | int = "privacy",
    limits: Limits | None = None,
    call_timeout: float | None = None,
    max_concurrent_calls: int = 64,
    client_address: Any = CLIENT_ADDRESS,
    server_address: Any = SERVER_ADDRESS,
) -> AsyncIterator[Connection]:
    """Our client, connected in memory to ``target``: a :class:`Server`, or a protocol standing in
    for one (it gets the connection as a server's protocol would). Closed on leaving the block,
    once both ends have seen ``connection_lost`` (where the target is a Server).

    Args:
        auth, level, limits, call_timeout, max_concurrent_calls: as :func:`dcerpc.connect` takes them.
        client_address, server_address: the (host, port) each end reports for itself.
    """
    host = server_address[0] if isinstance(server_address, tuple) else "127.0.0.1"
    conn = await connect(
        f"ncacn_ip_tcp:{host}",  # no endpoint: connect opens nothing (see the module docstring)
        auth=auth,
        level=level,
        limits=limits,
        call_timeout=call_timeout,
        max_concurrent_calls=max_concurrent_calls,
    )
    if isinstance(server_address, tuple):
        conn.binding = conn.binding.with_endpoint(str(server_address[1]))
    server_side = _protocol_for(target) if isinstance(target, Server) else target
    client_t, server_t = transport_pair(
        _protocol_for(conn), server_side, client_address=client_address, server_address=server_address
    )
    try:
        yield conn
    finally:
        await conn.close()
        await client_t.wait_closed()
        if isinstance(target, Server):  # our server closes on end-of-file
            await server_t.wait_closed()
