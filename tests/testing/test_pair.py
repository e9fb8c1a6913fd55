"""AssociationPair: both roles in memory, moved a step at a time."""

from __future__ import annotations

import pytest

from dcerpc.pdu import BindAck, BindNak, Response
from dcerpc.protocol.events import CallReceived, Closing, ProtocolViolation, ResponseReceived
from dcerpc.rpcecho import Echo
from dcerpc.testing import AssociationPair

ADD_ONE = Echo.operation_named("AddOne")


def test_bind_call_and_answer_in_chosen_reads() -> None:
    pair = AssociationPair(interfaces=[Echo])
    accepted = pair.bind(Echo)
    assert accepted.accepted == {0: Echo.__syntax__}
    cid = pair.client.request(0, 0, ADD_ONE.encode_request(41))
    moved = pair.to_server(chunks=[1])  # an octet a read
    (call,) = moved.server_events_of(CallReceived)
    assert (call.call_id, call.opnum, bytes(call.stub)) == (cid, 0, ADD_ONE.encode_request(41))
    pair.server.respond(call.call_id, b"*\0\0\0")
    moved = pair.to_client(chunks=[5, 7])
    assert [type(p) for p in moved.pdus] == [Response]
    (answer,) = moved.client_events_of(ResponseReceived)
    assert answer.call_id == cid and bytes(answer.stub) == b"*\0\0\0"


def test_moves_report_both_sides_octets_as_pdus() -> None:
    pair = AssociationPair(interfaces=[Echo])
    pair.client.bind({0: Echo.__syntax__})
    assert pair.to_server().pdus[0].ptype.name == "BIND"
    assert isinstance(pair.to_client().pdus[0], BindAck)


def test_an_interface_not_served_is_rejected() -> None:
    accepted = AssociationPair(interfaces=[]).bind(Echo)
    assert accepted.accepted == {} and list(accepted.rejected) == [0]


def test_hostile_octets_injected_into_the_server() -> None:
    pair = AssociationPair()
    events = pair.feed_server(b"GET / HTTP/1.1\r\n\r\n", chunks=[3])
    assert isinstance(events[0], ProtocolViolation) and "version" in events[0].reason
    assert isinstance(events[-1], Closing)
    assert isinstance(AssociationPair(server=pair.server).to_client().pdus[0], BindNak)


def test_chunk_sizes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        AssociationPair().feed_server(b"x", chunks=[0])
