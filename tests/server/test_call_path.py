"""The fast call path keeps every rule of the general one: over real sockets, our client and server
(and a raw socket where the octets themselves matter); in memory where a test decides how the octets
are split into reads (dcerpc.testing), or changes the server between two calls."""

from __future__ import annotations

import asyncio
import contextvars
import socket
import struct

import dcerpc
from dcerpc import FaultError, Interface, Server, current_call, operation
from dcerpc.ndr import uint32
from dcerpc.pdu import BindAck, Pdu, Response
from dcerpc.pdu import constants as const
from dcerpc.protocol.client import ClientAssociation
from dcerpc.rpcecho import Echo
from dcerpc.rpcecho.server import EchoServer
from dcerpc.testing import ServerThread, connect_in_memory
from tests.server.raw_peer import RawPeer

_seen: contextvars.ContextVar[int] = contextvars.ContextVar("seen", default=0)


class Probe(Interface, uuid="0d7a4a40-5a1e-4f4e-9f54-6f1c9d3b2a11", version=(1, 0)):
    @operation(0)
    async def Mark(self, value: uint32) -> uint32: ...

    @operation(1)
    async def CallId(self, value: uint32) -> uint32: ...


class ProbeServer(Probe):
    async def Mark(self, value: int) -> int:
        before = _seen.get()
        _seen.set(value)  # never reset: must not leak into the next call
        return before

    async def CallId(self, value: int) -> int:
        if value:
            await asyncio.sleep(0.01)  # the context must survive a wait
        return current_call().call_id


def _request(call_id: int, opnum: int, stub: bytes, context_id: int = 0) -> bytes:
    return (
        struct.pack(
            "<BBBB4sHHIIHH",
            5,
            0,
            0,
            3,
            b"\x10\0\0\0",
            24 + len(stub),
            0,
            call_id,
            len(stub),
            context_id,
            opnum,
        )
        + stub
    )


def _bound_socket(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    assoc = ClientAssociation()
    assoc.bind({0: Echo.__syntax__})
    sock.sendall(assoc.data_to_send())
    ack = sock.recv(4096)
    assert ack[2] == 12, "expected bind_ack"
    return sock


def _read_pdus(sock: socket.socket, count: int) -> list[bytes]:
    data = b""
    out: list[bytes] = []
    while len(out) < count:
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        data += chunk
        while len(data) >= 10 and len(data) >= int.from_bytes(data[8:10], "little"):
            n = int.from_bytes(data[8:10], "little")
            out.append(data[:n])
            data = data[n:]
    return out


def test_many_calls_in_flight_are_all_answered_rightly() -> None:
    with ServerThread(EchoServer()) as srv:

        async def main() -> list[int]:
            url = f"ncacn_ip_tcp:127.0.0.1[{srv.port}]"
            async with await dcerpc.connect(url, max_concurrent_calls=64) as conn:
                echo = await conn.bind(Echo)
                return list(await asyncio.gather(*(echo.AddOne(i) for i in range(1000))))

        assert asyncio.run(main()) == [i + 1 for i in range(1000)]


def _answers(pdus: list[Pdu | None]) -> dict[int, int]:
    """call_id -> the AddOne result, of responses."""
    out = {}
    for pdu in pdus:
        assert isinstance(pdu, Response), pdu
        out[pdu.call_id] = struct.unpack_from("<I", pdu.stub)[0]
    return out


def test_a_request_arriving_an_octet_at_a_time_is_answered() -> None:
    async def main() -> dict[int, int]:
        raw = RawPeer.to(Server(EchoServer()))
        assert isinstance(await raw.bind(), BindAck)
        raw.send(_request(7, 0, struct.pack("<I", 41)), chunks=[1])
        return _answers([await raw.recv()])

    assert asyncio.run(main()) == {7: 42}


def test_requests_sharing_reads_are_each_answered() -> None:
    """Three requests in one read, then two split across two reads: the first and the start of
    the next one's header, then the rest."""

    async def main() -> dict[int, int]:
        raw = RawPeer.to(Server(EchoServer()))
        assert isinstance(await raw.bind(), BindAck)
        raw.send(b"".join(_request(i, 0, struct.pack("<I", i)) for i in (1, 2, 3)))
        answers = [await raw.recv() for _ in range(3)]
        tail = _request(4, 0, struct.pack("<I", 4)) + _request(5, 0, struct.pack("<I", 5))
        raw.send(tail, chunks=[30, len(tail)])
        answers += [await raw.recv() for _ in range(2)]
        return _answers(answers)

    assert asyncio.run(main()) == {1: 2, 2: 3, 3: 4, 4: 5, 5: 6}


def test_a_reused_call_id_and_an_unknown_context_still_get_their_answers() -> None:
    with ServerThread(EchoServer()) as srv:
        sock = _bound_socket(srv.port)
        with sock:
            sock.sendall(_request(9, 0, struct.pack("<I", 1), context_id=5))  # never negotiated
            (fault,) = _read_pdus(sock, 1)
            assert fault[2] == 3  # fault
            assert struct.unpack_from("<I", fault, 24)[0] == const.NCA_S_UNK_IF
            sock.sendall(_request(10, 0, struct.pack("<I", 1)))
            (ok,) = _read_pdus(sock, 1)
            assert ok[2] == 2  # the connection serves on


def test_context_variables_an_implementation_sets_stay_its_own() -> None:
    with ServerThread(ProbeServer()) as srv:

        async def main() -> tuple[list[int], list[int]]:
            async with await dcerpc.connect(f"ncacn_ip_tcp:127.0.0.1[{srv.port}]") as conn:
                probe = await conn.bind(Probe)
                marks = [await probe.Mark(v) for v in (11, 22, 33)]
                ids = [await probe.CallId(0), await probe.CallId(1), await probe.CallId(0)]
                return marks, ids

        marks, ids = asyncio.run(main())
        assert marks == [0, 0, 0]  # each call starts from a clean context
        assert ids == sorted(ids) and len(set(ids)) == 3  # current_call() is each call's, even after a wait


def test_a_required_level_set_while_connected_applies_to_the_next_call() -> None:
    async def main() -> tuple[int, int]:
        server = Server(EchoServer())
        async with connect_in_memory(server) as conn:
            echo = await conn.bind(Echo)
            first = await echo.AddOne(1)
            server.require_auth(Echo, 6)
            try:
                await echo.AddOne(2)
            except FaultError as e:
                return first, e.status
            return first, 0

    assert asyncio.run(main()) == (2, const.RPC_S_ACCESS_DENIED)
