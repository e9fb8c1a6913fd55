"""The passive association names calls from real sessions made by our client and server in memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcerpc.monitor import BindRecord, CallRecord, Monitor, ViolationRecord, to_event
from dcerpc.monitor.records import Record
from dcerpc.monitor.tcp import ACK, Segment
from dcerpc.pdu import NDR20, Bind, ContextElement, Request
from dcerpc.protocol.rules import Violation
from tests.monitor.streams import CLIENT, DOMAIN, ECHO, PASSWORD, SERVER, USER, segments, session


def run(segs: list[Segment]) -> list[Record]:
    mon = Monitor()
    out: list[Record] = []
    for s in segs:
        out += mon.feed(s)
    return out + mon.finish()


def calls(recs: list[Record]) -> list[CallRecord]:
    return [r for r in recs if isinstance(r, CallRecord)]


@pytest.fixture
def users(tmp_path: Path) -> Path:
    p = tmp_path / "users"
    p.write_text(f"{DOMAIN}:{USER}:{PASSWORD}\n")
    return p


def test_calls_are_named_paired_and_timed() -> None:
    recs = run(segments(session(calls=3, big=20000)))
    cs = calls(recs)
    assert [(c.operation, c.outcome) for c in cs] == [("AddOne", "success")] * 3 + [
        ("EchoData", "success"),
        ("", "failure"),
    ]
    assert all(c.interface_name == "rpcecho" and c.rtt is not None and c.rtt > 0 for c in cs)
    echo = cs[3]
    assert echo.request_fragments > 1 and echo.response_fragments > 1  # fragmented both ways
    assert echo.request_octets == 4 + 20000 - 20000 % 256
    assert cs[4].opnum == 200 and to_event(cs[4])["dcerpc"]["fault"]["status"] == "nca_s_op_rng_error"
    assert (cs[0].client_ip, cs[0].server_port) == (CLIENT.ip, SERVER.port)
    binds = [r for r in recs if isinstance(r, BindRecord)]
    assert binds[0].result == "accepted" and binds[0].interface == ECHO.uuid
    assert not [r for r in recs if isinstance(r, ViolationRecord)]


def test_ntlm_user_and_domain_come_from_the_authenticate_message(users: Path) -> None:
    cs = calls(run(segments(session(users))))
    assert cs and all((c.auth.user, c.auth.domain) == (USER, DOMAIN) for c in cs)
    assert {(c.auth.type, c.auth.level) for c in cs} == {(10, 5)}
    ev = to_event(cs[0])
    assert ev["user"] == {"name": USER, "domain": DOMAIN}
    assert ev["dcerpc"]["auth"] == {"type": "ntlm", "level": "integrity"}


def test_mid_stream_start_reports_opnums() -> None:
    segs = segments(session(calls=4), syn=False)
    # the capture starts after the bind and its answer, at the first request
    first_call = next(i for i, s in enumerate(segs) if s.payload and s.payload[2] == 0)
    cs = calls(run(segs[first_call:]))
    assert [c.opnum for c in cs] == [0, 0, 0, 0, 200]
    assert all(c.interface is None for c in cs)  # no bind seen: the opnum, not a name
    assert [c.outcome for c in cs] == ["success"] * 4 + ["failure"]


def test_mid_pdu_start_hunts_for_the_next_header() -> None:
    segs = segments(session(calls=4), (7,), syn=False)
    # the capture starts 2 segments (14 octets) into the first request: its header is lost
    first_call = next(i for i, s in enumerate(segs) if s.payload and s.payload[2:3] == b"\x00")
    recs = run(segs[first_call + 2 :])
    cs = calls(recs)
    assert [c.opnum for c in cs][-4:] == [0, 0, 0, 200]  # the later calls, whole
    assert not [r for r in recs if isinstance(r, ViolationRecord)]  # a start is not a violation


def test_any_port_and_server_pdu_from_the_client_is_a_violation() -> None:
    bind = Bind(call_id=1, contexts=(ContextElement(0, ECHO, (NDR20,)),)).encode()
    odd = Segment(
        1.0, CLIENT, SERVER, 1, ACK, bind + bytes.fromhex("05000c03100000001800000002000000") + bytes(8)
    )
    recs = run([odd])
    kinds = [r.kind for r in recs if isinstance(r, ViolationRecord)]
    assert Violation.SERVER_PDU in kinds or Violation.MALFORMED in kinds


def test_continuation_without_first_fragment_is_an_orphan() -> None:
    bind = Bind(call_id=1, contexts=(ContextElement(0, ECHO, (NDR20,)),)).encode()
    cont = Request(call_id=5, flags=0x02, opnum=0, stub=b"1234").encode()
    recs = run([Segment(1.0, CLIENT, SERVER, 1, ACK, bind + cont)])
    assert [r.kind for r in recs if isinstance(r, ViolationRecord)] == [Violation.ORPHAN_FRAGMENT]


def test_non_rpc_streams_are_given_up() -> None:
    junk = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 4000
    mon = Monitor()
    seq = 1
    for i in range(0, len(junk), 1400):
        mon.feed(Segment(1.0, CLIENT, SERVER, seq, ACK, junk[i : i + 1400]))
        seq += len(junk[i : i + 1400])
    (assoc,) = mon.associations.values()
    assert assoc.given_up and not assoc.is_dcerpc
    assert mon.finish() == []
