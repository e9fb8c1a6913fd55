"""Our connectionless encoder against an independent reader: every PDU type, in both integer
orders, written into a capture file (dpkt) and dissected by tshark (Wireshark's packet-dcerpc-dg),
field by field: the header (types, flags, serial number, UUIDs, interface version, sequence, opnum,
hints, body length, fragment number, auth_proto) and the bodies (fault / reject status, fack,
cl_cancel, cancel_ack)."""

from __future__ import annotations

import ipaddress
import subprocess
import uuid
from pathlib import Path

import dpkt
import pytest

from dcerpc.pdu.cl import (
    CancelAckBody,
    CancelBody,
    ClPType,
    Datagram,
    FackBody,
    Flags1,
    Flags2,
    StatusBody,
)
from tests.conftest import have, require_peer

EPM = uuid.UUID("e1af8308-5d1f-11c9-91a4-08002b14a0fa")
ACT = uuid.UUID("6d4c1a2b-3e5f-4071-8293-a4b5c6d7e8f9")
OBJ = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
BODIES: dict[ClPType, object] = {
    ClPType.REQUEST: b"in-stub",
    ClPType.PING: b"",
    ClPType.RESPONSE: b"out-stub",
    ClPType.FAULT: StatusBody(0x1C010002),
    ClPType.WORKING: b"",
    ClPType.NOCALL: FackBody(0, 16, 4096, 1464, 3, (0x5,)),
    ClPType.REJECT: StatusBody(0x1C010003),
    ClPType.ACK: b"",
    ClPType.CL_CANCEL: CancelBody(9),
    ClPType.FACK: FackBody(0, 8, 65000, 1464, 2, (0x7, 0x80000001)),
    ClPType.CANCEL_ACK: CancelAckBody(9, True),
}
FIELDS = (
    "dcerpc.pkt_type", "dcerpc.dg_flags1", "dcerpc.dg_flags2", "dcerpc.drep.byteorder", "dcerpc.dg_serial_hi",
    "dcerpc.dg_serial_lo", "dcerpc.obj_id", "dcerpc.dg_if_id", "dcerpc.dg_act_id", "dcerpc.dg_if_ver",
    "dcerpc.dg_seqnum", "dcerpc.opnum", "dcerpc.dg_ihint", "dcerpc.dg_ahint", "dcerpc.dg_frag_len",
    "dcerpc.dg_frag_num", "dcerpc.dg_auth_proto", "dcerpc.dg_status", "dcerpc.fack_window_size",
    "dcerpc.fack_max_tsdu", "dcerpc.fack_max_frag_size", "dcerpc.fack_serial_num", "dcerpc.fack_selack_len",
    "dcerpc.fack_selack", "dcerpc.dg_cancel_id", "dcerpc.server_accepting_cancels",
)  # fmt: skip


def datagrams() -> list[Datagram]:
    out = []
    for little in (True, False):
        for i, (ptype, body) in enumerate(BODIES.items()):
            out.append(
                Datagram(
                    ptype=ptype,
                    drep=b"\x10\x00\x00" if little else b"\x00\x00\x00",
                    flags1=Flags1.FRAG | Flags1.NOFACK | Flags1.IDEMPOTENT if ptype == ClPType.REQUEST else 0,
                    flags2=Flags2.CANCEL_PENDING if ptype == ClPType.RESPONSE else 0,
                    serial=0x0102 + i,
                    object=OBJ,
                    interface=EPM,
                    activity=ACT,
                    server_boot=0x5F000000,
                    interface_version=0x00010003,
                    sequence=1000 + i,
                    opnum=i,
                    interface_hint=7 + i,
                    activity_hint=300 + i,
                    fragment=2 if ptype in (ClPType.REQUEST, ClPType.FACK) else 0,
                    body=body,  # type: ignore[arg-type]
                )
            )
    return out


def expected(d: Datagram) -> dict[str, str]:
    raw = d.encode()
    exp = {
        "dcerpc.pkt_type": str(int(d.ptype)), "dcerpc.dg_flags1": f"0x{d.flags1:02x}",
        "dcerpc.dg_flags2": f"0x{d.flags2:02x}", "dcerpc.drep.byteorder": "1" if d.little_endian else "0",
        "dcerpc.dg_serial_hi": f"0x{d.serial >> 8:02x}", "dcerpc.dg_serial_lo": f"0x{d.serial & 0xFF:02x}",
        "dcerpc.obj_id": str(d.object), "dcerpc.dg_if_id": str(d.interface),
        "dcerpc.dg_act_id": str(d.activity),
        "dcerpc.dg_if_ver": str(d.interface_version), "dcerpc.dg_seqnum": str(d.sequence),
        "dcerpc.opnum": str(d.opnum), "dcerpc.dg_ihint": f"0x{d.interface_hint:04x}",
        "dcerpc.dg_ahint": f"0x{d.activity_hint:04x}", "dcerpc.dg_frag_len": str(len(raw) - 80),
        "dcerpc.dg_frag_num": str(d.fragment), "dcerpc.dg_auth_proto": str(d.auth_proto),
    }  # fmt: skip
    body = d.body
    if isinstance(body, StatusBody):
        exp["dcerpc.dg_status"] = f"0x{body.status:08x}"
    elif isinstance(body, FackBody):
        exp.update({
            "dcerpc.fack_window_size": str(body.window_size), "dcerpc.fack_max_tsdu": str(body.max_tsdu),
            "dcerpc.fack_max_frag_size": str(body.max_frag_size), "dcerpc.fack_serial_num": str(body.serial),
            "dcerpc.fack_selack_len": str(len(body.selack)),
            "dcerpc.fack_selack": ",".join(f"0x{m:08x}" for m in body.selack),
        })  # fmt: skip
    elif isinstance(body, CancelBody):
        exp["dcerpc.dg_cancel_id"] = str(body.cancel_id)
    elif isinstance(body, CancelAckBody):
        exp.update({"dcerpc.dg_cancel_id": str(body.cancel_id),
                    "dcerpc.server_accepting_cancels": "1" if body.accepting else "0"})  # fmt: skip
    return exp


@pytest.mark.interop
def test_tshark_reads_what_we_write(tmp_path: Path) -> None:
    require_peer(have("tshark"), "tshark is not installed (Debian tshark)")
    dgs = datagrams()
    path = tmp_path / "cl.pcap"
    with path.open("wb") as f:
        w = dpkt.pcap.Writer(f)
        for i, d in enumerate(dgs):
            udp = dpkt.udp.UDP(sport=40000, dport=135, data=d.encode())
            udp.ulen = len(bytes(udp))
            ip = dpkt.ip.IP(src=ipaddress.IPv4Address("10.0.0.1").packed,
                            dst=ipaddress.IPv4Address("10.0.0.2").packed, p=17, data=udp)  # fmt: skip
            ip.len = len(bytes(ip))
            w.writepkt(bytes(dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP, data=ip)), ts=1e9 + i)
    args = ["tshark", "-r", str(path), "--disable-heuristic", "wg", "-T", "fields", "-E", "occurrence=a"]
    for name in FIELDS:
        args += ["-e", name]
    rows = subprocess.run(args, capture_output=True, text=True, check=True, timeout=120).stdout.splitlines()
    assert len(rows) == len(dgs)
    for d, row in zip(dgs, rows, strict=True):
        got = {k: v for k, v in zip(FIELDS, row.split("\t"), strict=True) if v}
        exp = expected(d)
        assert {k: got.get(k) for k in exp} == exp, d.ptype
