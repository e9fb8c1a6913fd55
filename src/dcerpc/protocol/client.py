"""The client side of one connection-oriented association, without I/O.

The adapter calls :meth:`bind` / :meth:`alter_context` / :meth:`request`, writes
:meth:`data_to_send`, feeds received octets to :meth:`receive_data` and acts on :meth:`events`
(:class:`BindAccepted`, :class:`ResponseReceived`, :class:`FaultReceived` ...). Requests are
fragmented to the negotiated max_xmit_frag; responses are reassembled within limits.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from ..auth.base import AuthError, Protection
from ..ndr.pieces import EncodedStub, extended
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
    Fault,
    Orphaned,
    Pdu,
    Request,
    Response,
    parse,
)
from ..pdu.constants import PFC, AuthLevel, ContextResult, PType
from ..pdu.header import DREP_LE, HEADER_SIZE, PduError, frame_length
from ..pdu.syntax import SyntaxId
from . import verification
from .events import (
    AlterContextAccepted,
    BindAccepted,
    BindRejected,
    Closing,
    Event,
    FaultReceived,
    ProtocolViolation,
    ResponseReceived,
    ShutdownRequested,
)
from .framing import DIRECT_MIN, DREP_LE_INT, PLAIN_HEAD, Inbox, Partial, Receiver, fragment_at
from .limits import MIN_FRAGMENT, Limits
from .outbox import Fragment, Outbox, call_fragments
from .rules import CLIENT, State, header_ok
from .security import AuthState, check_pad, unprotect

__all__ = ["ClientAssociation", "ClientState"]

REQUEST_OVERHEAD = 24
# MS-RPCE 3.3.1.5.3: the bind-time feature negotiation syntax we offer (what Windows offers)
_BTFN_FLAGS = const.BTFN_SECURITY_CONTEXT_MULTIPLEXING | const.BTFN_KEEP_CONNECTION_ON_ORPHAN
_BTFN_OFFER = SyntaxId(uuid.UUID(bytes_le=const.BTFN_PREFIX + _BTFN_FLAGS.to_bytes(8, "little")), (1, 0))
_RESPONSE_V5: Final = b"\x05\x00\x02"  # version 5.0, a response
_REQUEST = struct.Struct("<BBBB4sHHIIHH")  # common header + request body header (C706 12.6.4.9)
_REQUEST_BODY = struct.Struct("<IHH")  # alloc_hint, p_cont_id, opnum (C706 12.6.4.9)


ClientState = State  # the client's states are the shared ones (rules.State), IDLE before the bind


_CLOSED: Final = State.CLOSED  # an enum member is a descriptor on Python 3.11: 65 ns a look-up


@dataclass(slots=True)
class _Reply(Partial):
    """A response being reassembled."""

    little: bool = True


class ClientAssociation(Receiver[_Reply]):
    """One connection's association, client role."""

    __slots__ = (
        "_auth_call",
        "_auth_origin",
        "_body_end",
        "_bound_event",
        "_events",
        "_next_call",
        "_proposed",
        "_raw",
        "_trailer_sent",
        "assoc_group_id",
        "auth",
        "contexts",
        "max_recv_frag",
        "max_xmit_frag",
        "multiplexed",
        "outbox",
        "pending",
        "state",
    )
    _DIRECT_START = _RESPONSE_V5  # the fragments the direct path takes (framing.Receiver)

    def __init__(self, limits: Limits | None = None, auth: AuthState | None = None) -> None:
        self.limits = limits or Limits()
        self.auth = auth
        self._bound_event: BindAccepted | None = None  # held back until authentication completes
        self._auth_call: int | None = None  # the alter_context carrying a later handshake leg
        self._auth_origin = 0  # the bind whose completion waits for the handshake
        self._trailer_sent: set[int] = set()  # contexts whose first protected request carried one
        self.state = State.IDLE
        self.max_xmit_frag = MIN_FRAGMENT
        self.max_recv_frag = self.limits.max_fragment
        self.assoc_group_id = 0
        self.multiplexed = False  # the bind_ack agreed PFC_CONC_MPX
        self.contexts: dict[int, SyntaxId] = {}
        self._proposed: dict[int, dict[int, SyntaxId]] = {}  # call_id -> proposals
        self.inbox = Inbox()  # received octets, and the start of a fragment yet to end
        self.outbox = Outbox()  # what to send; adapters may take from it directly
        self._events: list[Event] = []
        self._init_calls()  # responses being reassembled (framing.Receiver)
        self._next_call = 1
        self.pending: set[int] = set()
        self._raw = b""
        self._body_end = 0

    @property
    def alive(self) -> bool:
        return self.state is not _CLOSED

    def next_call_id(self) -> int:
        cid = self._next_call
        self._next_call = cid + 1 if cid < 0xFFFFFFFF else 1
        return cid

    # requests to send ---------------------------------------------------------------------------

    def bind(self, contexts: dict[int, SyntaxId], assoc_group_id: int = 0, *, btfn: bool = True) -> int:
        """Queue a bind proposing ``contexts`` (context id -> interface), NDR 2.0 each.

        ``btfn`` adds the bind-time feature negotiation context, as Windows and Samba clients do.
        """
        cid = self.next_call_id()
        elems = [ContextElement(i, s, (const.NDR20,)) for i, s in contexts.items()]
        if btfn and contexts:
            first = next(iter(contexts.values()))
            elems.append(ContextElement(max(contexts) + 1, first, (_BTFN_OFFER,)))
        self._proposed[cid] = dict(contexts)
        self.state = State.AWAIT_BIND
        verifier = None
        # CONC_MPX: our calls on one connection overlap; a Windows server refuses a second call
        # in flight unless the bind asked for this (C706 12.6.3.1, observed Windows behaviour)
        flags = PFC.FIRST_FRAG | PFC.LAST_FRAG | PFC.CONC_MPX
        if self.auth is not None:
            verifier = self._verifier(self.auth.context.step(None))
            if self.auth.header_sign:
                flags |= PFC.SUPPORT_HEADER_SIGN
        self._send(
            Bind(
                call_id=cid,
                flags=flags,
                auth=verifier,
                max_xmit_frag=self.limits.max_fragment,
                max_recv_frag=self.limits.max_fragment,
                assoc_group_id=assoc_group_id,
                contexts=tuple(elems),
            )
        )
        return cid

    def alter_context(self, contexts: dict[int, SyntaxId]) -> int:
        """Queue an alter_context adding ``contexts``."""
        cid = self.next_call_id()
        elems = tuple(ContextElement(i, s, (const.NDR20,)) for i, s in contexts.items())
        self._proposed[cid] = dict(contexts)
        self._send(
            AlterContext(
                call_id=cid,
                max_xmit_frag=self.limits.max_fragment,
                max_recv_frag=self.limits.max_fragment,
                assoc_group_id=self.assoc_group_id,
                contexts=elems,
            )
        )
        return cid

    def _verifier(self, token: bytes | None) -> AuthVerifier:
        assert self.auth is not None
        a = self.auth
        return AuthVerifier(
            auth_type=a.auth_type, auth_level=a.auth_level, context_id=a.context_id, value=token or b""
        )

    def request(self, context_id: int, opnum: int, stub: EncodedStub, object: uuid.UUID | None = None) -> int:
        """Queue a call; returns its call_id. The stub is split at max_xmit_frag."""
        n = len(stub)
        unprotected = self.auth is None or not self.auth.protects
        if unprotected and object is None and n <= self.max_xmit_frag - REQUEST_OVERHEAD:
            # the common case, one unprotected fragment: packed here and now
            cid = self.next_call_id()
            self.outbox.append(
                # never Pieces: a stub this short is contiguous (pieces.SPLICE_MIN)
                _REQUEST.pack(5, 0, 0, 3, DREP_LE, 24 + n, 0, cid, n, context_id, opnum) + stub  # type: ignore[operator]
            )
            self.pending.add(cid)
            return cid
        cid = self.next_call_id()
        overhead = REQUEST_OVERHEAD + (16 if object is not None else 0)
        auth = self.auth if self.auth is not None and self.auth.protects else None
        if auth is not None and context_id not in self._trailer_sent and context_id in self.contexts:
            # MS-RPCE 2.2.2.13: the first protected request on each context vouches for the bind
            self._trailer_sent.add(context_id)
            stub = extended(
                stub,
                verification.build(
                    header_sign=auth.header_sign,
                    interface=self.contexts[context_id],
                    transfer=const.NDR20,
                    ptype=PType.REQUEST,
                    drep=DREP_LE,
                    call_id=cid,
                    context_id=context_id,
                    opnum=opnum,
                    stub_length=len(stub),
                ),
            )
        if auth is None and len(stub) <= self.max_xmit_frag - overhead:
            # one fragment with an object UUID (one without is packed above): made now
            pdu = Request(
                call_id=cid,
                flags=PFC.FIRST_FRAG | PFC.LAST_FRAG | PFC.OBJECT_UUID,
                alloc_hint=n,
                context_id=context_id,
                opnum=opnum,
                object=object,
                stub=bytes(stub),  # short: contiguous, and at most a fragment to copy
            )
            self._send(pdu)
        else:
            self.outbox.append_lazily(self._request_fragments(cid, context_id, opnum, stub, object, auth))
        self.pending.add(cid)
        return cid

    def _request_fragments(
        self,
        cid: int,
        context_id: int,
        opnum: int,
        stub: EncodedStub,
        object: uuid.UUID | None,
        auth: AuthState | None,
    ) -> Iterator[Fragment]:
        """The fragments of one request, made (and signed or sealed) as they are sent."""
        extra = object.bytes_le if object is not None else b""

        def body(remaining: int) -> bytes:
            return _REQUEST_BODY.pack(remaining, context_id, opnum) + extra

        flags = PFC.OBJECT_UUID if object is not None else 0
        return call_fragments(PType.REQUEST, cid, stub, self.max_xmit_frag, body, auth, flags)

    def cancel(self, call_id: int) -> None:
        """Ask the server to cancel a call (co_cancel); its answer (a fault) still arrives."""
        if call_id in self.pending:
            self._send(CoCancel(call_id=call_id))

    def orphan(self, call_id: int) -> None:
        """Abandon a call (orphaned): the server sends nothing more for it."""
        if call_id in self.pending:
            self.pending.discard(call_id)
            self._drop(call_id)
            self._send(Orphaned(call_id=call_id))

    # received ---------------------------------------------------------------------------------

    def _fragments(self, buf: bytearray, pos: int, end: int) -> tuple[int, int] | None:
        length = HEADER_SIZE
        while self.state is not _CLOSED:
            plain = False
            if end - pos >= REQUEST_OVERHEAD:
                # A response in little-endian ASCII IEEE with no verifier, where none is needed:
                # whole and alone (the common case), it is taken here without building a PDU; long,
                # its stub may go straight to the response's buffer. Anything else about it, right
                # or wrong, is the general path's below.
                vers, minor, ptype, flags, drep, length, auth_length, call_id, _, _, _ = (
                    PLAIN_HEAD.unpack_from(buf, pos)
                )
                plain = (
                    vers == 5
                    and minor == 0
                    and ptype == 2
                    and drep == DREP_LE_INT
                    and auth_length == 0
                    and length >= REQUEST_OVERHEAD
                    and (self.auth is None or not self.auth.protects)
                )
                if (
                    plain
                    and flags == 3  # first and last fragment
                    and length <= end - pos  # here
                    and length <= self.max_recv_frag  # as negotiated (the general path refuses it)
                    and call_id in self.pending  # awaited
                    and call_id not in self._calls  # and not being reassembled
                    and length - REQUEST_OVERHEAD <= self.limits.max_call_size
                ):
                    self.pending.discard(call_id)
                    stub = bytes(buf[pos + REQUEST_OVERHEAD : pos + length])
                    self._events.append(ResponseReceived(call_id, stub, True))
                    pos += length
                    continue
            got = frame_length(buf, pos, end)
            if got is None:
                length = HEADER_SIZE
                break
            length = got
            if length < HEADER_SIZE:
                self._fail(f"frag_length {length} is impossible")
                break
            if length > self.max_recv_frag:
                # what we receive is bounded by what we negotiated, as the server's side is
                self._fail(f"frag_length {length} exceeds the {self.max_recv_frag} octets negotiated")
                break
            if end - pos < length:  # not whole
                if (
                    length >= DIRECT_MIN  # a long fragment
                    and plain
                    and self._direct_fragment(buf, pos, length, end)
                ):
                    return None
                break
            fragment = fragment_at(buf, pos, length)
            pos += length
            try:
                parsed = parse(fragment)
            except PduError as e:
                self._fail(e.reason)
                break
            h = parsed.header
            if not header_ok(h.vers_minor, h.drep, h.auth_length, h.frag_length):
                self._fail(f"version 5.{h.vers_minor}, data representation {h.drep.hex()} is not ours")
                break
            rule = CLIENT.get((self.state, h.ptype))
            if not isinstance(rule, str):
                self._fail(self._out_of_place(parsed.pdu))
                break
            handler = _HANDLERS[rule]
            self._raw = fragment
            self._body_end = parsed.body_end
            handler(self, parsed.pdu, parsed.header.little_endian)
        if self.state is _CLOSED:
            return end, 0
        return pos, length

    # the direct path's hooks (framing.Receiver) -------------------------------------------------

    def _direct_partial(self, buf: bytearray, pos: int, cid: int, flags: int) -> _Reply | None:
        if cid not in self.pending:
            return None
        reply = self._calls.get(cid)
        return _Reply() if flags & PFC.FIRST_FRAG or reply is None else reply

    def _direct_may_continue(self, cid: int) -> bool:
        # still awaited: not orphaned since the fragment before
        return cid in self.pending and self.state is not _CLOSED

    def _fragment_limit(self) -> int:
        return self.max_recv_frag

    def _too_large(self, cid: int, partial: _Reply) -> None:
        self._fail(f"response to call {cid} exceeds {self.limits.max_call_size} octets (or max_buffered)")

    def _refused_call(self, cid: int, partial: _Reply) -> None:
        # only with an account (budget.py), which a client is given when its owner wants one
        self._fail(f"response to call {cid}: no memory for it within the process's budget")

    def _reassembled_call(self, cid: int, partial: _Reply, stub: memoryview) -> None:
        self.pending.discard(cid)
        self._events.append(ResponseReceived(cid, stub, partial.little))

    def events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    def data_to_send(self, limit: int | None = None) -> bytes:
        """Octets to write, in order; ``limit`` takes about that many of a long request."""
        return self.outbox.octets(limit)

    @property
    def has_output(self) -> bool:
        """Octets (or fragments still to make) are waiting for :meth:`data_to_send`."""
        return bool(self.outbox)

    def connection_lost(self) -> None:
        """The transport closed: every buffer goes, whatever closed the association before (a
        shutdown or bind_nak closes it with a call still being received; the fuzzer found one
        holding 9,004 octets after the connection was gone)."""
        if self.alive:
            self.state = State.CLOSED
            self._events.append(Closing(reason="connection lost"))
        self._forget_calls()

    # internals --------------------------------------------------------------------------------

    def _send(self, pdu: Pdu) -> None:
        self.outbox.append(pdu.encode())

    def _fail(self, reason: str) -> None:
        self._events.append(ProtocolViolation(reason=reason, fatal=True))
        self.state = State.CLOSED
        self._forget_calls()
        self._events.append(Closing(reason=reason))

    def _out_of_place(self, pdu: Pdu) -> str:
        """The log's words for a PDU rules.CLIENT does not take in this state."""
        name = pdu.ptype.name.lower()
        if pdu.ptype in (PType.BIND_ACK, PType.ALTER_CONTEXT_RESP):
            return f"{name} without a bind"
        if pdu.ptype in (PType.RESPONSE, PType.FAULT, PType.BIND_NAK, PType.SHUTDOWN):
            return f"{name} in state {self.state.value}"
        return f"a server does not send {name} PDUs"

    def _results(self, call_id: int, pdu: BindAck) -> tuple[dict[int, SyntaxId], dict[int, int]]:
        proposed = self._proposed.pop(call_id, {})
        accepted: dict[int, SyntaxId] = {}
        rejected: dict[int, int] = {}
        for (ctx_id, syntax), result in zip(proposed.items(), pdu.results, strict=False):
            if result.result == ContextResult.ACCEPTANCE:
                accepted[ctx_id] = syntax
                self.contexts[ctx_id] = syntax
            else:
                rejected[ctx_id] = result.reason
        return accepted, rejected

    def _on_bind_ack(self, pdu: Pdu, little: bool) -> None:
        assert isinstance(pdu, BindAck)
        if isinstance(pdu, AlterContextResp):
            if pdu.call_id == self._auth_call:
                self._auth_call = None
                self._proposed.pop(pdu.call_id, None)
                self._continue_auth(pdu)
                return
            accepted, rejected = self._results(pdu.call_id, pdu)
            self._events.append(AlterContextAccepted(accepted=accepted, rejected=rejected))
            return
        self.max_xmit_frag = max(MIN_FRAGMENT, min(pdu.max_recv_frag, self.limits.max_fragment))
        # what the server said it sends: Windows raises a smaller offer to 2048 (rules.negotiate_fragment)
        self.max_recv_frag = pdu.max_xmit_frag
        self.assoc_group_id = pdu.assoc_group_id
        self.multiplexed = bool(pdu.flags & PFC.CONC_MPX)  # the server lets our calls overlap
        accepted, rejected = self._results(pdu.call_id, pdu)
        self.state = State.OPEN
        event = BindAccepted(
            accepted=accepted,
            rejected=rejected,
            assoc_group_id=pdu.assoc_group_id,
            max_xmit_frag=self.max_xmit_frag,
            max_recv_frag=self.max_recv_frag,
        )
        if self.auth is None:
            self._events.append(event)
            return
        self.auth.header_sign = self.auth.header_sign and bool(pdu.flags & PFC.SUPPORT_HEADER_SIGN)
        self._bound_event = event
        self._auth_origin = pdu.call_id
        self._continue_auth(pdu)

    def _continue_auth(self, pdu: BindAck) -> None:
        """Feed the server's token to our context; send the next leg or report the bind complete."""
        assert self.auth is not None
        ctx = self.auth.context
        if not ctx.complete:
            if pdu.auth is None:
                self._fail("the server answered an authenticated bind without an auth verifier")
                return
            try:
                token = ctx.step(pdu.auth.value)
            except AuthError as e:
                self._fail(f"authentication failed: {e}")
                return
            if token and ctx.complete and ctx.third_leg == "auth3":
                self._send(Auth3(call_id=self.next_call_id(), auth=self._verifier(token)))
            elif token:
                cid = self.next_call_id()
                self._auth_call = cid
                self._proposed[cid] = {}
                # The leg re-proposes the contexts already accepted: Samba refuses an alter_context
                # with none (nca_proto_error), as Windows clients never send one.
                elems = tuple(ContextElement(i, s, (const.NDR20,)) for i, s in self.contexts.items())
                self._send(
                    AlterContext(
                        call_id=cid,
                        max_xmit_frag=self.limits.max_fragment,
                        max_recv_frag=self.limits.max_fragment,
                        assoc_group_id=self.assoc_group_id,
                        contexts=elems,
                        auth=self._verifier(token),
                    )
                )
                return
        if not ctx.complete:
            self._fail("the security context did not complete")
            return
        level = self.auth.auth_level
        need = Protection.NONE
        if level >= AuthLevel.PACKET:
            need |= Protection.INTEGRITY
        if level >= AuthLevel.PRIVACY:
            need |= Protection.CONFIDENTIALITY
        if need & ctx.protections != need:
            # A server (or anyone in the path of its unprotected challenge) that takes away signing
            # or sealing gets no call: what we send at this level would go out unprotected, or not
            # at all (MS-RPCE 3.3.1.5.2.1: the level is the client's to choose). Found by fuzzing.
            self._fail(f"the security context negotiated {ctx.protections}, auth level {level} needs {need}")
            return
        if self._bound_event is not None:
            self._events.append(self._bound_event)
            self._bound_event = None

    def _on_bind_nak(self, pdu: Pdu, little: bool) -> None:
        assert isinstance(pdu, BindNak)
        self._proposed.pop(pdu.call_id, None)
        self.state = State.CLOSED
        self._events.append(BindRejected(reason=pdu.reason))
        self._events.append(Closing(reason=f"bind_nak reason {pdu.reason}"))

    def _on_response(self, pdu: Pdu, little: bool) -> None:
        assert isinstance(pdu, Response)
        cid = pdu.call_id
        if cid not in self.pending:
            return  # an answer to a call we orphaned or already finished
        stub = pdu.stub
        if self.auth is not None and self.auth.protects:
            if pdu.auth is None or pdu.auth.context_id != self.auth.context_id:
                self._fail(f"unprotected response to call {cid} on a protected association")
                return
            try:
                check_pad(pdu.auth.pad_length, self._body_end - REQUEST_OVERHEAD)
                stub = unprotect(
                    self.auth,
                    self._raw,
                    REQUEST_OVERHEAD,
                    self._body_end,
                    pdu.auth.pad_length,
                    pdu.auth.value,
                )
            except AuthError as e:
                self._fail(f"response signature refused: {e}")
                return
        reply = self._calls.get(cid)
        first_and_last = pdu.flags & (PFC.FIRST_FRAG | PFC.LAST_FRAG) == PFC.FIRST_FRAG | PFC.LAST_FRAG
        if first_and_last and len(stub) <= self.limits.max_call_size:  # whole: its stub as it is
            self._drop(cid)
            self.pending.discard(cid)
            self._events.append(ResponseReceived(cid, stub, little))
            return
        if pdu.flags & PFC.FIRST_FRAG or reply is None:
            self._drop(cid)  # a first fragment starts the response again
            reply = self._calls[cid] = _Reply(little=little)
        if self._append(cid, reply, stub, pdu.alloc_hint) and pdu.flags & PFC.LAST_FRAG:
            self._reassembled(cid, reply)

    def _on_fault(self, pdu: Pdu, little: bool) -> None:
        assert isinstance(pdu, Fault)
        cid = pdu.call_id
        self._drop(cid)
        if cid in self.pending or cid == 0:
            self.pending.discard(cid)
            self._events.append(
                FaultReceived(
                    call_id=cid, status=pdu.status, did_not_execute=bool(pdu.flags & PFC.DID_NOT_EXECUTE)
                )
            )
        elif cid == self._auth_call:  # the handshake's alter_context refused: the bind fails with it
            self._auth_call = None
            self._proposed.pop(cid, None)
            self._events.append(
                FaultReceived(call_id=self._auth_origin, status=pdu.status, did_not_execute=True)
            )
        elif cid in self._proposed:  # a fault answering a bind / alter_context
            self._proposed.pop(cid)
            self._events.append(FaultReceived(call_id=cid, status=pdu.status, did_not_execute=True))

    def _on_shutdown(self, pdu: Pdu, little: bool) -> None:
        self._events.append(ShutdownRequested())


_HANDLERS: dict[str, Callable[[ClientAssociation, Pdu, bool], None]] = {
    "bind_ack": ClientAssociation._on_bind_ack,
    "bind_nak": ClientAssociation._on_bind_nak,
    "response": ClientAssociation._on_response,
    "fault": ClientAssociation._on_fault,
    "shutdown": ClientAssociation._on_shutdown,
}
