"""Reading capture files (pcap and pcapng, through dpkt) into TCP :class:`~.tcp.Segment` and UDP
:class:`~.cl.UdpDatagram` values.

The only module of the monitor that touches a file. dpkt reads the container and decodes link,
IP, TCP and UDP headers; we choose the link decoder from the capture's link type (Ethernet with
or without VLAN tags, Linux cooked v1/v2, BSD loopback, raw IPv4/IPv6) and take TCP and UDP over
IPv4 and IPv6. A packet dpkt cannot decode, an IP fragment, or a segment the capture cut short
(snaplen) is counted and its payload dropped (the reassembler then sees a gap), never raised: a
capture is data from the wire, and the wire may be hostile. A UDP datagram cut short is counted
and dropped (a connectionless PDU is one datagram: half of one is nothing). :func:`packets` hands
out both kinds (for connectionless RPC, C706 chapter 12, beside the TCP path); :func:`segments` the
TCP segments alone.
"""

from __future__ import annotations

import enum
import io
import ipaddress
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Final

import dpkt

from .cl import UdpDatagram
from .tcp import Endpoint, Segment

__all__ = ["CaptureError", "packets", "segments"]

_PCAPNG_MAGIC: Final = b"\x0a\x0d\x0d\x0a"
_ETHERNET, _NULL, _LOOP, _RAW, _RAW_OPENBSD, _SLL, _SLL2, _IPV4, _IPV6 = (
    1,
    0,
    108,
    101,
    12,
    113,
    276,
    228,
    229,
)


class CaptureError(Exception):
    """The file is not a capture we can read (not pcap or pcapng, or an unknown link type)."""


def _link(datalink: int) -> Callable[[bytes], Any]:
    if datalink == _ETHERNET:
        return lambda b: dpkt.ethernet.Ethernet(b).data
    if datalink == _SLL:
        return lambda b: dpkt.sll.SLL(b).data
    if datalink == _SLL2:
        return lambda b: dpkt.sll2.SLL2(b).data
    if datalink in (_NULL, _LOOP):
        return lambda b: dpkt.loopback.Loopback(b).data
    if datalink in (_RAW, _RAW_OPENBSD, _IPV4, _IPV6):
        return lambda b: dpkt.ip.IP(b) if b and b[0] >> 4 == 4 else dpkt.ip6.IP6(b)
    raise CaptureError(f"link type {datalink} is not one we read (Ethernet, Linux cooked, loopback, raw IP)")


# The common case, Ethernet (or Linux cooked, or raw) + IPv4 + TCP, is read here with struct: it
# is most of any capture, and dpkt's general decoders cost twice the rest of the monitor. Anything
# else (VLAN tags, IPv6, odd headers, short packets) goes to dpkt.
class _Slow(enum.Enum):
    SLOW = "slow"  # for dpkt to decode


_SLOW: Final = _Slow.SLOW
_IP_AT: Final = {_ETHERNET: 14, _SLL: 16, _RAW: 0, _RAW_OPENBSD: 0, _IPV4: 0}
_TYPE_AT: Final = {_ETHERNET: 12, _SLL: 14}
_IPV4_TYPE: Final = b"\x08\x00"
_IPV4_HEAD: Final = struct.Struct("!BxHxxHxB2x4s4s")  # version/ihl, total, flags/offset, proto, addresses
_TCP_HEAD: Final = struct.Struct("!HHI4xBB")  # ports, seq, data offset (+NS), flags
_UDP_HEAD: Final = struct.Struct("!HHH")  # ports, length
_ADDRESSES_MAX: Final = 65536  # address texts (and endpoint pairs) cached (bounded: peer data)
_addresses: dict[bytes, str] = {}
_pairs: dict[tuple[bytes, int, bytes, int], tuple[Endpoint, Endpoint]] = {}


def _address(raw: bytes) -> str:
    text = _addresses.get(raw)
    if text is None:
        if len(_addresses) >= _ADDRESSES_MAX:
            _addresses.clear()
        text = _addresses[raw] = str(ipaddress.IPv4Address(raw))
    return text


def _ends(src: bytes, sport: int, dst: bytes, dport: int) -> tuple[Endpoint, Endpoint]:
    """The two endpoints of an IPv4 packet, made once per 4-tuple (a connection's packets share them)."""
    key = (src, sport, dst, dport)
    pair = _pairs.get(key)
    if pair is None:
        if len(_pairs) >= _ADDRESSES_MAX:
            _pairs.clear()
        pair = _pairs[key] = (Endpoint(_address(src), sport), Endpoint(_address(dst), dport))
    return pair


def _fast(
    ts: float, buf: bytes, datalink: int, stats: Counter[str], at: int = 0, size: int | None = None
) -> Segment | UdpDatagram | _Slow | None:
    """The segment in the packet ``buf[at : at + size]`` (all of ``buf`` by default: a pcapng
    block's body is read in place) when it is plain IPv4 + TCP (or the datagram, + UDP); None when
    it is IPv4 but neither (or a fragment); ``_SLOW`` for dpkt to decode."""
    o = _IP_AT.get(datalink)
    if o is None:
        return _SLOW
    limit = len(buf) if size is None else at + size
    o += at
    t = _TYPE_AT.get(datalink)
    if (t is not None and buf[at + t : at + t + 2] != _IPV4_TYPE) or limit < o + 40:
        return _SLOW
    vihl, total, frag, proto, src, dst = _IPV4_HEAD.unpack_from(buf, o)
    ihl = (vihl & 0x0F) * 4
    tcp = o + ihl
    if vihl >> 4 != 4 or ihl < 20 or total < ihl + 20 or limit < tcp + 20:
        return _SLOW
    if proto not in (6, 17):
        return None
    if frag & 0x3FFF:  # more fragments, or a fragment offset
        stats["ip_fragments"] += 1
        return None
    if proto == 17:
        sport, dport, length = _UDP_HEAD.unpack_from(buf, tcp)
        if length < 8 or ihl + length > total:
            return _SLOW
        if o + ihl + length > limit:  # cut by the snaplen: half a datagram is nothing
            stats["truncated"] += 1
            return None
        a, b = _ends(src, sport, dst, dport)
        return UdpDatagram(ts, a, b, buf[tcp + 8 : tcp + length])
    sport, dport, seq, off, low = _TCP_HEAD.unpack_from(buf, tcp)
    doff = (off >> 4) * 4
    if doff < 20 or ihl + doff > total:
        return _SLOW
    end = o + total
    if end > limit:  # cut by the capture's snaplen: a hole, not data
        stats["truncated"] += 1
        payload = b""
    else:
        payload = buf[tcp + doff : end]
    a, b = _ends(src, sport, dst, dport)
    return Segment(ts, a, b, seq, (off & 1) << 8 | low, payload)  # flags as dpkt's: NS, then CWR..FIN


def _segment(ts: float, ip: Any, stats: Counter[str]) -> Segment | UdpDatagram | None:
    if isinstance(ip, dpkt.ip.IP):
        if ip.p not in (dpkt.ip.IP_PROTO_TCP, dpkt.ip.IP_PROTO_UDP):
            return None
        if ip.mf or ip.offset:
            stats["ip_fragments"] += 1
            return None
        expected = ip.len - ip.hl * 4
        src, dst = str(ipaddress.IPv4Address(ip.src)), str(ipaddress.IPv4Address(ip.dst))
    elif isinstance(ip, dpkt.ip6.IP6):
        if ip.p not in (dpkt.ip.IP_PROTO_TCP, dpkt.ip.IP_PROTO_UDP):
            return None
        expected = ip.plen - (len(ip) - len(ip.data) - 40)  # minus extension headers
        src, dst = str(ipaddress.IPv6Address(ip.src)), str(ipaddress.IPv6Address(ip.dst))
    else:
        return None
    tcp = ip.data
    if isinstance(tcp, dpkt.udp.UDP):
        payload = bytes(tcp.data)
        if len(payload) != tcp.ulen - 8 or len(payload) < expected - 8:  # cut by the snaplen
            stats["truncated"] += 1
            return None
        return UdpDatagram(ts, Endpoint(src, tcp.sport), Endpoint(dst, tcp.dport), payload)
    if not isinstance(tcp, dpkt.tcp.TCP):
        stats["undecodable"] += 1
        return None
    payload = bytes(tcp.data)
    if len(payload) < expected - tcp.off * 4:  # cut by the capture's snaplen: a hole, not data
        stats["truncated"] += 1
        payload = b""
    return Segment(
        ts, Endpoint(str(src), tcp.sport), Endpoint(str(dst), tcp.dport), tcp.seq, tcp.flags, payload
    )


_EPB: Final = 6  # pcapng Enhanced Packet Block
_EPB_FIXED: Final = 32  # its type, length, interface, timestamp, lengths, trailing length


def _pcapng(f: BinaryIO, reader: Any) -> Iterator[tuple[float, bytes, int, int]]:
    """What ``iter(reader)`` (a dpkt pcapng Reader past its section and interface headers) yields,
    (time, packet) for each Enhanced or simple Packet Block, other blocks skipped; the packet as
    (octets, where it starts in them, its length): a block's body is not copied to cut it out.

    An Enhanced Packet Block without options whose two length fields agree (all dumpcap writes)
    is read here with one struct call: dpkt's block objects and option parsing took 0.26 s CPU for
    the benchmark's 72,864 packets (docs/monitor.md), this loop 0.09 s; with the IPv4 + TCP fast
    path reading the packet in place, the whole capture step went from 0.51 s to 0.22 s.
    Any other block, or one that is odd in any way, goes to dpkt's block classes, which decide as
    its reader would (and raise where it would).
    """
    le = isinstance(reader.idb, dpkt.pcapng.InterfaceDescriptionBlockLE)
    head = struct.Struct("<II" if le else ">II")  # block type, total length
    fixed = struct.Struct("<4xIII4x" if le else ">4xIII4x")  # (interface) ts high, low, captured (original)
    word = struct.Struct("<I" if le else ">I")
    divisor, offset = float(reader._divisor), reader._tsoffset
    epb, pb = (
        (dpkt.pcapng.EnhancedPacketBlockLE, dpkt.pcapng.PacketBlockLE)
        if le
        else (dpkt.pcapng.EnhancedPacketBlock, dpkt.pcapng.PacketBlock)
    )
    read = f.read
    while True:
        start = read(8)
        if len(start) < 8:
            return
        kind, length = head.unpack(start)
        body = read(length - 8)
        if kind == _EPB and len(body) == length - 8 >= _EPB_FIXED - 8:
            high, low, captured = fixed.unpack_from(body, 0)
            # no options: the packet's padded octets end where the trailing length begins
            plain = length == _EPB_FIXED + (captured + 3) // 4 * 4
            if plain and word.unpack_from(body, length - 12)[0] == length:
                yield offset + ((high << 32 | low) / divisor), body, 20, captured
                continue
        if kind == _EPB:
            block = epb(start + body)
        elif kind == dpkt.pcapng.PCAPNG_BT_PB:
            block = pb(start + body)
        else:
            continue
        data = bytes(block.pkt_data)
        yield offset + ((block.ts_high << 32 | block.ts_low) / divisor), data, 0, len(data)


def _pcap(reader: Any) -> Iterator[tuple[float, bytes, int, int]]:
    """A dpkt pcap Reader's (time, packet) as _pcapng gives them."""
    for ts, buf in reader:
        data = bytes(buf)
        yield ts, data, 0, len(data)


def _reader(f: BinaryIO) -> Any:
    # peeked, not read and sought back: a live capture is a pipe (monitor/live.py)
    magic = f.peek(4)[:4] if isinstance(f, io.BufferedReader) else f.read(4)
    if not isinstance(f, io.BufferedReader):
        f.seek(0)
    try:
        return dpkt.pcapng.Reader(f) if magic == _PCAPNG_MAGIC else dpkt.pcap.Reader(f)
    except (ValueError, dpkt.Error) as e:
        raise CaptureError(f"not a pcap or pcapng capture: {e}") from None


def segments(
    path: Path, stats: Counter[str], progress: Callable[[int], None] | None = None
) -> Iterator[Segment]:
    """Every TCP segment of the capture at ``path``, in file order (:func:`packets` less the UDP
    datagrams).

    Raises:
        CaptureError: not a capture, or a link type we do not read.
    """
    for p in packets(path, stats, progress):
        if isinstance(p, Segment):
            yield p


def packets(
    path: Path, stats: Counter[str], progress: Callable[[int], None] | None = None
) -> Iterator[Segment | UdpDatagram]:
    """Every TCP segment and UDP datagram of the capture at ``path``, in file order.

    ``stats`` counts packets, UDP datagrams, packets neither TCP nor UDP, undecodable, truncated
    and IP fragments; ``progress`` is told the file offset now and then (for a progress bar).

    Raises:
        CaptureError: not a capture, or a link type we do not read.
    """
    with path.open("rb") as f:
        reader = _reader(f)
        datalink = reader.datalink()
        decode = _link(datalink)
        it = _pcapng(f, reader) if isinstance(reader, dpkt.pcapng.Reader) else _pcap(reader)
        while True:
            try:
                ts, buf, at, size = next(it)
            except StopIteration:
                break
            except (dpkt.Error, ValueError, EOFError):  # a record cut short at the file's end
                stats["truncated_file"] += 1
                break
            stats["packets"] += 1
            if progress is not None and stats["packets"] % 1024 == 0:
                progress(f.tell())
            try:
                fast = _fast(float(ts), buf, datalink, stats, at, size)
                if isinstance(fast, _Slow):
                    seg = _segment(float(ts), decode(buf[at : at + size]), stats)
                else:
                    seg = fast
            except Exception:  # dpkt raises many kinds on garbage; none may stop the monitor
                stats["undecodable"] += 1
                continue
            if seg is None:
                stats["not_tcp"] += 1
                continue
            if isinstance(seg, UdpDatagram):
                stats["udp"] += 1
            yield seg
        if progress is not None:
            progress(f.tell())
