"""Capture files written here (dpkt's writer) and read back by the monitor: link types, IPv6,
snaplen cuts, truncated and garbage files. The monitor never raises on what a file holds."""

from __future__ import annotations

import io
import ipaddress
import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import dpkt
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dcerpc.monitor import CallRecord, CaptureError, capture, monitor_file
from dcerpc.monitor.tcp import Segment
from tests.monitor.streams import CLIENT, segments, session

SEGS = segments(session(calls=2, big=6000))


def frame(seg: Segment, v6: bool = False, snap: int | None = None) -> bytes:
    tcp = dpkt.tcp.TCP(sport=seg.src.port, dport=seg.dst.port, seq=seg.seq, flags=seg.flags, data=seg.payload)
    if v6:
        src = ipaddress.IPv6Address("fd00::1" if seg.src == CLIENT else "fd00::2").packed
        dst = ipaddress.IPv6Address("fd00::2" if seg.src == CLIENT else "fd00::1").packed
        ip: dpkt.Packet = dpkt.ip6.IP6(src=src, dst=dst, nxt=6, hlim=64, data=tcp, plen=len(bytes(tcp)))
        eth = dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP6, data=ip)
    else:
        src, dst = ipaddress.IPv4Address(seg.src.ip).packed, ipaddress.IPv4Address(seg.dst.ip).packed
        ip = dpkt.ip.IP(src=src, dst=dst, p=6, data=tcp)
        ip.len = len(bytes(ip))
        eth = dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
    raw = bytes(eth)
    return raw[:snap] if snap else raw


def write(path: Path, frames: list[bytes], linktype: int = 1, ng: bool = False) -> Path:
    with path.open("wb") as f:
        w = dpkt.pcapng.Writer(f, linktype=linktype) if ng else dpkt.pcap.Writer(f, linktype=linktype)
        for i, fr in enumerate(frames):
            w.writepkt(fr, ts=1_700_000_000 + i / 1000)
    return path


def names(path: Path, stats: Counter[str] | None = None) -> list[str]:
    return [
        r.operation
        for r in monitor_file(path, stats if stats is not None else Counter())
        if isinstance(r, CallRecord)
    ]


EXPECTED = ["AddOne", "AddOne", "EchoData", ""]


@pytest.mark.parametrize("ng", [False, True])
@pytest.mark.parametrize("v6", [False, True])
def test_pcap_and_pcapng_over_ipv4_and_ipv6(tmp_path: Path, ng: bool, v6: bool) -> None:
    path = write(tmp_path / "c.cap", [frame(s, v6) for s in SEGS], ng=ng)
    assert names(path) == EXPECTED


def test_raw_ip_and_linux_cooked_link_types(tmp_path: Path) -> None:
    raw = [frame(s)[14:] for s in SEGS]  # the IP packet without its Ethernet header
    assert names(write(tmp_path / "raw.pcap", raw, linktype=101)) == EXPECTED
    sll = [bytes(dpkt.sll.SLL(ethtype=0x0800, data=r)) for r in raw]
    assert names(write(tmp_path / "sll.pcap", sll, linktype=113)) == EXPECTED


def test_snaplen_cut_segments_are_holes_not_data(tmp_path: Path) -> None:
    cut = max(range(len(SEGS)), key=lambda i: len(SEGS[i].payload))  # a segment of the long call
    frames = [frame(s, snap=200 if i == cut else None) for i, s in enumerate(SEGS)]
    stats: Counter[str] = Counter()
    got = names(write(tmp_path / "snap.pcap", frames), stats)
    assert stats["truncated"] == 1
    assert got[:2] == ["AddOne", "AddOne"] and got[-1] == ""  # the calls around the hole survive


def test_a_file_cut_mid_record_gives_what_it_holds(tmp_path: Path) -> None:
    path = write(tmp_path / "cut.pcap", [frame(s) for s in SEGS])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 37])
    got = names(path)
    assert got[:3] == EXPECTED[:3]


def test_garbage_packets_never_raise(tmp_path: Path) -> None:
    rng = random.Random(7)
    frames = [frame(s) for s in SEGS]
    hostile = []
    for fr in frames:
        b = bytearray(fr)
        for _ in range(rng.randint(0, 3)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        hostile.append(bytes(b))
        if rng.random() < 0.2:
            hostile.append(rng.randbytes(rng.randint(0, 120)))
    path = write(tmp_path / "hostile.pcap", hostile)
    stats: Counter[str] = Counter()
    list(monitor_file(path, stats))
    assert stats["packets"] == len(hostile)


def test_not_a_capture_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"hello, this is not a capture at all\n" * 10)
    with pytest.raises(CaptureError):
        list(monitor_file(path, Counter()))
    proc = subprocess.run(
        [sys.executable, "-m", "dcerpc", "monitor", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1 and "not a pcap or pcapng capture" in proc.stderr


DATA_AT = next(i for i, s in enumerate(SEGS) if s.payload)
DATA_LEN = len(frame(SEGS[DATA_AT]))


@settings(max_examples=1000, deadline=None)
@given(
    st.integers(0, len(SEGS) - 1),
    st.lists(st.tuples(st.integers(0, 60), st.integers(0, 255)), max_size=3),
    st.integers(0, 120),
    st.sampled_from([1, 113, 101]),
    st.binary(max_size=24),
    st.binary(max_size=24),
)
@example(DATA_AT, [(14, 0x46)], DATA_LEN - 55, 1, b"", bytes(24))  # IP options; cut in the TCP header
@example(DATA_AT, [(23, 17), (38, 0), (39, 40)], DATA_LEN - 70, 1, b"", bytes(24))  # UDP, cut short
def test_fast_path_reads_what_dpkt_reads(
    index: int, flips: list[tuple[int, int]], cut: int, link: int, before: bytes, after: bytes
) -> None:
    """The struct fast path for IPv4 + TCP gives dpkt's segment, or leaves the packet to dpkt."""
    raw = bytearray(frame(SEGS[index]))
    if link != 1:
        raw = bytearray(
            raw[14:] if link == 101 else bytes(dpkt.sll.SLL(ethtype=0x0800, data=bytes(raw[14:])))
        )
    for at, value in flips:
        if at < len(raw):
            raw[at] = value
    data = bytes(raw[: len(raw) - cut]) if cut < len(raw) else bytes(raw)
    fast_stats: Counter[str] = Counter()
    fast = capture._fast(1.0, data, link, fast_stats)
    inside: Counter[str] = Counter()  # the packet read in place among other octets (a pcapng block)
    assert capture._fast(1.0, before + data + after, link, inside, len(before), len(data)) == fast
    assert inside == fast_stats
    if isinstance(fast, capture._Slow):
        return
    slow_stats: Counter[str] = Counter()
    try:
        slow = capture._segment(1.0, capture._link(link)(data), slow_stats)
    except Exception:  # dpkt refuses a packet the fast path read: the fast path took only sane ones
        assert fast is None or fast.payload == b""
        return
    assert fast == slow


def pcapng_bytes(frames: list[bytes], le: bool) -> bytes:
    """A pcapng file in either byte order, with what the fast path leaves to dpkt among its
    packets: options on some Enhanced Packet Blocks, a simple Packet Block, an unknown block."""
    ng = dpkt.pcapng
    shb, idb, epb, pb, other, opt = (
        (ng.SectionHeaderBlockLE, ng.InterfaceDescriptionBlockLE, ng.EnhancedPacketBlockLE, ng.PacketBlockLE,
         ng.PcapngBlockLE, ng.PcapngOptionLE)
        if le
        else (ng.SectionHeaderBlock, ng.InterfaceDescriptionBlock, ng.EnhancedPacketBlock, ng.PacketBlock,
              ng._PcapngBlock, ng.PcapngOption)
    )  # fmt: skip
    tsresol = opt(code=ng.PCAPNG_OPT_IF_TSRESOL, data=b"\x09")  # nanoseconds
    out = [bytes(shb()), bytes(idb(snaplen=65535, linktype=1, opts=[tsresol, opt(code=0)]))]
    for i, fr in enumerate(frames):
        t = 1_700_000_000_123_456_789 + i * 1_000_001
        if i % 5 == 3:
            out.append(bytes(pb(ts_high=t >> 32, ts_low=t & 0xFFFFFFFF, pkt_data=fr)))
            continue
        opts = [opt(code=1, data=b"a comment"), opt(code=0)] if i % 3 == 1 else []
        out.append(bytes(epb(ts_high=t >> 32, ts_low=t & 0xFFFFFFFF, pkt_data=fr, opts=opts)))
        if i % 4 == 2:
            out.append(bytes(other(type=0x0BAD, opts=[opt(code=0)])))  # ignored
    return b"".join(out)


def read_pcapng(data: bytes, fast: bool) -> list[object]:
    """(time, packet) pairs of a pcapng file, then the name of the exception that ended it, if any."""
    f = io.BufferedReader(io.BytesIO(data))  # type: ignore[arg-type]
    try:
        reader = dpkt.pcapng.Reader(f)
    except Exception as e:  # the section and interface headers are dpkt's alone
        return [type(e).__name__]
    got: list[object] = []
    try:
        if fast:
            for ts, buf, at, size in capture._pcapng(f, reader):
                got.append((ts, buf[at : at + size]))
        else:
            for ts, pkt in reader:
                got.append((ts, bytes(pkt)))
    except Exception as e:
        got.append(type(e).__name__)
    return got


PCAPNG = {le: pcapng_bytes([frame(s) for s in SEGS], le) for le in (False, True)}


@settings(max_examples=500, deadline=None)
@given(
    st.booleans(),
    st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=4),
    st.integers(0, 1 << 20),
)
def test_the_pcapng_fast_path_reads_what_dpkt_reads(le: bool, flips: list[tuple[int, int]], cut: int) -> None:
    """Enhanced Packet Blocks read with struct give dpkt's (time, packet), and anything else
    (options, other blocks, lengths that disagree, a file cut short) is read, or refused, as dpkt
    reads it."""
    raw = bytearray(PCAPNG[le])
    for at, value in flips:
        raw[at % len(raw)] = value
    data = bytes(raw[: len(raw) - cut % len(raw)])
    fast = read_pcapng(data, fast=True)
    assert fast == read_pcapng(data, fast=False)


def test_the_pcapng_fast_path_takes_plain_blocks_and_leaves_the_rest() -> None:
    for le in (False, True):
        got = read_pcapng(PCAPNG[le], fast=True)
        assert len(got) == len(SEGS) and all(isinstance(g, tuple) for g in got)
        assert got[0] == (1_700_000_000.1234567, frame(SEGS[0]))  # if_tsresol: nanoseconds


def test_the_command_prints_the_summary_and_json_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "c.pcapng", [frame(s) for s in SEGS], ng=True)
    command = [sys.executable, "-m", "dcerpc", "monitor"]
    table = subprocess.run([*command, str(path)], capture_output=True, text=True, check=True).stdout
    for words in ("1 DCE/RPC, 4 calls", "Talkers", "rpcecho", "EchoData", "nca_s_op_rng_error", "violations"):
        assert words in table, table
    lines = subprocess.run([*command, "--json", str(path)], capture_output=True, text=True, check=True).stdout
    events = [json.loads(line) for line in lines.splitlines()]
    assert [e["event"]["action"] for e in events].count("call") == 4
    assert {e["source"]["ip"] for e in events} == {CLIENT.ip}
