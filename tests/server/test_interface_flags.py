"""Registration flags per interface (Server.restrict, as Windows' RpcServerRegisterIf3 flags),
over real sockets: secure-only, local-only, the largest request, the most calls at once; each
refused with the fault Windows sends, before the stub is read, and others served."""

from __future__ import annotations

import asyncio
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import dcerpc
from dcerpc import FaultError
from dcerpc.auth import NTLM, NtlmProvider
from dcerpc.pdu import Fault, Request
from dcerpc.pdu import constants as const
from dcerpc.pdu.constants import PFC
from dcerpc.rpcecho import Echo
from dcerpc.rpcecho.server import EchoServer
from dcerpc.testing import ServerThread
from tests.server.test_bad_input import Raw


class Gate(EchoServer):
    """TestSleep waits for the test to open the gate (so calls overlap for as long as needed)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = 0

    async def TestSleep(self, seconds: int) -> int:
        self.started += 1
        while not self.gate.is_set():
            await asyncio.sleep(0.01)
        return seconds


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ServerThread, Gate, Path]]:
    users = tmp_path / "users"
    users.write_text("TESTDOM:alice:wonderland\n")
    impl = Gate()
    path = tmp_path / "rpc.sock"
    with ServerThread(impl, security=[NtlmProvider(users)], unix_path=str(path)) as srv:
        yield srv, impl, path


def tcp(srv: ServerThread) -> str:
    return f"ncacn_ip_tcp:127.0.0.1[{srv.port}]"


def test_secure_only_takes_authenticated_calls(served: tuple[ServerThread, Gate, Path]) -> None:
    srv, _, _ = served
    srv.server.restrict(Echo, secure_only=True)
    with dcerpc.connect_sync(tcp(srv)) as conn, pytest.raises(FaultError) as caught:
        conn.bind(Echo).AddOne(1)
    assert caught.value.status == const.RPC_S_ACCESS_DENIED
    creds = NTLM("TESTDOM", "alice", "wonderland")
    with dcerpc.connect_sync(tcp(srv), auth=creds, level="integrity") as conn:
        assert conn.bind(Echo).AddOne(1) == 2


def test_local_only_refuses_the_network(served: tuple[ServerThread, Gate, Path]) -> None:
    srv, _, path = served
    srv.server.restrict(Echo, local_only=True)
    raw = Raw(srv.port)
    raw.bind()
    raw.send(Request(call_id=2, opnum=0, stub=b"\xff"))  # never decoded
    fault = raw.recv()
    assert isinstance(fault, Fault) and fault.status == const.RPC_S_ACCESS_DENIED
    assert not fault.flags & PFC.DID_NOT_EXECUTE
    with dcerpc.connect_sync(f"ncalrpc:[{path}]") as conn:
        assert conn.bind(Echo).AddOne(1) == 2


def test_the_largest_request_is_the_interfaces_own(served: tuple[ServerThread, Gate, Path]) -> None:
    srv, _, _ = served
    srv.server.restrict(Echo, max_call_size=1024)
    with dcerpc.connect_sync(tcp(srv)) as conn:
        echo = conn.bind(Echo)
        assert echo.EchoData(1000, bytes(1000)) == bytes(1000)  # 1000 + 8 octets of stub
        with pytest.raises(FaultError) as caught:
            echo.EchoData(2000, bytes(2000))
        assert caught.value.status == const.RPC_S_ACCESS_DENIED
        assert echo.AddOne(1) == 2  # the connection goes on


def test_max_calls_bounds_the_calls_running_at_once(served: tuple[ServerThread, Gate, Path]) -> None:
    srv, impl, _ = served
    srv.server.restrict(Echo, max_calls=2)
    raws = [Raw(srv.port) for _ in range(3)]
    sleep = Echo.operation_named("TestSleep").encode_request
    for raw in raws:
        raw.bind()
    for raw in raws[:2]:
        raw.send(Request(call_id=2, opnum=6, stub=sleep(1)))
    deadline = 200
    while impl.started < 2 and deadline:  # both running (polled, not slept into order)
        threading.Event().wait(0.01)
        deadline -= 1
    raws[2].send(Request(call_id=2, opnum=6, stub=sleep(1)))
    busy = raws[2].recv()
    assert isinstance(busy, Fault) and busy.status == const.NCA_S_SERVER_TOO_BUSY
    assert busy.flags & PFC.DID_NOT_EXECUTE  # did not run: the client may retry
    impl.gate.set()
    for raw in raws[:2]:
        answer = raw.recv()
        assert answer is not None and not isinstance(answer, Fault)
        assert struct.unpack("<I", answer.stub[:4]) == (1,)  # type: ignore[union-attr]
    raws[2].send(Request(call_id=3, opnum=6, stub=sleep(1)))  # the slots are free again
    assert not isinstance(raws[2].recv(), Fault)
    assert srv.server._flags[Echo.__syntax__.uuid].running == 0
