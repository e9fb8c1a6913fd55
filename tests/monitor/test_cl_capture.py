"""``dcerpc monitor`` on a real connectionless capture: dumpcap records loopback in a private network
namespace while a client makes ncadg_ip_udp calls to a responder on a port no RPC service uses
(443/udp), both over real sockets and both speaking through our codec (pdu/cl.py): impacket 0.13's
``DCERPC_v4`` is an empty class (its ``send`` raises "virtual method"), Samba dropped ncadg_ip_udp,
and no other connectionless peer is packaged here. Wireshark's dissector is the independent
reader: the monitor's calls must agree with tshark's dissection of the same file call by call
(activity, sequence, interface, opnum, fragments, answer type and status).

The calls: epm ept_lookup (answered), mgmt inq_if_ids with a request in three fragments (one sent
twice, each acknowledged by a fack) and a response in three, an opnum mgmt does not have (a fault),
an interface the responder does not serve (a reject), and a big-endian is_server_listening that the
client pings until the responder says working and answers.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.captures import monitor_json, start_dumpcap, wait_for_marker
from tests.conftest import have, require_peer
from tests.interop.netns import NetNs, netns  # noqa: F401  (the fixture)

PORT = 443
MARKER = PORT + 1

COMMON = """
import socket, sys, uuid
from dcerpc.pdu.cl import (CancelAckBody, ClPType as T, Datagram, FackBody, Flags1 as F, StatusBody,
                           parse_cl)
EPM = uuid.UUID("e1af8308-5d1f-11c9-91a4-08002b14a0fa")
MGMT = uuid.UUID("afa8bd80-7d8a-11c9-bef4-08002b102989")
PORT = int(sys.argv[1])
"""

RESPONDER = (
    COMMON
    + """
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", PORT))
print("ready", flush=True)
frags, held = {}, {}
while True:
    data, peer = s.recvfrom(65535)
    if data == b"quit":
        break
    d = parse_cl(data)
    def send(ptype, body=b"", **kw):
        s.sendto(Datagram(ptype=ptype, drep=d.drep, server_boot=0x5F000000, interface=d.interface,
                          interface_version=d.interface_version, activity=d.activity,
                          sequence=d.sequence, opnum=d.opnum, body=body, **kw).encode(), peer)
    key = (d.activity, d.sequence)
    if d.ptype == T.PING:
        if key in held:
            send(T.WORKING)
            send(T.RESPONSE, held.pop(key))
        else:
            send(T.NOCALL)
        continue
    if d.ptype != T.REQUEST:
        continue
    got = frags.setdefault(key, {})
    got[d.fragment] = d.body
    if d.flags1 & F.FRAG and not d.flags1 & F.NOFACK:
        send(T.FACK, FackBody(0, 8, 65000, 1464, d.serial, ()), fragment=d.fragment)
    if not d.last_fragment or len(got) != max(got) + 1:
        continue
    stub = b"".join(got[i] for i in sorted(got))
    if d.interface not in (EPM, MGMT):
        send(T.REJECT, StatusBody(0x1C010003))  # nca_s_unk_if
    elif d.interface == MGMT and d.opnum > 4:
        send(T.FAULT, StatusBody(0x1C010002))  # nca_s_op_rng_error
    elif d.interface == MGMT and d.opnum == 2:
        held[key] = b"\\x00\\x00\\x00\\x01"  # answered when pinged
    elif len(stub) > 2000:
        out = bytes(range(256)) * 12
        parts = [out[i : i + 1024] for i in range(0, len(out), 1024)]
        for n, part in enumerate(parts):
            last = F.LASTFRAG if n == len(parts) - 1 else 0
            send(T.RESPONSE, part, flags1=F.FRAG | F.NOFACK | last, fragment=n)
    else:
        send(T.RESPONSE, b"answer:" + stub[:8])
"""
)

CLIENT = (
    COMMON
    + """
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
server = ("127.0.0.1", PORT)

def call(act, seq, iface, opnum, stub, drep=b"\\x10\\x00\\x00", frag=0, again=(), ping=False):
    base = dict(ptype=T.REQUEST, drep=drep, activity=act, sequence=seq, interface=iface,
                interface_version=3 if iface == EPM else 1, opnum=opnum, flags1=F.IDEMPOTENT)
    parts = [stub[i : i + frag] for i in range(0, len(stub), frag)] if frag else [stub]
    for n, part in enumerate(parts):
        flags = F.IDEMPOTENT
        if len(parts) > 1:
            flags |= F.FRAG | (F.LASTFRAG if n == len(parts) - 1 else 0)
        for _ in range(2 if n in again else 1):
            s.sendto(Datagram(**{**base, "flags1": flags, "fragment": n, "body": part}).encode(), server)
            if len(parts) > 1:
                assert parse_cl(s.recv(65535)).ptype == T.FACK
    if ping:
        s.sendto(Datagram(**{**base, "ptype": T.PING, "body": b""}).encode(), server)
    got = {}
    while True:
        d = parse_cl(s.recv(65535))
        if d.ptype in (T.FAULT, T.REJECT):
            return d.ptype.name, d.body.status
        if d.ptype == T.RESPONSE:
            got[d.fragment] = d.body
            if d.last_fragment and len(got) == max(got) + 1:
                s.sendto(Datagram(**{**base, "ptype": T.ACK, "body": b""}).encode(), server)
                return "RESPONSE", len(b"".join(got.values()))

act, other = uuid.UUID(sys.argv[2]), uuid.UUID(sys.argv[3])
print(call(act, 0, EPM, 2, bytes(40)))
print(call(act, 1, MGMT, 0, bytes(3000), frag=1200, again=(1,)))
print(call(act, 2, MGMT, 9, b""))
print(call(act, 3, uuid.UUID("12345678-1234-1234-1234-123456789abc"), 0, b""))
print(call(other, 7, MGMT, 2, b"", drep=b"\\x00\\x00\\x00", ping=True))
"""
)

ACT, OTHER = "0f0e0d0c-0b0a-4908-8706-050403020100", "a0a1a2a3-b0b1-4c0c-8d0d-e0e1e2e3e4e5"


def _captured_to_the_end(ns: NetNs, pcap: Path) -> None:
    """dumpcap may hold packets: a last datagram from a known port, then poll until it is written."""
    probe = (
        "import socket\n"
        f"s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', {MARKER}))\n"
        f"s.sendto(b'quit', ('127.0.0.1', {PORT}))\n"
    )
    ns.python("-c", probe)
    assert wait_for_marker(pcap, MARKER, "udp"), "dumpcap did not write the last packet"


@pytest.fixture(scope="module")
def capture(netns: NetNs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:  # noqa: F811
    require_peer(have("dumpcap") and have("tshark"), "dumpcap / tshark are not installed (Debian tshark)")
    pcap = tmp_path_factory.mktemp("cl") / "cl.pcapng"
    cap = start_dumpcap(netns, pcap, f"udp port {PORT}")
    responder = netns.popen([sys.executable, "-c", RESPONDER, str(PORT)])
    assert responder.stdout is not None and responder.stdout.readline().strip() == "ready"
    client = netns.python("-c", CLIENT, str(PORT), ACT, OTHER)
    assert client.returncode == 0, client.stderr
    assert client.stdout.splitlines() == [
        "('RESPONSE', 15)", "('RESPONSE', 3072)", "('FAULT', 469827586)", "('REJECT', 469827587)",
        "('RESPONSE', 4)",
    ]  # fmt: skip
    _captured_to_the_end(netns, pcap)
    responder.wait(20)
    cap.send_signal(signal.SIGINT)
    cap.wait(20)
    yield pcap


@pytest.mark.interop
def test_monitor_names_every_connectionless_call(capture: Path) -> None:
    events = monitor_json(capture)
    # the ept_lookup of every entry is what an enumeration sends: the detectors name it over UDP too
    alerts = [e["rule"]["name"] for e in events if e["event"]["action"] == "detection"]
    assert alerts == ["epm_enumeration"], alerts
    events = [e for e in events if e["event"]["action"] != "detection"]
    assert not [e for e in events if e["event"]["action"] != "call"], events
    got = [
        (e["dcerpc"]["activity"], e["dcerpc"]["sequence"], e["dcerpc"].get("interface", {}).get("name"),
         e["dcerpc"].get("operation"), e["event"]["outcome"], e["dcerpc"].get("fault", {}).get("status"))
        for e in events
    ]  # fmt: skip
    assert got == [
        (ACT, 0, "epmapper", "ept_lookup", "success", None),
        (ACT, 1, "mgmt", "inq_if_ids", "success", None),
        (ACT, 2, "mgmt", None, "failure", "nca_s_op_rng_error"),
        (ACT, 3, None, None, "failure", "nca_s_unk_if"),
        (OTHER, 7, "mgmt", "is_server_listening", "success", None),
    ]
    assert all(e["network"]["transport"] == "udp" and e["destination"]["port"] == PORT for e in events)
    frag = events[1]["dcerpc"]
    assert frag["fragments"] == {"in": 3, "out": 3} and frag["octets"] == {"in": 3000, "out": 3072}
    assert frag["datagrams"] == {"fack": 4, "retransmitted": 1}  # a fack for each fragment sent
    assert events[3]["dcerpc"]["fault"]["reject"] is True
    assert events[4]["dcerpc"]["datagrams"] == {"ping": 1, "working": 1}


@pytest.mark.interop
def test_monitor_agrees_with_tshark(capture: Path) -> None:
    """Wireshark's dissector (the dg heuristic, with WireGuard's, which claims ptype-0 datagrams
    on any port, turned off) sees the same calls: per (activity, sequence) the interface and opnum
    of the request, its distinct fragment numbers each way, and how it was answered."""
    fields = subprocess.run(
        ["tshark", "-r", str(capture), "--disable-heuristic", "wg", "-Y", "dcerpc && !icmp", "-T", "fields",
         "-e", "dcerpc.pkt_type", "-e", "dcerpc.dg_act_id", "-e", "dcerpc.dg_seqnum", "-e", "dcerpc.dg_if_id",
         "-e", "dcerpc.opnum", "-e", "dcerpc.dg_frag_num", "-e", "dcerpc.dg_status"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    theirs: dict[tuple[str, int], dict[str, Any]] = defaultdict(lambda: {"in": set(), "out": set()})
    for line in fields.splitlines():
        ptype, act, seq, iface, opnum, fragnum, status = line.split("\t")
        call = theirs[(act, int(seq))]
        if ptype == "0":
            call.update(interface=iface, opnum=int(opnum))
            call["in"].add(int(fragnum))
        elif ptype == "2":
            call["outcome"] = "success"
            call["out"].add(int(fragnum))
        elif ptype in ("3", "6"):
            call.update(outcome="failure", status=int(status, 16))
    ours = {
        (e["dcerpc"]["activity"], e["dcerpc"]["sequence"]): {
            "interface": e["dcerpc"]["interface"]["uuid"], "opnum": e["dcerpc"]["opnum"],
            "in": e["dcerpc"]["fragments"]["in"], "out": e["dcerpc"]["fragments"]["out"],
            "outcome": e["event"]["outcome"], "status": e["dcerpc"].get("fault", {}).get("code"),
        }
        for e in monitor_json(capture)
        if e["event"]["action"] == "call"
    }  # fmt: skip
    assert len(theirs) == 5
    assert ours == {
        key: {"interface": c["interface"], "opnum": c["opnum"], "in": len(c["in"]),
              "out": len(c["out"]) or int("status" in c), "outcome": c["outcome"], "status": c.get("status")}
        for key, c in theirs.items()
    }  # fmt: skip


@pytest.mark.interop
def test_summary_counts_datagrams(capture: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "dcerpc", "monitor", str(capture)],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for words in (
        "UDP datagrams",
        "ept_lookup",
        "inq_if_ids",
        "nca_s_unk_if",
        "Connectionless",
        "retransmitted",
    ):
        assert words in proc.stdout, proc.stdout
