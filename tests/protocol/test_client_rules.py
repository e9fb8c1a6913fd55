"""The client role's rules, one by one: what a server may not send, and what the client does about it.

Sans-IO, on an AssociationPair (dcerpc.testing): the server's octets are made by a real
ServerAssociation, or by hand and injected into the client where the server would not send them.
Each violation is checked by its event (fatal, a key phrase of its reason: the wording is for
people) and by what follows it: Closing, and nothing more read. The last tests run our asyncio
client against a scripted server in memory: how each outcome reaches the caller.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

import pytest

from dcerpc import BindError, FaultError, RpcError
from dcerpc.auth import SecurityContext
from dcerpc.pdu import (
    PFC,
    AuthVerifier,
    Bind,
    BindAck,
    BindNak,
    ContextResultItem,
    Fault,
    Pdu,
    RejectReason,
    Request,
    Response,
    Shutdown,
)
from dcerpc.pdu import constants as const
from dcerpc.pdu.constants import AuthLevel
from dcerpc.protocol.client import ClientAssociation
from dcerpc.protocol.events import (
    BindRejected,
    CallReceived,
    Closing,
    Event,
    FaultReceived,
    ProtocolViolation,
    ResponseReceived,
    ShutdownRequested,
)
from dcerpc.protocol.groups import GroupTable
from dcerpc.protocol.limits import Limits
from dcerpc.protocol.security import AuthState
from dcerpc.protocol.server import ServerAssociation
from dcerpc.rpcecho import Echo
from dcerpc.testing import AssociationPair, connect_in_memory
from tests.protocol.toy_auth import TOY_AUTH_TYPE, ToyContext, ToyProvider

ECHO = Echo.__syntax__
ADD_ONE = Echo.operation_named("AddOne")
WAIT = 5.0


def violation(events: list[Event], phrase: str) -> ProtocolViolation:
    """The one fatal violation in ``events``, its reason naming ``phrase``, followed by Closing."""
    found = [e for e in events if isinstance(e, ProtocolViolation)]
    assert len(found) == 1, events
    assert found[0].fatal
    assert phrase.lower() in found[0].reason.lower(), found[0].reason
    assert isinstance(events[-1], Closing), events
    return found[0]


def bound(limits: Limits | None = None) -> AssociationPair:
    pair = AssociationPair(interfaces=[Echo], limits=limits)
    pair.bind(Echo)
    return pair


def closed_for_good(client: ClientAssociation) -> None:
    """Closed, and deaf: a well-formed answer after the violation is not read."""
    assert not client.alive
    client.receive_data(Response(call_id=2, stub=b"\0\0\0\0").encode())
    assert client.events() == []


# ---- what a client never accepts from a server -------------------------------------------------


@pytest.mark.parametrize("length", [0, 10, 15])
def test_impossible_frag_length(length: int) -> None:
    pair = bound()
    pair.client.request(0, 0, ADD_ONE.encode_request(1))
    pair.to_server()
    header = struct.pack("<BBBB4sHHI", 5, 0, 2, 3, b"\x10\0\0\0", length, 0, 1)
    violation(pair.feed_client(header), f"frag_length {length}")
    closed_for_good(pair.client)


def test_a_fragment_longer_than_the_server_said_it_sends() -> None:
    # both roles hold the peer to what it negotiated: the bind_ack said 2048 (at least that, as
    # Windows answers a smaller offer), so a longer response fragment is a violation
    pair = bound(Limits(max_fragment=2048))
    assert pair.client.max_recv_frag == 2048
    cid = pair.client.request(0, 0, ADD_ONE.encode_request(1))
    pair.to_server()
    long = Response(call_id=cid, stub=bytes(3000)).encode()
    violation(pair.feed_client(long), "exceeds the 2048 octets negotiated")
    closed_for_good(pair.client)


def test_a_response_in_version_5_1() -> None:
    # the header is 5.0 in both directions (C706 12.6.3.1; Windows and Samba refuse 5.1): the
    # client's fast path must not take what its general path refuses
    pair = bound()
    cid = pair.client.request(0, 0, ADD_ONE.encode_request(1))
    pair.to_server()
    pdu = bytearray(Response(call_id=cid, stub=bytes(4)).encode())
    pdu[1] = 1
    violation(pair.feed_client(bytes(pdu)), "version 5.1")
    closed_for_good(pair.client)


def _bad_header(offset: int, value: bytes) -> bytes:
    pdu = bytearray(Response(call_id=2, stub=bytes(8)).encode())
    pdu[offset : offset + len(value)] = value
    return bytes(pdu)


@pytest.mark.parametrize(
    ("octets", "phrase"),
    [
        (_bad_header(0, b"\x04"), "version"),
        (_bad_header(1, b"\x02"), "version"),
        (_bad_header(4, b"\x11"), "EBCDIC"),
        (_bad_header(5, b"\x01"), "floating point"),
        (_bad_header(10, b"\xf0\x00"), "auth_length"),  # more verifier than the PDU holds
        (struct.pack("<BBBB4sHHI", 5, 0, 12, 3, b"\x10\0\0\0", 16, 0, 1), "bind_ack"),  # header alone
        (struct.pack("<BBBB4sHHI", 5, 0, 2, 3, b"\x10\0\0\0", 16, 0, 2), "response"),  # header alone
        (struct.pack("<BBBB4sHHI", 5, 0, 99, 3, b"\x10\0\0\0", 16, 0, 1), "packet type 99"),
    ],
    ids=["version", "minor", "ebcdic", "float", "auth-length", "bare-bind-ack", "bare-response", "ptype"],
)
def test_malformed_pdus(octets: bytes, phrase: str) -> None:
    pair = bound()
    pair.client.request(0, 0, ADD_ONE.encode_request(1))
    pair.to_server()
    violation(pair.feed_client(octets), phrase)
    closed_for_good(pair.client)


@pytest.mark.parametrize(
    "pdu",
    [
        Request(call_id=2, stub=b"\0\0\0\0"),
        Bind(call_id=2),
    ],
    ids=["request", "bind"],
)
def test_pdus_only_a_client_sends(pdu: Pdu) -> None:
    pair = bound()
    name = pdu.ptype.name.lower()
    violation(pair.feed_client(pdu.encode()), f"does not send {name}")
    closed_for_good(pair.client)


def test_bind_ack_without_a_bind() -> None:
    client = ClientAssociation()
    events = AssociationPair(client=client).feed_client(BindAck(call_id=1).encode())
    violation(events, "bind_ack without a bind")
    closed_for_good(client)


def test_a_second_bind_ack() -> None:
    pair = bound()
    violation(pair.feed_client(BindAck(call_id=1).encode()), "bind_ack without a bind")


def test_a_response_larger_than_the_limit_in_short_fragments() -> None:
    # the client's limits say 4096 octets a call; the server sends 5000 in fragments of ~1.4 kB
    pair = AssociationPair(
        client=ClientAssociation(Limits(max_call_size=4096, max_fragment=1432)),
        server=ServerAssociation(lambda s: s, GroupTable()),
    )
    pair.bind(Echo)
    cid = pair.client.request(0, 0, ADD_ONE.encode_request(1))
    (call,) = pair.to_server().server_events_of(CallReceived)
    pair.server.respond(call.call_id, bytes(5000))
    moved = pair.to_client()
    assert len(moved.pdus) > 1
    violation(moved.client_events, f"response to call {cid} exceeds 4096")
    closed_for_good(pair.client)


@pytest.mark.parametrize("chunks", [None, [100]], ids=["one-read", "header-first"])
def test_a_response_larger_than_the_limit_in_one_long_fragment(chunks: list[int] | None) -> None:
    # one fragment of 8 kB: whole in one read (the fast path must not take it), or its header
    # first (the path that reads a long stub straight into the call's buffer must not either)
    limits = Limits(max_call_size=4096, max_fragment=16384)
    pair = AssociationPair(
        client=ClientAssociation(limits), server=ServerAssociation(lambda s: s, GroupTable(), limits)
    )
    pair.bind(Echo)
    cid = pair.client.request(0, 0, ADD_ONE.encode_request(1))
    (call,) = pair.to_server().server_events_of(CallReceived)
    pair.server.respond(call.call_id, bytes(8192))
    moved = pair.to_client(chunks=chunks)
    assert len(moved.pdus) == 1
    violation(moved.client_events, f"response to call {cid} exceeds 4096")
    assert not moved.client_events_of(ResponseReceived)
    closed_for_good(pair.client)


# ---- authentication ------------------------------------------------------------------------


class StuckContext(ToyContext):
    """A client context that never completes and has nothing more to say."""

    def step(self, token: bytes | None) -> bytes | None:
        return b"TOY1" if token is None else None


def authenticated(
    level: int = AuthLevel.INTEGRITY, context: SecurityContext | None = None
) -> AssociationPair:
    ctx = context or ToyContext(server=False, user="alice", password="secret")
    client = ClientAssociation(auth=AuthState(ctx, TOY_AUTH_TYPE, level, context_id=0))
    server = ServerAssociation(
        lambda s: s, GroupTable(), security={TOY_AUTH_TYPE: ToyProvider({"alice": "secret"})}
    )
    return AssociationPair(client=client, server=server)


def _ack_with(auth: AuthVerifier | None) -> bytes:
    return BindAck(
        call_id=1, auth=auth, results=(ContextResultItem(result=0, reason=0, transfer_syntax=const.NDR20),)
    ).encode()


def test_the_toy_handshake_completes() -> None:  # the baseline the next tests break
    pair = authenticated()
    accepted = pair.bind(Echo)
    assert accepted.accepted == {0: ECHO}
    assert pair.client.auth is not None and pair.client.auth.context.complete


def test_an_authenticated_bind_answered_without_a_verifier() -> None:
    pair = authenticated()
    pair.client.bind({0: ECHO})
    pair.client.data_to_send()
    violation(pair.feed_client(_ack_with(None)), "without an auth verifier")
    closed_for_good(pair.client)


def test_a_token_the_security_context_refuses() -> None:
    pair = authenticated()
    pair.client.bind({0: ECHO})
    pair.client.data_to_send()
    verifier = AuthVerifier(auth_type=TOY_AUTH_TYPE, auth_level=AuthLevel.INTEGRITY, value=b"BOGUS")
    violation(pair.feed_client(_ack_with(verifier)), "authentication failed")
    closed_for_good(pair.client)


def test_a_handshake_that_does_not_complete() -> None:
    pair = authenticated(context=StuckContext(server=False))
    pair.client.bind({0: ECHO})
    pair.client.data_to_send()
    verifier = AuthVerifier(auth_type=TOY_AUTH_TYPE, auth_level=AuthLevel.INTEGRITY, value=b"TOY2")
    violation(pair.feed_client(_ack_with(verifier)), "did not complete")
    closed_for_good(pair.client)


def _protected_call(pair: AssociationPair) -> tuple[int, CallReceived]:
    pair.bind(Echo)
    cid = pair.client.request(0, 0, ADD_ONE.encode_request(1))
    (call,) = pair.to_server().server_events_of(CallReceived)
    return cid, call


def test_an_unprotected_response_on_a_protected_association() -> None:
    pair = authenticated()
    cid, _ = _protected_call(pair)
    events = pair.feed_client(Response(call_id=cid, stub=b"\2\0\0\0").encode())
    violation(events, f"unprotected response to call {cid}")
    assert not [e for e in events if isinstance(e, ResponseReceived)]
    closed_for_good(pair.client)


@pytest.mark.parametrize("level", [AuthLevel.INTEGRITY, AuthLevel.PRIVACY])
def test_a_response_whose_signature_does_not_verify(level: int) -> None:
    pair = authenticated(level)
    _, call = _protected_call(pair)
    pair.server.respond(call.call_id, b"\2\0\0\0")
    octets = bytearray(pair.server.data_to_send())
    octets[-1] ^= 0xFF  # the last octet of the signature
    events = pair.feed_client(bytes(octets))
    violation(events, "signature refused")
    assert not [e for e in events if isinstance(e, ResponseReceived)]
    closed_for_good(pair.client)


def test_a_protected_response_that_verifies_is_taken() -> None:  # the baseline of the last two
    pair = authenticated()
    cid, call = _protected_call(pair)
    pair.server.respond(call.call_id, b"\2\0\0\0")
    (answer,) = pair.to_client().client_events_of(ResponseReceived)
    assert answer.call_id == cid and bytes(answer.stub) == b"\2\0\0\0"


# ---- what the client takes without a violation ----------------------------------------------


def test_bind_nak_rejects_and_closes() -> None:
    client = ClientAssociation()
    client.bind({0: ECHO})
    client.data_to_send()
    events = AssociationPair(client=client).feed_client(
        BindNak(call_id=1, reason=RejectReason.TEMPORARY_CONGESTION).encode()
    )
    assert events[0] == BindRejected(reason=RejectReason.TEMPORARY_CONGESTION)
    assert isinstance(events[1], Closing) and str(int(RejectReason.TEMPORARY_CONGESTION)) in events[1].reason
    assert not [e for e in events if isinstance(e, ProtocolViolation)]
    closed_for_good(client)


def test_answers_to_calls_not_awaited_are_dropped() -> None:
    pair = bound()
    orphaned = pair.client.request(0, 0, ADD_ONE.encode_request(1))
    pair.client.orphan(orphaned)
    pair.to_server()
    events = pair.feed_client(
        Response(call_id=orphaned, stub=b"\2\0\0\0").encode()
        + Response(call_id=999, stub=b"\2\0\0\0").encode()
        + Fault(call_id=998, status=const.NCA_S_OP_RNG_ERROR).encode()
    )
    assert events == []
    assert pair.client.alive


def test_faults_fail_their_call_and_the_association_goes_on() -> None:
    pair = bound()
    cid = pair.client.request(0, 0, ADD_ONE.encode_request(1))
    events = pair.feed_client(
        Fault(call_id=cid, flags=3 | PFC.DID_NOT_EXECUTE, status=const.NCA_S_OP_RNG_ERROR).encode()
        + Fault(call_id=0, status=const.NCA_S_PROTO_ERROR).encode()  # call_id 0: the association's
    )
    assert events == [
        FaultReceived(call_id=cid, status=const.NCA_S_OP_RNG_ERROR, did_not_execute=True),
        FaultReceived(call_id=0, status=const.NCA_S_PROTO_ERROR, did_not_execute=False),
    ]
    assert pair.client.alive and cid not in pair.client.pending


def test_shutdown_is_reported_and_calls_go_on() -> None:
    pair = bound()
    cid = pair.client.request(0, 0, ADD_ONE.encode_request(1))
    (call,) = pair.to_server().server_events_of(CallReceived)
    assert pair.feed_client(Shutdown(call_id=0).encode()) == [ShutdownRequested()]
    pair.server.respond(call.call_id, b"\2\0\0\0")
    (answer,) = pair.to_client().client_events_of(ResponseReceived)
    assert answer.call_id == cid


def test_connection_lost_closes_once() -> None:
    client = ClientAssociation()
    client.connection_lost()
    client.connection_lost()
    assert client.events() == [Closing(reason="connection lost")]


# ---- what the caller of our asyncio client sees ------------------------------------------------


class ScriptedServer(asyncio.Protocol):
    """A server that binds properly (a real ServerAssociation) and answers each request with the
    octets ``answer`` makes of its call_id."""

    def __init__(self, answer: Callable[[int], bytes], bind: bytes | None = None) -> None:
        self.assoc = ServerAssociation(lambda s: s, GroupTable())
        self.answer = answer
        self.bind_answer = bind
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.eof: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def eof_received(self) -> None:
        self.eof.set_result(None)  # the client closed; and so do we

    def data_received(self, data: bytes) -> None:
        if self.bind_answer is not None:
            self.transport.write(self.bind_answer)
            return
        self.assoc.receive_data(data)
        out = self.assoc.data_to_send()
        for ev in self.assoc.events():
            if isinstance(ev, CallReceived):
                out += self.answer(ev.call_id)
        self.transport.write(out)


def _call_against(server: ScriptedServer) -> tuple[BaseException | None, bool]:
    """Bind and call AddOne: the exception the caller got, and whether the client then closed
    the connection (the server saw its end-of-file)."""

    async def main() -> tuple[BaseException | None, bool]:
        async with asyncio.timeout(WAIT), connect_in_memory(server) as conn:
            try:
                echo = await conn.bind(Echo)
                await echo.AddOne(1)
            except Exception as e:
                for _ in range(3):  # the end-of-file takes a turn or two to arrive
                    await asyncio.sleep(0)
                return e, server.eof.done()
        return None, True

    return asyncio.run(main())


@pytest.mark.parametrize(
    ("answer", "phrase"),
    [
        (lambda cid: Request(call_id=cid).encode(), "does not send request"),
        (lambda cid: _bad_header(4, b"\x11"), "EBCDIC"),
        (lambda cid: BindAck(call_id=cid).encode(), "bind_ack without a bind"),
    ],
    ids=["request", "ebcdic", "bind_ack"],
)
def test_a_violation_fails_the_call_with_rpc_error_and_closes(
    answer: Callable[[int], bytes], phrase: str
) -> None:
    error, closed = _call_against(ScriptedServer(answer))
    assert type(error) is RpcError and phrase in str(error)
    assert closed


def test_a_fault_raises_fault_error_and_the_connection_stays() -> None:
    error, closed = _call_against(
        ScriptedServer(lambda cid: Fault(call_id=cid, status=const.NCA_S_OP_RNG_ERROR).encode())
    )
    assert isinstance(error, FaultError) and error.status == const.NCA_S_OP_RNG_ERROR
    assert not closed


def test_bind_nak_raises_bind_error() -> None:
    nak = BindNak(call_id=1, reason=RejectReason.TEMPORARY_CONGESTION).encode()
    error, closed = _call_against(ScriptedServer(lambda cid: b"", bind=nak))
    assert isinstance(error, BindError) and "temporary_congestion" in str(error)
    assert closed


def test_an_answer_after_a_violation_is_not_taken() -> None:
    # the violation and a good response to the same call in one read: the call fails
    def answer(cid: int) -> bytes:
        return Request(call_id=cid).encode() + Response(call_id=cid, stub=b"\2\0\0\0").encode()

    error, closed = _call_against(ScriptedServer(answer))
    assert type(error) is RpcError and closed
