"""The association's rules (protocol/rules.py) on sans-IO associations: each rule class, its answer.

No sockets, no sleeps: PDUs are fed to a ServerAssociation (or a pair) in memory, and the answers it
queues are parsed and checked field by field, as Samba's raw_protocol suite checks Windows'.
"""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

import pytest

from dcerpc.pdu import (
    NDR20,
    NDR64,
    PFC,
    AlterContext,
    AlterContextResp,
    Auth3,
    AuthVerifier,
    Bind,
    BindAck,
    BindNak,
    CoCancel,
    ContextElement,
    ContextResult,
    Fault,
    Orphaned,
    Pdu,
    ProviderReason,
    RejectReason,
    Request,
    Response,
    SyntaxId,
    parse,
)
from dcerpc.pdu import constants as const
from dcerpc.protocol.events import CallCancelled, CallReceived, Event, ProtocolViolation
from dcerpc.protocol.groups import GroupTable
from dcerpc.protocol.limits import Limits
from dcerpc.protocol.rules import ANSWERS, MAX_AUTH_CONTEXTS, SERVER, State, Violation, negotiate_fragment
from dcerpc.protocol.server import ServerAssociation
from dcerpc.rpcecho import Echo
from tests.protocol.toy_auth import TOY_AUTH_TYPE, ToyContext, ToyProvider

ECHO = Echo.__syntax__
OTHER = SyntaxId(uuid.UUID("12345678-1234-1234-1234-123456789abc"), (1, 0))
ADD_ONE = Echo.operation_named("AddOne")
USERS = {"alice": "wonderland"}


def served(s: SyntaxId) -> SyntaxId | None:
    return ECHO if s.uuid == ECHO.uuid else None


class Peer:
    """A ServerAssociation and what it answers."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.assoc = ServerAssociation(
            served,
            GroupTable(),
            limits or Limits(max_fragment=5840),
            b"135",
            {TOY_AUTH_TYPE: ToyProvider(USERS)},
        )

    def send(self, *pdus: Pdu | bytes) -> tuple[list[Pdu], list[Event]]:
        for pdu in pdus:
            self.assoc.receive_data(pdu if isinstance(pdu, bytes) else pdu.encode())
        out, pos = [], 0
        data = self.assoc.data_to_send()
        while pos < len(data):
            n = int.from_bytes(data[pos + 8 : pos + 10], "little")
            out.append(parse(data[pos : pos + n]).pdu)
            pos += n
        return out, self.assoc.events()

    def bind(self, *contexts: ContextElement, flags: int = 3, **kw: object) -> BindAck:
        (ack,), _ = self.send(
            Bind(call_id=1, flags=flags, contexts=contexts or (ContextElement(1, ECHO, (NDR20,)),), **kw)
        )  # type: ignore[arg-type]
        assert isinstance(ack, BindAck), ack
        return ack


def kinds(events: list[Event]) -> list[Violation]:
    return [e.kind for e in events if isinstance(e, ProtocolViolation)]


def only(pdus: list[Pdu], kind: type[Pdu]) -> Pdu:
    assert len(pdus) == 1 and isinstance(pdus[0], kind), pdus
    return pdus[0]


# --- the table --------------------------------------------------------------------------------


def test_every_violation_has_an_answer_and_is_documented() -> None:
    assert set(ANSWERS) == set(Violation)
    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol-behaviours.md").read_text()
    missing = [v.value for v in Violation if v is not Violation.PEER_PROTOCOL and f"`{v.value}`" not in doc]
    assert not missing, f"docs/protocol-behaviours.md does not explain {missing}"


def test_every_state_and_pdu_type_has_a_rule() -> None:
    for state in (State.AWAIT_BIND, State.OPEN):
        for ptype in const.PType:
            assert (state, int(ptype)) in SERVER


# --- fragment sizes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("xmit", "recv", "ours", "both"),
    [
        (0, 0, 5840, 2048),
        (0xFFFF, 0xFFFF, 5840, 5840),
        (3199, 0xFFFF, 5840, 3192),
        (0, 3199, 5840, 2048),
        (0xFFFF, 0xFFFF, 65528, 65528),
        (1432, 1432, 65528, 2048),
    ],
)
def test_fragment_negotiation(xmit: int, recv: int, ours: int, both: int) -> None:
    assert negotiate_fragment(xmit, recv, ours) == both
    peer = Peer(Limits(max_fragment=ours))
    ack = peer.bind(max_xmit_frag=xmit, max_recv_frag=recv)
    assert (ack.max_xmit_frag, ack.max_recv_frag) == (both, both)


# --- the first PDU ----------------------------------------------------------------------------


def test_a_first_pdu_that_is_not_a_bind() -> None:
    nak, _ = Peer().send(Request(call_id=7, stub=ADD_ONE.encode_request(1)))
    answer = only(nak, BindNak)
    assert isinstance(answer, BindNak) and answer.reason == RejectReason.PROTOCOL_VERSION_NOT_SUPPORTED
    assert answer.call_id == 7


@pytest.mark.parametrize(
    ("offset", "value"), [(1, 1), (4, 0x11), (5, 1), (6, 1)], ids=["minor-1", "ebcdic", "vax", "drep2"]
)
def test_a_bind_header_not_ours(offset: int, value: int) -> None:
    wire = bytearray(Bind(call_id=1, contexts=(ContextElement(1, ECHO, (NDR20,)),)).encode())
    wire[offset] = value
    peer = Peer()
    pdus, _ = peer.send(bytes(wire))
    answer = only(pdus, BindNak)
    assert isinstance(answer, BindNak) and answer.reason == RejectReason.PROTOCOL_VERSION_NOT_SUPPORTED
    assert not peer.assoc.alive


def test_a_bind_with_no_contexts_ends_early_and_is_refused_for_it() -> None:
    body = struct.pack("<HHIB", 5840, 5840, 0, 0)  # 9 octets: n_context_elem = 0 and nothing after
    header = struct.pack("<BBBB4sHHI", 5, 0, 11, 3, b"\x10\0\0\0", 16 + len(body), 0, 1)
    pdus, events = Peer().send(header + body)
    answer = only(pdus, BindNak)
    assert isinstance(answer, BindNak) and answer.reason == RejectReason.REASON_NOT_SPECIFIED
    assert kinds(events) == [Violation.BAD_CONTEXT_LIST]


def test_a_second_bind() -> None:
    peer = Peer()
    peer.bind()
    pdus, events = peer.send(Bind(call_id=2, contexts=(ContextElement(1, ECHO, (NDR20,)),)))
    answer = only(pdus, BindNak)
    assert isinstance(answer, BindNak) and answer.reason == RejectReason.REASON_NOT_SPECIFIED
    assert kinds(events) == [Violation.SECOND_BIND] and not peer.assoc.alive


# --- presentation contexts --------------------------------------------------------------------


def test_one_new_context_per_bind() -> None:
    ack = Peer().bind(
        ContextElement(1, OTHER, (NDR20,)),
        ContextElement(2, ECHO, (NDR64,)),
        ContextElement(3, ECHO, (NDR64, NDR20)),
        ContextElement(4, ECHO, (NDR20,)),
        ContextElement(5, OTHER, (NDR20,)),
    )
    reject = ContextResult.PROVIDER_REJECTION
    assert [(r.result, r.reason) for r in ack.results] == [
        (reject, ProviderReason.ABSTRACT_SYNTAX_NOT_SUPPORTED),
        (reject, ProviderReason.PROPOSED_TRANSFER_SYNTAXES_NOT_SUPPORTED),
        (ContextResult.ACCEPTANCE, 0),
        (reject, ProviderReason.PROPOSED_TRANSFER_SYNTAXES_NOT_SUPPORTED),
        (reject, ProviderReason.ABSTRACT_SYNTAX_NOT_SUPPORTED),
    ]


def test_a_context_id_cannot_change_its_interface() -> None:
    peer = Peer()
    peer.bind(ContextElement(1, ECHO, (NDR20,)))
    newer = SyntaxId(ECHO.uuid, (1, 1))
    pdus, events = peer.send(AlterContext(call_id=2, contexts=(ContextElement(1, newer, (NDR20,)),)))
    fault = only(pdus, Fault)
    assert isinstance(fault, Fault) and fault.status == const.NCA_S_PROTO_ERROR
    assert fault.flags & PFC.DID_NOT_EXECUTE
    assert kinds(events) == [Violation.CONTEXT_CHANGED] and not peer.assoc.alive


def test_an_alter_context_re_acks_a_context_and_answers_with_no_secondary_address() -> None:
    peer = Peer()
    peer.bind()
    resp = only(
        peer.send(AlterContext(call_id=2, contexts=(ContextElement(1, ECHO, (NDR20,)),)))[0], AlterContextResp
    )
    assert isinstance(resp, AlterContextResp) and resp.results[0].result == ContextResult.ACCEPTANCE
    assert resp.sec_addr == b""


def test_conc_mpx_is_echoed_when_a_context_was_made() -> None:
    ack = Peer().bind(flags=PFC.FIRST_FRAG | PFC.LAST_FRAG | PFC.CONC_MPX)
    assert ack.flags & PFC.CONC_MPX
    ack = Peer().bind(ContextElement(1, OTHER, (NDR20,)), flags=PFC.FIRST_FRAG | PFC.LAST_FRAG | PFC.CONC_MPX)
    assert not ack.flags & PFC.CONC_MPX


# --- faults and responses ---------------------------------------------------------------------


def test_unknown_context_faults_with_dne_and_the_association_stays() -> None:
    peer = Peer()
    peer.bind()
    pdus, _ = peer.send(Request(call_id=2, context_id=9, stub=ADD_ONE.encode_request(1)))
    fault = only(pdus, Fault)
    assert isinstance(fault, Fault) and fault.status == const.NCA_S_UNK_IF
    assert fault.flags == PFC.FIRST_FRAG | PFC.LAST_FRAG | PFC.DID_NOT_EXECUTE
    assert fault.alloc_hint == 24 and fault.context_id == 0
    assert peer.assoc.alive


@pytest.mark.parametrize("context_id", [0x1001, 0xFFFF])
def test_a_response_carries_the_low_octet_of_the_context_id(context_id: int) -> None:
    peer = Peer()
    peer.bind(ContextElement(context_id, ECHO, (NDR20,)))
    _, events = peer.send(Request(call_id=2, context_id=context_id, stub=ADD_ONE.encode_request(1)))
    (call,) = [e for e in events if isinstance(e, CallReceived)]
    peer.assoc.respond(call.call_id, b"\2\0\0\0", call.context_id)
    response = only(peer.send()[0], Response)
    assert isinstance(response, Response) and response.context_id == context_id & 0xFF


# --- fragments of a call ----------------------------------------------------------------------


def _fragment(call_id: int, flags: int, stub: bytes = b"\0" * 8, context_id: int = 1) -> Request:
    return Request(call_id=call_id, flags=flags, context_id=context_id, opnum=1, stub=stub)


def test_a_new_call_while_another_is_half_received_faults_the_one_being_received() -> None:
    peer = Peer()
    peer.bind()
    pdus, events = peer.send(_fragment(2, PFC.FIRST_FRAG), _fragment(3, PFC.FIRST_FRAG | PFC.LAST_FRAG))
    fault = only(pdus, Fault)
    assert isinstance(fault, Fault) and (fault.call_id, fault.context_id) == (2, 1)
    assert fault.status == const.NCA_S_PROTO_ERROR and not fault.flags & PFC.DID_NOT_EXECUTE
    assert kinds(events) == [Violation.INTERLEAVED] and not peer.assoc.alive


def test_a_continuation_without_a_first_fragment() -> None:
    peer = Peer()
    peer.bind()
    pdus, events = peer.send(_fragment(5, PFC.LAST_FRAG))
    fault = only(pdus, Fault)
    assert isinstance(fault, Fault) and fault.status == const.NCA_S_PROTO_ERROR
    assert not fault.flags & PFC.DID_NOT_EXECUTE
    assert kinds(events) == [Violation.ORPHAN_FRAGMENT]


def test_a_first_fragment_already_cancelled() -> None:
    peer = Peer()
    peer.bind()
    pdus, _ = peer.send(_fragment(2, PFC.FIRST_FRAG | PFC.LAST_FRAG | PFC.PENDING_CANCEL))
    fault = only(pdus, Fault)
    assert isinstance(fault, Fault) and fault.status == const.RPC_S_NO_CALL_ACTIVE
    assert fault.flags & PFC.DID_NOT_EXECUTE


@pytest.mark.parametrize("between", [CoCancel(call_id=2), Orphaned(call_id=2)], ids=["co_cancel", "orphaned"])
def test_cancel_or_orphaned_between_fragments_changes_nothing(between: Pdu) -> None:
    peer = Peer()
    peer.bind()
    data = bytes(range(8))
    stub = Echo.operation_named("EchoData").encode_request(len(data), data)
    pdus, events = peer.send(
        _fragment(2, PFC.FIRST_FRAG, stub[:8]), between, _fragment(2, PFC.LAST_FRAG, stub[8:])
    )
    assert pdus == [] and not kinds(events)
    (call,) = [e for e in events if isinstance(e, CallReceived)]
    assert bytes(call.stub) == stub


def test_co_cancel_of_a_call_being_served_is_reported() -> None:
    peer = Peer()
    peer.bind()
    _, events = peer.send(_fragment(2, 3, ADD_ONE.encode_request(1)), CoCancel(call_id=2))
    assert any(isinstance(e, CallCancelled) and e.call_id == 2 for e in events)


def test_a_request_longer_than_the_server_takes_is_answered_whole() -> None:
    peer = Peer(Limits(max_fragment=5840))
    peer.bind(max_xmit_frag=2048, max_recv_frag=2048)
    ok, _ = peer.send(_fragment(2, 3, bytes(3000)))  # longer than negotiated, within 5840: taken
    assert ok == []
    pdus, events = peer.send(_fragment(3, 3, bytes(6000)))
    fault = only(pdus, Fault)
    assert isinstance(fault, Fault) and fault.status == const.NCA_S_PROTO_ERROR
    assert not fault.flags & PFC.DID_NOT_EXECUTE
    assert Violation.REQUEST_TOO_LONG in kinds(events)


# --- security contexts ------------------------------------------------------------------------


def _toy_bind(peer: Peer, level: int = 5, context_id: int = 0) -> ToyContext:
    client = ToyContext(server=False, user="alice", password="wonderland")
    token = client.step(None)
    verifier = AuthVerifier(
        auth_type=TOY_AUTH_TYPE, auth_level=level, context_id=context_id, value=token or b""
    )
    ack = peer.bind(auth=verifier)
    assert ack.auth is not None
    last = client.step(ack.auth.value)
    peer.send(
        Auth3(
            call_id=1,
            auth=AuthVerifier(
                auth_type=TOY_AUTH_TYPE, auth_level=level, context_id=context_id, value=last or b""
            ),
        )
    )
    assert client.complete
    return client


@pytest.mark.parametrize(
    ("auth_type", "level", "reason"),
    [
        (TOY_AUTH_TYPE, 0, RejectReason.REASON_NOT_SPECIFIED),
        (TOY_AUTH_TYPE, 1, RejectReason.REASON_NOT_SPECIFIED),
        (TOY_AUTH_TYPE, 7, RejectReason.REASON_NOT_SPECIFIED),
        (0, 255, RejectReason.REASON_NOT_SPECIFIED),  # the level is looked at first
        (0, 2, RejectReason.AUTHENTICATION_TYPE_NOT_RECOGNIZED),
        (10, 2, RejectReason.INVALID_CHECKSUM),  # NTLM: known, not configured here
        (10, 3, RejectReason.INVALID_CHECKSUM),  # call level
        (111, 3, RejectReason.AUTHENTICATION_TYPE_NOT_RECOGNIZED),
    ],
)
def test_bind_nak_reasons_for_authentication(auth_type: int, level: int, reason: RejectReason) -> None:
    pdus, _ = Peer().send(
        Bind(
            call_id=1,
            contexts=(ContextElement(1, ECHO, (NDR20,)),),
            auth=AuthVerifier(auth_type=auth_type, auth_level=level, value=b"x"),
        )
    )
    nak = only(pdus, BindNak)
    assert isinstance(nak, BindNak) and nak.reason == reason


def test_a_request_without_a_verifier_runs_unauthenticated_beside_a_protected_context() -> None:
    peer = Peer()
    _toy_bind(peer)
    _, events = peer.send(_fragment(2, 3, ADD_ONE.encode_request(1), context_id=1))
    (call,) = [e for e in events if isinstance(e, CallReceived)]
    assert (call.auth_type, call.auth_level, call.principal) == (0, 1, None)


def test_a_tampered_signature_is_the_security_packages_error() -> None:
    peer = Peer()
    _toy_bind(peer)
    # a verifier of the right context, type and level whose signature is nonsense
    verifier = AuthVerifier(auth_type=TOY_AUTH_TYPE, auth_level=5, context_id=0, value=bytes(32))
    pdus, events = peer.send(Request(call_id=2, context_id=1, stub=bytes(16), auth=verifier))
    fault = only(pdus, Fault)
    assert isinstance(fault, Fault) and fault.status == const.RPC_S_SEC_PKG_ERROR
    assert fault.context_id == 1 and not fault.flags & PFC.DID_NOT_EXECUTE
    assert kinds(events) == [Violation.SIGNATURE]


def test_a_verifier_naming_another_level_is_access_denied() -> None:
    peer = Peer()
    _toy_bind(peer)
    verifier = AuthVerifier(auth_type=TOY_AUTH_TYPE, auth_level=6, context_id=0, value=bytes(32))
    pdus, _ = peer.send(Request(call_id=2, context_id=1, stub=bytes(16), auth=verifier))
    fault = only(pdus, Fault)
    assert isinstance(fault, Fault) and fault.status == const.RPC_S_ACCESS_DENIED


def test_auth3_without_a_handshake() -> None:
    peer = Peer()
    peer.bind()
    pdus, _ = peer.send(
        Auth3(call_id=2, auth=AuthVerifier(auth_type=TOY_AUTH_TYPE, auth_level=5, value=b"x"))
    )
    fault = only(pdus, Fault)
    assert isinstance(fault, Fault) and fault.status == const.NCA_S_PROTO_ERROR
    assert fault.flags & PFC.DID_NOT_EXECUTE


def test_a_refused_auth3_is_silent_and_the_next_request_is_denied() -> None:
    peer = Peer()
    client = ToyContext(server=False, user="alice", password="wrong")
    ack = peer.bind(auth=AuthVerifier(auth_type=TOY_AUTH_TYPE, auth_level=2, value=client.step(None) or b""))
    assert ack.auth is not None
    token = client.step(ack.auth.value) or b""
    pdus, events = peer.send(
        Auth3(call_id=1, auth=AuthVerifier(auth_type=TOY_AUTH_TYPE, auth_level=2, value=token))
    )
    assert pdus == [] and kinds(events) == [Violation.AUTH3_REFUSED] and peer.assoc.alive
    verifier = AuthVerifier(auth_type=TOY_AUTH_TYPE, auth_level=2, value=bytes(16))
    pdus, _ = peer.send(Request(call_id=2, context_id=1, stub=ADD_ONE.encode_request(1), auth=verifier))
    fault = only(pdus, Fault)
    assert isinstance(fault, Fault) and fault.status == const.RPC_S_ACCESS_DENIED


def test_security_contexts_per_association_are_bounded() -> None:
    peer = Peer()
    peer.bind()
    elems = (ContextElement(1, ECHO, (NDR20,)),)
    for n in range(MAX_AUTH_CONTEXTS + 1):
        client = ToyContext(server=False, user="alice", password="wonderland")
        verifier = AuthVerifier(
            auth_type=TOY_AUTH_TYPE, auth_level=5, context_id=n + 1, value=client.step(None) or b""
        )
        pdus, events = peer.send(AlterContext(call_id=n + 2, contexts=elems, auth=verifier))
        if n < MAX_AUTH_CONTEXTS:
            assert isinstance(pdus[0], AlterContextResp)
    fault = only(pdus, Fault)
    assert isinstance(fault, Fault) and fault.status == const.NCA_S_PROTO_ERROR
    assert kinds(events) == [Violation.TOO_MANY_AUTH_CONTEXTS] and not peer.assoc.alive


def test_header_signing_is_agreed_when_asked() -> None:
    ack = Peer().bind(flags=PFC.FIRST_FRAG | PFC.LAST_FRAG | PFC.SUPPORT_HEADER_SIGN)
    assert ack.flags & PFC.SUPPORT_HEADER_SIGN
    ack = Peer().bind()
    assert not ack.flags & PFC.SUPPORT_HEADER_SIGN
