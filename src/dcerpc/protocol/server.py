"""The server side of one connection-oriented association, without I/O (after h11 / h2).

Theory of operation. The adapter feeds received octets to :meth:`ServerAssociation.receive_data`,
drains :meth:`events` and acts on them (runs calls), answers through :meth:`respond` / :meth:`fault`,
and writes :meth:`data_to_send` to the transport. When an event is :class:`Closing` it flushes and
closes. Nothing here reads a clock or a socket.

States (C706 12.4, as data in ``_ALLOWED``):

    AWAIT_BIND --bind--> OPEN --(alter_context, request, co_cancel, orphaned, auth3)--> OPEN
    any --protocol error--> CLOSED

Rules and what breaking them gets (each also reported as a :class:`ProtocolViolation`):
- a malformed or unknown PDU: bind_nak before a bind, fault nca_s_proto_error after, then close;
- a second bind, or alter_context / request before a bind: bind_nak or fault, then close;
- a request on a context never accepted: fault nca_s_unk_if (the call did not execute);
- a fragment larger than negotiated, a call larger than ``max_call_size``, more octets buffered than
  ``max_buffered``: fault, then close;
- more outstanding calls than ``max_outstanding_calls``: fault nca_s_server_too_busy;
- a fragment continuing a call that was never started, or a call_id reused while in progress:
  fault nca_s_proto_error, then close.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from ..pdu import constants as const
from ..pdu.co import (
    AlterContext,
    AlterContextResp,
    Auth3,
    Bind,
    BindAck,
    BindNak,
    CoCancel,
    ContextElement,
    ContextResultItem,
    Fault,
    Orphaned,
    Pdu,
    Request,
    Response,
    parse,
)
from ..pdu.constants import PFC, ContextResult, ProviderReason, PType, RejectReason
from ..pdu.header import HEADER_SIZE, PduError, frame_length
from ..pdu.syntax import SyntaxId
from .events import (
    BindAccepted,
    CallCancelled,
    CallOrphaned,
    CallReceived,
    Closing,
    Event,
    ProtocolViolation,
)
from .groups import Group, GroupTable
from .limits import MIN_FRAGMENT, Limits

__all__ = ["InterfaceMatcher", "ServerAssociation", "State"]

InterfaceMatcher = Callable[[SyntaxId], SyntaxId | None]
"""Given a proposed abstract syntax, the served interface it binds to (None: not served)."""

REQUEST_HEADER: Final = 24  # common header + alloc_hint, p_cont_id, opnum
BIND_NAK_VERSIONS: Final = ((5, 0),)


class State(enum.Enum):
    AWAIT_BIND = "await_bind"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(slots=True)
class _Partial:
    """A request being reassembled."""

    context_id: int
    opnum: int
    object: uuid.UUID | None
    little_endian: bool
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0


class ServerAssociation:
    """One connection's association, server role.

    Args:
        match: maps a proposed abstract syntax to a served interface.
        groups: the server's association groups (shared by all its connections).
        limits: bounds on what the peer may make us hold.
        secondary_address: the port_spec for bind_ack (e.g. b"49152" for TCP, b"" for none).
    """

    def __init__(
        self,
        match: InterfaceMatcher,
        groups: GroupTable,
        limits: Limits | None = None,
        secondary_address: bytes = b"",
    ) -> None:
        self._match = match
        self._groups = groups
        self.limits = limits or Limits()
        self._sec_addr = secondary_address
        self.state = State.AWAIT_BIND
        self.group: Group | None = None
        self.contexts: dict[int, SyntaxId] = {}
        self.max_xmit_frag = MIN_FRAGMENT  # what we may send
        self.max_recv_frag = self.limits.max_fragment  # what we accept
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._events: list[Event] = []
        self._partial: dict[int, _Partial] = {}
        self._buffered = 0
        self.outstanding: set[int] = set()
        self._orphaned: set[int] = set()
        self._little = True  # byte order of the fragment being handled
        self.stats = {"pdus_in": 0, "pdus_out": 0, "calls_in": 0}

    # --- adapter interface ---------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """False once the association has closed (or decided to)."""
        return self.state is not State.CLOSED

    def receive_data(self, data: bytes) -> None:
        """Buffer received octets and process every whole fragment among them."""
        self._buf += data
        while self.alive:
            if len(self._buf) >= 2 and (self._buf[0] != 5 or self._buf[1] > 1):
                # Not DCE/RPC v5 at all (an HTTP request, a scanner's probe): answer at once rather
                # than wait for a frag_length that means nothing.
                self._fatal_raw(f"unsupported RPC version {self._buf[0]}.{self._buf[1]}")
                return
            if len(self._buf) >= 5 and self._buf[4] & 0xF0 not in (0x00, 0x10):
                # frag_length cannot even be read without a known integer order
                self._fatal_raw(f"unknown integer representation 0x{self._buf[4] >> 4:x}")
                return
            length = frame_length(self._buf)
            if length is None:
                return
            limit = 0xFFFF if self.state is State.AWAIT_BIND else self.max_recv_frag
            if length < HEADER_SIZE or length > limit:
                self._fatal_raw(f"frag_length {length} is outside {HEADER_SIZE}..{limit}")
                return
            if len(self._buf) < length:
                return
            fragment = bytes(self._buf[:length])
            del self._buf[:length]
            self.stats["pdus_in"] += 1
            self._fragment(fragment)

    def events(self) -> list[Event]:
        """Events since the last call, in order."""
        out, self._events = self._events, []
        return out

    def data_to_send(self) -> bytes:
        """Octets to write, in order (one write keeps a bind_ack in one segment, as impacket needs)."""
        if not self._out:
            return b""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def respond(self, call_id: int, stub: bytes, context_id: int = 0) -> None:
        """Answer a call with its [out] stub, fragmented to the peer's max_recv_frag."""
        if not self._finish(call_id):
            return
        room = (self.max_xmit_frag - REQUEST_HEADER) & ~7  # stub octets per fragment, 8-aligned
        total = len(stub)
        offset = 0
        while True:
            chunk = stub[offset : offset + room]
            flags = (PFC.FIRST_FRAG if offset == 0 else 0) | (
                PFC.LAST_FRAG if offset + len(chunk) >= total else 0
            )
            self._send(
                Response(
                    call_id=call_id, flags=flags, alloc_hint=total - offset, context_id=context_id, stub=chunk
                )
            )
            offset += len(chunk)
            if offset >= total:
                break

    def fault(self, call_id: int, status: int, context_id: int = 0, did_not_execute: bool = False) -> None:
        """Answer a call with a fault PDU carrying ``status`` (MS-RPCE 2.2.2.8: no stub)."""
        if not self._finish(call_id):
            return
        self._send_fault(call_id, status, context_id, did_not_execute)

    def connection_lost(self) -> None:
        """The transport closed: leave the association group (the last one out runs down handles)."""
        self.state = State.CLOSED
        self._partial.clear()
        self._buffered = 0
        if self.group is not None:
            self._groups.leave(self.group)
            self.group = None

    # --- internals -----------------------------------------------------------------------------

    def _finish(self, call_id: int) -> bool:
        if call_id in self._orphaned:
            self._orphaned.discard(call_id)
            self.outstanding.discard(call_id)
            return False
        if call_id not in self.outstanding or self.state is State.CLOSED:
            return False
        self.outstanding.discard(call_id)
        return True

    def _send(self, pdu: Pdu) -> None:
        self._out.append(pdu.encode())
        self.stats["pdus_out"] += 1

    def _send_fault(
        self, call_id: int, status: int, context_id: int = 0, did_not_execute: bool = False
    ) -> None:
        flags = PFC.FIRST_FRAG | PFC.LAST_FRAG | (PFC.DID_NOT_EXECUTE if did_not_execute else 0)
        self._send(Fault(call_id=call_id, flags=flags, context_id=context_id, status=status))

    def _violation(self, reason: str, call_id: int = 0, fatal: bool = False) -> None:
        self._events.append(ProtocolViolation(reason=reason, call_id=call_id, fatal=fatal))

    def _close(self, reason: str) -> None:
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        self._partial.clear()
        self._buffered = 0
        self._events.append(Closing(reason=reason))

    def _fatal(self, reason: str, call_id: int, ptype: int) -> None:
        """A rule broken badly enough to end the association; answer as C706 prescribes first."""
        self._violation(reason, call_id, fatal=True)
        if self.state is State.AWAIT_BIND or ptype in (PType.BIND, PType.ALTER_CONTEXT):
            reject = RejectReason.REASON_NOT_SPECIFIED
            if "version" in reason:
                reject = RejectReason.PROTOCOL_VERSION_NOT_SUPPORTED
            self._send(BindNak(call_id=call_id, reason=reject, versions=BIND_NAK_VERSIONS))
        else:
            self._send_fault(call_id, const.NCA_S_PROTO_ERROR, did_not_execute=True)
        self._close(reason)

    def _fatal_raw(self, reason: str) -> None:
        ptype = self._buf[2] if len(self._buf) > 2 else -1
        call_id = int.from_bytes(self._buf[12:16], "little") if len(self._buf) >= 16 else 0
        self._fatal(reason, call_id, ptype)

    def _fragment(self, fragment: bytes) -> None:
        try:
            parsed = parse(fragment)
        except PduError as e:
            self._fatal(e.reason, e.call_id, e.ptype)
            return
        pdu = parsed.pdu
        self._little = parsed.header.little_endian
        handler = _HANDLERS.get(type(pdu))
        if handler is None:
            self._fatal(f"a client does not send {pdu.ptype.name.lower()} PDUs", pdu.call_id, pdu.ptype)
            return
        handler(self, pdu)

    # bind / alter_context ------------------------------------------------------------------------

    def _on_bind(self, pdu: Pdu) -> None:
        assert isinstance(pdu, Bind)
        if self.state is not State.AWAIT_BIND:
            self._fatal("bind on an association that is already bound", pdu.call_id, PType.BIND)
            return
        if pdu.auth is not None:
            # MS-RPCE 3.3.1.5.2.1: an unknown authentication type is refused with reason 8
            self._violation(f"bind requests auth type {pdu.auth.auth_type}, none is configured", pdu.call_id)
            self._nak(pdu.call_id, RejectReason.AUTHENTICATION_TYPE_NOT_RECOGNIZED)
            return
        if pdu.assoc_group_id:
            group = self._groups.join(pdu.assoc_group_id)
            if group is None:
                self._violation(
                    f"bind names unknown association group 0x{pdu.assoc_group_id:08x}", pdu.call_id
                )
                self._nak(pdu.call_id, RejectReason.REASON_NOT_SPECIFIED)
                return
        else:
            group = self._groups.create()
        self.group = group
        # Fragment sizes: what each side may send is bounded by what the other receives.
        self.max_xmit_frag = max(MIN_FRAGMENT, min(pdu.max_recv_frag, self.limits.max_fragment))
        self.max_recv_frag = max(MIN_FRAGMENT, min(pdu.max_xmit_frag, self.limits.max_fragment))
        results, accepted, rejected = self._negotiate(pdu.contexts)
        flags = PFC.FIRST_FRAG | PFC.LAST_FRAG | (pdu.flags & (PFC.SUPPORT_HEADER_SIGN | PFC.CONC_MPX))
        self._send(
            BindAck(
                call_id=pdu.call_id,
                flags=flags,
                max_xmit_frag=self.max_xmit_frag,
                max_recv_frag=self.max_recv_frag,
                assoc_group_id=group.id,
                sec_addr=self._sec_addr,
                results=results,
            )
        )
        self.state = State.OPEN
        self._events.append(
            BindAccepted(
                accepted=accepted,
                rejected=rejected,
                assoc_group_id=group.id,
                max_xmit_frag=self.max_xmit_frag,
                max_recv_frag=self.max_recv_frag,
            )
        )

    def _nak(self, call_id: int, reason: RejectReason) -> None:
        self._send(BindNak(call_id=call_id, reason=reason, versions=BIND_NAK_VERSIONS))
        self._close(f"bind refused: {reason.name.lower()}")

    def _on_alter(self, pdu: Pdu) -> None:
        assert isinstance(pdu, AlterContext)
        if self.state is not State.OPEN:
            self._fatal("alter_context before bind", pdu.call_id, PType.ALTER_CONTEXT)
            return
        if pdu.auth is not None:
            self._violation(
                f"alter_context carries auth type {pdu.auth.auth_type}, none is configured", pdu.call_id
            )
            self._send_fault(pdu.call_id, const.RPC_S_ACCESS_DENIED, did_not_execute=True)
            self._close("authentication on alter_context without a security provider")
            return
        results, accepted, rejected = self._negotiate(pdu.contexts)
        assert self.group is not None
        self._send(
            AlterContextResp(
                call_id=pdu.call_id,
                max_xmit_frag=self.max_xmit_frag,
                max_recv_frag=self.max_recv_frag,
                assoc_group_id=self.group.id,
                results=results,
            )
        )
        self._events.append(
            BindAccepted(
                accepted=accepted,
                rejected=rejected,
                assoc_group_id=self.group.id,
                max_xmit_frag=self.max_xmit_frag,
                max_recv_frag=self.max_recv_frag,
            )
        )

    def _negotiate(
        self, proposed: tuple[ContextElement, ...]
    ) -> tuple[tuple[ContextResultItem, ...], dict[int, SyntaxId], dict[int, int]]:
        """One result per proposed context, in order (C706 12.6.3.1, MS-RPCE 3.3.1.5.3)."""
        results: list[ContextResultItem] = []
        accepted: dict[int, SyntaxId] = {}
        rejected: dict[int, int] = {}
        null = const.NULL_SYNTAX
        for elem in proposed:
            btfn = next(
                (ts for ts in elem.transfer_syntaxes if ts.uuid.bytes_le[:8] == const.BTFN_PREFIX), None
            )
            if btfn is not None:
                # Bind-time feature negotiation (MS-RPCE 3.3.1.5.3): acknowledge the features we
                # offer; the flags sit in the low octets of the syntax's last eight.
                offered = int.from_bytes(btfn.uuid.bytes_le[8:10], "little")
                ours = offered & const.BTFN_KEEP_CONNECTION_ON_ORPHAN
                results.append(ContextResultItem(ContextResult.NEGOTIATE_ACK, ours, null))
                continue
            served = self._match(elem.abstract_syntax)
            known = self.contexts.get(elem.context_id)
            if served is None:
                reason = ProviderReason.ABSTRACT_SYNTAX_NOT_SUPPORTED
            elif const.NDR20 not in elem.transfer_syntaxes:
                reason = ProviderReason.PROPOSED_TRANSFER_SYNTAXES_NOT_SUPPORTED
            elif known is not None and known != served:
                reason = ProviderReason.REASON_NOT_SPECIFIED  # a context id cannot change interface
            elif known is None and len(self.contexts) >= self.limits.max_contexts:
                reason = ProviderReason.LOCAL_LIMIT_EXCEEDED
            else:
                self.contexts[elem.context_id] = served
                accepted[elem.context_id] = served
                results.append(ContextResultItem(ContextResult.ACCEPTANCE, 0, const.NDR20))
                continue
            rejected[elem.context_id] = reason
            results.append(ContextResultItem(ContextResult.PROVIDER_REJECTION, reason, null))
        return tuple(results), accepted, rejected

    # calls ------------------------------------------------------------------------------------

    def _on_request(self, pdu: Pdu) -> None:
        assert isinstance(pdu, Request)
        cid = pdu.call_id
        if self.state is not State.OPEN:
            self._fatal("request before bind", cid, PType.REQUEST)
            return
        if pdu.auth is not None:
            self._violation(
                "request carries an auth verifier on an unauthenticated association", cid, fatal=True
            )
            self._send_fault(cid, const.RPC_S_ACCESS_DENIED, pdu.context_id, did_not_execute=True)
            self._close("authentication on a context that was never negotiated")
            return
        first = bool(pdu.flags & PFC.FIRST_FRAG)
        last = bool(pdu.flags & PFC.LAST_FRAG)
        partial = self._partial.get(cid)
        if first:
            if partial is not None or cid in self.outstanding:
                self._fatal(f"call_id {cid} reused while that call is in progress", cid, PType.REQUEST)
                return
            if pdu.context_id not in self.contexts:
                self._violation(f"request on presentation context {pdu.context_id}, never accepted", cid)
                self._send_fault(cid, const.NCA_S_UNK_IF, pdu.context_id, did_not_execute=True)
                if not last:
                    self._close("multi-fragment request on an unknown context")
                return
            if len(self.outstanding) + len(self._partial) >= self.limits.max_outstanding_calls:
                self._violation(f"more than {self.limits.max_outstanding_calls} outstanding calls", cid)
                self._send_fault(cid, const.NCA_S_SERVER_TOO_BUSY, pdu.context_id, did_not_execute=True)
                if not last:
                    self._close("too many outstanding calls")
                return
            little = self._little
            partial = _Partial(pdu.context_id, pdu.opnum, pdu.object, little)
            self._partial[cid] = partial
        elif partial is None:
            self._fatal(f"fragment for call_id {cid}, which has no first fragment", cid, PType.REQUEST)
            return
        partial.chunks.append(pdu.stub)
        partial.size += len(pdu.stub)
        self._buffered += len(pdu.stub)
        if partial.size > self.limits.max_call_size or self._buffered > self.limits.max_buffered:
            self._partial.pop(cid, None)
            self._violation(f"call {cid} exceeds {self.limits.max_call_size} octets", cid, fatal=True)
            self._send_fault(
                cid, const.NCA_S_FAULT_REMOTE_NO_MEMORY, partial.context_id, did_not_execute=True
            )
            self._close("request too large")
            return
        if not last:
            return
        del self._partial[cid]
        self._buffered -= partial.size
        self.outstanding.add(cid)
        self.stats["calls_in"] += 1
        stub = partial.chunks[0] if len(partial.chunks) == 1 else b"".join(partial.chunks)
        self._events.append(
            CallReceived(
                call_id=cid,
                context_id=partial.context_id,
                interface=self.contexts[partial.context_id],
                opnum=partial.opnum,
                object=partial.object,
                stub=stub,
                little_endian=partial.little_endian,
            )
        )

    def _on_cancel(self, pdu: Pdu) -> None:
        cid = pdu.call_id
        if self._partial.pop(cid, None) is not None:
            return  # never dispatched: nothing to answer (C706 12.4.2)
        if cid in self.outstanding:
            self._events.append(CallCancelled(call_id=cid))

    def _on_orphaned(self, pdu: Pdu) -> None:
        cid = pdu.call_id
        partial = self._partial.pop(cid, None)
        if partial is not None:
            self._buffered -= partial.size
            return
        if cid in self.outstanding:
            self._orphaned.add(cid)
            self._events.append(CallOrphaned(call_id=cid))

    def _on_auth3(self, pdu: Pdu) -> None:
        self._fatal("auth3 without an authentication in progress", pdu.call_id, PType.AUTH3)


_HANDLERS: dict[type, Callable[[ServerAssociation, Pdu], None]] = {
    Bind: ServerAssociation._on_bind,
    AlterContext: ServerAssociation._on_alter,
    Request: ServerAssociation._on_request,
    CoCancel: ServerAssociation._on_cancel,
    Orphaned: ServerAssociation._on_orphaned,
    Auth3: ServerAssociation._on_auth3,
}
