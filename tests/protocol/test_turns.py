"""What one connection's reads cost the others, sans-IO: a turn's worth of PDUs per read
(Limits.pdus_per_turn, the rest left for later turns), control PDUs paced by their length
(Limits.control_octets) and a call refused as too large paid for by its octets (REFUSED_OCTETS)."""

from __future__ import annotations

import random
import uuid

from dcerpc.pdu import NDR20, PFC, AlterContext, CoCancel, ContextElement, Fault, Request, SyntaxId, parse
from dcerpc.protocol.client import ClientAssociation
from dcerpc.protocol.events import BindAccepted, CallReceived, ProtocolViolation
from dcerpc.protocol.groups import GroupTable
from dcerpc.protocol.limits import REFUSED_OCTETS, Limits
from dcerpc.protocol.rules import Violation
from dcerpc.protocol.server import ServerAssociation
from dcerpc.rpcecho import Echo

SYNTAX = Echo.__syntax__
ADD_ONE = Echo.operation_named("AddOne").encode_request


def _bound(limits: Limits) -> ServerAssociation:
    client = ClientAssociation()
    server = ServerAssociation(lambda s: s, GroupTable(), limits)
    client.bind({0: SYNTAX})
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    assert any(isinstance(e, BindAccepted) for e in client.events())
    server.events()
    return server


def _read(server: ServerAssociation, data: bytes) -> None:
    """What a transport does: one read of ``data`` into the inbox's buffer."""
    room = server.inbox.get_buffer()
    assert len(room) >= len(data)
    room[: len(data)] = data
    server.buffer_updated(len(data))


def _calls(server: ServerAssociation) -> list[int]:
    return [e.call_id for e in server.events() if isinstance(e, CallReceived)]


def _requests(ids: range) -> bytes:
    return b"".join(Request(call_id=i, opnum=0, stub=ADD_ONE(i)).encode() for i in ids)


def test_a_read_is_handled_a_turn_at_a_time() -> None:
    server = _bound(Limits(pdus_per_turn=4))
    _read(server, _requests(range(1, 11)))  # ten pipelined calls in one read
    assert _calls(server) == [1, 2, 3, 4]
    assert server.backlog  # the rest waits for the next turn
    server.take_backlog()
    assert _calls(server) == [5, 6, 7, 8]
    assert server.backlog
    server.take_backlog()
    assert _calls(server) == [9, 10]
    assert not server.backlog
    _read(server, _requests(range(11, 13)))  # and reads go on as before
    assert _calls(server) == [11, 12]
    assert not server.backlog


def test_a_backlog_keeps_a_partial_fragment_after_it() -> None:
    server = _bound(Limits(pdus_per_turn=2))
    data = _requests(range(1, 5))
    _read(server, data[:-7])  # three whole, the fourth cut short
    assert _calls(server) == [1, 2]
    server.take_backlog()
    assert _calls(server) == [3]
    assert not server.backlog  # the fourth is not whole: nothing left for a turn
    _read(server, data[-7:])
    assert _calls(server) == [4]


def test_no_limit_and_receive_data_take_everything_at_once() -> None:
    server = _bound(Limits(pdus_per_turn=0))
    _read(server, _requests(range(1, 101)))
    assert len(_calls(server)) == 100 and not server.backlog
    server = _bound(Limits(pdus_per_turn=4))
    server.receive_data(_requests(range(1, 11)))  # no event loop to take turns with
    assert _calls(server) == list(range(1, 11)) and not server.backlog


def test_short_control_pdus_take_a_token_each() -> None:
    server = _bound(Limits())
    before = server.control  # the bind's
    assert before == 1
    _read(server, b"".join(CoCancel(call_id=100 + i).encode() for i in range(5)))
    assert server.control == before + 5
    _read(server, _requests(range(1, 3)))  # requests are not control PDUs
    assert server.control == before + 5


def _long_alter() -> bytes:
    rnd = random.Random(14)
    contexts = tuple(
        ContextElement(
            k,
            SyntaxId(uuid.UUID(int=rnd.getrandbits(128)), (1, 0)),
            tuple(SyntaxId(uuid.UUID(int=rnd.getrandbits(128)), (2, 0)) for _ in range(254)),
        )
        for k in range(12)
    )
    return AlterContext(call_id=9, max_xmit_frag=65528, max_recv_frag=65528, contexts=contexts).encode()


def test_a_long_context_list_pays_for_its_length() -> None:
    alter = _long_alter()
    assert len(alter) > 60_000
    server = _bound(Limits())
    server.receive_data(alter)
    assert server.control == 1 + 1 + (len(alter) - 1) // 256  # the bind, then 240 tokens
    server = _bound(Limits(control_octets=0))  # a token per PDU, as before
    server.receive_data(alter)
    assert server.control == 2
    short = AlterContext(call_id=9, contexts=(ContextElement(1, SYNTAX, (NDR20,)),)).encode()
    server = _bound(Limits())
    server.receive_data(short)
    assert server.control == 2


def _flood(server: ServerAssociation, octets: int, fragment: int) -> None:
    """Request fragments of one call without PFC_LAST_FRAG (CVE-2022-26809's shape), one after
    another, until ``octets`` of stub were sent or the association closed."""
    flags, sent = PFC.FIRST_FRAG, 0
    while sent < octets and server.alive:
        server.receive_data(
            Request(call_id=2, flags=flags, opnum=0, alloc_hint=0, stub=bytes(fragment)).encode()
        )
        flags, sent = 0, sent + fragment


def test_a_call_refused_as_too_large_pays_for_its_octets() -> None:
    limits = Limits(max_call_size=1 << 20)
    server = _bound(limits)
    before = server.control
    _flood(server, 4 << 20, 32 * 1024)  # fragments long enough for the direct path
    assert not server.alive
    kinds = [e.kind for e in server.events() if isinstance(e, ProtocolViolation)]
    assert kinds == [Violation.CALL_TOO_LARGE]
    assert isinstance(parse(server.data_to_send()).pdu, Fault)
    # the megabyte it made us take, a token per REFUSED_OCTETS (the source is paced by them)
    assert server.control - before >= (1 << 20) // REFUSED_OCTETS - 1
    server = _bound(limits)
    before = server.control
    _flood(server, 4 << 20, 2048)  # short fragments, copied by the general path
    assert not server.alive
    assert server.control - before >= (1 << 20) // REFUSED_OCTETS - 1


def test_a_call_received_whole_pays_nothing() -> None:
    server = _bound(Limits(max_call_size=1 << 20))
    before = server.control
    stub = bytes(512 * 1024)
    data = Request(call_id=2, flags=PFC.FIRST_FRAG, opnum=0, stub=stub[:65000]).encode()
    for i in range(65000, len(stub), 65000):
        last = PFC.LAST_FRAG if i + 65000 >= len(stub) else 0
        data += Request(call_id=2, flags=last, opnum=0, stub=stub[i : i + 65000]).encode()
    server.receive_data(data)
    assert [e.call_id for e in server.events() if isinstance(e, CallReceived)] == [2]
    assert server.control == before
