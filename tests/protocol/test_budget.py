"""The process memory budget (protocol/budget.py), sans-IO: its three rules, and what the server
association does when it says no (fault rpc_s_out_of_resources, the connection stays, the call's
remaining fragments are discarded), and that a closed connection gives back everything."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcerpc.pdu import Fault, Request, Response
from dcerpc.pdu import constants as const
from dcerpc.pdu.co import Pdu, parse
from dcerpc.pdu.constants import PFC
from dcerpc.pdu.header import frame_length
from dcerpc.protocol.budget import Budget
from dcerpc.protocol.client import ClientAssociation
from dcerpc.protocol.events import BindAccepted, CallReceived, ProtocolViolation
from dcerpc.protocol.framing import SPARE_MIN
from dcerpc.protocol.groups import GroupTable
from dcerpc.protocol.rules import Violation
from dcerpc.protocol.server import ServerAssociation
from dcerpc.rpcecho import Echo

MiB = 1024 * 1024


def _pdus(data: bytes) -> list[Pdu]:
    out, pos = [], 0
    while (n := frame_length(data, pos)) is not None and n <= len(data) - pos:
        out.append(parse(data[pos : pos + n]).pdu)
        pos += n
    return out


def _bound(budget: Budget, source: str = "192.0.2.1") -> tuple[ClientAssociation, ServerAssociation]:
    client = ClientAssociation()
    server = ServerAssociation(lambda s: s, GroupTable())
    server.account = budget.account(source)
    client.bind({0: Echo.__syntax__})
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    assert any(isinstance(e, BindAccepted) for e in client.events())
    server.events()
    return client, server


def _fragments(call_id: int, n: int, piece: int = 60_000) -> Iterator[bytes]:
    """A call of ``n`` stub octets in fragments of ``piece``, each as sent."""
    sent = 0
    while sent < n:
        k = min(piece, n - sent)
        flags = (PFC.FIRST_FRAG if sent == 0 else 0) | (PFC.LAST_FRAG if sent + k >= n else 0)
        yield Request(
            call_id=call_id, flags=flags, alloc_hint=n - sent, context_id=0, opnum=1, stub=bytes(k)
        ).encode()
        sent += k


# the budget's rules --------------------------------------------------------------------------


def test_the_total_and_the_per_source_share_are_never_exceeded() -> None:
    budget = Budget(total=100, per_source=40)
    a = budget.account("a")
    assert a.take(40)
    assert not a.take(1)  # the source's share
    b1, b2 = budget.account("b"), budget.account("b")  # two connections, one source
    assert b1.take(20) and b2.take(20)
    assert not b2.take(1)
    c = budget.account("c")
    assert c.take(20)
    assert not c.take(1)  # the total: 100 held
    assert budget.held == 100 and budget.refused == 3
    a.give(40)
    assert c.take(1)


def test_under_pressure_a_source_beyond_an_equal_share_waits_for_the_others() -> None:
    budget = Budget(total=1000, per_source=1000)
    greedy, honest = budget.account("greedy"), budget.account("honest")
    assert greedy.take(600)  # alone, and the budget not yet half held
    assert honest.take(10)
    assert not greedy.take(10)  # more than half held: greedy holds more than 1000 / 2
    assert honest.take(300)  # honest is within its equal share
    assert budget.source_held("greedy") == 600


def test_closing_an_account_gives_back_everything_whatever_its_holders_forget() -> None:
    budget = Budget(total=1000, per_source=1000)
    account = budget.account(None)
    assert account.take(300) and account.take(200)
    account.close()
    assert budget.held == 0 and budget.sources == 0
    account.give(200)  # a late holder: nothing more is given back
    assert budget.held == 0
    assert not account.take(1)  # and nothing more is taken


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(-300, 300)), max_size=60))
def test_the_arithmetic_holds_for_any_sequence(ops: list[tuple[int, int]]) -> None:
    budget = Budget(total=1000, per_source=400)
    accounts = [budget.account(str(i % 2)) for i in range(4)]
    for i, n in ops:
        if n >= 0:
            accounts[i].take(n)
        else:
            accounts[i].give(-n)
        assert 0 <= budget.held <= budget.total
        assert budget.held == sum(a.held for a in accounts)
        for source in ("0", "1"):
            assert budget.source_held(source) <= budget.per_source
    for a in accounts:
        a.close()
    assert budget.held == 0 and budget.sources == 0


# what the server association does with it ---------------------------------------------------------


def test_a_call_the_budget_cannot_hold_is_refused_and_the_connection_goes_on() -> None:
    budget = Budget(total=8 * MiB, per_source=8 * MiB)
    _client, server = _bound(budget)
    wire = list(_fragments(7, 12 * MiB))
    events = []
    for fragment in wire:
        server.receive_data(fragment)
        events += server.events()
    (violation,) = [e for e in events if isinstance(e, ProtocolViolation)]
    assert violation.kind is Violation.OUT_OF_RESOURCES and not violation.fatal
    assert not [e for e in events if isinstance(e, CallReceived)]
    (fault,) = _pdus(server.data_to_send())  # one answer, however many fragments followed
    assert isinstance(fault, Fault)
    assert fault.status == const.RPC_S_OUT_OF_RESOURCES and fault.flags & PFC.DID_NOT_EXECUTE
    assert server.alive and server.buffered == 0 and budget.held == 0
    # the next call, within the budget, is served on the same connection
    for fragment in _fragments(8, 2 * MiB):
        server.receive_data(fragment)
    (call,) = [e for e in server.events() if isinstance(e, CallReceived)]
    assert call.call_id == 8 and len(call.stub) == 2 * MiB
    assert budget.held >= 2 * MiB  # the buffer, now the connection's spare (SPARE_MIN)
    del call
    server.connection_lost()
    assert budget.held == 0 and budget.sources == 0


@pytest.mark.parametrize("reads", [1, 4096])  # whole fragments; stubs read straight into the buffer
def test_the_direct_path_is_refused_the_same_way(reads: int) -> None:
    budget = Budget(total=4 * MiB, per_source=4 * MiB)
    _client, server = _bound(budget)
    wire = b"".join(_fragments(3, 6 * MiB))
    for pos in range(0, len(wire), len(wire) // reads + 1):
        server.receive_data(wire[pos : pos + len(wire) // reads + 1])
    kinds = [e.kind for e in server.events() if isinstance(e, ProtocolViolation)]
    assert kinds == [Violation.OUT_OF_RESOURCES]
    assert [type(p) for p in _pdus(server.data_to_send())] == [Fault]
    assert server.alive and budget.held == 0


def test_one_source_cannot_starve_another() -> None:
    """A greedy address holds more than half the budget with a call it never finishes; an honest
    address's call is still received (rule 3), the greedy address's next call is not, though the
    total would allow it."""
    budget = Budget(total=16 * MiB, per_source=16 * MiB)
    greedy = _bound(budget, "198.51.100.7")[1]
    for fragment in list(_fragments(1, 10 * MiB))[:150]:  # 9 MiB sent, never the rest
        greedy.receive_data(fragment)
    assert not greedy.events()
    assert budget.held > 8 * MiB
    _, honest = _bound(budget, "203.0.113.9")
    for fragment in _fragments(1, 3 * MiB):
        honest.receive_data(fragment)
    assert [type(e) for e in honest.events()] == [CallReceived]
    assert budget.held + 2 * MiB <= budget.total
    again = _bound(budget, "198.51.100.7")[1]
    for fragment in _fragments(1, 2 * MiB):
        again.receive_data(fragment)
    assert [e.kind for e in again.events() if isinstance(e, ProtocolViolation)] == [
        Violation.OUT_OF_RESOURCES
    ]
    greedy.connection_lost()  # the greedy connection goes: its memory with it
    for fragment in _fragments(2, 2 * MiB):
        again.receive_data(fragment)
    assert [type(e) for e in again.events()] == [CallReceived]


def test_an_answer_the_budget_cannot_hold_is_a_fault() -> None:
    budget = Budget(total=4 * MiB, per_source=4 * MiB)
    client, server = _bound(budget)
    cid = client.request(0, 1, b"\0" * 8)
    server.receive_data(client.data_to_send())
    (call,) = server.events()
    assert isinstance(call, CallReceived)
    assert not server.respond(call.call_id, bytes(6 * MiB))
    (violation,) = server.events()
    assert isinstance(violation, ProtocolViolation) and violation.kind is Violation.RESPONSE_OUT_OF_RESOURCES
    (fault,) = _pdus(server.data_to_send())
    assert isinstance(fault, Fault) and fault.call_id == cid
    assert fault.status == const.RPC_S_OUT_OF_RESOURCES and not fault.flags & PFC.DID_NOT_EXECUTE
    assert budget.held == 0 and server.alive


def test_an_answer_is_held_until_written_and_dropped_when_the_peer_goes() -> None:
    budget = Budget(total=64 * MiB)
    client, server = _bound(budget)
    for cid_stub in (1, 2):
        client.request(0, 1, b"\0" * 8)
        server.receive_data(client.data_to_send())
        (call,) = server.events()
        assert isinstance(call, CallReceived)
        assert server.respond(call.call_id, bytes(3 * MiB))
        assert budget.held == 3 * MiB * cid_stub
    first = _pdus(server.data_to_send(limit=1 * MiB))  # part of the first answer leaves
    assert first and all(isinstance(p, Response) for p in first)
    assert budget.held == 6 * MiB  # both still queued: the first is not all written
    server.data_to_send(limit=3 * MiB)  # the rest of the first answer
    assert budget.held == 3 * MiB
    server.connection_lost()  # the second is never read: dropped, and its memory given back
    assert budget.held == 0 and not server.has_output


def test_the_spare_buffer_is_held_against_the_budget_and_let_go_with_the_connection() -> None:
    budget = Budget(total=64 * MiB)
    _client, server = _bound(budget)
    for fragment in _fragments(1, 2 * SPARE_MIN):
        server.receive_data(fragment)
    (call,) = server.events()
    assert isinstance(call, CallReceived)
    del call
    assert server.buffered == 0 and budget.held >= 2 * SPARE_MIN  # kept for the next long call
    server.connection_lost()
    assert budget.held == 0
