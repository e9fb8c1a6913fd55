"""Helpers for testing code that uses dcerpc, and for dcerpc's own tests.

    from dcerpc.testing import connect_in_memory

    async def test_add_one() -> None:
        async with connect_in_memory(Server(EchoServer())) as conn:
            echo = await conn.bind(Echo)
            assert await echo.AddOne(41) == 42

- :func:`connect_in_memory`: our client connected to a :class:`~dcerpc.Server` (or to a protocol
  playing one) in memory, the whole stack but the socket; :func:`serve_in_memory` gives a Server a
  connection from any protocol (a raw peer).
- :class:`MemoryTransport` / :func:`transport_pair`: the asyncio transports under them, with reads
  split where a test chooses (``transport.chunks``).
- :class:`AssociationPair`: the sans-IO client and server associations joined in memory, no loop.
- :class:`ServerThread`: a real server on a real socket in a background thread.

docs/testing.md shows them at work.
"""

from .memory import connect_in_memory, serve_in_memory
from .pair import AssociationPair, Moved
from .thread import ServerThread
from .transport import MemoryTransport, transport_pair

__all__ = [
    "AssociationPair",
    "MemoryTransport",
    "Moved",
    "ServerThread",
    "connect_in_memory",
    "serve_in_memory",
    "transport_pair",
]
