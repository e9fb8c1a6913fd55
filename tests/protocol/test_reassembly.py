"""Reassembly, both roles, sans-IO: long calls cut into fragments and delivered in any pieces (a
header split anywhere, a fragment's stub read straight into its call's buffer, several fragments
in one read) come out as the stub that was sent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcerpc.pdu import Request
from dcerpc.pdu.constants import PFC
from dcerpc.protocol.client import ClientAssociation
from dcerpc.protocol.events import BindAccepted, CallReceived, ResponseReceived
from dcerpc.protocol.framing import HINT_TRUST
from dcerpc.protocol.groups import GroupTable
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


@pytest.mark.parametrize("hint", [0, 5000, 200_000, 0xFFFFFFFF])
def test_alloc_hint_is_trusted_only_so_far(hint: int) -> None:
    """A call's buffer is memory held at once: one fragment claiming 4 GiB must not make the
    server hold more than a bounded multiple of what arrived (framing.HINT_TRUST)."""
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
