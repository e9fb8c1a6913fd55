"""Reassembly, both roles, sans-IO: long calls cut into fragments and delivered in any pieces (a
header split anywhere, a fragment's stub read straight into its call's buffer, several fragments
in one read) come out as the stub that was sent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcerpc.pdu import Fault, Request, Response
from dcerpc.pdu import constants as const
from dcerpc.pdu.co import parse
from dcerpc.pdu.constants import PFC
from dcerpc.protocol.client import ClientAssociation
from dcerpc.protocol.events import BindAccepted, CallReceived, ProtocolViolation, ResponseReceived
from dcerpc.protocol.framing import HINT_TRUST, SPARE_MIN
from dcerpc.protocol.groups import GroupTable
from dcerpc.protocol.limits import Limits
from dcerpc.protocol.rules import Violation
from dcerpc.protocol.server import ServerAssociation
from dcerpc.rpcecho import Echo

SYNTAX = Echo.__syntax__


def _pieces(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    pos, i = 0, 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        yield data[pos : pos + n]
        pos += n
        i += 1


def _stub(n: int, salt: int) -> bytes:
    return bytes((i * 7 + salt) & 0xFF for i in range(256)) * (n // 256) + bytes(n % 256)


def _bound() -> tuple[ClientAssociation, ServerAssociation]:
    client = ClientAssociation()
    server = ServerAssociation(lambda s: s, GroupTable())
    client.bind({0: SYNTAX})
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    assert any(isinstance(e, BindAccepted) for e in client.events())
    server.events()
    return client, server


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 70_000), min_size=1, max_size=8),
    lengths=st.lists(st.integers(0, 300_000), min_size=1, max_size=3),
)
def test_long_calls_reassemble_whatever_the_reads(sizes: list[int], lengths: list[int]) -> None:
    client, server = _bound()
    stubs = {}
    for k, n in enumerate(lengths):
        stub = _stub(n, k)
        stubs[client.request(0, 1, stub)] = stub
    for piece in _pieces(client.data_to_send(), sizes):  # every request, back to back
        server.receive_data(piece)
    calls = [e for e in server.events() if isinstance(e, CallReceived)]
    assert [(c.call_id, bytes(c.stub)) for c in calls] == list(stubs.items())

    answers = {}
    for k, call in enumerate(reversed(calls)):  # answered out of order
        answers[call.call_id] = _stub(len(call.stub) // 2 + 5, 100 + k)
        server.respond(call.call_id, answers[call.call_id])
    for piece in _pieces(server.data_to_send(), list(reversed(sizes))):
        client.receive_data(piece)
    got = {e.call_id: bytes(e.stub) for e in client.events() if isinstance(e, ResponseReceived)}
    assert got == answers
    assert client.alive and server.alive


@pytest.mark.parametrize("hint", [0, 5000, 200_000, Limits().max_call_size])
def test_alloc_hint_is_trusted_only_so_far(hint: int) -> None:
    """A call's buffer is memory held at once: one fragment claiming all a call may be must not
    make the server hold more than a bounded multiple of what arrived (framing.HINT_TRUST)."""
    _, server = _bound()
    stub = _stub(5000, 1)
    first = Request(call_id=7, flags=PFC.FIRST_FRAG, context_id=0, opnum=1, alloc_hint=hint, stub=stub)
    server.receive_data(first.encode())
    assert server.alive
    assert 5000 <= server.buffered <= HINT_TRUST * 5000
    if 5000 <= hint <= HINT_TRUST * 5000:
        assert server.buffered == hint  # an honest hint, within trust: the whole call's room at once
    rest = Request(call_id=7, flags=PFC.LAST_FRAG, context_id=0, opnum=1, stub=stub)
    server.receive_data(rest.encode())
    calls = [e for e in server.events() if isinstance(e, CallReceived)]
    assert len(calls) == 1 and bytes(calls[0].stub) == stub + stub
    assert server.buffered == 0


@pytest.mark.parametrize("follow", [0, 1], ids=["first", "second"])
def test_a_fragment_announcing_more_than_a_call_may_be_is_refused(follow: int) -> None:
    """CVE-2022-26809's shape: a run of fragments whose alloc_hint announces ~2^32 octets. The
    fragment that announces more than max_call_size (what remains, counted from the octets already
    taken) is refused at once as the call it announces, fault rpc_s_access_denied and close (as
    Samba refuses more than its 4 MiB, dcesrv_core.c), not taken in fragment after fragment."""
    limits = Limits()
    _, server = _bound()
    stub = _stub(4096, 1)
    first = Request(call_id=7, flags=PFC.FIRST_FRAG, context_id=0, opnum=1, stub=stub,
                    alloc_hint=0xFFFFFFF0 if follow == 0 else 8192)  # fmt: skip
    server.receive_data(first.encode())
    if follow:
        assert server.alive and not server.data_to_send()
        hint = limits.max_call_size - 4096 + 1  # one octet more than may remain
        server.receive_data(
            Request(call_id=7, flags=0, context_id=0, opnum=1, alloc_hint=hint, stub=stub).encode()
        )
    answer = parse(server.data_to_send()).pdu
    assert isinstance(answer, Fault) and answer.status == const.RPC_S_ACCESS_DENIED
    assert not answer.flags & PFC.DID_NOT_EXECUTE
    assert not server.alive and server.buffered == 0
    kinds = [e.kind for e in server.events() if isinstance(e, ProtocolViolation)]
    assert kinds == [Violation.CALL_TOO_LARGE]


def _one_call(client: ClientAssociation, server: ServerAssociation, n: int, salt: int) -> CallReceived:
    stub = _stub(n, salt)
    cid = client.request(0, 1, stub)
    for piece in _pieces(client.data_to_send(), [65536]):
        server.receive_data(piece)
    (call,) = [e for e in server.events() if isinstance(e, CallReceived)]
    assert call.call_id == cid and call.stub == stub
    return call


def _one_response(client: ClientAssociation, server: ServerAssociation, n: int, salt: int) -> memoryview:
    call = _one_call(client, server, 8, salt)
    answer = _stub(n, salt)
    server.respond(call.call_id, answer)
    for piece in _pieces(server.data_to_send(), [65536]):
        client.receive_data(piece)
    (got,) = [e for e in client.events() if isinstance(e, ResponseReceived)]
    assert isinstance(got.stub, memoryview) and got.stub == answer
    return got.stub


def test_server_reuses_a_call_buffer_only_once_it_is_let_go() -> None:
    """A long call's buffer is kept for the next (framing.SPARE_MIN); a stub still held is never
    written over by the calls after it."""
    n = 3 * SPARE_MIN // 2
    client, server = _bound()
    held = _one_call(client, server, n, 1)
    second = _one_call(client, server, n, 2)  # the first stub is still held: a buffer of its own
    assert isinstance(held.stub, memoryview) and isinstance(second.stub, memoryview)
    assert second.stub.obj is not held.stub.obj
    assert held.stub == _stub(n, 1)
    # its id, not a reference (one would keep it in use); the spare keeps it alive, so a new
    # buffer made while it is (in use) cannot have its id
    buffer = id(second.stub.obj)
    server.respond(held.call_id, b"")
    server.respond(second.call_id, b"")
    del held, second
    third = _one_call(client, server, n, 3)
    assert isinstance(third.stub, memoryview) and id(third.stub.obj) == buffer  # reused, not zeroed
    assert server.buffered == 0


def test_client_reuses_a_response_buffer_only_once_it_is_let_go() -> None:
    n = 3 * SPARE_MIN // 2
    client, server = _bound()
    held = _one_response(client, server, n, 1)
    second = _one_response(client, server, n, 2)
    assert second.obj is not held.obj and held == _stub(n, 1)
    buffer = id(second.obj)
    del held, second
    third = _one_response(client, server, n - 1000, 3)  # shorter: the spare is large enough
    assert id(third.obj) == buffer and third == _stub(n - 1000, 3)


def test_a_call_too_large_is_refused_between_long_fragments() -> None:
    """Fragments that continue a call straight into its buffer (framing.continuation) are held to
    max_call_size like any other: fault nca_s_fault_remote_no_memory, then the association
    closes and takes nothing more."""
    limits = Limits(max_call_size=64 * 1024)
    server = ServerAssociation(lambda s: s, GroupTable(), limits)
    client = ClientAssociation()
    client.bind({0: SYNTAX})
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.events()
    chunk = bytes(20_000)  # long: each read straight into the call's buffer
    wire = Request(call_id=9, flags=PFC.FIRST_FRAG, context_id=0, opnum=1, stub=chunk).encode()
    wire += b"".join(
        Request(call_id=9, flags=0, context_id=0, opnum=1, stub=chunk).encode() for _ in range(5)
    )
    server.receive_data(wire)  # one piece: each fragment's read ends with the next header
    assert not server.alive
    answer = parse(server.data_to_send()).pdu
    assert isinstance(answer, Fault)
    assert (answer.call_id, answer.status) == (9, const.RPC_S_ACCESS_DENIED)  # as Windows refuses it
    server.receive_data(wire)  # closed: nothing more is taken
    assert server.data_to_send() == b""


@pytest.mark.parametrize("n", [4, 8192])  # one short fragment; a long one, its stub read directly
@pytest.mark.parametrize("drep", [b"\x10\x01\x00\x00", b"\x11\x00\x00\x00"])  # VAX floats; EBCDIC
def test_a_response_in_another_data_representation_is_not_taken(n: int, drep: bytes) -> None:
    # The client's fast paths take plain little-endian ASCII IEEE responses only; this one goes to
    # the general path, which refuses it (C706 14.1: we do not convert floats or characters).
    client, _ = _bound()
    cid = client.request(0, 1, _stub(n, 1))
    client.data_to_send()
    response = bytearray(Response(call_id=cid, alloc_hint=n, context_id=0, stub=_stub(n, 2)).encode())
    response[4:8] = drep
    client.receive_data(bytes(response[:100]))  # the header first: a long stub would go direct
    client.receive_data(bytes(response[100:]))
    events = client.events()
    assert not any(isinstance(e, ResponseReceived) for e in events)
    assert not client.alive


def test_a_call_refused_at_a_long_fragments_header_leaves_room_for_the_next_read() -> None:
    """A long fragment whose call is refused as too large when its header arrives (the direct
    path): the association closes and discards what follows, and the transport's next read still
    gets a buffer (an empty one is a fatal error to asyncio's and uvloop's transports; found by
    the hostile soak run's fragment flood)."""
    server = ServerAssociation(lambda s: s, GroupTable(), Limits(max_call_size=16 * 1024))
    client = ClientAssociation()
    client.bind({0: SYNTAX})
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.events()
    wire = Request(call_id=5, flags=PFC.FIRST_FRAG, context_id=0, opnum=1, stub=bytes(60_000)).encode()
    room = server.get_buffer()
    n = min(len(room), len(wire))
    room[:n] = wire[:n]  # one read that fills the scratch, the fragment's header at its start
    server.buffer_updated(n)
    assert not server.alive
    assert len(server.get_buffer()) > 0
