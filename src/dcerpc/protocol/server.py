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
import struct
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Final

from ..auth.base import AuthError, SecurityProvider
from ..ndr.pieces import EncodedStub, runs
from ..pdu import constants as const
from ..pdu.co import (
    AlterContext,
    AlterContextResp,
    Auth3,
    AuthVerifier,
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
    parse,
)
from ..pdu.constants import PFC, AuthLevel, ContextResult, ProviderReason, PType, RejectReason
from ..pdu.header import DREP_LE, HEADER_SIZE, PduError, frame_length
from ..pdu.syntax import SyntaxId
from . import verification
from .events import (
    BindAccepted,
    CallCancelled,
    CallOrphaned,
    CallReceived,
    Closing,
    Event,
    ProtocolViolation,
)
from .framing import DIRECT_MIN, DREP_LE_INT, PLAIN_HEAD, Inbox, Receiver, continuation, fragment_at, room_for
from .groups import Group, GroupTable
from .limits import MIN_FRAGMENT, Limits
from .outbox import Fragment, Outbox
from .security import SEC_TRAILER, AuthState, check_pad, protect, unprotect

__all__ = ["STATS", "InterfaceMatcher", "ServerAssociation", "State", "new_stats"]

InterfaceMatcher = Callable[[SyntaxId], SyntaxId | None]
"""Given a proposed abstract syntax, the served interface it binds to (None: not served)."""

_REQUEST_V5: Final = b"\x05\x00\x00"  # version 5.0, a request
REQUEST_HEADER: Final = 24  # common header + alloc_hint, p_cont_id, opnum (a response's is as long)
_RESPONSE: Final = struct.Struct("<BBBB4sHHIIHBB")  # header + response body header (C706 12.6.4.10)
_REQUEST_BODY: Final = struct.Struct("<IIHH")  # call_id, then alloc_hint, p_cont_id, opnum (12.6.4.9)
BIND_NAK_VERSIONS: Final = ((5, 0),)


STATS: Final = ("calls_in", "calls_out", "pdus_in", "pdus_out", "faults", "verification_trailers")
"""The counters a server keeps (C706 mgmt's inq_stats reports the first four)."""


def new_stats() -> dict[str, int]:
    """A server's counters, each at 0: a plain dict with every name present, since a Counter's
    increment costs three times a dict's (100 ns against 37) and three are made per call."""
    return dict.fromkeys(STATS, 0)


class State(enum.Enum):
    AWAIT_BIND = "await_bind"
    OPEN = "open"
    CLOSED = "closed"


# An enum member is a descriptor on Python 3.11 (65 ns a look-up): the per-PDU paths use these.
_AWAIT_BIND: Final = State.AWAIT_BIND
_OPEN: Final = State.OPEN
_CLOSED: Final = State.CLOSED


@dataclass(slots=True)
class _Partial:
    """A request being reassembled."""

    context_id: int
    opnum: int
    object: uuid.UUID | None
    little_endian: bool
    auth: AuthState | None = None
    drep: bytes = b"\x10\x00\x00\x00"
    data: bytearray = field(default_factory=bytearray)  # the stub so far, then room for the rest
    size: int = 0
    last: bool = False  # the fragment whose stub is arriving directly is the call's last


class ServerAssociation(Receiver):
    """One connection's association, server role.

    Args:
        match: maps a proposed abstract syntax to a served interface.
        groups: the server's association groups (shared by all its connections).
        limits: bounds on what the peer may make us hold.
        secondary_address: the port_spec for bind_ack (e.g. b"49152" for TCP, b"" for none).
        inbox: where reads go (a new one if not given).
    """

    def __init__(
        self,
        match: InterfaceMatcher,
        groups: GroupTable,
        limits: Limits | None = None,
        secondary_address: bytes = b"",
        security: dict[int, SecurityProvider] | None = None,
        stats: MutableMapping[str, int] | None = None,
        inbox: Inbox | None = None,
    ) -> None:
        self._match = match
        self._providers = security or {}
        self.auth: dict[int, AuthState] = {}  # by auth_context_id
        self._call_auth: dict[int, AuthState] = {}  # call_id -> the context that protects it
        self._groups = groups
        self.limits = limits or Limits()
        self._sec_addr = secondary_address
        self.state = State.AWAIT_BIND
        self.group: Group | None = None
        self.contexts: dict[int, SyntaxId] = {}
        self._abstract: dict[int, SyntaxId] = {}  # context id -> the abstract syntax as proposed
        self._header_sign = False  # PFC_SUPPORT_HEADER_SIGN agreed in an authenticated bind
        self.max_xmit_frag = MIN_FRAGMENT  # what we may send
        self.max_recv_frag = self.limits.max_fragment  # what we accept
        # received octets, and the start of a fragment yet to end (an adapter may make it first,
        # to give its transport the inbox's get_buffer before the association exists)
        self.inbox = inbox or Inbox()
        self.outbox = Outbox()  # what to send; adapters may take from it directly
        self._events: list[Event] = []
        self._partial: dict[int, _Partial] = {}
        self._buffered = 0  # octets reserved for calls being reassembled, all together
        self.outstanding: set[int] = set()
        self._orphaned: set[int] = set()
        self._little = True  # byte order of the fragment being handled
        self._raw = b""  # the fragment being handled, as received (signatures cover it)
        self._stub_start = 0
        self._direct_call = 0  # the call whose fragment's stub is arriving in its own buffer
        self._direct_partial: _Partial | None = None  # and its record
        # Counters (pdus_in, pdus_out, calls_in); a server passes one mapping for all its connections.
        self.stats: MutableMapping[str, int] = stats if stats is not None else new_stats()

    # --- adapter interface ---------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Octets held for calls still being reassembled (their buffers' room, all together)."""
        return self._buffered

    @property
    def alive(self) -> bool:
        """False once the association has closed (or decided to)."""
        return self.state is not _CLOSED

    def _fragments(self, buf: bytearray, pos: int, end: int) -> tuple[int, int] | None:
        length = HEADER_SIZE
        while self.state is not _CLOSED and end - pos >= 2:
            plain = False
            if end - pos >= REQUEST_HEADER:
                # A request in little-endian ASCII IEEE with no verifier, on an open,
                # unauthenticated association: whole and alone (the common case), it is taken here
                # without building a PDU, about half the cost of the general path; long, its stub
                # may go straight to its call's buffer. Anything else about it, right or wrong, is
                # the general path's below.
                vers, minor, ptype, flags, drep, length, auth_length, call_id, _, context_id, opnum = (
                    PLAIN_HEAD.unpack_from(buf, pos)
                )
                plain = (
                    vers == 5
                    and minor <= 1
                    and ptype == 0
                    and drep == DREP_LE_INT
                    and auth_length == 0
                    and length >= REQUEST_HEADER
                    and self.state is _OPEN
                    and not self.auth
                )
                if (
                    plain
                    and flags == 3  # first and last fragment, no object UUID
                    and length <= end - pos  # here
                    and length <= self.max_recv_frag
                    and self._may_start(call_id, context_id)
                    and length - REQUEST_HEADER <= self.limits.max_call_size
                ):
                    stats = self.stats
                    stats["pdus_in"] += 1
                    stats["calls_in"] += 1
                    self.outstanding.add(call_id)
                    stub = bytes(buf[pos + REQUEST_HEADER : pos + length])
                    self._events.append(
                        CallReceived(call_id, context_id, self.contexts[context_id], opnum, None, stub, True)
                    )
                    pos += length
                    continue
            if buf[pos] != 5 or buf[pos + 1] > 1:
                # Not DCE/RPC v5 at all (an HTTP request, a scanner's probe): answer at once rather
                # than wait for a frag_length that means nothing.
                self._fatal_raw(f"unsupported RPC version {buf[pos]}.{buf[pos + 1]}", buf[pos : pos + 16])
                break
            if end - pos >= 5 and buf[pos + 4] & 0xE0:
                # frag_length cannot even be read without a known integer order (big or little)
                self._fatal_raw(
                    f"unknown integer representation 0x{buf[pos + 4] >> 4:x}", buf[pos : pos + 16]
                )
                break
            got = frame_length(buf, pos, end)
            if got is None:
                length = HEADER_SIZE
                break
            length = got
            limit = 0xFFFF if self.state is _AWAIT_BIND else self.max_recv_frag
            if length < HEADER_SIZE or length > limit:
                self._fatal_raw(
                    f"frag_length {length} is outside {HEADER_SIZE}..{limit}", buf[pos : pos + 16]
                )
                break
            if end - pos < length:  # not whole
                if (
                    length >= DIRECT_MIN  # a long fragment
                    and plain
                    and not flags & PFC.OBJECT_UUID
                    and self._direct_fragment(buf, pos, length, end)  # and nothing else in the way
                ):
                    return None
                break
            self.stats["pdus_in"] += 1
            fragment = fragment_at(buf, pos, length)
            pos += length
            self._fragment(fragment)
        if self.state is _CLOSED:
            return end, 0
        return pos, length

    def _may_start(self, call_id: int, context_id: int) -> bool:
        """A call may start on this context with this call_id (what the fast paths check before
        taking a first fragment; the general path answers each way this fails)."""
        return (
            context_id in self.contexts
            and call_id not in self.outstanding
            and call_id not in self._partial
            and len(self.outstanding) + len(self._partial) < self.limits.max_outstanding_calls
        )

    def events(self) -> list[Event]:
        """Events since the last call, in order."""
        out, self._events = self._events, []
        return out

    def data_to_send(self, limit: int | None = None) -> bytes:
        """Octets to write, in order (one write keeps a bind_ack in one segment, as impacket needs).

        ``limit`` takes about that many octets of a long response; :attr:`has_output` tells whether
        more is waiting.
        """
        return self.outbox.octets(limit)

    @property
    def has_output(self) -> bool:
        """Octets (or fragments still to make) are waiting for :meth:`data_to_send`."""
        return bool(self.outbox)

    def respond(self, call_id: int, stub: EncodedStub, context_id: int = 0) -> None:
        """Answer a call with its [out] stub, fragmented to the peer's max_recv_frag."""
        if not self._finish(call_id):
            return
        auth = self._call_auth.pop(call_id, None)
        protected = auth is not None and auth.protects
        if not protected and len(stub) <= self.max_xmit_frag - REQUEST_HEADER:
            # the common case, one unprotected fragment: packed directly
            n = len(stub)
            # never Pieces: a stub this short is contiguous (pieces.SPLICE_MIN)
            self.outbox.append(
                _RESPONSE.pack(5, 0, 2, 3, DREP_LE, REQUEST_HEADER + n, 0, call_id, n, context_id, 0, 0)  # type: ignore[operator]
                + stub
            )
            self.stats["pdus_out"] += 1
            return
        self.outbox.append_lazily(self._response_fragments(call_id, stub, context_id, auth))

    def _response_fragments(
        self, call_id: int, stub: EncodedStub, context_id: int, auth: AuthState | None
    ) -> Iterator[Fragment]:
        """The fragments of one response, made (and signed or sealed) as they are sent."""
        protected = auth is not None and auth.protects
        if protected:
            assert auth is not None
            room = (self.max_xmit_frag - REQUEST_HEADER - SEC_TRAILER - auth.signature_size()) & ~15
        else:
            room = (self.max_xmit_frag - REQUEST_HEADER) & ~7  # stub octets per fragment, 8-aligned
        total = len(stub)
        offset = 0
        for n, run in runs(stub, room):
            flags = (PFC.FIRST_FRAG if offset == 0 else 0) | (PFC.LAST_FRAG if offset + n >= total else 0)
            self.stats["pdus_out"] += 1
            if protected:
                assert auth is not None
                body = struct.pack("<IHBB", total - offset, context_id, 0, 0)
                yield protect(auth, PType.RESPONSE, flags, call_id, body, b"".join(run))
            else:
                header = _RESPONSE.pack(
                    5, 0, 2, flags, DREP_LE, REQUEST_HEADER + n, 0, call_id, total - offset, context_id, 0, 0
                )
                yield (header, *run)  # the stub itself goes out, not a copy
            offset += n

    def fault(self, call_id: int, status: int, context_id: int = 0, did_not_execute: bool = False) -> None:
        """Answer a call with a fault PDU carrying ``status`` (MS-RPCE 2.2.2.8: no stub)."""
        if not self._finish(call_id):
            return
        self._call_auth.pop(call_id, None)
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
        if call_id not in self.outstanding or self.state is _CLOSED:
            return False
        self.outstanding.discard(call_id)
        return True

    def _send(self, pdu: Pdu) -> None:
        self.outbox.append(pdu.encode())
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

    def _fatal_raw(self, reason: str, head: bytes | bytearray) -> None:
        """A fatal error found in the first octets of a fragment (``head``: up to 16 of them)."""
        ptype = head[2] if len(head) > 2 else -1
        call_id = int.from_bytes(head[12:16], "little") if len(head) >= 16 else 0
        self._fatal(reason, call_id, ptype)

    def _fragment(self, fragment: bytes) -> None:
        try:
            parsed = parse(fragment)
        except PduError as e:
            self._fatal(e.reason, e.call_id, e.ptype)
            return
        pdu = parsed.pdu
        self._little = parsed.header.little_endian
        self._raw = fragment
        self._body_end = parsed.body_end
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
        out_auth: AuthVerifier | None = None
        if pdu.auth is not None:
            self._header_sign = bool(pdu.flags & PFC.SUPPORT_HEADER_SIGN)
            got = self._start_auth(pdu.call_id, pdu.auth, self._header_sign)
            if got is None:
                return
            out_auth = got
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
                auth=out_auth,
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

    def _start_auth(self, call_id: int, verifier: AuthVerifier, header_sign: bool) -> AuthVerifier | None:
        """First leg of a security context (bind or alter_context); the verifier to answer with.

        None when the bind was refused (the bind_nak is queued).
        """
        provider = self._providers.get(verifier.auth_type)
        if provider is None:
            # MS-RPCE 3.3.1.5.2.1: an unknown authentication type is refused with reason 8
            self._violation(f"bind requests auth type {verifier.auth_type}, which is not configured", call_id)
            self._nak(call_id, RejectReason.AUTHENTICATION_TYPE_NOT_RECOGNIZED)
            return None
        if not AuthLevel.CONNECT <= verifier.auth_level <= AuthLevel.PRIVACY:
            self._violation(f"bind requests auth level {verifier.auth_level}", call_id)
            self._nak(call_id, RejectReason.REASON_NOT_SPECIFIED)
            return None
        if verifier.context_id in self.auth:
            self._violation(f"auth_context_id {verifier.context_id} is already in use", call_id)
            self._nak(call_id, RejectReason.REASON_NOT_SPECIFIED)
            return None
        context = provider.server_context()
        try:
            token = context.step(verifier.value)
        except AuthError as e:
            self._violation(f"authentication refused: {e}", call_id)
            self._nak(call_id, RejectReason.REASON_NOT_SPECIFIED)
            return None
        self.auth[verifier.context_id] = AuthState(
            context, verifier.auth_type, verifier.auth_level, verifier.context_id, header_sign
        )
        return AuthVerifier(
            auth_type=verifier.auth_type,
            auth_level=verifier.auth_level,
            context_id=verifier.context_id,
            value=token or b"",
        )

    def _nak(self, call_id: int, reason: RejectReason) -> None:
        self._send(BindNak(call_id=call_id, reason=reason, versions=BIND_NAK_VERSIONS))
        self._close(f"bind refused: {reason.name.lower()}")

    def _on_alter(self, pdu: Pdu) -> None:
        assert isinstance(pdu, AlterContext)
        if self.state is not State.OPEN:
            self._fatal("alter_context before bind", pdu.call_id, PType.ALTER_CONTEXT)
            return
        out_auth: AuthVerifier | None = None
        if pdu.auth is not None:
            state = self.auth.get(pdu.auth.context_id)
            if state is None:
                # header signing is the connection's, agreed in its bind (MS-RPCE 3.3.1.5.2.2)
                sign = self._header_sign or bool(pdu.flags & PFC.SUPPORT_HEADER_SIGN)
                got = self._start_auth(pdu.call_id, pdu.auth, sign)
                if got is None:
                    return
                out_auth = got
            elif state.context.complete or state.failed:
                self._fatal(
                    "alter_context continues a finished authentication", pdu.call_id, PType.ALTER_CONTEXT
                )
                return
            else:
                try:
                    token = state.context.step(pdu.auth.value)
                except AuthError as e:
                    state.failed = str(e)
                    self._violation(f"authentication refused: {e}", pdu.call_id)
                    self._send_fault(pdu.call_id, const.RPC_S_ACCESS_DENIED, did_not_execute=True)
                    self._close("authentication failed")
                    return
                out_auth = AuthVerifier(
                    auth_type=state.auth_type,
                    auth_level=state.auth_level,
                    context_id=state.context_id,
                    value=token or b"",
                )
        results, accepted, rejected = self._negotiate(pdu.contexts)
        assert self.group is not None
        self._send(
            AlterContextResp(
                call_id=pdu.call_id,
                auth=out_auth,
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
            btfn = next((ts for ts in elem.transfer_syntaxes if ts.uuid.int >> 64 == const.BTFN_HIGH), None)
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
                self._abstract[elem.context_id] = elem.abstract_syntax
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
        auth, stub = self._verified_stub(pdu)
        if stub is None:
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
            partial = _Partial(pdu.context_id, pdu.opnum, pdu.object, self._little, auth, self._raw[4:8])
            if last:  # the whole call in one fragment: its stub as it is
                if len(stub) > self.limits.max_call_size:
                    self._too_large(cid, partial)
                else:
                    self._complete(cid, partial, stub)
                return
            self._partial[cid] = partial
        elif partial is None:
            self._fatal(f"fragment for call_id {cid}, which has no first fragment", cid, PType.REQUEST)
            return
        elif partial.auth is not auth:
            self._deny(cid, pdu.context_id, "fragments of one call use different security contexts")
            return
        n = len(stub)
        if not self._reserve(cid, partial, n, pdu.alloc_hint):
            return
        partial.data[partial.size : partial.size + n] = stub
        partial.size += n
        if last:
            self._reassembled(cid, partial)

    def _reserve(self, cid: int, partial: _Partial, n: int, hint: int) -> bool:
        """Make room for ``n`` more stub octets of a call (False: it was refused and the association
        closes). ``hint`` is the peer's alloc_hint: a long call gets room for all of it early
        (within what framing.room_for trusts and the limits allow), so it is seldom moved."""
        limits = self.limits
        need = partial.size + n
        have = len(partial.data)
        if need <= have:
            return True
        room = room_for(need, have, partial.size + hint, limits.max_call_size)  # hint: what remains
        if need > limits.max_call_size or self._buffered + need - have > limits.max_buffered:
            if self._partial.pop(cid, None) is not None:
                self._buffered -= have
            self._too_large(cid, partial)
            return False
        most = limits.max_buffered - self._buffered + have
        partial.data = self._call_buffer(partial.data, partial.size, min(room, most), most)
        self._buffered += len(partial.data) - have
        return True

    def _too_large(self, cid: int, partial: _Partial) -> None:
        self._violation(f"call {cid} exceeds {self.limits.max_call_size} octets", cid, fatal=True)
        self._send_fault(cid, const.NCA_S_FAULT_REMOTE_NO_MEMORY, partial.context_id, did_not_execute=True)
        self._close("request too large")

    def _direct_fragment(self, buf: bytearray, pos: int, length: int, end: int) -> bool:
        """A long unprotected request fragment whose header has arrived: take its stub from here
        on straight into the call's buffer (False: leave it to the general path, which finds and
        answers whatever is wrong with it)."""
        cid, hint, context_id, opnum = _REQUEST_BODY.unpack_from(buf, pos + 12)
        flags = buf[pos + 3]
        n = length - REQUEST_HEADER
        if flags & PFC.FIRST_FRAG:
            if not self._may_start(cid, context_id):
                return False
            partial = self._partial[cid] = _Partial(context_id, opnum, None, True, None)
        else:
            found = self._partial.get(cid)
            if found is None or found.auth is not None:
                return False
            partial = found
        self.stats["pdus_in"] += 1
        if not self._reserve(cid, partial, n, hint):
            return True  # refused as too large, as the general path would: the association closes
        self.inbox.direct_into(partial.data, partial.size, buf, pos + REQUEST_HEADER, end, n)
        partial.size += n
        partial.last = bool(flags & PFC.LAST_FRAG)
        self._direct_call = cid
        self._direct_partial = partial
        return True

    def _direct_next(self, head: bytearray) -> bool:
        partial = self._direct_partial
        if partial is None or partial.last or self.state is not State.OPEN:
            return False
        cid = self._direct_call
        found = continuation(head, _REQUEST_V5, cid, self.max_recv_frag, PFC.OBJECT_UUID)
        if found is None:
            return False
        flags, length, hint = found
        self.stats["pdus_in"] += 1
        n = length - REQUEST_HEADER
        if not self._reserve(cid, partial, n, hint):
            return True
        self.inbox.direct_into(partial.data, partial.size, head, REQUEST_HEADER, REQUEST_HEADER, n)
        partial.size += n
        partial.last = bool(flags & PFC.LAST_FRAG)
        return True

    def _direct_fragment_done(self) -> None:
        """The stub of a fragment taken by :meth:`_direct_fragment` has all arrived."""
        cid = self._direct_call
        partial = self._partial.get(cid)
        if partial is not None and partial.last and self.state is not State.CLOSED:
            self._reassembled(cid, partial)

    def _reassembled(self, cid: int, partial: _Partial) -> None:
        """The last fragment of a call of several has arrived: its buffer becomes the stub."""
        del self._partial[cid]
        self._buffered -= len(partial.data)
        self._complete(cid, partial, self._call_stub(partial.data, partial.size))

    def _complete(self, cid: int, partial: _Partial, stub: bytes | memoryview) -> None:
        """A request's last fragment has arrived: check its verification trailer, then the call."""
        self.outstanding.add(cid)
        if partial.auth is not None:
            self._call_auth[cid] = partial.auth
        self.stats["calls_in"] += 1
        if partial.auth is not None and partial.auth.protects:
            stub, trailer = verification.split(stub, partial.little_endian)
            if trailer is not None:
                self.stats["verification_trailers"] += 1
                wrong = self._check_trailer(trailer, cid, partial)
                if wrong:
                    self.outstanding.discard(cid)
                    self._call_auth.pop(cid, None)
                    self._deny(cid, partial.context_id, f"verification trailer: {wrong}")
                    return
        auth = partial.auth
        self._events.append(
            CallReceived(
                cid,
                partial.context_id,
                self.contexts[partial.context_id],
                partial.opnum,
                partial.object,
                stub,
                partial.little_endian,
                auth.auth_type if auth else 0,
                auth.auth_level if auth else 1,
                auth.context.principal if auth else None,
            )
        )

    def _check_trailer(self, trailer: verification.Trailer, cid: int, partial: _Partial) -> str | None:
        """What the verification trailer contradicts (MS-RPCE 2.2.2.13), or None."""
        assert partial.auth is not None
        if trailer.unknown_required:
            return f"unknown required command {trailer.unknown_required[0]:#x}"
        bits = trailer.bitmask or 0
        if bits & verification.CLIENT_SUPPORT_HEADER_SIGNING and not partial.auth.header_sign:
            return "the client offered header signing, but its bind did not (downgrade)"
        if trailer.interface is not None:
            proposed = self._abstract.get(partial.context_id)
            if trailer.interface != proposed or trailer.transfer != const.NDR20:
                return f"presentation context {partial.context_id} is not {trailer.interface}"
        if trailer.header2 is not None:
            ptype, drep, call_id, context_id, opnum = trailer.header2
            if (ptype, drep, call_id, context_id, opnum) != (
                PType.REQUEST,
                partial.drep,
                cid,
                partial.context_id,
                partial.opnum,
            ):
                return "the request header differs from the one the client signed"
        return None

    def _deny(self, call_id: int, context_id: int, reason: str) -> None:
        """Refuse a request on security grounds: access denied, then close (MS-RPCE 3.3.3.5.x)."""
        self._violation(reason, call_id, fatal=True)
        self._send_fault(call_id, const.RPC_S_ACCESS_DENIED, context_id, did_not_execute=True)
        self._close(reason)

    def _verified_stub(self, pdu: Request) -> tuple[AuthState | None, bytes | None]:
        """The request's plaintext stub after its verifier is checked; (None, None) when refused."""
        cid = pdu.call_id
        if pdu.auth is None:
            if not self.auth:
                return None, pdu.stub
            if any(a.protects for a in self.auth.values()):
                self._deny(
                    cid, pdu.context_id, "unprotected request on an association that requires protection"
                )
                return None, None
            # connect / call level: no verifier on requests, the association's context vouches for them
            default = self.auth[min(self.auth)]
            if default.failed is not None or not default.context.complete:
                self._deny(
                    cid,
                    pdu.context_id,
                    f"request on a failed authentication ({default.failed or 'incomplete'})",
                )
                return None, None
            return default, pdu.stub
        state = self.auth.get(pdu.auth.context_id)
        if state is None:
            self._deny(cid, pdu.context_id, "authentication on a context that was never negotiated")
            return None, None
        if state.failed is not None or not state.context.complete:
            self._deny(
                cid, pdu.context_id, f"request on a failed authentication ({state.failed or 'incomplete'})"
            )
            return None, None
        if pdu.auth.auth_level != state.auth_level or pdu.auth.auth_type != state.auth_type:
            self._deny(
                cid,
                pdu.context_id,
                f"request at auth level {pdu.auth.auth_level}, negotiated {state.auth_level}",
            )
            return None, None
        if not state.protects:
            return state, pdu.stub
        start = REQUEST_HEADER + (16 if pdu.object is not None else 0)
        try:
            check_pad(pdu.auth.pad_length, self._body_end - start)
            stub = unprotect(state, self._raw, start, self._body_end, pdu.auth.pad_length, pdu.auth.value)
        except AuthError as e:
            self._deny(cid, pdu.context_id, f"request signature refused: {e}")
            return None, None
        return state, stub

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
            self._buffered -= len(partial.data)
            return
        if cid in self.outstanding:
            self._orphaned.add(cid)
            self._events.append(CallOrphaned(call_id=cid))

    def _on_auth3(self, pdu: Pdu) -> None:
        state = self.auth.get(pdu.auth.context_id) if pdu.auth is not None else None
        if pdu.auth is None or state is None or state.context.complete or state.failed is not None:
            self._fatal("auth3 without an authentication in progress", pdu.call_id, PType.AUTH3)
            return
        try:
            state.context.step(pdu.auth.value)
        except AuthError as e:
            # auth3 has no answer: the failure shows on the next request (access denied)
            state.failed = str(e)
            self._violation(f"authentication refused: {e}", pdu.call_id)


_HANDLERS: dict[type, Callable[[ServerAssociation, Pdu], None]] = {
    Bind: ServerAssociation._on_bind,
    AlterContext: ServerAssociation._on_alter,
    Request: ServerAssociation._on_request,
    CoCancel: ServerAssociation._on_cancel,
    Orphaned: ServerAssociation._on_orphaned,
    Auth3: ServerAssociation._on_auth3,
}
