"""Round-robin between connections over real sockets (Limits.pdus_per_turn): a connection whose
read holds a thousand PDUs gets a turn's worth handled, then the other connections theirs."""

from __future__ import annotations

import asyncio
import socket

from dcerpc.pdu import NDR20, Bind, BindAck, CoCancel, ContextElement, Request, Response, frame_length, parse
from dcerpc.protocol.limits import Limits
from dcerpc.rpcecho import Echo
from dcerpc.rpcecho.server import EchoServer
from dcerpc.server.server import Server

ADD_ONE = Echo.operation_named("AddOne").encode_request


async def _pdu(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> object:
    buf = b""
    while (n := frame_length(buf)) is None or len(buf) < n:
        chunk = await loop.sock_recv(sock, 65536)
        assert chunk, "closed"
        buf += chunk
    return parse(buf[:n]).pdu


async def _bound(loop: asyncio.AbstractEventLoop, port: int) -> socket.socket:
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    ctx = ContextElement(0, Echo.__syntax__, (NDR20,))
    await loop.sock_sendall(sock, Bind(call_id=1, contexts=(ctx,)).encode())
    assert isinstance(await _pdu(loop, sock), BindAck)
    return sock


def test_a_flooding_connection_does_not_hold_another_behind_its_read() -> None:
    """One connection has hundreds of KiB of co_cancels queued (16 octets each, no answer; the
    control rate is off so that pacing does not hide the turns); another's call, sent after all
    of them, is answered once at most a few turns' worth of them are handled. Before turns, the
    server handled a whole read of them first (1,024 in a 16 KiB read, 32 reads' worth per
    callback under uvloop) and only then the other connection."""
    limits = Limits(control_rate=0)

    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        server = Server(EchoServer(), limits=limits)
        _, port = await server.listen_tcp("127.0.0.1", 0)
        try:
            flood, other = await _bound(loop, port), await _bound(loop, port)
            data = CoCancel(call_id=7).encode() * 40_000
            sent = 0
            try:  # what the kernel takes now, without letting the server's loop run
                while sent < len(data):
                    sent += flood.send(data[sent:])
            except BlockingIOError:
                pass
            before = server.stats["pdus_in"]
            other.send(Request(call_id=2, opnum=0, stub=ADD_ONE(41)).encode())
            answer = await _pdu(loop, other)
            assert isinstance(answer, Response) and answer.stub[:4] == (42).to_bytes(4, "little")
            handled = server.stats["pdus_in"] - before - 1
            flood.close()
            other.close()
            return sent // 16, handled
        finally:
            await server.close(drain=0)

    queued, handled = asyncio.run(main())
    assert queued >= 4096  # enough in the server's socket to fill several reads
    # a turn for the call's read, its task, its answer, the client's read of it: a few turns'
    # worth of the flood meanwhile (before turns: a whole read's worth, 1,024, at each)
    assert handled <= 6 * limits.pdus_per_turn, (handled, queued)
