"""The passive association names calls from real sessions made by our client and server in memory."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dcerpc.monitor import BindRecord, CallRecord, Monitor, ViolationRecord, passive, to_event
from dcerpc.monitor.ntlm import find_authenticate
from dcerpc.monitor.records import Record
from dcerpc.monitor.tcp import ACK, Segment
from dcerpc.pdu import NDR20, Bind, ContextElement, Fault, Request, Response, parse
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
    assert to_event(cs[0])["dcerpc"]["connection"] == {"uid": "C1"}  # whole: no gap, not partial
    assert (cs[0].client_ip, cs[0].server_port) == (CLIENT.ip, SERVER.port)
    binds = [r for r in recs if isinstance(r, BindRecord)]
    assert binds[0].result == "accepted" and binds[0].interface == ECHO.uuid
    assert not [r for r in recs if isinstance(r, ViolationRecord)]


@pytest.mark.parametrize(("spnego", "auth_type", "name"), [(False, 10, "ntlm"), (True, 9, "spnego")])
def test_ntlm_user_and_domain_come_from_the_authenticate_message(
    users: Path, spnego: bool, auth_type: int, name: str
) -> None:
    cs = calls(run(segments(session(users, spnego=spnego))))
    assert len(cs) == 4 and all((c.auth.user, c.auth.domain) == (USER, DOMAIN) for c in cs)
    assert {(c.auth.type, c.auth.level) for c in cs} == {(auth_type, 5)}
    assert [c.outcome for c in cs] == ["success"] * 3 + ["failure"]
    ev = to_event(cs[0])
    assert ev["user"] == {"name": USER, "domain": DOMAIN}
    assert ev["dcerpc"]["auth"] == {"type": name, "level": "integrity"}


def test_mid_stream_start_reports_opnums() -> None:
    segs = segments(session(calls=4), syn=False)
    # the capture starts after the bind and its answer, at the first request
    first_call = next(i for i, s in enumerate(segs) if s.payload and s.payload[2] == 0)
    cs = calls(run(segs[first_call:]))
    assert [c.opnum for c in cs] == [0, 0, 0, 0, 200]
    assert all(c.interface is None for c in cs)  # no bind seen: the opnum, not a name
    assert [c.outcome for c in cs] == ["success"] * 4 + ["failure"]
    assert all(to_event(c)["dcerpc"]["connection"] == {"uid": "C1", "partial": True} for c in cs)


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


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=120))
def test_authenticate_parser_takes_anything(before: bytes, after: bytes) -> None:
    """Offsets and lengths that point anywhere, messages cut anywhere: names or None, no exception."""
    logon = find_authenticate(before + b"NTLMSSP\x00\x03\x00\x00\x00" + after)
    assert logon is None or isinstance(logon.user, str)


def test_authenticate_names_in_oem_and_unicode() -> None:
    def message(flags: int, domain: bytes, user: bytes) -> bytes:
        head = bytearray(b"NTLMSSP\x00" + struct.pack("<I", 3) + bytes(48) + struct.pack("<I", flags))
        struct.pack_into("<HHI", head, 28, len(domain), len(domain), 64)
        struct.pack_into("<HHI", head, 36, len(user), len(user), 64 + len(domain))
        return bytes(head) + domain + user

    uni = find_authenticate(message(1, "DOM".encode("utf-16-le"), "bob".encode("utf-16-le")))
    oem = find_authenticate(message(0, b"DOM", b"bob"))
    assert uni is not None and oem is not None
    assert (uni.domain, uni.user) == (oem.domain, oem.user) == ("DOM", "bob")
    anonymous = find_authenticate(message(1, b"", b""))
    assert anonymous is not None and anonymous.anonymous


def test_a_fault_answering_a_bind_is_the_binds_answer() -> None:
    bind = Bind(call_id=1, contexts=(ContextElement(0, ECHO, (NDR20,)),)).encode()
    fault = Fault(call_id=1, status=0x1C01000B).encode()
    recs = run([Segment(1.0, CLIENT, SERVER, 1, ACK, bind), Segment(1.1, SERVER, CLIENT, 1, ACK, fault)])
    assert [(r.result, r.reason) for r in recs if isinstance(r, BindRecord)] == [("fault", 0x1C01000B)]
    assert not calls(recs)


def test_half_cut_fragments_are_bounded_over_all_connections() -> None:
    """Many connections each open a 60000-octet fragment and never finish it."""
    mon = Monitor()
    mon.max_framed = 200_000
    head = bytes.fromhex("05000b0310000000") + struct.pack("<HHI", 60000, 0, 1)
    for port in range(20):
        src = CLIENT.__class__(CLIENT.ip, 30000 + port)
        mon.feed(Segment(1.0, src, SERVER, 1, ACK, head + bytes(50000)))
        assert mon.framed <= 200_000
        assert mon.framed == sum(a.buffered for a in mon.associations.values())
    assert mon.dropped_buffers > 0
    mon.finish()
    assert mon.framed == 0


def _fragments() -> list[tuple[bool, bytes]]:
    """Each fragment of a session (from the client?), cut as the framer cuts them."""
    out = []
    for from_client, octets in session(calls=2, big=9000):
        at = 0
        while at < len(octets):
            n = struct.unpack_from("<H", octets, at + 8)[0]
            out.append((from_client, octets[at : at + n]))
            at += n
    return out


FRAGMENTS = _fragments()


REQUEST_AT = next(i for i, (c, f) in enumerate(FRAGMENTS) if c and f[2] == 0 and len(f) > 1000)


@settings(max_examples=1500, deadline=None)
@given(
    st.integers(0, len(FRAGMENTS) - 1),
    st.booleans(),
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, 255)), max_size=3),
    st.just(0) | st.integers(1, 30),
)
@example(REQUEST_AT, False, [(3, 0x83)], 0)  # PFC_OBJECT_UUID: the object is read, the stub after it
@example(REQUEST_AT, False, [(1, 2)], 0)  # rpc_vers_minor 2
@example(REQUEST_AT, False, [(4, 0x00)], 0)  # big-endian
@example(REQUEST_AT, False, [(5, 1)], 0)  # not IEEE floats
@example(REQUEST_AT, False, [(10, 16)], 0)  # a security trailer
@example(REQUEST_AT, True, [], 0)  # a request from the server
def test_the_plain_fragment_reader_reads_what_parse_reads(
    index: int, swap: bool, flips: list[tuple[int, int]], cut: int
) -> None:
    """passive._plain takes a request or response only where parse() reads one, with its fields."""
    from_client, frag = FRAGMENTS[index]
    raw = bytearray(frag)
    for at, value in flips:
        if at < len(raw):
            raw[at] = value
    data = bytes(raw[: max(0, len(raw) - cut)])
    got = passive._plain(data, from_client != swap)
    if got is None:
        return
    pdu = parse(data).pdu  # raises if the fast path took what parse() refuses
    assert type(pdu) is (Request if from_client != swap else Response)
    assert isinstance(pdu, Request | Response)
    opnum = pdu.opnum if isinstance(pdu, Request) else got[4]
    assert (pdu.flags, pdu.call_id, pdu.alloc_hint, pdu.context_id, opnum) == got
    assert pdu.auth is None and pdu.stub == data[24:]
    assert not isinstance(pdu, Request) or pdu.object is None


def test_plain_fragments_are_read_fast_and_give_the_records_parse_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plain = [f for c, f in FRAGMENTS if passive._plain(f, c) is not None]
    assert len(plain) == len([f for _, f in FRAGMENTS if f[2] in (0, 2)]) > 6  # every request, response
    segs = segments(session(calls=2, big=9000))
    fast = run(segs)
    monkeypatch.setattr(passive, "_plain", lambda frag, from_client: None)
    assert run(segs) == fast
