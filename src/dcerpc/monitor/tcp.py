"""TCP stream reassembly for a passive observer, sans-IO: segments in, ordered octets out.

A capture gives TCP segments as the wire carried them: out of order, retransmitted, overlapping,
with holes where the capture dropped packets, and often starting in the middle of a connection.
:class:`Reassembler` keeps one :class:`Connection` per 4-tuple (both directions share it) and turns
each segment into :data:`StreamEvent` values: :class:`Data` (the next in-order octets of one
direction), :class:`Gap` (octets that never arrived: the reader skipped ahead), :class:`Closed`.

Per direction (RFC 9293 3.4 sequence numbers, compared modulo 2**32):

- the first segment fixes the stream's position: SYN + 1 when the SYN was seen, else the first
  data segment's sequence number (a mid-stream start);
- a segment at the expected position is delivered, then whatever was held that now follows it;
- a segment ahead of it is held (out of order); one wholly behind it is a retransmission (dropped,
  counted), one partly behind it is trimmed;
- octets seen twice are compared where we still have them: the first copy wins, and a differing
  second copy is counted as a conflict (an evasion attempt, or a broken capture);
- when the held octets exceed their bound, or the connection ends, the reader skips to the first
  held segment and reports a :class:`Gap`;
- FIN ends a direction once its octets are in; RST, or both FINs, close the connection.

Nothing here reads files or clocks: timestamps come with the segments, so the same code serves a
capture file and a live interface.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final, NamedTuple

__all__ = [
    "MAX_CONNECTIONS",
    "MAX_HELD_PER_DIRECTION",
    "MAX_HELD_TOTAL",
    "Closed",
    "Connection",
    "Data",
    "Direction",
    "Endpoint",
    "Gap",
    "Reassembler",
    "Segment",
    "StreamEvent",
]

SYN: Final = 0x02
FIN: Final = 0x01
RST: Final = 0x04
ACK: Final = 0x10
_MOD: Final = 1 << 32
_HALF: Final = 1 << 31

# Bounds: a capture is peer data too, and a hostile one can claim anything.
MAX_HELD_PER_DIRECTION: Final = 1 << 20
"""Out-of-order octets held per direction (1 MiB). Stops a sender (or a crafted capture) that opens
a hole at the stream's head and then sends gigabytes beyond it: past this we declare the hole a gap
and move on, so memory per direction never exceeds the bound."""
MAX_HELD_TOTAL: Final = 64 << 20
"""Out-of-order octets held by all connections together (64 MiB). Stops the same attack spread over
many connections: past it, the connection holding the most skips its gaps first."""
MAX_CONNECTIONS: Final = 100_000
"""Connections tracked at once. Stops a SYN flood (or a scan) in the capture from growing the table
without end: the least recently active connection is closed to make room."""
MAX_SEGMENTS_HELD: Final = 4096
"""Held segments per direction. Stops a sender of one-octet segments from costing a Python object
per octet within the octet bound."""
_KEEP_TAIL: Final = 4096
"""Octets of each direction's recent past kept to compare a retransmission with what was delivered:
conflicts further back are counted as retransmissions only."""


class Endpoint(NamedTuple):
    """An IP address (text, IPv4 or IPv6) and a port (a tuple: hashed and compared in C, as the
    reassembler does per segment)."""

    ip: str
    port: int

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


# Segment and Data are made once per packet: not frozen, as a frozen dataclass's __init__ sets each
# field through object.__setattr__ (1 us more per object, 0.15 s of the benchmark's 108 MB capture).
@dataclass(slots=True)
class Segment:
    """One TCP segment as captured: time (seconds since the epoch), endpoints, sequence, flags, data.
    Not to be changed once made (not frozen only for speed)."""

    ts: float
    src: Endpoint
    dst: Endpoint
    seq: int
    flags: int
    payload: bytes = b""


@dataclass(slots=True)
class Direction:
    """One direction's reassembly state."""

    next_seq: int | None = None  # None until the first segment fixes the origin; then 0
    held: dict[int, bytes] = field(default_factory=dict)  # offset from next_seq's origin -> octets
    held_octets: int = 0
    origin: int = 0  # the first sequence number: offsets are counted from it (no wrap-around to fear)
    delivered: int = 0  # offset of the next octet to deliver
    tail: bytes = b""  # the last octets delivered: _KEEP_TAIL to twice that (all, if fewer came)
    fin_at: int | None = None  # offset where the FIN sits
    finished: bool = False
    octets: int = 0
    retransmitted: int = 0
    conflicts: int = 0
    gaps: int = 0
    gap_octets: int = 0


@dataclass(slots=True)
class Connection:
    """A TCP connection: ``a`` is the endpoint seen sending first, ``client`` the SYN's sender if seen."""

    uid: str
    a: Endpoint
    b: Endpoint
    first_ts: float
    last_ts: float
    client: Endpoint | None = None  # who sent SYN without ACK; None for a mid-stream start
    saw_syn: bool = False
    dirs: dict[Endpoint, Direction] = field(default_factory=dict)
    closed: bool = False

    def direction(self, src: Endpoint) -> Direction:
        d = self.dirs.get(src)
        if d is None:
            d = self.dirs[src] = Direction()
        return d

    def other(self, ep: Endpoint) -> Endpoint:
        return self.b if ep == self.a else self.a

    @property
    def had_gap(self) -> bool:
        return any(d.gaps for d in self.dirs.values())


@dataclass(slots=True)
class Data:
    """The next in-order octets from ``src`` on ``conn`` (not to be changed: see :class:`Segment`)."""

    conn: Connection
    src: Endpoint
    ts: float
    data: bytes


@dataclass(frozen=True, slots=True)
class Gap:
    """``missing`` octets from ``src`` never arrived; the stream resumes after them."""

    conn: Connection
    src: Endpoint
    ts: float
    missing: int


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection ended (FIN both ways, RST, eviction or the end of the capture)."""

    conn: Connection
    ts: float
    reason: str  # "fin", "rst", "evicted", "reused" (a new SYN on its 4-tuple), "end"


StreamEvent = Data | Gap | Closed


def _key(a: Endpoint, b: Endpoint) -> tuple[Endpoint, Endpoint]:
    return (a, b) if a <= b else (b, a)  # Endpoint is an (ip, port) tuple: compared as one


class Reassembler:
    """Segments of any number of connections in, :data:`StreamEvent` values out (see the module)."""

    def __init__(
        self,
        *,
        max_connections: int = MAX_CONNECTIONS,
        max_held: int = MAX_HELD_PER_DIRECTION,
        max_held_total: int = MAX_HELD_TOTAL,
    ) -> None:
        self.connections: OrderedDict[tuple[Endpoint, Endpoint], Connection] = OrderedDict()
        self.max_connections = max_connections
        self.max_held = max_held
        self.max_held_total = max_held_total
        self.held_total = 0
        self._count = 0
        self.stats = {"segments": 0, "retransmitted": 0, "conflicts": 0, "gaps": 0, "evicted": 0}

    # --- input -----------------------------------------------------------------------------------

    def feed(self, seg: Segment) -> list[StreamEvent]:
        """Take one segment; returns what it made deliverable."""
        self.stats["segments"] += 1
        out: list[StreamEvent] = []
        src, dst = seg.src, seg.dst
        key = (src, dst) if src <= dst else (dst, src)  # _key, inline: once per packet
        conn = self.connections.get(key)
        if conn is not None and not seg.flags & (SYN | FIN | RST):
            d = conn.dirs.get(src)
            if (
                d is not None
                and d.next_seq is not None
                and (
                    not seg.payload  # an ACK of a direction placed: only the connection's activity to note
                    or (  # the common case: the next octets of a direction with nothing held
                        not d.held and not d.finished and (seg.seq - d.origin) % _MOD == d.delivered < _HALF
                    )
                )
            ):
                self.connections.move_to_end(key)
                conn.last_ts = seg.ts
                if seg.payload:
                    self._deliver(conn, src, d, seg.payload, seg.ts, out)
                    if d.fin_at is not None:
                        self._check_fin(conn, src, d, seg.ts, out)
                if self.held_total > self.max_held_total:
                    self._relieve(seg.ts, out)
                return out
        if conn is None:
            if seg.flags & RST or not (seg.payload or seg.flags & SYN):
                return out  # a closed connection's last ACKs, or a reset of one we never saw
            conn = self._open(key, seg, out)
        elif seg.flags & SYN and not seg.flags & ACK and self._new_syn(conn, seg):
            # the 4-tuple is used again (the old connection's end was not captured)
            self._close(conn, seg.ts, "reused", out)
            conn = self._open(key, seg, out)
        else:
            self.connections.move_to_end(key)
        conn.last_ts = seg.ts
        d = conn.direction(seg.src)
        if seg.flags & SYN:
            if not seg.flags & ACK:
                conn.client = seg.src
            conn.saw_syn = True
            if d.next_seq is None:
                d.origin, d.next_seq = (seg.seq + 1) % _MOD, 0
                return out
        if d.next_seq is None:  # mid-stream: this segment fixes the position
            d.origin, d.next_seq = seg.seq, 0
        start = (seg.seq + (1 if seg.flags & SYN else 0) - d.origin) % _MOD
        if start >= _HALF:  # before the origin: a retransmission of what preceded our first view
            start -= _MOD
        if seg.payload:
            self._take(conn, seg.src, d, start, seg.payload, seg.ts, out)
        if seg.flags & FIN:
            d.fin_at = start + len(seg.payload)
            self._check_fin(conn, seg.src, d, seg.ts, out)
        if seg.flags & RST:
            self._close(conn, seg.ts, "rst", out)
        elif self.held_total > self.max_held_total:
            self._relieve(seg.ts, out)
        return out

    def finish(self, ts: float) -> list[StreamEvent]:
        """The capture ended: deliver what is held (across gaps) and close every connection."""
        out: list[StreamEvent] = []
        for conn in list(self.connections.values()):
            self._close(conn, ts, "end", out)
        return out

    # --- internals -------------------------------------------------------------------------------

    def _open(self, key: tuple[Endpoint, Endpoint], seg: Segment, out: list[StreamEvent]) -> Connection:
        while len(self.connections) >= self.max_connections:
            _, victim = self.connections.popitem(last=False)
            self.stats["evicted"] += 1
            self._close(victim, seg.ts, "evicted", out)
        self._count += 1
        conn = Connection(f"C{self._count}", seg.src, seg.dst, seg.ts, seg.ts)
        self.connections[key] = conn
        return conn

    @staticmethod
    def _new_syn(conn: Connection, seg: Segment) -> bool:
        d = conn.dirs.get(seg.src)
        return d is not None and d.next_seq is not None and (seg.seq + 1) % _MOD != d.origin

    def _take(
        self, conn: Connection, src: Endpoint, d: Direction, start: int, data: bytes, ts: float,
        out: list[StreamEvent],
    ) -> None:  # fmt: skip
        if d.finished:
            return
        end = start + len(data)
        if end <= d.delivered:  # wholly old
            d.retransmitted += 1
            self.stats["retransmitted"] += 1
            self._compare(d, start, data)
            return
        if start < d.delivered:  # partly old: compare the old part, keep the new
            d.retransmitted += 1
            self.stats["retransmitted"] += 1
            self._compare(d, start, data[: d.delivered - start])
            data = data[d.delivered - start :]
            start = d.delivered
        if start > d.delivered:
            self._hold(conn, src, d, start, data, ts, out)
            return
        self._deliver(conn, src, d, data, ts, out)
        self._drain(conn, src, d, ts, out)

    def _compare(self, d: Direction, start: int, data: bytes) -> None:
        """Octets at ``start`` seen again: count a conflict if they differ from the last
        ``_KEEP_TAIL`` delivered ones (the tail may hold more: it is cut when it doubles)."""
        tail_start = d.delivered - len(d.tail)
        lo, hi = max(start, tail_start, d.delivered - _KEEP_TAIL), min(start + len(data), d.delivered)
        if lo < hi and data[lo - start : hi - start] != d.tail[lo - tail_start : hi - tail_start]:
            d.conflicts += 1
            self.stats["conflicts"] += 1

    def _hold(
        self, conn: Connection, src: Endpoint, d: Direction, start: int, data: bytes, ts: float,
        out: list[StreamEvent],
    ) -> None:  # fmt: skip
        known = d.held.get(start)
        if known is not None:  # the same start again: first copy wins
            n = min(len(known), len(data))
            if known[:n] != data[:n]:
                d.conflicts += 1
                self.stats["conflicts"] += 1
            else:
                d.retransmitted += 1
                self.stats["retransmitted"] += 1
            if len(data) <= len(known):
                return
            data = known + data[len(known) :]
            d.held_octets -= len(known)
            self.held_total -= len(known)
        d.held[start] = data
        d.held_octets += len(data)
        self.held_total += len(data)
        while d.held and (d.held_octets > self.max_held or len(d.held) > MAX_SEGMENTS_HELD):
            self._skip(conn, src, d, ts, out)

    def _deliver(
        self, conn: Connection, src: Endpoint, d: Direction, data: bytes, ts: float, out: list[StreamEvent]
    ) -> None:
        n = len(data)
        d.delivered += n
        d.octets += n
        if n >= _KEEP_TAIL:
            d.tail = data if n <= 2 * _KEEP_TAIL else data[-_KEEP_TAIL:]
        else:  # grown to twice the bound, then cut: a small segment costs no 4 KiB copy
            tail = d.tail + data
            d.tail = tail[-_KEEP_TAIL:] if len(tail) > 2 * _KEEP_TAIL else tail
        out.append(Data(conn, src, ts, data))

    def _drain(
        self, conn: Connection, src: Endpoint, d: Direction, ts: float, out: list[StreamEvent]
    ) -> None:
        """Deliver held segments that now start at or before the delivered position (sorted once:
        a hole filled under thousands of held segments costs n log n, not n squared)."""
        if d.held and min(d.held) <= d.delivered:
            for first in sorted(d.held):
                if first > d.delivered:
                    break
                data = d.held.pop(first)
                d.held_octets -= len(data)
                self.held_total -= len(data)
                if first + len(data) <= d.delivered:
                    self._compare(d, first, data)
                    continue
                if first < d.delivered:
                    self._compare(d, first, data[: d.delivered - first])
                    data = data[d.delivered - first :]
                self._deliver(conn, src, d, data, ts, out)
        self._check_fin(conn, src, d, ts, out)

    def _skip(self, conn: Connection, src: Endpoint, d: Direction, ts: float, out: list[StreamEvent]) -> None:
        """Jump over the hole before the first held segment (a gap) and deliver from there."""
        first = min(d.held)
        missing = first - d.delivered
        if missing > 0:
            d.gaps += 1
            d.gap_octets += missing
            self.stats["gaps"] += 1
            d.delivered = first
            d.tail = b""
            out.append(Gap(conn, src, ts, missing))
        self._drain(conn, src, d, ts, out)

    def _check_fin(
        self, conn: Connection, src: Endpoint, d: Direction, ts: float, out: list[StreamEvent]
    ) -> None:
        if d.fin_at is not None and d.delivered >= d.fin_at and not d.finished:
            d.finished = True
            if len(conn.dirs) == 2 and all(x.finished for x in conn.dirs.values()):
                self._close(conn, ts, "fin", out)

    def _close(self, conn: Connection, ts: float, reason: str, out: list[StreamEvent]) -> None:
        if conn.closed:
            return
        for src, d in conn.dirs.items():
            while d.held:
                self._skip(conn, src, d, ts, out)
        conn.closed = True
        key = _key(conn.a, conn.b)
        if self.connections.get(key) is conn:
            del self.connections[key]
        out.append(Closed(conn, ts, reason))

    def _relieve(self, ts: float, out: list[StreamEvent]) -> None:
        """Over the total bound: the direction holding the most gives up its holes first."""
        while self.held_total > self.max_held_total:
            conn, src, d = max(
                ((c, s, d) for c in self.connections.values() for s, d in c.dirs.items()),
                key=lambda t: t[2].held_octets,
            )
            if not d.held:
                break
            self._skip(conn, src, d, ts, out)
