"""A passive observer of one connection-oriented DCE/RPC association: both directions in, records out.

The reader sits beside the wire, not on it: it answers nothing, cannot ask again, and must make
sense of whatever arrives, from a bind to a connection caught halfway. Per direction a framer cuts
the octets into fragments by their common header (C706 12.6.3.1) and hands each to the project's
PDU parser (:func:`dcerpc.pdu.parse`, the one the server uses); the commonest fragment, a plain
little-endian request or response, is read by :func:`_plain` with one struct call instead, as
parse() reads it (the tests compare the two). The association's side then:

- learns who is the client: the SYN's sender, else the sender of the first client-only PDU (bind,
  alter_context, request, auth3, co_cancel, orphaned);
- follows bind / alter_context and their answers (C706 12.6.4.1-4) to map presentation context ids
  to interfaces, and reports each proposed context with its result (a :class:`BindRecord`);
- reads the security trailer of each bind, alter_context, auth3 and request (MS-RPCE 2.2.2.11) for
  the auth type and level, and the NTLM AUTHENTICATE message for the user and domain;
- pairs requests with their response or fault by call_id, counting fragments and stub octets
  (C706 12.6.4.9-10: a call is whole at PFC_LAST_FRAG), into one :class:`CallRecord` per call.

What breaks a rule becomes a :class:`ViolationRecord` with the :class:`~dcerpc.protocol.rules.Violation`
kind the server uses for it, and the reader goes on: a fragment that does not parse is skipped, a
header that is not DCE/RPC makes the framer hunt for the next plausible header (as it does after a
gap in the TCP stream, or at a mid-stream start). Nothing here raises on peer data.

Recognition is by content, on any port: a direction is DCE/RPC once a plausible header (version
5.0 or 5.1, a connection-oriented PTYPE, a data representation we read, a frag_length of at least
16 that holds its auth_length) starts a fragment that parses. A connection whose first
:data:`HUNT_LIMIT` octets each way hold none is given up and costs nothing more.
"""

from __future__ import annotations

import struct
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final, TypedDict

from ..pdu import (
    PFC,
    AlterContext,
    Auth3,
    AuthVerifier,
    Bind,
    BindAck,
    BindNak,
    Fault,
    PduError,
    PType,
    Request,
    Response,
    SyntaxId,
    parse,
)
from ..pdu.constants import ContextResult
from ..protocol.rules import Violation
from .ntlm import find_authenticate
from .records import AuthInfo, BindRecord, CallRecord, Record, ViolationRecord
from .tcp import Endpoint

__all__ = ["HUNT_LIMIT", "MAX_CALLS", "MAX_STUB_KEPT", "PassiveAssociation", "plausible"]

CLIENT_PTYPES: Final = frozenset(
    {PType.BIND, PType.ALTER_CONTEXT, PType.REQUEST, PType.AUTH3, PType.CO_CANCEL, PType.ORPHANED}
)
SERVER_PTYPES: Final = frozenset(
    {PType.BIND_ACK, PType.BIND_NAK, PType.ALTER_CONTEXT_RESP, PType.RESPONSE, PType.FAULT, PType.SHUTDOWN}
)
_CO_PTYPES: Final = frozenset(int(t) for t in CLIENT_PTYPES | SERVER_PTYPES)

# Bounds (a capture is as hostile as its sender):
HUNT_LIMIT: Final = 64 * 1024
"""Octets per direction searched for a first fragment before the connection is judged not to be
DCE/RPC. Stops a non-RPC stream (HTTP, a file transfer) from being buffered and scanned to its end;
real fragments are at most 5840 octets on Windows, so a mid-stream start finds a header well within
it."""
MAX_CALLS: Final = 1024
MAX_REFUSED: Final = 16
"""Calls remembered per association as answered (a fault) before their last fragment: the
fragments the client had sent before it read the fault belong to that call (a server discards
them: C706 leaves the call over, Samba and ours refuse a call that announces too much after its
first fragment), not orphans and not a new call; a few suffice, since a client sends one call's
run at a time."""
"""Calls in flight per connection. Stops a client that sends request after request and never sees
an answer (or a capture of only one direction) from growing the table: the oldest is reported
unanswered."""
MAX_PENDING_BINDS: Final = 64
"""Binds and alter_contexts awaiting their answer."""
MAX_CONTEXTS: Final = 1024
"""Presentation contexts remembered per connection (context ids are u16: 65536 of them otherwise)."""
MAX_STUB_KEPT: Final = 4096
"""Octets of each request's stub kept on its record for detectors (object names, lookup arguments);
the rest is counted, not stored. Stops a long call from costing its length in memory."""
# A framer holds at most one fragment: frag_length is a u16, so a direction never buffers more than
# 64 KiB beyond the chunk being cut.


def plausible(buf: bytes | bytearray, at: int = 0) -> bool:
    """True when the 16 octets at ``at`` look like a connection-oriented common header (C706
    12.6.3.1: version 5.0/5.1, a CO packet type, integers big or little endian, ASCII, IEEE floats,
    frag_length >= 16 and large enough for its auth_length)."""
    if len(buf) - at < 16:
        return False
    if buf[at] != 5 or buf[at + 1] > 1 or buf[at + 2] not in _CO_PTYPES:
        return False
    drep0 = buf[at + 4]
    if drep0 not in (0x00, 0x10) or buf[at + 5] != 0:
        return False
    if drep0 == 0x10:
        frag, auth = buf[at + 8] | buf[at + 9] << 8, buf[at + 10] | buf[at + 11] << 8
    else:
        frag, auth = buf[at + 8] << 8 | buf[at + 9], buf[at + 10] << 8 | buf[at + 11]
    return frag >= 16 and (auth == 0 or auth + 8 <= frag - 16)


def _why_not(buf: bytes | bytearray) -> tuple[Violation, str]:
    """The violation kind for a header that is not plausible (the server's names for it)."""
    if buf[0] != 5 or buf[1] > 1 or buf[4] not in (0x00, 0x10) or buf[5] != 0:
        return Violation.BAD_VERSION, f"not a DCE/RPC 5.x header: {bytes(buf[:8]).hex()}"
    if buf[2] not in _CO_PTYPES:
        return Violation.MALFORMED, f"packet type {buf[2]} is not a connection-oriented PDU"
    return Violation.BAD_FRAGMENT_LENGTH, "frag_length below 16 or too short for its auth_length"


@dataclass(slots=True)
class _Framer:
    """One direction's fragment cutter."""

    buf: bytearray = field(default_factory=bytearray)
    synced: bool = False  # the last cut ended at a fragment boundary we trust
    hunting: bool = True  # looking for a header (start of capture, after a gap or garbage)
    seen_pdu: bool = False
    scanned: int = 0  # octets searched without finding a first fragment

    def cut(self, data: bytes, bad: list[tuple[Violation, str]]) -> list[bytes]:
        buf = self.buf
        buf += data
        frags: list[bytes] = []
        while len(buf) >= 16:
            if not self.hunting or plausible(buf):
                if not plausible(buf):
                    bad.append(_why_not(buf))
                    self.hunting = True
                    continue
                n = buf[8] | buf[9] << 8 if buf[4] == 0x10 else buf[8] << 8 | buf[9]
                if len(buf) < n:
                    break
                frags.append(bytes(buf[:n]))
                del buf[:n]
                self.hunting = False
                continue
            last = len(buf) - 16  # the last place a whole header could start
            at = buf.find(5, 1)  # rpc_vers: only where it is 5 is a header worth a look
            while 0 <= at <= last and not plausible(buf, at):
                at = buf.find(5, at + 1)
            if not 0 <= at <= last:
                drop = len(buf) - 15
                self.scanned += drop
                del buf[:drop]
                break
            self.scanned += at
            del buf[:at]
        return frags

    def lost(self) -> None:
        """A gap: whatever was half cut is gone; hunt for the next header."""
        self.buf.clear()
        self.hunting = True


_VERSIONS: Final = frozenset({b"\x05\x00", b"\x05\x01"})  # rpc_vers 5, rpc_vers_minor 0 or 1
_PLAIN: Final = struct.Struct("<3xB8xIIHH")  # pfc_flags, call_id, alloc_hint, p_cont_id, opnum
"""A little-endian request's header and fixed fields (C706 12.6.4.9), or a response's (its opnum is
cancel_count and a reserved octet: not read)."""


def _plain(frag: bytes, from_client: bool) -> tuple[int, int, int, int, int] | None:
    """(pfc_flags, call_id, alloc_hint, p_cont_id, opnum) of a whole fragment that is a client's
    request or a server's response, little-endian, without a security trailer or an object UUID,
    read with one struct call as :func:`dcerpc.pdu.parse` reads it (the tests compare the two);
    None for anything else, which parse() reads. Most fragments of a capture are such (parse()'s
    header, PDU and Parsed objects cost 0.2 s of the benchmark's 60,655 fragments)."""
    if (
        len(frag) >= 24
        and frag[3] & PFC.OBJECT_UUID == 0
        and frag[:2] in _VERSIONS
        and frag[4:6] == b"\x10\x00"  # little-endian integers, ASCII, IEEE floats (C706 14.1)
        and frag[10] == frag[11] == 0  # auth_length
        and frag[8] | frag[9] << 8 == len(frag)  # frag_length (the framer cut it so)
        and frag[2] == (PType.REQUEST if from_client else PType.RESPONSE)
    ):
        return _PLAIN.unpack_from(frag)
    return None


_RESULTS: Final[dict[int, str]] = {
    ContextResult.ACCEPTANCE: "accepted",
    ContextResult.NEGOTIATE_ACK: "negotiate_ack",
}


class _Ends(TypedDict):
    ts: float
    uid: str
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    gap: bool
    partial: bool
    named_pipe: str | None


@dataclass(slots=True)
class _Call:
    record: CallRecord
    request_done: bool = False
    last_ts: float = 0.0
    last_hint: int = 0  # the alloc_hint of the request's last fragment (detect: fragment_overflow)


@dataclass(slots=True)
class _PendingBind:
    ts: float
    alter: bool
    contexts: tuple[tuple[int, SyntaxId], ...]


class PassiveAssociation:
    """One TCP connection seen from the side (see the module). Feed it each direction's octets."""

    def __init__(
        self, uid: str, a: Endpoint, b: Endpoint, client: Endpoint | None = None, saw_syn: bool = False
    ) -> None:
        self.uid = uid
        self.a, self.b = a, b
        self.client = client
        self.saw_syn = saw_syn
        self.framers = {a: _Framer(), b: _Framer()}
        self.contexts: dict[int, SyntaxId] = {}  # accepted
        self.proposed: dict[int, SyntaxId] = {}  # proposed, answer not seen (yet)
        self.pending_binds: OrderedDict[int, _PendingBind] = OrderedDict()
        self.calls: OrderedDict[int, _Call] = OrderedDict()
        self.refused: OrderedDict[int, None] = OrderedDict()  # MAX_REFUSED, above
        self.auth = AuthInfo()
        self.saw_bind = False
        self.bound = False
        self.had_gap = False
        self.given_up = False
        self.pdus = 0
        self.violations = 0
        self.buffered = 0  # octets the framers hold (at most one fragment per direction)
        self.named_pipe: str | None = None  # set by the SMB2 reader (smb2.py) for a pipe's association

    @property
    def is_dcerpc(self) -> bool:
        return any(f.seen_pdu for f in self.framers.values())

    # --- input -----------------------------------------------------------------------------------

    def data(self, src: Endpoint, ts: float, data: bytes) -> list[Record]:
        """Octets from ``src`` in order; returns the records they completed."""
        out: list[Record] = []
        framer = self.framers.get(src)
        if framer is None or self.given_up:
            return out
        if not framer.buf and isinstance(data, bytes) and plausible(data):
            # the common case: octets that are one whole fragment, taken as they are (not cut)
            n = data[8] | data[9] << 8 if data[4] == 0x10 else data[8] << 8 | data[9]
            if n == len(data):
                framer.hunting = False
                self._fragment(src, ts, data, out)
                return out
        bad: list[tuple[Violation, str]] = []
        before = len(framer.buf)
        frags = framer.cut(data, bad)
        self.buffered += len(framer.buf) - before
        for kind, reason in bad:
            if self.is_dcerpc:
                out.append(self._violation(ts, kind, reason, None, src))
        for frag in frags:
            self._fragment(src, ts, frag, out)
        if framer.scanned > HUNT_LIMIT and not self.is_dcerpc:
            self.given_up = True
            for f in self.framers.values():
                f.buf.clear()
            self.buffered = 0
        return out

    def drop_buffers(self) -> None:
        """Memory is short (the monitor's total bound): forget the half-cut fragments, as a gap."""
        self.had_gap = True
        for f in self.framers.values():
            f.lost()
        self.buffered = 0

    def gap(self, src: Endpoint, ts: float, missing: int) -> list[Record]:
        """``missing`` octets from ``src`` were never captured."""
        self.had_gap = True
        framer = self.framers.get(src)
        if framer is not None:
            self.buffered -= len(framer.buf)
            framer.lost()
        return []

    def close(self, ts: float) -> list[Record]:
        """The connection ended: calls without an answer and binds without one are reported."""
        out: list[Record] = []
        for call in self.calls.values():
            out.append(call.record)
        self.calls.clear()
        for cid, pending in self.pending_binds.items():
            out.extend(self._bind_records(cid, pending, None, "unanswered"))
        self.pending_binds.clear()
        return out

    # --- fragments -------------------------------------------------------------------------------

    def _fragment(self, src: Endpoint, ts: float, frag: bytes, out: list[Record]) -> None:
        ptype = frag[2]
        if self.client is None:
            self.client = src if ptype in CLIENT_PTYPES else (self.b if src == self.a else self.a)
        from_client = src == self.client
        plain = _plain(frag, from_client)
        if plain is not None:  # the common case (see _plain)
            self.framers[src].seen_pdu = True
            self.pdus += 1
            flags, call_id, hint, cid, opnum = plain
            if from_client:
                self._request(src, ts, call_id, flags, hint, cid, opnum, None, frag[24:], None, out)
            else:
                self._answer(ts, call_id, flags, cid, frag[24:], None, out)
            return
        try:
            parsed = parse(frag)
        except PduError as e:
            if self.is_dcerpc:
                kind = (
                    Violation.MALFORMED_BIND
                    if ptype in (PType.BIND, PType.ALTER_CONTEXT)
                    else Violation.MALFORMED
                )
                out.append(self._violation(ts, kind, e.reason, e.call_id, src))
            return
        self.framers[src].seen_pdu = True
        self.pdus += 1
        pdu = parsed.pdu
        if from_client and ptype not in CLIENT_PTYPES:
            out.append(
                self._violation(
                    ts, Violation.SERVER_PDU, f"the client sent a {pdu.ptype.name.lower()}", pdu.call_id, src
                )
            )
            return
        if not from_client and ptype not in SERVER_PTYPES:
            out.append(
                self._violation(
                    ts,
                    Violation.PEER_PROTOCOL,
                    f"the server sent a {pdu.ptype.name.lower()}",
                    pdu.call_id,
                    src,
                )
            )
            return
        if isinstance(pdu, Bind):  # AlterContext too
            self._bind(src, ts, pdu, out)
        elif isinstance(pdu, Auth3):
            if pdu.auth is not None:
                self._auth_value(pdu.auth.auth_type, pdu.auth.auth_level, pdu.auth.value)
        elif isinstance(pdu, Request):
            self._request(
                src, ts, pdu.call_id, pdu.flags, pdu.alloc_hint, pdu.context_id, pdu.opnum, pdu.object,
                pdu.stub, pdu.auth, out,
            )  # fmt: skip
        elif isinstance(pdu, BindAck):  # AlterContextResp too
            self._bind_ack(ts, pdu, out)
        elif isinstance(pdu, BindNak):
            pending = self.pending_binds.pop(pdu.call_id, None)
            if pending is not None:
                out.extend(self._bind_records(pdu.call_id, pending, None, "nak", pdu.reason))
        elif isinstance(pdu, Response):
            self._answer(ts, pdu.call_id, pdu.flags, pdu.context_id, pdu.stub, None, out)
        elif isinstance(pdu, Fault):
            self._answer(ts, pdu.call_id, pdu.flags, pdu.context_id, pdu.stub, pdu.status, out)

    def _auth_value(self, auth_type: int, level: int, value: bytes) -> None:
        self.auth.type, self.auth.level = auth_type, level
        logon = find_authenticate(value) if value else None
        if logon is not None:
            self.auth.user, self.auth.domain = logon.user, logon.domain
            self.auth.workstation, self.auth.anonymous = logon.workstation, logon.anonymous

    def _bind(self, src: Endpoint, ts: float, pdu: Bind, out: list[Record]) -> None:
        alter = isinstance(pdu, AlterContext)
        if not alter:
            if self.saw_bind and self.bound:
                out.append(
                    self._violation(
                        ts, Violation.SECOND_BIND, "a second bind on the association", pdu.call_id, src
                    )
                )
            self.saw_bind = True
        if pdu.auth is not None:
            self._auth_value(pdu.auth.auth_type, pdu.auth.auth_level, pdu.auth.value)
        contexts = tuple((c.context_id, c.abstract_syntax) for c in pdu.contexts)
        for cid, syntax in contexts:
            if len(self.proposed) < MAX_CONTEXTS:
                self.proposed[cid] = syntax
        while len(self.pending_binds) >= MAX_PENDING_BINDS:
            old_id, old = self.pending_binds.popitem(last=False)
            out.extend(self._bind_records(old_id, old, None, "unanswered"))
        self.pending_binds[pdu.call_id] = _PendingBind(ts, alter, contexts)

    def _bind_ack(self, ts: float, pdu: BindAck, out: list[Record]) -> None:
        self.bound = True
        pending = self.pending_binds.pop(pdu.call_id, None)
        if pending is None and self.pending_binds:  # answers carry the bind's call_id; be lenient
            _, pending = self.pending_binds.popitem(last=False)
        if pending is None:  # the bind was before the capture began
            return
        out.extend(self._bind_records(pdu.call_id, pending, pdu, ""))

    def _bind_records(
        self, call_id: int, pending: _PendingBind, ack: BindAck | None, result: str, reason: int | None = None
    ) -> list[Record]:
        out: list[Record] = []
        for i, (cid, syntax) in enumerate(pending.contexts):
            res, why = result, reason
            if ack is not None:
                if i >= len(ack.results):
                    res = "unanswered"
                else:
                    item = ack.results[i]
                    why = item.reason if item.result != ContextResult.ACCEPTANCE else None
                    res = _RESULTS.get(item.result, "rejected")
                    if item.result == ContextResult.ACCEPTANCE and len(self.contexts) < MAX_CONTEXTS:
                        self.contexts[cid] = syntax
            out.append(
                BindRecord(
                    **self._ends(pending.ts),
                    call_id=call_id,
                    context_id=cid,
                    interface=syntax.uuid,
                    version=syntax.version,
                    alter=pending.alter,
                    result=res,
                    reason=why,
                    auth=self._auth_copy(),
                )
            )
        return out

    def _request(
        self, src: Endpoint, ts: float, call_id: int, flags: int, alloc_hint: int, context_id: int,
        opnum: int, obj: uuid.UUID | None, stub: bytes, auth: AuthVerifier | None, out: list[Record],
    ) -> None:  # fmt: skip
        """A request fragment (C706 12.6.4.9), read by parse() or by _fragment's fast path."""
        first = bool(flags & PFC.FIRST_FRAG)
        call = self.calls.get(call_id)
        if self.refused and call_id in self.refused:
            if not first:  # the rest of a call answered before its end: the server drops it too
                if flags & PFC.LAST_FRAG:
                    del self.refused[call_id]
                return
            del self.refused[call_id]
        if first and call is not None:
            if call.request_done:  # answered or not, the id is taken: report and start over
                out.append(
                    self._violation(
                        ts,
                        Violation.CALL_ID_REUSED,
                        f"call_id {call_id} reused while in flight",
                        call_id,
                        src,
                    )
                )
            out.append(self.calls.pop(call_id).record)
            call = None
        if call is None:
            if not first and not self.had_gap and self.saw_bind:
                out.append(
                    self._violation(
                        ts,
                        Violation.ORPHAN_FRAGMENT,
                        f"a continuation of call {call_id} with no first fragment",
                        call_id,
                        src,
                    )
                )
            syntax = self.contexts.get(context_id) or self.proposed.get(context_id)
            if syntax is None and self.saw_bind and not self.had_gap:
                out.append(
                    self._violation(
                        ts,
                        Violation.UNKNOWN_CONTEXT,
                        f"context {context_id} was never bound",
                        call_id,
                        src,
                    )
                )
            if auth is not None:
                self.auth.type, self.auth.level = auth.auth_type, auth.auth_level
            record = CallRecord(
                **self._ends(ts),
                call_id=call_id,
                context_id=context_id,
                opnum=opnum,
                interface=syntax.uuid if syntax else None,
                version=syntax.version if syntax else None,
                object=obj,
                auth=self._auth_copy(),
            )
            call = _Call(record)
            while len(self.calls) >= MAX_CALLS:
                _, old = self.calls.popitem(last=False)
                out.append(old.record)
                out.append(
                    self._violation(
                        ts,
                        Violation.TOO_MANY_CALLS,
                        f"more than {MAX_CALLS} calls in flight",
                        old.record.call_id,
                        src,
                    )
                )
            self.calls[call_id] = call
        elif call.request_done:
            out.append(
                self._violation(
                    ts,
                    Violation.CALL_ID_REUSED,
                    f"call {call_id} continued after its last fragment",
                    call_id,
                    src,
                )
            )
            return
        elif opnum != call.record.opnum or context_id != call.record.context_id:
            out.append(
                self._violation(
                    ts,
                    Violation.FRAGMENT_CHANGED,
                    f"call {call_id} changed its opnum or context",
                    call_id,
                    src,
                )
            )
        rec = call.record
        if first:
            rec.alloc_hint = alloc_hint
        elif call.last_hint and alloc_hint > call.last_hint:
            rec.alloc_hint_grew = True  # the stub left to come grew: what no sender means
        call.last_hint = alloc_hint
        rec.request_fragments += 1
        rec.request_octets += len(stub)
        if len(rec.stub) < MAX_STUB_KEPT:
            rec.stub += stub[: MAX_STUB_KEPT - len(rec.stub)]
        call.last_ts = ts
        if flags & PFC.LAST_FRAG:
            call.request_done = True

    def _answer(
        self, ts: float, call_id: int, flags: int, context_id: int, stub: bytes, fault: int | None,
        out: list[Record],
    ) -> None:  # fmt: skip
        """A response fragment, or a fault (``fault``: its status), answering a call (C706
        12.6.4.10, 12.6.4.7)."""
        call = self.calls.get(call_id)
        if call is None and fault is not None and call_id in self.pending_binds:
            # a fault answering a bind (C706 12.6.4.7 allows it before the association exists)
            pending = self.pending_binds.pop(call_id)
            out.extend(self._bind_records(call_id, pending, None, "fault", fault))
            return
        if call is None:  # the request was before the capture began (or in a gap)
            syntax = self.contexts.get(context_id)
            record = CallRecord(
                **self._ends(ts),
                call_id=call_id,
                context_id=context_id,
                opnum=None,
                interface=syntax.uuid if syntax else None,
                version=syntax.version if syntax else None,
                auth=self._auth_copy(),
            )
            call = _Call(record, request_done=True, last_ts=ts)
            if len(self.calls) >= MAX_CALLS:
                out.append(self.calls.popitem(last=False)[1].record)
            self.calls[call_id] = call
        rec = call.record
        rec.response_fragments += 1
        rec.response_octets += len(stub)
        if len(rec.response_stub) < MAX_STUB_KEPT:
            rec.response_stub += stub[: MAX_STUB_KEPT - len(rec.response_stub)]
        if fault is not None:
            rec.outcome, rec.fault_status = "failure", fault
        done = fault is not None or bool(flags & PFC.LAST_FRAG)
        if done:
            if rec.outcome == "unknown":
                rec.outcome = "success"
            if rec.request_fragments:
                rec.rtt = max(0.0, ts - rec.ts)
            if not call.request_done:
                self.refused[call_id] = None
                if len(self.refused) > MAX_REFUSED:
                    self.refused.popitem(last=False)
            del self.calls[call_id]
            out.append(rec)

    # --- helpers ---------------------------------------------------------------------------------

    def _ends(self, ts: float) -> _Ends:
        client = self.client or self.a
        server = self.b if client == self.a else self.a
        return {
            "ts": ts,
            "uid": self.uid,
            "client_ip": client.ip,
            "client_port": client.port,
            "server_ip": server.ip,
            "server_port": server.port,
            "gap": self.had_gap,
            "partial": not self.saw_syn and not self.saw_bind,
            "named_pipe": self.named_pipe,
        }

    def _auth_copy(self) -> AuthInfo:
        a = self.auth
        return AuthInfo(a.type, a.level, a.user, a.domain, a.workstation, a.anonymous)

    def _violation(
        self, ts: float, kind: Violation, reason: str, call_id: int | None, src: Endpoint
    ) -> ViolationRecord:
        self.violations += 1
        return ViolationRecord(
            **self._ends(ts),
            kind=kind,
            reason=reason,
            call_id=call_id,
            from_client=src == (self.client or self.a),
        )
