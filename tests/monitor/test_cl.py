"""The connectionless reader (monitor/cl.py) on datagrams built with our codec, in memory, and in
capture files read back through capture.py: pairing by (activity, sequence), fragments by number,
retransmissions, the other PDU types as notes, faults and rejects, violations, the bounds."""

from __future__ import annotations

import ipaddress
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import dpkt
import pytest

from dcerpc.detect import Detectors
from dcerpc.monitor import CallRecord, Monitor, ViolationRecord, monitor_file, to_event
from dcerpc.monitor import cl as clmod
from dcerpc.monitor.cl import ClReader, UdpDatagram
from dcerpc.monitor.records import AlertRecord
from dcerpc.monitor.tcp import Endpoint
from dcerpc.pdu.cl import CancelAckBody, ClPType, Datagram, FackBody, Flags1, StatusBody
from dcerpc.protocol.rules import Violation

EPM = uuid.UUID("e1af8308-5d1f-11c9-91a4-08002b14a0fa")
MGMT = uuid.UUID("afa8bd80-7d8a-11c9-bef4-08002b102989")
ACT = uuid.UUID("11111111-2222-3333-4444-555555555555")
CLIENT, SERVER = Endpoint("10.0.0.1", 40000), Endpoint("10.0.0.2", 135)
LE, BE = b"\x10\x00\x00", b"\x00\x00\x00"


def pdu(ptype: ClPType, seq: int = 1, *, act: uuid.UUID = ACT, **kw: Any) -> Datagram:
    return Datagram(**{"ptype": ptype, "interface": EPM, "interface_version": 3, "activity": act,
                       "sequence": seq, "opnum": 2, **kw})  # fmt: skip


def up(d: Datagram, ts: float = 1.0) -> UdpDatagram:
    return UdpDatagram(ts, CLIENT, SERVER, d.encode())


def down(d: Datagram, ts: float = 1.5) -> UdpDatagram:
    return UdpDatagram(ts, SERVER, CLIENT, d.encode())


def run(*dgs: UdpDatagram) -> tuple[list[Any], ClReader]:
    mon = Monitor()
    out: list[Any] = []
    for dg in dgs:
        out += mon.feed(dg)
    out += mon.finish()
    return out, mon.cl


def calls(recs: list[Any]) -> list[CallRecord]:
    return [r for r in recs if isinstance(r, CallRecord)]


@pytest.mark.parametrize("drep", [LE, BE])
def test_a_call_is_named_by_its_header(drep: bytes) -> None:
    recs, _ = run(
        up(pdu(ClPType.REQUEST, body=b"lookup-args", drep=drep, flags1=Flags1.IDEMPOTENT)),
        down(pdu(ClPType.RESPONSE, body=b"towers", drep=drep)),
    )
    [rec] = calls(recs)
    assert (rec.interface_name, rec.operation, rec.version) == ("epmapper", "ept_lookup", (3, 0))
    assert (rec.outcome, rec.activity, rec.sequence, rec.stub, rec.response_stub) == (
        "success", ACT, 1, b"lookup-args", b"towers",
    )  # fmt: skip
    assert rec.rtt == pytest.approx(0.5)
    ev = to_event(rec)
    assert ev["network"]["transport"] == "udp" and ev["dcerpc"]["transport"] == "ncadg_ip_udp"
    assert ev["dcerpc"]["activity"] == str(ACT) and ev["dcerpc"]["sequence"] == 1
    assert "call_id" not in ev["dcerpc"] and "context_id" not in ev["dcerpc"]
    assert ev["dcerpc"]["operation"] == "ept_lookup" and ev["dcerpc"]["flags"] == ["idempotent"]
    assert (
        ev["source"] == {"ip": CLIENT.ip, "port": CLIENT.port} and ev["dcerpc"]["connection"]["uid"] == "U1"
    )
    assert ev["dcerpc"]["auth"] == {"type": "none", "level": "none"}


def frag(ptype: ClPType, n: int, last: bool, body: bytes, seq: int = 1) -> Datagram:
    flags = Flags1.FRAG | (Flags1.LASTFRAG if last else 0)
    return pdu(ptype, seq, flags1=flags, fragment=n, body=body)


def test_fragments_reassemble_by_number_and_copies_are_retransmissions() -> None:
    recs, reader = run(
        up(frag(ClPType.REQUEST, 1, False, b"BBBB")),
        up(frag(ClPType.REQUEST, 0, False, b"AAAA")),
        down(pdu(ClPType.FACK, body=FackBody(window_size=8, selack=(3,)))),
        up(frag(ClPType.REQUEST, 0, False, b"AAAA")),  # sent again: not counted twice
        up(frag(ClPType.REQUEST, 2, True, b"CC")),
        down(pdu(ClPType.WORKING)),
        up(pdu(ClPType.PING)),
        down(frag(ClPType.RESPONSE, 1, True, b"yy")),
        down(frag(ClPType.RESPONSE, 0, False, b"xxxx"), ts=2.0),
        up(pdu(ClPType.ACK)),
    )
    [rec] = calls(recs)
    assert rec.stub == b"AAAABBBBCC" and rec.response_stub == b"xxxxyy"
    assert (rec.request_fragments, rec.request_octets, rec.response_fragments, rec.response_octets) == (
        3,
        10,
        2,
        6,
    )
    assert rec.notes == {"fack": 1, "retransmitted": 1, "working": 1, "ping": 1}
    assert rec.rtt == pytest.approx(1.0)  # to the answer's last fragment to arrive
    assert reader.stats["ack"] == 1 and reader.stats["retransmitted"] == 1
    assert not [r for r in recs if isinstance(r, ViolationRecord)]


def test_a_response_is_whole_only_with_every_fragment() -> None:
    recs, _ = run(up(pdu(ClPType.REQUEST)), down(frag(ClPType.RESPONSE, 2, True, b"c")),
                  down(frag(ClPType.RESPONSE, 0, False, b"a")))  # fmt: skip
    [rec] = calls(recs)
    assert rec.outcome == "unknown" and rec.response_fragments == 2  # fragment 1 never came


def test_fault_and_reject_with_status_names() -> None:
    recs, _ = run(
        up(pdu(ClPType.REQUEST, 1)),
        down(pdu(ClPType.FAULT, 1, body=StatusBody(0x1C010002))),
        up(pdu(ClPType.REQUEST, 2, interface=MGMT, opnum=1)),
        down(pdu(ClPType.REJECT, 2, interface=MGMT, opnum=1, body=StatusBody(0x1C010003))),
    )
    fault, reject = calls(recs)
    assert (fault.outcome, to_event(fault)["dcerpc"]["fault"]) == (
        "failure", {"status": "nca_s_op_rng_error", "code": 0x1C010002},
    )  # fmt: skip
    assert reject.interface_name == "mgmt" and reject.operation == "inq_stats"
    assert to_event(reject)["dcerpc"]["fault"] == {
        "status": "nca_s_unk_if",
        "code": 0x1C010003,
        "reject": True,
    }


def test_next_sequence_ends_the_last_call_and_late_copies_are_counted() -> None:
    recs, reader = run(
        up(pdu(ClPType.REQUEST, 5)),
        up(pdu(ClPType.REQUEST, 6), ts=2.0),  # 5 had no answer
        up(pdu(ClPType.REQUEST, 5), ts=2.1),  # a late copy of 5
        down(pdu(ClPType.RESPONSE, 6), ts=2.5),
        down(pdu(ClPType.RESPONSE, 6), ts=2.6),  # the answer again
        down(pdu(ClPType.NOCALL, 7)),  # nothing to note it on
    )
    five, six = calls(recs)
    assert (five.sequence, five.outcome, six.sequence, six.outcome) == (5, "unknown", 6, "success")
    assert reader.stats["late"] == 2 and reader.stats["nocall"] == 1


def test_an_answer_without_its_request_is_partial() -> None:
    recs, _ = run(down(pdu(ClPType.RESPONSE, 9, body=b"out")))
    [rec] = calls(recs)
    assert rec.partial and rec.outcome == "success" and rec.request_fragments == 0 and rec.rtt is None
    assert (rec.client_ip, rec.server_port) == (CLIENT.ip, SERVER.port)


def test_maybe_calls_end_with_their_request_and_cancels_are_noted() -> None:
    recs, _ = run(
        up(pdu(ClPType.REQUEST, 1, flags1=Flags1.MAYBE)),
        up(pdu(ClPType.REQUEST, 2)),
        up(pdu(ClPType.CL_CANCEL, 2, body=b"")),  # malformed: a cl_cancel has a body
        down(pdu(ClPType.CANCEL_ACK, 2, body=CancelAckBody(1))),
        down(pdu(ClPType.FAULT, 2, body=StatusBody(0x1C00000D))),
    )
    maybe, cancelled = calls(recs)
    assert maybe.call_flags == ("maybe",) and maybe.outcome == "unknown"
    assert cancelled.notes == {"cancel_ack": 1} and cancelled.fault_status == 0x1C00000D
    [bad] = [r for r in recs if isinstance(r, ViolationRecord)]
    assert bad.kind is Violation.MALFORMED and bad.udp and "cl_cancel" in bad.reason


def test_malformed_datagrams_are_violations_and_the_reader_goes_on() -> None:
    good = pdu(ClPType.REQUEST, 1).encode()
    recs, reader = run(
        up(pdu(ClPType.REQUEST, 1)),
        UdpDatagram(1.1, CLIENT, SERVER, good[:60]),  # short, on a flow that carries RPC
        UdpDatagram(1.2, CLIENT, SERVER, b"\x04\x0c" + good[2:]),  # packet type 12
        down(pdu(ClPType.RESPONSE, 1)),
        UdpDatagram(1.3, SERVER, CLIENT, pdu(ClPType.REQUEST, 1).encode()),  # the server sends a request
        UdpDatagram(2.0, Endpoint("10.0.0.9", 53), CLIENT, b"\x04" + bytes(120)),  # DNS-ish: not RPC
    )
    kinds = [r.kind for r in recs if isinstance(r, ViolationRecord)]
    assert kinds == [Violation.BAD_FRAGMENT_LENGTH, Violation.MALFORMED]
    [rec] = calls(recs)
    assert rec.outcome == "success" and reader.stats["not_rpc"] == 1 and reader.stats["late"] == 1
    ev = to_event(next(r for r in recs if isinstance(r, ViolationRecord)))
    assert ev["event"]["action"] == "protocol-violation" and ev["network"]["transport"] == "udp"
    assert ev["source"]["port"] == CLIENT.port and ev["dcerpc"]["sender"] == "client"
    # a malformed datagram from the server of a flow: the flow's client is still the client
    recs, _ = run(up(pdu(ClPType.REQUEST, 1)), UdpDatagram(1.1, SERVER, CLIENT, good[:60]))
    [bad] = [r for r in recs if isinstance(r, ViolationRecord)]
    assert (bad.client_port, bad.server_port, bad.from_client) == (CLIENT.port, SERVER.port, False)


def test_answers_from_the_client_and_changed_fragments() -> None:
    recs, _ = run(
        up(frag(ClPType.REQUEST, 0, False, b"a")),
        up(pdu(ClPType.RESPONSE, 1)),  # from the call's client
        up(pdu(ClPType.REQUEST, 1, opnum=3, flags1=Flags1.FRAG | Flags1.LASTFRAG, fragment=1)),
    )
    kinds = [r.kind for r in recs if isinstance(r, ViolationRecord)]
    assert kinds == [Violation.PEER_PROTOCOL, Violation.FRAGMENT_CHANGED]


def test_bounds_calls_fragments_activities(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clmod, "MAX_CL_CALLS", 3)
    monkeypatch.setattr(clmod, "MAX_CL_ACTIVITIES", 4)
    monkeypatch.setattr(clmod, "MAX_CL_FRAGMENTS", 5)
    monkeypatch.setattr(clmod, "MAX_CL_KEPT", 8)
    acts = [uuid.UUID(int=i + 1) for i in range(6)]
    reader = ClReader()
    out: list[Any] = []
    for a in acts:
        out += reader.feed(up(pdu(ClPType.REQUEST, act=a)))
    assert len(reader.calls) == 3 and len(reader.activities) == 4
    assert [r.kind for r in out if isinstance(r, ViolationRecord)] == [Violation.TOO_MANY_CALLS] * 3
    out = []
    for n in range(8):
        out += reader.feed(up(frag(ClPType.REQUEST, n, n == 7, b"abc", seq=9)))
    assert [r.kind for r in out if isinstance(r, ViolationRecord)][-1:] == [Violation.CALL_TOO_LARGE]
    call = reader.calls[(ACT, 9)]
    assert len(call.request.seen) == 5 and call.request.kept <= 8 and call.record.request_octets == 24


def frame(dg: UdpDatagram, v6: bool = False) -> bytes:
    udp = dpkt.udp.UDP(sport=dg.src.port, dport=dg.dst.port, data=dg.payload)
    udp.ulen = len(bytes(udp))
    if v6:
        src = ipaddress.IPv6Address("fd00::1" if dg.src == CLIENT else "fd00::2").packed
        dst = ipaddress.IPv6Address("fd00::2" if dg.src == CLIENT else "fd00::1").packed
        ip: dpkt.Packet = dpkt.ip6.IP6(src=src, dst=dst, nxt=17, hlim=64, data=udp, plen=len(bytes(udp)))
        return bytes(dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP6, data=ip))
    ip = dpkt.ip.IP(src=ipaddress.IPv4Address(dg.src.ip).packed, dst=ipaddress.IPv4Address(dg.dst.ip).packed,
                    p=17, data=udp)  # fmt: skip
    ip.len = len(bytes(ip))
    return bytes(dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


@pytest.mark.parametrize("v6", [False, True])
def test_capture_files_hand_out_udp_datagrams(tmp_path: Path, v6: bool) -> None:
    dgs = [up(frag(ClPType.REQUEST, 0, False, b"ab")), up(frag(ClPType.REQUEST, 1, True, b"cd")),
           down(pdu(ClPType.RESPONSE, body=b"ok"))]  # fmt: skip
    frames = [frame(d, v6) for d in dgs]
    frames.insert(1, frames[0][:-5])  # cut by the snaplen: dropped, counted
    path = tmp_path / "cl.pcap"
    with path.open("wb") as f:
        w = dpkt.pcap.Writer(f)
        for i, fr in enumerate(frames):
            w.writepkt(fr, ts=1_700_000_000 + i / 100)
    stats: Counter[str] = Counter()
    [rec] = list(monitor_file(path, stats))
    assert isinstance(rec, CallRecord) and rec.operation == "ept_lookup" and rec.stub == b"abcd"
    assert rec.udp and rec.client_port == CLIENT.port and rec.server_ip == ("fd00::2" if v6 else SERVER.ip)
    assert stats["udp"] == 3 and stats["truncated"] == 1


def test_connectionless_calls_reach_the_detectors() -> None:
    """An opnum sweep over UDP (each opnum refused with nca_s_op_rng_error) alerts as over TCP: the
    connectionless records go through the same detectors; a few refusals do not."""

    def sweep(n: int) -> list[str]:
        mon = Monitor(detectors=Detectors())
        out: list[Any] = []
        for seq in range(1, n + 1):
            out += mon.feed(up(pdu(ClPType.REQUEST, seq, opnum=100 + seq), ts=float(seq)))
            refused = pdu(ClPType.FAULT, seq, opnum=100 + seq, body=StatusBody(0x1C010002))
            out += mon.feed(down(refused, ts=seq + 0.5))
        out += mon.finish()
        return [r.alert.detector for r in out if isinstance(r, AlertRecord)]

    assert sweep(30) == ["opnum_sweep"]
    assert sweep(3) == []


@pytest.mark.parametrize(
    ("verifier", "level"),
    [
        (b"\x05\x01\x00\x00" + bytes(16), "integrity"),  # sec_trailer_cl: auth_level, key_vers_num, pad
        (b"\x06\x00" + bytes(6) + b"token", "privacy"),
        (b"\x00\x00\x00\x02\x01\x00\x00\x00", "connect"),  # after the stub's padding to 8 octets
        (b"\x00" * 8, "default"),  # no level in it: the API's default, as before
    ],
)
def test_the_auth_level_of_a_call_is_its_verifiers(verifier: bytes, level: str) -> None:
    """MS-RPCE 2.2.3.4: the verifier of an authenticated datagram opens with the sec_trailer_cl,
    whose first octet is the level (C706 13.3.4's Kerberos verifier too)."""
    recs, _ = run(
        up(pdu(ClPType.REQUEST, body=b"stub", auth_proto=10, auth=verifier)),
        down(pdu(ClPType.RESPONSE, body=b"answer", auth_proto=10, auth=verifier)),
    )
    [rec] = calls(recs)
    assert to_event(rec)["dcerpc"]["auth"] == {"type": "ntlm", "level": level}
