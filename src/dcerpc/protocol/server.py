"""The server side of one connection-oriented association, without I/O (after h11 / h2).

Theory of operation. The adapter feeds received octets to :meth:`ServerAssociation.receive_data`,
drains :meth:`events` and acts on them (runs calls), answers through :meth:`respond` / :meth:`fault`,
and writes :meth:`data_to_send` to the transport. When an event is :class:`Closing` it flushes and
closes. Nothing here reads a clock or a socket.

The rules (which PDU each state takes, what each broken rule is answered with) are data in
rules.py, shared with the client role where they are the same; the security contexts' bookkeeping
is server_auth.py's, bind / alter_context / auth3 negotiation.py's. This module applies the rest:
the request fragments of each call and their verifiers, and the fast paths of the common case,
which consult the same rules (``_may_start``, ``header_ok``'s conditions) rather than restating
them.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Final

from ..auth.base import AuthError, SecurityProvider
from ..ndr.pieces import EncodedStub
from ..pdu import constants as const
from ..pdu.co import (
    BindNak,
    Fault,
    Pdu,
    Request,
    Shutdown,
    parse,
)
from ..pdu.constants import PFC, AuthLevel, PType
from ..pdu.header import DREP_LE, HEADER_SIZE, Header, PduError, frame_length
from ..pdu.syntax import SyntaxId
from . import verification
from .events import (
    CallCancelled,
    CallOrphaned,
    CallReceived,
    Closing,
    Event,
    ProtocolViolation,
)
from .framing import DIRECT_MIN, DREP_LE_INT, PLAIN_HEAD, Inbox, Partial, fragment_at
from .groups import Group, GroupTable
from .limits import REFUSED_OCTETS, Limits
from .negotiation import Negotiation
from .outbox import Fragment, Outbox, call_fragments
from .rules import (
    ANSWERS,
    BIND_MAX_FRAGMENT,
    SERVER,
    WINDOWS_MAX_FRAGMENT,
    State,
    Violation,
    header_ok,
)
from .security import SEC_TRAILER, AuthState, unprotect
from .server_auth import Refusal, SecurityContexts

__all__ = ["STATS", "InterfaceMatcher", "ServerAssociation", "State", "new_stats"]

InterfaceMatcher = Callable[[SyntaxId], SyntaxId | None]
"""Given a proposed abstract syntax, the served interface it binds to (None: not served)."""

_REQUEST_V5: Final = b"\x05\x00\x00"  # version 5.0, a request
REQUEST_HEADER: Final = 24  # common header + alloc_hint, p_cont_id, opnum (a response's is as long)
_RESPONSE: Final = struct.Struct("<BBBB4sHHIIHBB")  # header + response body header (C706 12.6.4.10)
_RESPONSE_BODY: Final = struct.Struct("<IHBB")  # alloc_hint, p_cont_id, cancel_count, reserved (12.6.4.10)
_CONTEXT_OPNUM: Final = struct.Struct("<HH")  # a request's p_cont_id and opnum, at offset 20 (12.6.4.9)
BIND_NAK_VERSIONS: Final = ((5, 0),)


STATS: Final = ("calls_in", "calls_out", "pdus_in", "pdus_out", "faults", "verification_trailers")
"""The counters a server keeps (C706 mgmt's inq_stats reports the first four)."""


def new_stats() -> dict[str, int]:
    """A server's counters, each at 0: a plain dict with every name present, since a Counter's
    increment costs three times a dict's (100 ns against 37) and three are made per call."""
    return dict.fromkeys(STATS, 0)


# An enum member is a descriptor on Python 3.11 (65 ns a look-up): the per-PDU paths use these.
_AWAIT_BIND: Final = State.AWAIT_BIND
_OPEN: Final = State.OPEN
_CLOSED: Final = State.CLOSED


@dataclass(slots=True)
class _Partial(Partial):
    """A request being reassembled: what its first fragment said."""

    context_id: int = 0
    opnum: int = 0
    object: uuid.UUID | None = None
    little_endian: bool = True
    auth: AuthState | None = None  # None: it came by the direct path, unauthenticated
    drep: bytes = b"\x10\x00\x00\x00"


class ServerAssociation(Negotiation[_Partial]):
    """One connection's association, server role.

    Args:
        match: maps a proposed abstract syntax to a served interface.
        groups: the server's association groups (shared by all its connections).
        limits: bounds on what the peer may make us hold.
        secondary_address: the port_spec for bind_ack (e.g. b"49152" for TCP, b"" for none).
        inbox: where reads go (a new one if not given).
    """

    __slots__ = (  # and a weak reference: tests check that nothing keeps a closed one alive
        "__weakref__",
        "_abstract",
        "_body_end",
        "_call_auth",
        "_events",
        "_groups",
        "_header",
        "_little",
        "_match",
        "_orphaned",
        "_raw",
        "_sec_addr",
        "admit_handshake",
        "auth",
        "contexts",
        "control",
        "outbox",
        "outstanding",
        "security",
        "stats",
    )
    _DIRECT_START = _REQUEST_V5  # the fragments the direct path takes (framing.Receiver)
    _DIRECT_NOT_FLAGS = PFC.OBJECT_UUID

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
        self.admit_handshake: Callable[[], bool] | None = None  # negotiation asks it (Server sets it)
        self.control = 0  # control_rate tokens the PDUs other than requests took (an adapter paces them)
        self.security = SecurityContexts(security or {})
        self.auth: dict[int, AuthState] = self.security.by_id  # the authenticated ones, by auth_context_id
        self._call_auth: dict[int, AuthState] = {}  # call_id -> the context that protects it
        self._groups = groups
        self.limits = limits or Limits()
        self._sec_addr = secondary_address
        self.state = State.AWAIT_BIND
        self.group: Group | None = None
        self.contexts: dict[int, SyntaxId] = {}
        self._abstract: dict[int, SyntaxId] = {}  # context id -> the abstract syntax as proposed
        self._header_sign = False  # PFC_SUPPORT_HEADER_SIGN agreed (MS-RPCE 3.3.1.5.2.2)
        self.multiplexed = False  # PFC_CONC_MPX agreed: calls may overlap (C706 12.6.3.1)
        self.max_xmit_frag = WINDOWS_MAX_FRAGMENT  # what we may send (rules.negotiate_fragment)
        self.max_recv_frag = self.limits.max_fragment  # what we offer to receive
        # received octets, and the start of a fragment yet to end (an adapter may make it first,
        # to give its transport the inbox's get_buffer before the association exists)
        self.inbox = inbox or Inbox()
        self.outbox = Outbox()  # what to send; adapters may take from it directly
        self._events: list[Event] = []
        self._init_calls()  # calls being reassembled (framing.Receiver)
        self.outstanding: set[int] = set()
        self._orphaned: set[int] = set()
        self._little = True  # byte order of the fragment being handled
        self._raw = b""  # the fragment being handled, as received (signatures cover it)
        self._header = Header(0, 0, b"\x10\0\0\0", 0, 0, 0)  # and its header
        self._body_end = 0  # and where its body ends (its sec_trailer starts)
        # Counters (pdus_in, pdus_out, calls_in); a server passes one mapping for all its connections.
        self.stats: MutableMapping[str, int] = stats if stats is not None else new_stats()

    # --- adapter interface ---------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """False once the association has closed (or decided to)."""
        return self.state is not _CLOSED

    def _fragments(self, buf: bytearray, pos: int, end: int) -> tuple[int, int] | None:
        length = HEADER_SIZE
        turn = self.limits.pdus_per_turn or -1  # Limits.pdus_per_turn: the others' turn after it
        while self.state is not _CLOSED and end - pos >= 2:
            if not turn:
                self.backlog = True  # the rest on a later turn (framing.Receiver.backlog)
                return pos, HEADER_SIZE
            turn -= 1
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
                    and minor == 0  # rules.header_ok
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
                    and length <= self.limits.max_fragment
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
                text = f"unsupported RPC version {buf[pos]}.{buf[pos + 1]}"
                self._fatal_raw(Violation.BAD_VERSION, text, buf[pos : pos + 16])
                break
            if end - pos >= 5 and buf[pos + 4] & 0xE0:
                # frag_length cannot even be read without a known integer order (big or little)
                text = f"unknown integer representation 0x{buf[pos + 4] >> 4:x}"
                self._fatal_raw(Violation.BAD_VERSION, text, buf[pos : pos + 16])
                break
            got = frame_length(buf, pos, end)
            if got is None:
                length = HEADER_SIZE
                break
            length = got
            # Any PDU may be as long as frag_length allows (64 KiB, what we hold at most for one):
            # binds and alter_contexts are taken so long whatever was negotiated, and a request
            # longer than we take is answered once it is whole (observed Windows behaviour).
            if length < HEADER_SIZE:
                text = f"frag_length {length} is outside {HEADER_SIZE}..{BIND_MAX_FRAGMENT}"
                self._fatal_raw(Violation.BAD_FRAGMENT_LENGTH, text, buf[pos : pos + 16])
                break
            if end - pos < length:  # not whole
                if (
                    length >= DIRECT_MIN  # a long fragment
                    and plain
                    and length <= self.limits.max_fragment
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
            and not self._calls  # no other call half received (INTERLEAVED)
            and call_id not in self.outstanding  # CALL_ID_REUSED
            and len(self.outstanding) < self.limits.max_outstanding_calls  # TOO_MANY_CALLS
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

    def respond(self, call_id: int, stub: EncodedStub, context_id: int = 0) -> bool:
        """Answer a call with its [out] stub, fragmented to the peer's max_recv_frag (False: not
        sent as it is; the call was orphaned or is gone, or its answer was refused for want of
        memory and a fault went instead, reported in :meth:`events`).

        The response carries the low octet of the context id only, as Windows sends it (observed
        behaviour; C706 12.6.4.10 has p_cont_id as u16)."""
        if not self._finish(call_id):
            return False
        auth = self._call_auth.pop(call_id, None)
        protected = auth is not None and auth.protects
        if not protected and len(stub) <= self.max_xmit_frag - REQUEST_HEADER:
            # the common case, one unprotected fragment: packed directly
            n = len(stub)
            ctx = context_id & 0xFF  # see above
            # never Pieces: a stub this short is contiguous (pieces.SPLICE_MIN)
            self.outbox.append(
                _RESPONSE.pack(5, 0, 2, 3, DREP_LE, REQUEST_HEADER + n, 0, call_id, n, ctx, 0, 0)  # type: ignore[operator]
                + stub
            )
            self.stats["pdus_out"] += 1
            return True
        # More than one fragment: held until the peer reads it, so drawn from the memory budget
        # (a client that asks for a large answer and never reads it holds at most this), and no
        # longer than the largest call either way (max_call_size).
        n = len(stub)
        account = self.account
        if n > self.limits.max_call_size or (account is not None and not account.take(n)):
            text = f"no room for the {n}-octet answer to call {call_id}"
            if n > self.limits.max_call_size:
                text += f" (max_call_size {self.limits.max_call_size})"
            self._refuse(Violation.RESPONSE_OUT_OF_RESOURCES, call_id, text, context_id)
            return False
        self.outbox.append_lazily(self._response_fragments(call_id, stub, context_id, auth), n, account)
        return True

    def _response_fragments(
        self, call_id: int, stub: EncodedStub, context_id: int, auth: AuthState | None
    ) -> Iterator[Fragment]:
        """The fragments of one response, made (and signed or sealed) as they are sent."""
        context_id &= 0xFF  # see respond
        stats = self.stats
        for fragment in call_fragments(
            PType.RESPONSE,
            call_id,
            stub,
            self.max_xmit_frag,
            lambda remaining: _RESPONSE_BODY.pack(remaining, context_id, 0, 0),
            auth if auth is not None and auth.protects else None,
        ):
            stats["pdus_out"] += 1
            yield fragment

    def fault(self, call_id: int, status: int, context_id: int = 0, did_not_execute: bool = False) -> None:
        """Answer a call with a fault PDU carrying ``status`` (MS-RPCE 2.2.2.8: no stub)."""
        if not self._finish(call_id):
            return
        self._call_auth.pop(call_id, None)
        self._send_fault(call_id, status, context_id, did_not_execute)

    def shutdown(self) -> None:
        """Ask the client to end the association: a shutdown PDU (C706 12.6.4.11; the server is
        stopping). Calls in progress are still answered."""
        if self.state is _OPEN:
            self._send(Shutdown(call_id=0))

    def connection_lost(self) -> None:
        """The transport closed: what the peer will never read is dropped, every buffer and what
        it held of the memory budget goes, and the association leaves its group (the last one out
        runs down the group's handles)."""
        self.state = State.CLOSED
        self._forget_calls()
        self.outbox.discard()
        self._call_auth.clear()
        self._orphaned.clear()
        self.outstanding.clear()
        if self.account is not None:
            self.account.close()
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
        # alloc_hint 24: the fault body's size, as Windows and Samba send it (C706 12.6.4.7 leaves it)
        flags = PFC.FIRST_FRAG | PFC.LAST_FRAG | (PFC.DID_NOT_EXECUTE if did_not_execute else 0)
        self._send(Fault(call_id=call_id, flags=flags, alloc_hint=24, context_id=context_id, status=status))

    def _refuse(self, kind: Violation, call_id: int, text: str, context_id: int = 0) -> None:
        """Answer a broken rule as rules.ANSWERS says, report it, and close if the answer does."""
        answer = ANSWERS[kind]
        self._events.append(ProtocolViolation(reason=text, call_id=call_id, fatal=answer.close, kind=kind))
        if answer.nak is not None:
            self._send(BindNak(call_id=call_id, reason=answer.nak, versions=BIND_NAK_VERSIONS))
        elif answer.status is not None:
            self._send_fault(call_id, answer.status, context_id, answer.did_not_execute)
        if answer.close:
            self._close(text)

    def _close(self, reason: str) -> None:
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        self._forget_calls()
        self._events.append(Closing(reason=reason))

    def _fatal_raw(self, kind: Violation, reason: str, head: bytes | bytearray) -> None:
        """A rule broken in the first octets of a fragment (``head``: up to 16 of them)."""
        call_id = int.from_bytes(head[12:16], "little") if len(head) >= 16 else 0
        if self.state is _AWAIT_BIND and kind is not Violation.BAD_VERSION:
            kind = Violation.MALFORMED_BIND
        elif self.state is not _AWAIT_BIND and kind is Violation.BAD_VERSION:
            kind = Violation.MALFORMED
        self._refuse(kind, call_id, reason)

    def _fragment(self, fragment: bytes) -> None:
        opening = self.state is _AWAIT_BIND
        try:
            parsed = parse(fragment)
        except PduError as e:
            self._refuse(Violation.NOT_A_BIND if opening else Violation.MALFORMED, e.call_id, e.reason)
            return
        pdu = parsed.pdu
        header = parsed.header
        if not header_ok(header.vers_minor, header.drep, header.auth_length, header.frag_length):
            text = f"version 5.{header.vers_minor}, data representation {header.drep.hex()}"
            self._refuse(Violation.NOT_A_BIND if opening else Violation.MALFORMED, pdu.call_id, text)
            return
        self._little = header.little_endian
        self._raw = fragment
        self._header = header
        self._body_end = parsed.body_end
        rule = SERVER.get((self.state, int(pdu.ptype)))
        if rule is None or isinstance(rule, Violation):
            kind = rule if isinstance(rule, Violation) else Violation.SERVER_PDU
            self._refuse(kind, pdu.call_id, f"{pdu.ptype.name.lower()} PDU in state {self.state.value}")
            return
        if rule != "request":
            # paced by the adapter (Limits.control_rate): a token, and one per control_octets more
            unit = self.limits.control_octets
            self.control += 1 + (len(fragment) - 1) // unit if unit else 1
        _HANDLERS[rule](self, pdu)

    # calls ------------------------------------------------------------------------------------

    def _on_request(self, pdu: Pdu) -> None:
        assert isinstance(pdu, Request)
        cid = pdu.call_id
        first = bool(pdu.flags & PFC.FIRST_FRAG)
        last = bool(pdu.flags & PFC.LAST_FRAG)
        state = self.security.lookup(pdu.auth, True, first)
        if isinstance(state, Refusal):
            self._refuse(state.kind, cid, state.text)
            return
        mismatch = self.security.mismatch  # the verifier's type or level is not its context's
        if state.started and not state.finished and not state.invalid:
            # (a refused handshake is access denied below, as Samba 4.18+ answers, not this)
            self._refuse(Violation.AUTH_IN_PROGRESS, cid, "request while the handshake is in progress")
            return
        if self._header.frag_length > self.limits.max_fragment:
            text = f"request fragment of {self._header.frag_length} octets, {self.limits.max_fragment} taken"
            self._refuse(Violation.REQUEST_TOO_LONG, cid, text)
            return
        partial = self._calls.get(cid)
        if partial is not None and partial.refused:  # refused for want of memory, and answered
            if last:
                del self._calls[cid]
            return
        if first:
            if not self._first_fragment_ok(pdu, state):
                return
            context_id = pdu.context_id
        elif partial is None:
            self._orphan_fragment(pdu, state, mismatch)
            return
        else:
            if partial.drep != self._raw[4:8]:
                self._refuse(
                    Violation.FRAGMENT_CHANGED,
                    cid,
                    "a fragment in another data representation",
                    partial.context_id,
                )
                return
            # the first fragment's context speaks for the call (none: it came by a fast path)
            state = partial.auth or self.security.default
            context_id = partial.context_id
        stub = self._verified_stub(pdu, state, first, context_id)
        if stub is None:
            return
        if first:
            partial = _Partial(
                context_id=context_id,
                opnum=pdu.opnum,
                object=pdu.object,
                little_endian=self._little,
                auth=state,
                drep=self._raw[4:8],
            )
            if last:  # the whole call in one fragment: its stub as it is
                if len(stub) > self.limits.max_call_size:
                    self._too_large(cid, partial)
                else:
                    self._complete(cid, partial, stub)
                return
            self._calls[cid] = partial
        assert partial is not None
        if self._append(cid, partial, stub, pdu.alloc_hint) and last:
            self._reassembled(cid, partial)

    def _first_fragment_ok(self, pdu: Request, state: AuthState) -> bool:
        """A call's first fragment may start it (else it was answered): the rules _may_start
        checks for the fast paths, each with its own answer (observed Windows behaviour)."""
        cid = pdu.call_id
        # Windows refuses a call while another is being served unless PFC_CONC_MPX was agreed;
        # we serve calls concurrently either way (Samba does too for calls it answers at once,
        # and every call here runs in a task of its own): a deliberate leniency, see
        # docs/protocol-behaviours.md.
        if self._calls:
            kind = Violation.INTERLEAVED
            existing = self._calls.get(cid)
            context_id = 0
            if existing is not None:
                context_id = existing.context_id
                if (
                    existing.auth is not state
                    and pdu.auth is not None
                    and existing.context_id == pdu.context_id
                ):
                    kind = Violation.INTERLEAVED_AUTH
            if not self.multiplexed:  # answered on the call being received: its call_id and context
                cid, held = next(iter(self._calls.items()))
                context_id = held.context_id
            self._refuse(kind, cid, "a new call while another is half received", context_id)
            return False
        if pdu.flags & PFC.PENDING_CANCEL:
            self._refuse(Violation.PENDING_CANCEL_FIRST, cid, "a first fragment already cancelled")
            return False
        if pdu.context_id not in self.contexts:
            text = f"request on presentation context {pdu.context_id}, never accepted"
            self._refuse(Violation.UNKNOWN_CONTEXT, cid, text)
            return False
        if cid in self.outstanding:
            self._refuse(
                Violation.CALL_ID_REUSED, cid, f"call_id {cid} reused while that call is in progress"
            )
            return False
        if len(self.outstanding) >= self.limits.max_outstanding_calls:
            self._refuse(
                Violation.TOO_MANY_CALLS,
                cid,
                f"more than {self.limits.max_outstanding_calls} outstanding calls",
                pdu.context_id,
            )
            return False
        return True

    def _orphan_fragment(self, pdu: Request, state: AuthState, mismatch: bool) -> None:
        """A continuation fragment of no call being received."""
        cid, context_id = pdu.call_id, 0
        text = f"fragment for call_id {cid}, which has no first fragment"
        if not self.multiplexed:
            if self._calls:  # answered on the call being received
                cid, held = next(iter(self._calls.items()))
                context_id = held.context_id
            self._refuse(Violation.ORPHAN_FRAGMENT, cid, text, context_id)
            return
        if self._calls:
            self._refuse(Violation.ORPHAN_FRAGMENT, cid, text)
        elif pdu.context_id not in self.contexts:
            self._refuse(Violation.UNKNOWN_CONTEXT, cid, text)
        elif state.invalid or mismatch:
            self._refuse(Violation.ORPHAN_FRAGMENT_AUTH, cid, text, pdu.context_id)
        else:
            self._refuse(Violation.ORPHAN_FRAGMENT, cid, text, pdu.context_id)

    def _verified_stub(self, pdu: Request, state: AuthState, first: bool, context_id: int) -> bytes | None:
        """The request's plaintext stub after its verifier is checked against ``state`` (MS-RPCE
        3.3.1.5.2.2); None when it was refused."""
        cid = pdu.call_id
        kind: Violation | None = None
        text = ""
        verifier = pdu.auth
        level = state.auth_level
        if not state.started or state.invalid:
            kind, text = Violation.VERIFY_INVALID, "request on a refused security context"
        elif not state.finished:
            kind, text = Violation.VERIFY_NOT_FINISHED, "request before the handshake finished"
        elif level == AuthLevel.NONE:
            if verifier is None:
                return pdu.stub
            kind, text = Violation.VERIFIER_UNEXPECTED, "a verifier on an unauthenticated request"
        elif level == AuthLevel.CONNECT and verifier is None:
            return pdu.stub
        elif level not in (AuthLevel.CONNECT, AuthLevel.PACKET, AuthLevel.INTEGRITY, AuthLevel.PRIVACY):
            kind, text = Violation.UNSUPPORTED_LEVEL, f"requests at auth level {level} are not served"
        elif verifier is None:
            kind, text = Violation.VERIFIER_MISSING, f"a request without a verifier at auth level {level}"
        if kind is None:
            assert verifier is not None
            start = REQUEST_HEADER + (16 if pdu.object is not None else 0)
            h = self._header
            trailer = h.frag_length - h.auth_length - SEC_TRAILER
            room = h.frag_length - REQUEST_HEADER - SEC_TRAILER - h.auth_length
            if trailer % 4 or verifier.pad_length > room or trailer - start < verifier.pad_length:
                kind, text = (
                    Violation.BAD_VERIFIER_TRAILER,
                    f"auth_pad_length {verifier.pad_length} or misaligned",
                )
            elif first and (verifier.auth_type, verifier.auth_level, verifier.context_id) != (
                state.auth_type,
                state.auth_level,
                state.context_id,
            ):
                kind, text = (
                    Violation.VERIFIER_MISMATCH,
                    "the verifier names another security context or level",
                )
            elif level == AuthLevel.CONNECT:
                return pdu.stub  # connect level: a verifier is allowed, its signature not looked at
            else:
                try:
                    return unprotect(
                        state, self._raw, start, self._body_end, verifier.pad_length, verifier.value
                    )
                except AuthError as e:
                    kind, text = Violation.SIGNATURE, f"request signature refused: {e}"
        self._refuse(kind, cid, text, context_id)
        return None

    def _too_large(self, cid: int, partial: _Partial) -> None:
        # Windows and Samba refuse a request over their size limit as access denied (observed)
        text = f"call {cid} exceeds {self.limits.max_call_size} octets (or the connection's buffer)"
        # What the refused call made us receive is paid for as control PDUs are (a token per
        # REFUSED_OCTETS, Limits.control_rate): stops a CVE-2022-26809-shaped flood (fragments
        # without PFC_LAST_FRAG up to max_call_size, refused, again on a new connection) from
        # costing the server its octets over and over at the sender's pace: the source's next
        # connections are read only as its bucket refills
        self.control += partial.size // REFUSED_OCTETS
        self._refuse(Violation.CALL_TOO_LARGE, cid, text, partial.context_id)

    def _refused_call(self, cid: int, partial: _Partial) -> None:
        # as Samba's server answers a call it has no memory to reassemble: the connection stays
        budget = self.account.budget if self.account is not None else None
        text = f"no memory to receive call {cid}"
        if budget is not None:
            text += f" (process budget {budget.total} octets, {budget.held} held)"
        self._refuse(Violation.OUT_OF_RESOURCES, cid, text, partial.context_id)

    # the direct path's hooks (framing.Receiver) -------------------------------------------------

    def _direct_partial(self, buf: bytearray, pos: int, cid: int, flags: int) -> _Partial | None:
        if flags & PFC.FIRST_FRAG:
            context_id, opnum = _CONTEXT_OPNUM.unpack_from(buf, pos + 20)
            if not self._may_start(cid, context_id):
                return None
            partial = _Partial(context_id=context_id, opnum=opnum)
        else:
            found = self._calls.get(cid)
            if found is None or found.refused or (found.auth is not None and found.auth.protects):
                return None
            partial = found
        self.stats["pdus_in"] += 1
        return partial

    def _direct_may_continue(self, cid: int) -> bool:
        return self.state is _OPEN

    def _fragment_limit(self) -> int:
        return self.limits.max_fragment

    def _counted(self) -> None:
        self.stats["pdus_in"] += 1

    def _reassembled_call(self, cid: int, partial: _Partial, stub: memoryview) -> None:
        self._complete(cid, partial, stub)

    def _complete(self, cid: int, partial: _Partial, stub: bytes | memoryview) -> None:
        """A request's last fragment has arrived: check its security context and verification
        trailer, then the call."""
        auth = partial.auth
        if auth is not None and (auth.invalid or not auth.finished):
            kind = Violation.AUTH_INVALID if auth.invalid else Violation.AUTH_NOT_FINISHED
            self._refuse(kind, cid, f"request on a refused security context ({auth.failed or 'invalid'})")
            return
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
                    self._refuse(
                        Violation.VERIFICATION_TRAILER,
                        cid,
                        f"verification trailer: {wrong}",
                        partial.context_id,
                    )
                    return
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

    def _on_cancel(self, pdu: Pdu) -> None:
        """co_cancel (C706 12.4.2): a call still being received is not affected (observed Windows
        behaviour: its remaining fragments are taken and it runs); one being served is told."""
        cid = pdu.call_id
        if cid in self.outstanding and cid not in self._calls:
            self._events.append(CallCancelled(call_id=cid))

    def _on_orphaned(self, pdu: Pdu) -> None:
        """orphaned (C706 12.4.2): as co_cancel for a call still being received; a call being
        served is abandoned (no answer is sent)."""
        cid = pdu.call_id
        if cid in self.outstanding and cid not in self._calls:
            self._orphaned.add(cid)
            self._events.append(CallOrphaned(call_id=cid))


_HANDLERS: dict[str, Callable[[ServerAssociation, Pdu], None]] = {
    "bind": ServerAssociation._on_bind,
    "alter": ServerAssociation._on_alter,
    "request": ServerAssociation._on_request,
    "cancel": ServerAssociation._on_cancel,
    "orphaned": ServerAssociation._on_orphaned,
    "auth3": ServerAssociation._on_auth3,
}
