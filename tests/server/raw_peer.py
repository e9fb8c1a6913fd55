"""A client that speaks raw PDUs to a Server over an in-memory connection (dcerpc.testing)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from dcerpc.pdu import NDR20, Bind, ContextElement, Pdu, frame_length, parse
from dcerpc.rpcecho import Echo
from dcerpc.server.server import Server
from dcerpc.testing import MemoryTransport, serve_in_memory

WAIT = 5.0  # a bound on waiting for what must come at once: a bug hangs no test


class RawPeer(asyncio.Protocol):
    """Sends octets as given (split into reads where asked); hands back whole PDUs, then None once
    the server closed the connection."""

    def __init__(self) -> None:
        self.buf = b""
        self.received: asyncio.Queue[Pdu | None] = asyncio.Queue()
        self.lost: BaseException | None = None
        self.transport: MemoryTransport

    @classmethod
    def to(cls, server: Server) -> RawPeer:
        peer = cls()
        serve_in_memory(server, peer)
        return peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, MemoryTransport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (n := frame_length(self.buf)) is not None and len(self.buf) >= n:
            pdu, self.buf = parse(self.buf[:n]).pdu, self.buf[n:]
            self.received.put_nowait(pdu)

    def eof_received(self) -> None:
        self.received.put_nowait(None)  # and the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc
        self.received.put_nowait(None)

    def send(self, data: bytes | Pdu, chunks: Sequence[int] | None = None) -> None:
        """Write ``data``; the server reads it in reads of ``chunks`` sizes (None: in one)."""
        self.transport.chunks = chunks
        self.transport.write(data.encode() if isinstance(data, Pdu) else data)

    async def recv(self) -> Pdu | None:
        """The next PDU, or None when the server closed the connection."""
        async with asyncio.timeout(WAIT):
            return await self.received.get()

    async def closed(self) -> bool:
        """True when the server closes the connection (after any PDUs still in flight)."""
        async with asyncio.timeout(WAIT):
            while await self.received.get() is not None:
                pass
        return True

    async def bind(self, **kw: object) -> Pdu | None:
        self.send(Bind(call_id=1, contexts=(ContextElement(0, Echo.__syntax__, (NDR20,)),), **kw))  # type: ignore[arg-type]
        return await self.recv()
