"""The security-provider seam, end to end over TCP: a toy provider, and NTLM and SPNEGO through pyspnego.

Covers the three-leg handshake (bind, bind_ack, auth3), signing and sealing of fragmented requests and
responses with header signing, the principal reaching the implementation, and each failure: wrong
password, unknown user, tampered signature, replayed sequence number, an unprotected request on a
protected association, and a verifier naming a context that was never negotiated.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import dcerpc
from dcerpc import FaultError, current_call
from dcerpc.auth import NTLM, ClientCredentials, Negotiate, NegotiateProvider, NtlmProvider, SecurityProvider
from dcerpc.pdu import AuthLevel, Fault, PType, frame_length, parse
from dcerpc.pdu import constants as const
from dcerpc.pdu.co import AlterContext, AlterContextResp, Auth3, AuthVerifier, ContextElement, Response
from dcerpc.pdu.constants import PFC
from dcerpc.protocol.client import ClientAssociation
from dcerpc.protocol.events import BindAccepted, ResponseReceived
from dcerpc.protocol.limits import Limits
from dcerpc.protocol.security import AuthState, protect, unprotect
from dcerpc.rpcecho import Echo
from dcerpc.rpcecho.server import EchoServer
from dcerpc.testing import ServerThread
from tests.protocol.toy_auth import TOY_AUTH_TYPE, ToyCredentials, ToyProvider

USERS = {"alice": "wonderland", "bob": "builder"}
SMALL = Limits(max_fragment=2048)  # protected calls span many fragments each way


@dataclass(frozen=True)
class Mech:
    name: str
    auth_type: int
    principal: str  # what the server reports for alice

    def creds(self, user: str, password: str) -> ClientCredentials:
        if self.name == "ntlm":
            return NTLM("TESTDOM", user, password)
        if self.name == "spnego":
            return Negotiate("TESTDOM", user, password, kerberos=False)
        return ToyCredentials(user, password)

    def providers(self, tmp: Path) -> list[SecurityProvider]:
        users = tmp / "ntlm-users"
        users.write_text("".join(f"TESTDOM:{u}:{p}\n" for u, p in USERS.items()))
        return [ToyProvider(USERS), NtlmProvider(users), NegotiateProvider(users)]


MECHS = [
    Mech("toy", TOY_AUTH_TYPE, "alice"),
    Mech("ntlm", 10, "TESTDOM\\alice"),
    Mech("spnego", 9, "TESTDOM\\alice"),
]


@pytest.fixture(params=MECHS, ids=lambda m: m.name)
def mech(request: pytest.FixtureRequest) -> Mech:
    return request.param  # type: ignore[no-any-return]


class WhoAmI(EchoServer):
    async def TestCall(self, s1: str) -> str | None:
        call = current_call()
        return f"{call.principal}:{call.auth_type}:{call.auth_level}:{s1}"


@pytest.fixture
def server(mech: Mech, tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(WhoAmI(), security=mech.providers(tmp_path)) as srv:
        yield srv


def binding(srv: ServerThread, options: str = "") -> str:
    return f"ncacn_ip_tcp:127.0.0.1[{srv.port}{options}]"


@pytest.mark.parametrize("level", ["connect", "packet", "integrity", "privacy"])
def test_authenticated_calls_at_every_level(server: ServerThread, mech: Mech, level: str) -> None:
    async def main() -> None:
        creds = mech.creds("alice", "wonderland")
        async with await dcerpc.connect(binding(server), auth=creds, level=level, limits=SMALL) as conn:
            echo = await conn.bind(Echo)
            number = int(AuthLevel[level.upper()])
            assert await echo.TestCall("hi") == f"{mech.principal}:{mech.auth_type}:{number}:hi"
            data = bytes(range(256)) * 100  # many fragments each way, each protected on its own
            assert await echo.EchoData(len(data), data) == data
            results = await asyncio.gather(*(echo.AddOne(i) for i in range(50)))  # sequence order holds
            assert results == [i + 1 for i in range(50)]

    asyncio.run(main())


def test_binding_options_sign_and_seal(server: ServerThread, mech: Mech) -> None:
    with dcerpc.connect_sync(binding(server, ",seal")) as plain:  # no credentials: options alone do nothing
        assert plain.bind(Echo).AddOne(1) == 2

    async def main() -> None:
        creds = mech.creds("alice", "wonderland")
        async with await dcerpc.connect(binding(server, ",sign"), auth=creds, level="connect") as conn:
            assert (await (await conn.bind(Echo)).TestCall("x")).endswith(":5:x")

    asyncio.run(main())


@pytest.mark.parametrize(("user", "password"), [("alice", "wrong"), ("mallory", "x")])
def test_bad_credentials_are_refused(
    server: ServerThread, mech: Mech, user: str, password: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Three legs (toy, NTLM): bind_ack and auth3 complete, the first request is denied. SPNEGO's
    third token travels in an alter_context, which is answered with the access-denied fault."""
    caplog.set_level(logging.INFO, logger="dcerpc.server")

    async def main() -> None:
        with pytest.raises((FaultError, dcerpc.BindError)) as e:
            async with await dcerpc.connect(binding(server), auth=mech.creds(user, password)) as conn:
                echo = await conn.bind(Echo)
                await echo.AddOne(1)
        if isinstance(e.value, FaultError):
            assert e.value.status == const.RPC_S_ACCESS_DENIED
        else:
            assert mech.name == "spnego", e.value
            assert "access_denied" in str(e.value).lower() or "0x00000005" in str(e.value), e.value

    asyncio.run(main())
    assert any("authentication refused" in r.getMessage() for r in caplog.records)
    with dcerpc.connect_sync(binding(server)) as other:  # others are still served
        assert other.bind(Echo).AddOne(1) == 2


class RawAuthClient:
    """Our client association over a raw socket, so tests can meddle with protected fragments."""

    def __init__(self, port: int, mech: Mech, level: int = AuthLevel.INTEGRITY) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        ctx = mech.creds("alice", "wonderland").client_context("127.0.0.1", level)
        self.assoc = ClientAssociation(auth=AuthState(ctx, mech.auth_type, level, 0, header_sign=True))
        self.assoc.bind({0: Echo.__syntax__})
        self.pump()
        assert any(isinstance(e, BindAccepted) for e in self.events)

    def pump(self, send: bytes | None = None) -> None:
        self.sock.sendall(send if send is not None else self.assoc.data_to_send())
        self.events = []
        while not self.events:
            data = self.sock.recv(65536)
            if not data:
                return
            self.assoc.receive_data(data)
            self.events = self.assoc.events()
            out = self.assoc.data_to_send()  # auth3 after bind_ack
            if out:
                self.sock.sendall(out)

    def raw_reply(self, wire: bytes) -> object:
        self.sock.sendall(wire)
        buf = b""
        while True:
            n = frame_length(buf)
            if n is not None and len(buf) >= n:
                return parse(buf[:n]).pdu
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            buf += chunk


def test_tampered_request_is_refused(server: ServerThread, mech: Mech) -> None:
    c = RawAuthClient(server.port, mech)
    c.assoc.request(0, 0, Echo.operation_named("AddOne").encode_request(41))
    wire = bytearray(c.assoc.data_to_send())
    wire[24] ^= 0x01  # flip a stub bit: the signature no longer matches
    answer = c.raw_reply(bytes(wire))
    # a signature that does not verify is the security package's error (observed Windows behaviour)
    assert isinstance(answer, Fault) and answer.status == const.RPC_S_SEC_PKG_ERROR


def test_replayed_request_is_refused(server: ServerThread, mech: Mech) -> None:
    c = RawAuthClient(server.port, mech)
    c.assoc.request(0, 0, Echo.operation_named("AddOne").encode_request(41))
    wire = c.assoc.data_to_send()
    c.pump(wire)
    assert isinstance(c.events[0], ResponseReceived)
    replay = bytearray(wire)
    replay[12:16] = (99).to_bytes(4, "little")  # a new call_id, the old signature and sequence number
    answer = c.raw_reply(bytes(replay))
    assert isinstance(answer, Fault) and answer.status == const.RPC_S_SEC_PKG_ERROR


def test_unprotected_request_on_protected_association_runs_unauthenticated(
    server: ServerThread, mech: Mech
) -> None:
    """A request without a verifier belongs to the association's unauthenticated context, whatever
    other contexts it has (MS-RPCE 3.3.1.5.2: one security context per auth_context_id, and none for
    no verifier; observed Windows behaviour): it runs as nobody at level none, and an interface that
    requires a level refuses it (test_required_level_refuses_unauthenticated_requests)."""
    c = RawAuthClient(server.port, mech)
    from dcerpc.pdu import Request

    test_call = Echo.operation_named("TestCall")
    answer = c.raw_reply(
        Request(call_id=5, opnum=test_call.opnum, stub=test_call.encode_request("x")).encode()
    )
    assert isinstance(answer, Response) and answer.auth is None
    assert test_call.decode_response(answer.stub)[0] == "None:0:1:x"


def test_required_level_refuses_unauthenticated_requests(mech: Mech, tmp_path: Path) -> None:
    with ServerThread(WhoAmI(), security=mech.providers(tmp_path)) as srv:
        srv.server.require_auth(Echo, AuthLevel.INTEGRITY)
        c = RawAuthClient(srv.port, mech)
        from dcerpc.pdu import Request

        wire = Request(call_id=5, opnum=0, stub=Echo.operation_named("AddOne").encode_request(1)).encode()
        answer = c.raw_reply(wire)
        assert isinstance(answer, Fault) and answer.status == const.RPC_S_ACCESS_DENIED


def test_verifier_for_a_context_never_negotiated(server: ServerThread, mech: Mech) -> None:
    c = RawAuthClient(server.port, mech)
    c.assoc.request(0, 0, Echo.operation_named("AddOne").encode_request(41))
    wire = bytearray(c.assoc.data_to_send())
    auth_len = int.from_bytes(wire[10:12], "little")
    trailer = len(wire) - auth_len - 8
    wire[trailer + 4 : trailer + 8] = (7).to_bytes(4, "little")  # auth_context_id 7
    answer = c.raw_reply(bytes(wire))
    assert isinstance(answer, Fault) and answer.status == const.RPC_S_ACCESS_DENIED
    assert answer.ptype == PType.FAULT


def test_unknown_auth_type_gets_bind_nak_reason_8(server: ServerThread, mech: Mech) -> None:
    class Other(ToyCredentials):
        auth_type = 201

    async def main() -> None:
        with pytest.raises(dcerpc.BindError, match="authentication_type_not_recognized"):
            async with await dcerpc.connect(binding(server), auth=Other("alice", "wonderland")) as conn:
                await conn.bind(Echo)

    asyncio.run(main())


def test_out_of_order_requests_are_refused(server: ServerThread, mech: Mech) -> None:
    """Two signed requests delivered in the opposite order: the sequence numbers no longer match."""
    c = RawAuthClient(server.port, mech)
    add_one = Echo.operation_named("AddOne")
    c.assoc.request(0, 0, add_one.encode_request(1))
    first = c.assoc.data_to_send()
    c.assoc.request(0, 0, add_one.encode_request(2))
    second = c.assoc.data_to_send()
    answer = c.raw_reply(second)
    assert isinstance(answer, Fault) and answer.status == const.RPC_S_SEC_PKG_ERROR
    assert first  # never delivered: the association is closed


def test_second_security_context_on_alter_context(server: ServerThread, mech: Mech) -> None:
    """A second auth_context_id, authenticated by alter_context, serves calls as its own principal
    beside the first (MS-RPCE 3.3.1.5.2.1: several security contexts on one association)."""
    c = RawAuthClient(server.port, mech)  # context 0: alice
    ctx2 = mech.creds("bob", "builder").client_context("127.0.0.1", AuthLevel.INTEGRITY)
    second = AuthState(ctx2, mech.auth_type, AuthLevel.INTEGRITY, context_id=1, header_sign=True)

    def verifier(token: bytes | None) -> AuthVerifier:
        return AuthVerifier(
            auth_type=mech.auth_type, auth_level=AuthLevel.INTEGRITY, context_id=1, value=token or b""
        )

    token = ctx2.step(None)
    elems = (ContextElement(0, Echo.__syntax__, (const.NDR20,)),)
    reply = c.raw_reply(AlterContext(call_id=50, contexts=elems, auth=verifier(token)).encode())
    while not ctx2.complete or token is not None:
        assert isinstance(reply, AlterContextResp) and reply.auth is not None, reply
        token = ctx2.step(reply.auth.value)
        if token is None:
            break
        if ctx2.complete and ctx2.third_leg == "auth3":
            c.sock.sendall(Auth3(call_id=51, auth=verifier(token)).encode())
            break
        reply = c.raw_reply(AlterContext(call_id=52, contexts=elems, auth=verifier(token)).encode())

    def whoami(state: AuthState, call_id: int) -> str:
        stub = Echo.operation_named("TestCall").encode_request("hi")
        body = struct.pack("<IHH", len(stub), 0, Echo.operation_named("TestCall").opnum)
        flags = PFC.FIRST_FRAG | PFC.LAST_FRAG
        answer = c.raw_reply(protect(state, PType.REQUEST, flags, call_id, body, stub))
        assert isinstance(answer, Response) and answer.auth is not None, answer
        raw = protect_reply = answer.encode()
        start = 24
        end = len(raw) - 8 - len(answer.auth.value)
        plain = unprotect(state, protect_reply, start, end, answer.auth.pad_length, answer.auth.value)
        return str(Echo.operation_named("TestCall").decode_response(plain)[0])

    assert whoami(second, 60).startswith(mech.principal.replace("alice", "bob"))
    assert c.assoc.auth is not None
    assert whoami(c.assoc.auth, 61).startswith(mech.principal)
