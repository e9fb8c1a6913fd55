"""The policy on the wire, over real sockets: a denied source is closed at accept before any PDU
is read, a denied interface is rejected at bind as if not served, a denied call is fault
rpc_s_access_denied before its stub is read, audit-only calls run and are recorded, the mapper and
mgmt hide what the policy hides, and a new policy applies to connections already open."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import dcerpc
from dcerpc import FaultError
from dcerpc.auth import NTLM, NtlmProvider
from dcerpc.epm.idl import Epm
from dcerpc.epm.map import EndpointMap, Entry
from dcerpc.epm.service import EpmService
from dcerpc.epm.towers import tcp_tower
from dcerpc.mgmt.idl import Mgmt
from dcerpc.ndr import ContextHandle
from dcerpc.pdu import BindAck, ContextElement, ContextResult, Fault, ProviderReason, Request, Response
from dcerpc.pdu import constants as const
from dcerpc.policy import parse
from dcerpc.rpcecho import Echo
from dcerpc.rpcecho.server import EchoServer
from dcerpc.testing import ServerThread
from tests.server.test_bad_input import ECHO, Raw, logged
from tests.server.test_slots import WAIT, connect, server_closed

MGMT = Mgmt.__syntax__


class Stub(EchoServer):
    """Counts the calls that reached an implementation (a denied call must not)."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    async def AddOne(self, in_data: int) -> int:
        self.ran.append("AddOne")
        return await super().AddOne(in_data)

    async def SourceData(self, len: int) -> bytes:
        self.ran.append("SourceData")
        return await super().SourceData(len)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ServerThread, Stub]]:
    users = tmp_path / "users"
    users.write_text("TESTDOM:alice:wonderland\nTESTDOM:bob:builder\n")
    impl = Stub()
    with ServerThread(impl, security=[NtlmProvider(users)]) as srv:
        yield srv, impl


def use(srv: ServerThread, text: str) -> None:
    srv.server.policy = parse(text, "test.toml")


def binding(srv: ServerThread) -> str:
    return f"ncacn_ip_tcp:127.0.0.1[{srv.port}]"


def test_a_denied_source_is_closed_at_accept(
    served: tuple[ServerThread, Stub], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dcerpc.server")
    srv, _ = served
    use(srv, '[[rule]]\naction = "deny"\nsource = "127.0.0.2"\n')
    denied = connect(srv.port, source="127.0.0.2")
    assert server_closed(denied, WAIT)  # nothing sent, nothing read: closed
    assert srv.server.refusals["policy"] == 1
    assert srv.server.enforcer.decisions["accept:deny"] == 1
    assert logged(caplog, "policy deny: accept from 127.0.0.2")
    with dcerpc.connect_sync(binding(srv)) as conn:  # from 127.0.0.1: served
        assert conn.bind(Echo).AddOne(1) == 2


def test_a_denied_interface_is_rejected_at_bind_as_not_served(served: tuple[ServerThread, Stub]) -> None:
    srv, _ = served
    use(srv, '[[rule]]\naction = "deny"\ninterface = "rpcecho"\n')
    raw = Raw(srv.port)
    answer = raw.bind(ContextElement(0, ECHO, (const.NDR20,)), ContextElement(1, MGMT, (const.NDR20,)))
    assert isinstance(answer, BindAck)
    echo, mgmt = answer.results
    assert (echo.result, echo.reason) == (
        ContextResult.PROVIDER_REJECTION,
        ProviderReason.ABSTRACT_SYNTAX_NOT_SUPPORTED,
    )
    assert mgmt.result == ContextResult.ACCEPTANCE
    assert srv.server.enforcer.decisions["bind:deny"] == 1
    with pytest.raises(dcerpc.BindError), dcerpc.connect_sync(binding(srv)) as conn:
        conn.bind(Echo)


def test_a_denied_call_is_access_denied_before_its_stub_is_read(served: tuple[ServerThread, Stub]) -> None:
    srv, impl = served
    use(srv, '[[rule]]\naction = "deny"\ninterface = "rpcecho"\nopnum = "3-4"\n')
    raw = Raw(srv.port)
    assert isinstance(raw.bind(), BindAck)
    raw.send(Request(call_id=2, opnum=3, stub=b"\xff"))  # would not even decode: never read
    fault = raw.recv()
    assert isinstance(fault, Fault) and fault.status == const.RPC_S_ACCESS_DENIED
    assert not fault.flags & const.PFC.DID_NOT_EXECUTE  # as Windows answers access denied
    raw.send(Request(call_id=3, opnum=0, stub=struct.pack("<I", 41)))
    answer = raw.recv()
    assert isinstance(answer, Response) and answer.stub[:4] == struct.pack("<I", 42)
    assert impl.ran == ["AddOne"]
    with dcerpc.connect_sync(binding(srv)) as conn:
        with pytest.raises(FaultError) as caught:
            conn.bind(Echo).SourceData(4)
        assert caught.value.status == const.RPC_S_ACCESS_DENIED


def test_rules_on_the_caller_judge_each_call(served: tuple[ServerThread, Stub]) -> None:
    """Principal, auth type and level: alice at integrity or above may call SourceData, bob may
    not, anonymous callers may only AddOne; the decision is per call, the same connection asks
    again after a new policy."""
    srv, impl = served
    use(
        srv,
        """
default = "deny"
[[rule]]
action = "allow"
interface = ["epmapper", "mgmt"]
[[rule]]
action = "allow"
interface = "rpcecho"
opnum = 0
[[rule]]
action = "audit"
interface = "rpcecho"
principal = 'TESTDOM\\alice'
auth_type = "ntlm"
auth_level = "integrity"
""",
    )

    async def main() -> None:
        for user, expect in (("alice", True), ("bob", False)):
            creds = NTLM("TESTDOM", user, "wonderland" if user == "alice" else "builder")
            async with await dcerpc.connect(binding(srv), auth=creds, level="integrity") as conn:
                echo = await conn.bind(Echo)
                assert await echo.AddOne(1) == 2
                if expect:
                    assert bytes(await echo.SourceData(3)) == b"\0\1\2"
                else:
                    with pytest.raises(FaultError) as caught:
                        await echo.SourceData(3)
                    assert caught.value.status == const.RPC_S_ACCESS_DENIED
        async with await dcerpc.connect(binding(srv)) as conn:
            echo = await conn.bind(Echo)
            assert await echo.AddOne(5) == 6
            with pytest.raises(FaultError):
                await echo.SourceData(3)
            srv.server.policy = None  # lifted: the same connection is served
            assert bytes(await echo.SourceData(2)) == b"\0\1"

    asyncio.run(main())
    assert impl.ran.count("SourceData") == 2
    assert srv.server.enforcer.decisions["call:audit"] == 1
    assert srv.server.enforcer.decisions["call:deny"] == 2


def _epm_rows(srv: ServerThread) -> tuple[set[str], set[str]]:
    """The interfaces an anonymous caller sees in ept_lookup, and in inq_if_ids."""

    async def main() -> tuple[set[str], set[str]]:
        async with await dcerpc.connect(binding(srv)) as conn:
            epm = await conn.bind(Epm)
            res = await epm.ept_lookup(0, None, None, 1, ContextHandle(), 500)
            seen = {str(e.tower.tower_octet_string.hex()) for e in res.entries if e is not None and e.tower}
            mgmt = await conn.bind(Mgmt)
            ids = await mgmt.inq_if_ids()
            listed = {str(i.uuid) for i in ids.if_id_vector.if_id if i is not None}
            return seen, listed

    return asyncio.run(main())


def test_the_mapper_and_mgmt_hide_what_the_policy_hides() -> None:
    """An endpoint mapper with rpcecho registered; a visibility rule hides rpcecho from anonymous
    callers: not in ept_lookup, ept_map says not registered, not in inq_if_ids."""
    epmap = EndpointMap()
    tower = tcp_tower(Echo.__syntax__, 4444, "127.0.0.1")
    epmap.insert([Entry.make(uuid.UUID(int=0), tower, "echo")])
    with ServerThread(EpmService(epmap), EchoServer()) as srv:
        before_lookup, before_ids = _epm_rows(srv)
        assert len(before_lookup) == 1 and str(Echo.__syntax__.uuid) in before_ids
        use(srv, '[[rule]]\naction = "deny"\nepm_interface = "rpcecho"\nauth_type = "none"\n')
        after_lookup, after_ids = _epm_rows(srv)
        assert not after_lookup and str(Echo.__syntax__.uuid) not in after_ids
        assert str(Epm.__syntax__.uuid) in after_ids
        with dcerpc.connect_sync(binding(srv)) as conn:  # hidden, not denied: still callable
            assert conn.bind(Echo).AddOne(1) == 2
        assert srv.server.enforcer.decisions["view:deny"] >= 2


def test_a_denied_local_peer_is_refused_over_ncalrpc(tmp_path: Path) -> None:
    path = str(tmp_path / "rpc.sock")
    with ServerThread(EchoServer(), unix_path=path) as srv:
        use(srv, '[[rule]]\naction = "deny"\ntransport = "local"\n')
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(path)
        sock.settimeout(WAIT)
        assert sock.recv(16) == b""
        assert srv.server.refusals["policy"] == 1
