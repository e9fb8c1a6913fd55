"""Write the ``cl`` target's seeds (fuzz/corpus/cl/) from a capture of connectionless calls.

Every distinct connectionless datagram of the capture becomes a parse seed (a leading 0); each flow's
datagrams, in order, become one reader script (a leading 1, then records.py records whose tag's low
bit is the direction: 0 from the flow's first sender). The committed seeds come from the capture
tests/monitor/test_cl_capture.py makes (epm and mgmt calls, fragments both ways, facks, a fault, a
reject, a ping answered by working, both integer orders), and one datagram of every packet type
in each integer order, built here (cl_cancel and cancel_ack are in no capture):

    .venv/bin/python fuzz/make_cl_corpus.py CAPTURE.pcapng
"""

from __future__ import annotations

import hashlib
import sys
from collections import Counter, defaultdict
from pathlib import Path

import records

from dcerpc.monitor.capture import packets
from dcerpc.monitor.cl import UdpDatagram
from dcerpc.monitor.tcp import Endpoint
from dcerpc.pdu.cl import (
    CancelAckBody,
    CancelBody,
    ClPType,
    Datagram,
    FackBody,
    Flags1,
    StatusBody,
    cl_plausible,
)

OUT = Path(__file__).resolve().parent / "corpus" / "cl"
BODIES: dict[ClPType, bytes | StatusBody | FackBody | CancelBody | CancelAckBody] = {
    ClPType.REQUEST: b"in",
    ClPType.RESPONSE: b"out",
    ClPType.FAULT: StatusBody(0x1C010002),
    ClPType.REJECT: StatusBody(0x1C010003, b"more"),
    ClPType.NOCALL: FackBody(1, 8, 4096, 1464, 1, (3,)),
    ClPType.FACK: FackBody(1, 8, 4096, 1464, 2),
    ClPType.CL_CANCEL: CancelBody(1),
    ClPType.CANCEL_ACK: CancelAckBody(1),
}


def built() -> set[bytes]:
    """One datagram of every packet type in each integer order (a fragment, an authenticated one)."""
    out = set()
    for drep in (b"\x10\x00\x00", b"\x00\x00\x00"):
        for ptype in ClPType:
            d = Datagram(ptype=ptype, drep=drep, sequence=1, opnum=2, body=BODIES.get(ptype, b""),
                         flags1=Flags1.FRAG if ptype is ClPType.REQUEST else 0,
                         auth_proto=10 if ptype is ClPType.RESPONSE else 0,
                         auth=bytes(16) if ptype is ClPType.RESPONSE else b"")  # fmt: skip
            out.add(b"\x00" + d.encode())
    return out


def main(capture: Path) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    flows: dict[tuple[Endpoint, Endpoint], list[tuple[int, bytes]]] = defaultdict(list)
    first: dict[tuple[Endpoint, Endpoint], Endpoint] = {}
    seeds = built()
    for p in packets(capture, Counter()):
        if not isinstance(p, UdpDatagram) or not cl_plausible(p.payload):
            continue
        key = (p.src, p.dst) if p.src <= p.dst else (p.dst, p.src)
        side = 0 if first.setdefault(key, p.src) == p.src else 1
        flows[key].append((side, p.payload))
        seeds.add(b"\x00" + p.payload)
    for script in flows.values():
        seeds.add(b"\x01" + records.encode(script))
    for seed in seeds:
        (OUT / hashlib.sha1(seed).hexdigest()[:16]).write_bytes(seed)
    print(f"{len(seeds)} seeds in {OUT}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
