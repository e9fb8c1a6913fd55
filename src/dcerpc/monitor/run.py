"""The monitor's pipeline: segments -> TCP reassembly -> passive associations -> records -> summary;
UDP datagrams -> the connectionless reader (cl.py) -> records -> the same summary.

:class:`Monitor` is sans-IO (segments in, records out); :func:`monitor_file` feeds it a capture.
Given detectors (``detect.Detectors``), the monitor feeds them each record as an event
(:func:`~.records.to_event`: the shape the server's audit events have) with the features of its
stubs (``detect.stubs.inspect``), and each TCP connection's end (an ``association-close`` event,
``dcerpc.association.bound`` false when no bind was seen: a port scan's evidence; not a record);
their alerts are records too (:class:`~.records.AlertRecord`), after the record that completed them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import status_name
from ..detect import Detectors, inspect
from .capture import packets
from .cl import ClReader, UdpDatagram
from .passive import PassiveAssociation
from .records import AlertRecord, BindRecord, CallRecord, Record, ViolationRecord, call_names, to_event
from .smb2 import Smb2Connection, looks_like_smb
from .tcp import Closed, Connection, Data, Gap, Reassembler, Segment

__all__ = ["MAX_FRAMED_TOTAL", "Monitor", "Summary", "monitor_file"]

MAX_FRAMED_TOTAL = 128 << 20
"""Octets all passive associations' framers may hold together (128 MiB). Each holds at most one
fragment per direction (64 KiB), but a hostile capture of many connections, each opening a 64 KiB
fragment it never finishes, would hold that many times over: past the bound, the associations
holding the most forget their half-cut fragments (as after a gap) until a quarter is free."""


@dataclass(slots=True)
class Summary:
    """Counts for the summary table."""

    talkers: Counter[tuple[str, str]] = field(default_factory=Counter)  # (client ip, server ip:port) -> calls
    interfaces: Counter[str] = field(default_factory=Counter)
    operations: Counter[tuple[str, str]] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    binds: Counter[str] = field(default_factory=Counter)  # result -> count
    violations: Counter[str] = field(default_factory=Counter)
    users: Counter[str] = field(default_factory=Counter)
    alerts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (detector, source) -> alerts
    connections: int = 0
    dcerpc_connections: int = 0
    calls: int = 0

    def add(self, rec: Record) -> None:
        if isinstance(rec, CallRecord):
            self.calls += 1
            name, op = call_names(rec.interface, rec.opnum) if rec.interface is not None else ("", "")
            iface = name or (str(rec.interface) if rec.interface else "(unknown)")
            op = op or (f"opnum {rec.opnum}" if rec.opnum is not None else "(unknown)")
            self.talkers[(rec.client_ip, f"{rec.server_ip}:{rec.server_port}")] += 1
            self.interfaces[iface] += 1
            self.operations[(iface, op)] += 1
            self.outcomes[rec.outcome] += 1
            if rec.fault_status is not None:
                self.faults[status_name(rec.fault_status)] += 1
            if rec.auth.user or rec.auth.domain:
                self.users[f"{rec.auth.domain}\\{rec.auth.user}"] += 1
        elif isinstance(rec, BindRecord):
            self.binds[rec.result] += 1
        elif isinstance(rec, ViolationRecord):
            self.violations[rec.kind.value] += 1
        elif isinstance(rec, AlertRecord):
            self.alerts[(rec.alert.detector, rec.alert.source)] += 1


class Monitor:
    """Segments in, records out; ``summary`` and ``tcp.stats`` count as it goes."""

    def __init__(self, reassembler: Reassembler | None = None, detectors: Detectors | None = None) -> None:
        self.tcp = reassembler or Reassembler()
        self.detectors = detectors
        self.associations: dict[str, PassiveAssociation | Smb2Connection] = {}
        self.smb2: Counter[str] = Counter()  # what the SMB2 readers counted (smb2.py)
        self.summary = Summary()
        self.last_ts = 0.0
        self.framed = 0  # octets the associations' framers hold, all together
        self.max_framed = MAX_FRAMED_TOTAL
        self.dropped_buffers = 0
        self.cl = ClReader()
        self._made: dict[int, tuple[Record, dict[str, Any]]] = {}  # the last batch's events, by id

    def feed(self, seg: Segment | UdpDatagram) -> list[Record]:
        """Take one segment (or UDP datagram); returns the records it completed."""
        if self._made:
            self._made.clear()
        self.last_ts = max(self.last_ts, seg.ts)
        if isinstance(seg, UdpDatagram):
            return self._add(self.cl.feed(seg))
        return self._events(self.tcp.feed(seg))

    def finish(self) -> list[Record]:
        """The capture ended: every connection closes, unanswered calls are reported."""
        self._made.clear()
        return self._events(self.tcp.finish(self.last_ts)) + self._add(self.cl.finish())

    def event(self, rec: Record) -> dict[str, Any]:
        """``to_event(rec)``: the very event the detectors were given, for a record of the last
        :meth:`feed` or :meth:`finish` (made once: an event costs more than the JSON of it)."""
        made = self._made.get(id(rec))
        if made is not None and made[0] is rec:
            return made[1]
        return to_event(rec)

    def _add(self, out: list[Record]) -> list[Record]:
        """The records through the detectors (when on) and into the summary."""
        if self.detectors is not None and out:
            out = self._detect(out)
        for rec in out:
            self.summary.add(rec)
        return out

    def _events(self, events: list[Data | Gap | Closed]) -> list[Record]:
        out: list[Record] = []
        for ev in events:
            conn = ev.conn
            assoc = self.associations.get(conn.uid)
            if assoc is None:
                if isinstance(ev, Closed):
                    if self.detectors is not None:
                        self._closed(conn, None, out)
                    continue
                if isinstance(ev, Data) and looks_like_smb(ev.data):  # named pipes (smb2.py)
                    assoc = Smb2Connection(conn.uid, conn.a, conn.b, conn.client, conn.saw_syn, self.smb2)
                else:
                    assoc = PassiveAssociation(conn.uid, conn.a, conn.b, conn.client, conn.saw_syn)
                self.associations[conn.uid] = assoc
                self.summary.connections += 1
            if isinstance(ev, Data):
                if assoc.client is None and conn.client is not None:
                    assoc.client = conn.client
                before = assoc.buffered
                out += assoc.data(ev.src, ev.ts, ev.data)
                self.framed += assoc.buffered - before
                if self.framed > self.max_framed:
                    self._relieve()
            elif isinstance(ev, Gap):
                before = assoc.buffered
                out += assoc.gap(ev.src, ev.ts, ev.missing)
                self.framed += assoc.buffered - before
            else:
                self.framed -= assoc.buffered
                out += assoc.close(ev.ts)
                if self.detectors is not None:
                    self._closed(conn, assoc, out)
                if assoc.is_dcerpc:
                    self.summary.dcerpc_connections += 1
                del self.associations[conn.uid]
        return self._add(out)

    def _detect(self, records: list[Record]) -> list[Record]:
        """The records, each followed by the alerts it completed."""
        assert self.detectors is not None
        feed = self.detectors.feed
        out: list[Record] = []
        for rec in records:
            out.append(rec)
            if isinstance(rec, AlertRecord):
                continue
            features = None
            if isinstance(rec, CallRecord) and (rec.stub or rec.response_stub):
                features = inspect(rec.interface, rec.opnum, rec.stub, rec.response_stub)
            event = to_event(rec)
            self._made[id(rec)] = (rec, event)  # the record is held: its id is not reused meanwhile
            alerts = feed(event, rec.ts, features)
            if alerts:
                out += [AlertRecord(a) for a in alerts]
        return out

    def _closed(
        self, conn: Connection, assoc: PassiveAssociation | Smb2Connection | None, out: list[Record]
    ) -> None:
        """A connection's end, for the detectors: one begun in the capture without a bind. An SMB2
        connection is a file-sharing session, not a probe of an RPC port: it is not reported."""
        if isinstance(assoc, Smb2Connection):
            return
        if not conn.saw_syn or conn.client is None or (assoc is not None and assoc.saw_bind):
            return
        assert self.detectors is not None
        client, server = conn.client, conn.other(conn.client)
        protocol = "dcerpc" if assoc is not None and assoc.is_dcerpc else None
        event = {
            "event": {"kind": "event", "action": "association-close", "outcome": "success"},
            "source": {"ip": client.ip, "port": client.port},
            "destination": {"ip": server.ip, "port": server.port},
            "network": {"transport": "tcp", "protocol": protocol},
            "dcerpc": {"connection": {"uid": conn.uid}, "association": {"bound": False}},
        }
        out += [AlertRecord(a) for a in self.detectors.feed(event, conn.first_ts)]

    def _relieve(self) -> None:
        """Over the framers' bound: the biggest holders forget their fragments until 3/4 remain."""
        for assoc in sorted(self.associations.values(), key=lambda a: a.buffered, reverse=True):
            if self.framed <= self.max_framed * 3 // 4:
                break
            self.framed -= assoc.buffered
            assoc.drop_buffers()
            self.dropped_buffers += 1


def monitor_file(
    path: Path,
    stats: Counter[str],
    progress: Callable[[int], None] | None = None,
    monitor: Monitor | None = None,
) -> Iterator[Record]:
    """Every record of the capture at ``path``, in the order calls completed.

    Raises:
        CaptureError: not a capture we read.
    """
    mon = monitor or Monitor()
    for seg in packets(path, stats, progress):
        yield from mon.feed(seg)
    yield from mon.finish()
