"""Reading capture files (pcap and pcapng, through dpkt) into TCP :class:`~.tcp.Segment` values.

The only module of the monitor that touches a file. dpkt reads the container and decodes link,
IP and TCP headers; we choose the link decoder from the capture's link type (Ethernet with or
without VLAN tags, Linux cooked v1/v2, BSD loopback, raw IPv4/IPv6) and take TCP over IPv4 and
IPv6. A packet dpkt cannot decode, an IP fragment, or a segment the capture cut short (snaplen) is
counted and its payload dropped (the reassembler then sees a gap), never raised: a capture is data
from the wire, and the wire may be hostile. Connectionless RPC over UDP (C706 chapter 12) is the
next slice: :func:`segments` is where UDP datagrams would be handed out beside the TCP segments.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Final

import dpkt

from .tcp import Endpoint, Segment

__all__ = ["CaptureError", "segments"]

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


def _segment(ts: float, ip: Any, stats: Counter[str]) -> Segment | None:
    if isinstance(ip, dpkt.ip.IP):
        if ip.p != dpkt.ip.IP_PROTO_TCP:
            return None
        if ip.mf or ip.offset:
            stats["ip_fragments"] += 1
            return None
        expected = ip.len - ip.hl * 4
        src, dst = str(ipaddress.IPv4Address(ip.src)), str(ipaddress.IPv4Address(ip.dst))
    elif isinstance(ip, dpkt.ip6.IP6):
        if ip.p != dpkt.ip.IP_PROTO_TCP:
            return None
        expected = ip.plen - (len(ip) - len(ip.data) - 40)  # minus extension headers
        src, dst = str(ipaddress.IPv6Address(ip.src)), str(ipaddress.IPv6Address(ip.dst))
    else:
        return None
    tcp = ip.data
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


def _reader(f: BinaryIO) -> Any:
    magic = f.read(4)
    f.seek(0)
    try:
        return dpkt.pcapng.Reader(f) if magic == _PCAPNG_MAGIC else dpkt.pcap.Reader(f)
    except (ValueError, dpkt.Error) as e:
        raise CaptureError(f"not a pcap or pcapng capture: {e}") from None


def segments(
    path: Path, stats: Counter[str], progress: Callable[[int], None] | None = None
) -> Iterator[Segment]:
    """Every TCP segment of the capture at ``path``, in file order.

    ``stats`` counts packets, non-TCP packets, undecodable, truncated and IP fragments;
    ``progress`` is told the file offset now and then (for a progress bar).

    Raises:
        CaptureError: not a capture, or a link type we do not read.
    """
    with path.open("rb") as f:
        reader = _reader(f)
        decode = _link(reader.datalink())
        it = iter(reader)
        while True:
            try:
                ts, buf = next(it)
            except StopIteration:
                break
            except (dpkt.Error, ValueError, EOFError):  # a record cut short at the file's end
                stats["truncated_file"] += 1
                break
            stats["packets"] += 1
            if progress is not None and stats["packets"] % 1024 == 0:
                progress(f.tell())
            try:
                ip = decode(bytes(buf))
                seg = _segment(float(ts), ip, stats)
            except Exception:  # dpkt raises many kinds on garbage; none may stop the monitor
                stats["undecodable"] += 1
                continue
            if seg is None:
                stats["not_tcp"] += 1
                continue
            yield seg
        if progress is not None:
            progress(f.tell())
