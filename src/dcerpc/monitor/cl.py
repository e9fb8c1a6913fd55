"""A passive reader of connectionless DCE/RPC (C706 chapter 12, ncadg_ip_udp): datagrams in,
records out, sans-IO.

Connectionless RPC has no connection and no bind: each datagram is one PDU (pdu/cl.py) whose
80-octet header names the call by (activity UUID, sequence number), the interface by UUID and
version, and the operation by opnum (C706 12.5, the header). The reader therefore keys everything by
(activity, sequence):

- a request's fragments (C706 12.5: ``frag``, ``lastfrag``, ``fragnum``) are gathered by fragment
  number, each number once: a second copy is a retransmission, counted and not added;
- the answer is a response (its fragments gathered the same way), a fault or a reject (one
  datagram each, with a status); the call's record is emitted when the answer is whole;
- ping, working, nocall, fack, cl_cancel and cancel_ack (C706 12.5 and chapter 10) are noted on the
  call they name; an ack, or anything for a call already reported, is counted in :attr:`ClReader.stats`;
- a new sequence number on an activity ends the previous call of that activity (C706 chapter 10:
  a client starts its next call only when it is done with the last one): a call still unanswered
  is reported so.

Records are the TCP path's :class:`~.records.CallRecord` with ``udp`` set, ``dcerpc.activity`` and
``dcerpc.sequence`` in place of a call_id and context_id, interface and operation names from
``known/`` by the header's interface UUID and opnum, the auth type from ``auth_proto`` and the
level from the verifier's sec_trailer_cl (MS-RPCE 2.2.3.4) of the call's first datagram. A flow
(the unordered pair of endpoints) gets a uid ``U1``, ``U2``, ...; the client is the sender of the
request.

Recognition is by content, on any port: a datagram is connectionless RPC when its header is
plausible (version 4, a known packet type, a data representation we read, a body length that fits:
:func:`~dcerpc.pdu.cl.cl_plausible`); once a flow has carried one, a datagram of that flow that does
not parse is a :class:`~.records.ViolationRecord` with the kind the codec names. Nothing here
raises on peer data; every table is bounded (the module's constants, docs/monitor.md).
"""

from __future__ import annotations

import uuid
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Final

from ..pdu.cl import (
    NIL,
    ClError,
    ClPType,
    Datagram,
    Flags1,
    StatusBody,
    cl_auth_level,
    cl_plausible,
    parse_cl,
)
from ..pdu.constants import AuthLevel
from ..protocol.rules import Violation
from .passive import MAX_STUB_KEPT
from .records import AuthInfo, CallRecord, Record, ViolationRecord
from .tcp import Endpoint

__all__ = [
    "MAX_CL_ACTIVITIES",
    "MAX_CL_CALLS",
    "MAX_CL_FLOWS",
    "MAX_CL_FRAGMENTS",
    "MAX_CL_KEPT",
    "ClReader",
    "UdpDatagram",
]

# Bounds (a capture is as hostile as its senders; UDP costs them nothing to spoof):
MAX_CL_FRAGMENTS: Final = 4096
"""Fragment numbers remembered per call and direction. fragnum is a u16: without the bound, one
call of 65536 tiny fragments (or a sender that never sets lastfrag) costs a set entry each; past it
the call is reported ``call_too_large`` and further fragments are counted, not remembered."""
MAX_CL_KEPT: Final = 16 * 1024
"""Octets of fragment bodies kept per call and direction until the stub's first
:data:`~.passive.MAX_STUB_KEPT` octets are known (fragments may arrive out of order). Stops a call
of many large fragments from costing its length: past it, bodies are counted, not kept."""
MAX_CL_CALLS: Final = 4096
"""Calls in flight, all activities together. Stops requests that are never answered (a one-way
capture, a flood of spoofed activities) from growing the table: the oldest is reported unanswered
with a ``too_many_calls`` violation."""
MAX_CL_ACTIVITIES: Final = 65536
"""Activities remembered (their last sequence number, to know a late retransmission from a new
call). Stops a flood of fresh activity UUIDs: the least recently seen is forgotten."""
MAX_CL_FLOWS: Final = 100_000
"""Flows (endpoint pairs) given a uid and remembered as carrying RPC; the least recent is forgotten."""

_NOTES: Final[dict[ClPType, str]] = {
    ClPType.PING: "ping",
    ClPType.WORKING: "working",
    ClPType.NOCALL: "nocall",
    ClPType.FACK: "fack",
    ClPType.CL_CANCEL: "cancel",
    ClPType.CANCEL_ACK: "cancel_ack",
    ClPType.ACK: "ack",
}
_MAYBE: Final = int(Flags1.MAYBE)
_FLAG_NAMES: Final = (
    (int(Flags1.IDEMPOTENT), "idempotent"),
    (int(Flags1.MAYBE), "maybe"),
    (int(Flags1.BROADCAST), "broadcast"),
)


def _auth(d: Datagram) -> AuthInfo:
    """The security a call's first datagram names: ``auth_proto`` (0: none) and the level its
    verifier's sec_trailer_cl gives (MS-RPCE 2.2.3.4; DEFAULT when the verifier holds none)."""
    if not d.auth_proto:
        return AuthInfo(0, AuthLevel.NONE)
    return AuthInfo(d.auth_proto, cl_auth_level(d.auth) or AuthLevel.DEFAULT)


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    """One UDP datagram of a capture: when, between which endpoints, its payload."""

    ts: float
    src: Endpoint
    dst: Endpoint
    payload: bytes


@dataclass(slots=True)
class _Half:
    """One direction of a call: the fragments gathered by number."""

    seen: set[int] = field(default_factory=set)
    bodies: dict[int, bytes] = field(default_factory=dict)
    kept: int = 0
    last: int | None = None  # the fragment number with lastfrag (or 0 for an unfragmented PDU)
    overflow: bool = False

    def add(self, d: Datagram, body: bytes) -> bool:
        """Take one fragment; False when it is a copy of one already taken."""
        n = d.fragment
        if n in self.seen:
            return False
        if len(self.seen) >= MAX_CL_FRAGMENTS:
            self.overflow = True
        else:
            self.seen.add(n)
        if self.kept + len(body) <= MAX_CL_KEPT and n < MAX_CL_FRAGMENTS:
            self.bodies[n] = body
            self.kept += len(body)
        if d.last_fragment:
            self.last = n
        return True

    @property
    def whole(self) -> bool:
        return self.last is not None and (self.overflow or len(self.seen) == self.last + 1)

    def stub(self) -> bytes:
        out = bytearray()
        for n in range(len(self.bodies) + 1):
            body = self.bodies.get(n)
            if body is None or len(out) >= MAX_STUB_KEPT:
                break
            out += body
        return bytes(out[:MAX_STUB_KEPT])


@dataclass(slots=True)
class _Call:
    key: tuple[uuid.UUID, int]
    record: CallRecord
    client: Endpoint
    server: Endpoint
    request: _Half = field(default_factory=_Half)
    response: _Half = field(default_factory=_Half)


class ClReader:
    """Connectionless datagrams in, records out (see the module)."""

    def __init__(self) -> None:
        self.calls: OrderedDict[tuple[uuid.UUID, int], _Call] = OrderedDict()
        self.activities: OrderedDict[uuid.UUID, int] = OrderedDict()  # activity -> highest sequence
        self.flows: OrderedDict[tuple[Endpoint, Endpoint], str] = OrderedDict()  # -> uid
        self.clients: dict[str, Endpoint] = {}  # flow uid -> the sender of its first request
        self.stats: Counter[str] = Counter()
        self._count = 0

    # --- input -----------------------------------------------------------------------------------

    def feed(self, dg: UdpDatagram) -> list[Record]:
        """Take one datagram; returns the records it completed."""
        out: list[Record] = []
        self.stats["datagrams"] += 1
        key = (dg.src, dg.dst) if dg.src <= dg.dst else (dg.dst, dg.src)
        known = key in self.flows
        if not known and not cl_plausible(dg.payload):
            self.stats["not_rpc"] += 1
            return out
        uid = self._uid(key)
        try:
            d = parse_cl(dg.payload)
        except ClError as e:
            out.append(self._violation(dg, uid, Violation(e.kind), e.reason, None, None))
            return out
        self.stats["pdus"] += 1
        ptype = d.ptype
        if ptype is ClPType.REQUEST:
            self._request(dg, uid, d, out)
        elif ptype in (ClPType.RESPONSE, ClPType.FAULT, ClPType.REJECT):
            self._answer(dg, uid, d, out)
        else:
            self._note(dg, uid, d, out)
        return out

    def finish(self) -> list[Record]:
        """The capture ended: calls without an (whole) answer are reported unanswered."""
        out: list[Record] = [self._close(c) for c in self.calls.values()]
        self.calls.clear()
        return out

    # --- calls -----------------------------------------------------------------------------------

    def _request(self, dg: UdpDatagram, uid: str, d: Datagram, out: list[Record]) -> None:
        key = (d.activity, d.sequence)
        call = self.calls.get(key)
        if call is None:
            high = self.activities.get(d.activity)
            if high is not None and d.sequence <= high:
                self.stats["late"] += 1  # a call already reported (or given up): its retransmission
                return
            if high is not None:  # a new call ends the activity's previous one (C706 chapter 10)
                prev = self.calls.pop((d.activity, high), None)
                if prev is not None:
                    out.append(self._close(prev))
            self._activity(d.activity, d.sequence)
            call = self._open(dg, uid, d, dg.src, out)
        elif dg.src != call.client:
            out.append(
                self._violation(
                    dg, uid, Violation.SERVER_PDU, f"a request of call {d.sequence} from its server", d, call
                )
            )
            return
        else:
            rec = call.record
            if (d.interface, d.opnum) != (rec.interface, rec.opnum):
                out.append(
                    self._violation(
                        dg,
                        uid,
                        Violation.FRAGMENT_CHANGED,
                        f"call {d.sequence} changed its interface or opnum",
                        d,
                        call,
                    )
                )
                return
        self._fragment(dg, uid, call, call.request, d, out)
        if call.request.whole and d.flags1 & _MAYBE:  # no answer is coming (C706 12.5, the header)
            del self.calls[key]
            out.append(self._close(call))

    def _answer(self, dg: UdpDatagram, uid: str, d: Datagram, out: list[Record]) -> None:
        key = (d.activity, d.sequence)
        call = self.calls.get(key)
        if call is None:
            high = self.activities.get(d.activity)
            if high is not None and d.sequence <= high:
                self.stats["late"] += 1  # an answer retransmitted after the call was reported
                return
            self._activity(d.activity, d.sequence)
            call = self._open(dg, uid, d, dg.dst, out)  # the request was not captured
            call.record.partial = True
            call.request.last = 0
        elif dg.src == call.client:
            out.append(
                self._violation(
                    dg,
                    uid,
                    Violation.PEER_PROTOCOL,
                    f"an answer to call {d.sequence} from its client",
                    d,
                    call,
                )
            )
            return
        rec = call.record
        if isinstance(d.body, StatusBody):  # fault or reject: one datagram ends the call
            rec.outcome, rec.fault_status = "failure", d.body.status
            rec.rejected = d.ptype is ClPType.REJECT
            rec.response_fragments += 1
            rec.response_octets += len(d.body.detail) + 4
            self._done(dg, call, out)
            return
        self._fragment(dg, uid, call, call.response, d, out)
        if call.response.whole:
            rec.outcome = "success"
            self._done(dg, call, out)

    def _fragment(
        self, dg: UdpDatagram, uid: str, call: _Call, half: _Half, d: Datagram, out: list[Record]
    ) -> None:
        body = d.body if isinstance(d.body, bytes) else b""
        rec = call.record
        was = half.overflow
        if not half.add(d, body):
            rec.notes["retransmitted"] = rec.notes.get("retransmitted", 0) + 1
            self.stats["retransmitted"] += 1
            return
        if half.overflow and not was:
            out.append(
                self._violation(
                    dg,
                    uid,
                    Violation.CALL_TOO_LARGE,
                    f"call {d.sequence} has more than {MAX_CL_FRAGMENTS} fragments",
                    d,
                    call,
                )
            )
        if half is call.request:
            rec.request_fragments += 1
            rec.request_octets += len(body)
        else:
            rec.response_fragments += 1
            rec.response_octets += len(body)

    def _note(self, dg: UdpDatagram, uid: str, d: Datagram, out: list[Record]) -> None:
        note = _NOTES[d.ptype]
        self.stats[note] += 1
        call = self.calls.get((d.activity, d.sequence))
        if call is not None:
            call.record.notes[note] = call.record.notes.get(note, 0) + 1

    def _done(self, dg: UdpDatagram, call: _Call, out: list[Record]) -> None:
        rec = call.record
        if rec.request_fragments:
            rec.rtt = max(0.0, dg.ts - rec.ts)
        del self.calls[call.key]
        out.append(self._close(call))

    def _close(self, call: _Call) -> CallRecord:
        rec = call.record
        rec.stub = call.request.stub()
        rec.response_stub = call.response.stub()
        return rec

    def _open(self, dg: UdpDatagram, uid: str, d: Datagram, client: Endpoint, out: list[Record]) -> _Call:
        server = dg.dst if client == dg.src else dg.src
        rec = CallRecord(
            ts=dg.ts, uid=uid, client_ip=client.ip, client_port=client.port, server_ip=server.ip,
            server_port=server.port, udp=True, activity=d.activity, sequence=d.sequence,
            call_id=d.sequence, context_id=0, opnum=d.opnum, interface=d.interface,
            version=d.version, object=d.object if d.object != NIL else None,
            call_flags=tuple(name for flag, name in _FLAG_NAMES if d.flags1 & flag),
            auth=_auth(d),
        )  # fmt: skip
        call = _Call((d.activity, d.sequence), rec, client, server)
        self.clients.setdefault(uid, client)
        while len(self.calls) >= MAX_CL_CALLS:
            _, old = self.calls.popitem(last=False)
            out.append(self._close(old))
            out.append(
                self._violation(
                    dg,
                    uid,
                    Violation.TOO_MANY_CALLS,
                    f"more than {MAX_CL_CALLS} connectionless calls in flight",
                    None,
                    old,
                )
            )
        self.calls[call.key] = call
        return call

    # --- tables ----------------------------------------------------------------------------------

    def _activity(self, activity: uuid.UUID, sequence: int) -> None:
        self.activities[activity] = sequence
        self.activities.move_to_end(activity)
        if len(self.activities) > MAX_CL_ACTIVITIES:
            self.activities.popitem(last=False)

    def _uid(self, key: tuple[Endpoint, Endpoint]) -> str:
        uid = self.flows.get(key)
        if uid is None:
            self._count += 1
            uid = self.flows[key] = f"U{self._count}"
            if len(self.flows) > MAX_CL_FLOWS:
                self.clients.pop(self.flows.popitem(last=False)[1], None)
        else:
            self.flows.move_to_end(key)
        return uid

    def _violation(
        self, dg: UdpDatagram, uid: str, kind: Violation, reason: str, d: Datagram | None, call: _Call | None
    ) -> ViolationRecord:
        self.stats["violations"] += 1
        if call is not None:
            client, server = call.client, call.server
        else:
            client = self.clients.get(uid, dg.src)
            server = dg.dst if client == dg.src else dg.src
        return ViolationRecord(
            ts=dg.ts, uid=uid, client_ip=client.ip, client_port=client.port, server_ip=server.ip,
            server_port=server.port, udp=True, kind=kind, reason=reason,
            call_id=None,  # connectionless: dcerpc.activity and dcerpc.sequence name the call
            activity=d.activity if d is not None else None,
            sequence=d.sequence if d is not None else None, from_client=dg.src == client,
        )  # fmt: skip
