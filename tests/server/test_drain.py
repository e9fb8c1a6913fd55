"""Stopping a server (Server.close, what SIGTERM does): a call in progress is answered, a new call
on a connection already open is refused with nca_s_server_too_busy marked did-not-execute (retry
elsewhere), an idle connection is sent a shutdown PDU (C706 12.6.4.11), and new connections are
not accepted. Over real sockets, server and raw clients in one event loop."""

from __future__ import annotations

import asyncio
import struct

from dcerpc.pdu import Fault, Pdu, Request, Response, Shutdown, parse
from dcerpc.pdu import constants as const
from dcerpc.pdu.constants import PFC
from dcerpc.rpcecho import Echo
from dcerpc.rpcecho.server import EchoServer
from dcerpc.server import Server
from tests.server.test_teardown import _bound_socket

SLEEP = Echo.operation_named("TestSleep").encode_request
ADD_ONE = Echo.operation_named("AddOne").encode_request


async def _pdu(reader: asyncio.StreamReader) -> Pdu:
    head = await asyncio.wait_for(reader.readexactly(16), 10)
    body = await reader.readexactly(int.from_bytes(head[8:10], "little") - 16)
    return parse(head + body).pdu


def test_draining_answers_calls_in_progress_and_refuses_new_ones() -> None:
    async def main() -> None:
        server = Server(EchoServer())
        _, port = await server.listen_tcp("127.0.0.1", 0)
        busy_r, busy_w = await _bound_socket(port)
        other_r, other_w = await _bound_socket(port)
        idle_r, _idle_w = await _bound_socket(port)
        busy_w.write(Request(call_id=2, opnum=6, stub=SLEEP(1)).encode())
        while not any(c.tasks for c in server._connections):  # the call is running
            await asyncio.sleep(0.005)
        closing = asyncio.create_task(server.close(drain=5))
        assert isinstance(await _pdu(idle_r), Shutdown)  # idle connections are asked to go
        assert isinstance(await _pdu(other_r), Shutdown)
        other_w.write(Request(call_id=2, opnum=0, stub=ADD_ONE(1)).encode())  # one that does not
        refused = await _pdu(other_r)
        assert isinstance(refused, Fault) and refused.status == const.NCA_S_SERVER_TOO_BUSY
        assert refused.flags & PFC.DID_NOT_EXECUTE
        answer = await _pdu(busy_r)  # the call in progress is answered
        assert isinstance(answer, Response) and struct.unpack("<I", answer.stub[:4]) == (1,)
        await closing
        try:
            await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
        except OSError:
            pass  # not listening any more
        else:
            raise AssertionError("a new connection was accepted while stopped")

    asyncio.run(main())
