"""Bind, alter_context and auth3 on the server side: presentation contexts, fragment sizes, the
association group, and the legs of each security context's handshake (C706 12.6.4.1-5, MS-RPCE
3.3.1.5.2-3). Part of :class:`~dcerpc.protocol.server.ServerAssociation` (a mixin: the association's
state is its own, declared here for the type checker).

One new presentation context is accepted per bind or alter_context, sizes are negotiated as
rules.negotiate_fragment says, and every refusal is a rules.Violation answered by the association's
``_refuse``; docs/protocol-behaviours.md explains each rule and where it comes from.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping

from ..pdu import constants as const
from ..pdu.co import (
    AlterContext,
    AlterContextResp,
    AuthVerifier,
    Bind,
    BindAck,
    ContextElement,
    ContextResultItem,
    Pdu,
)
from ..pdu.constants import PFC, ContextResult, ProviderReason, PType
from ..pdu.header import Header
from ..pdu.syntax import SyntaxId
from .events import Authenticated, BindAccepted, Event
from .framing import P, Receiver
from .groups import Group, GroupTable
from .rules import State, Violation, negotiate_fragment
from .security import SEC_TRAILER, AuthState
from .server_auth import Refusal, SecurityContexts

__all__ = ["Negotiation"]

REQUEST_HEADER = 24  # a request's header: what an auth_pad_length may not claim (framing.CALL_HEADER)


def _proposed(contexts: tuple[ContextElement, ...], rejected: dict[int, int]) -> dict[int, SyntaxId]:
    """The abstract syntax each rejected context proposed (the audit trail's: an interface or
    version nobody serves is what a brute force or version sweep tries)."""
    if not rejected:
        return {}
    return {c.context_id: c.abstract_syntax for c in contexts if c.context_id in rejected}


class Negotiation(Receiver[P]):
    """The bind, alter_context and auth3 handlers of the server association (the attributes they
    set are slots of this class; the ones they read, the association's)."""

    __slots__ = ("_header_sign", "group", "max_recv_frag", "max_xmit_frag", "multiplexed", "state")

    _header_sign: bool  # PFC_SUPPORT_HEADER_SIGN agreed (MS-RPCE 3.3.1.5.2.2)
    group: Group | None
    max_recv_frag: int
    max_xmit_frag: int
    multiplexed: bool  # PFC_CONC_MPX agreed (C706 12.6.3.1)
    state: State
    # the association's, set in its __init__
    security: SecurityContexts
    contexts: dict[int, SyntaxId]
    stats: MutableMapping[str, int]
    _abstract: dict[int, SyntaxId]
    _groups: GroupTable
    _match: Callable[[SyntaxId], SyntaxId | None]
    # asked before a security context is started (a handshake costs the server a provider's
    # work): False refuses it, answered as rules.ANSWERS says (None: no limit)
    admit_handshake: Callable[[], bool] | None
    _sec_addr: bytes
    _header: Header
    _events: list[Event]

    def _refuse(self, kind: Violation, call_id: int, text: str, context_id: int = 0) -> None:
        raise NotImplementedError

    def _send(self, pdu: Pdu) -> None:
        raise NotImplementedError

    # bind / alter_context ------------------------------------------------------------------------

    def _trailer_fault(self, verifier: AuthVerifier, data_end: int) -> str | None:
        """What is wrong with a bind's, alter_context's or auth3's sec_trailer (None: nothing).

        MS-RPCE 2.2.2.11: the trailer starts 4-aligned. auth_pad_length means nothing in these
        PDUs, but it may not claim more than the PDU holds past a request's header, nor more than
        the octets before the trailer when there are any (observed Windows behaviour)."""
        h = self._header
        trailer = h.frag_length - h.auth_length - SEC_TRAILER
        if trailer % 4:
            return f"sec_trailer at {trailer} is not 4-aligned"
        room = max(0, h.frag_length - REQUEST_HEADER - SEC_TRAILER - h.auth_length)
        before = trailer - data_end  # octets between the body and the trailer
        if verifier.pad_length > room or (before and before < verifier.pad_length):
            return f"auth_pad_length {verifier.pad_length} exceeds the PDU"
        return None

    @staticmethod
    def _context_list_end(contexts: tuple[ContextElement, ...]) -> int:
        return 28 + sum(24 + 20 * len(c.transfer_syntaxes) for c in contexts)

    def _on_bind(self, pdu: Pdu) -> None:
        assert isinstance(pdu, Bind)
        cid = pdu.call_id
        sec = self.security
        state = sec.lookup(pdu.auth, False, True)
        if isinstance(state, Refusal):
            self._refuse(state.kind, cid, state.text)
            return
        size = negotiate_fragment(pdu.max_xmit_frag, pdu.max_recv_frag, self.limits.max_fragment)
        self.max_xmit_frag = self.max_recv_frag = size
        if pdu.assoc_group_id:
            group = self._groups.join(pdu.assoc_group_id)
            if group is None:
                text = f"bind names unknown association group 0x{pdu.assoc_group_id:08x}"
                self._refuse(Violation.UNKNOWN_GROUP, cid, text)
                return
        else:
            group = self._groups.create()
        self.group = group
        # in a bind, a bad list and a changed context are both a bad list (bind_nak)
        negotiated = self._contexts(pdu, Violation.BAD_CONTEXT_LIST, Violation.BAD_CONTEXT_LIST)
        if negotiated is None:
            return
        results, accepted, rejected, flags = negotiated
        if pdu.auth is None:
            state.started = True
        else:
            wrong = self._trailer_fault(pdu.auth, self._context_list_end(pdu.contexts))
            if wrong:
                self._refuse(Violation.BAD_AUTH_TRAILER, cid, wrong)
                return
            if self.admit_handshake is not None and not self.admit_handshake():
                self._refuse(Violation.HANDSHAKE_RATE, cid, "handshakes from this source over their rate")
                return
            refusal = sec.start(state, pdu.auth, False, alter=False)
            if refusal is not None:
                self._refuse(refusal.kind, cid, refusal.text)
                return
        if pdu.flags & PFC.SUPPORT_HEADER_SIGN:
            flags |= self._agree_header_signing()
        sec.bind_finished(state)
        out_auth: AuthVerifier | None = None
        if pdu.auth is None:
            state.finished = True
        else:
            token, failed = self._step(state, pdu.auth.value)
            if failed is None and state.finished:
                failed = sec.level_shortfall(state)
            if failed is not None:
                state.invalid = True
                self._refuse(Violation.AUTH_REFUSED, cid, f"authentication refused: {failed}")
                return
            out_auth = self._answer_verifier(state, token)
        self._send(
            BindAck(
                call_id=cid,
                flags=flags,
                auth=out_auth,
                max_xmit_frag=size,
                max_recv_frag=size,
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
                rejected_syntaxes=_proposed(pdu.contexts, rejected),
                assoc_group_id=group.id,
                max_xmit_frag=size,
                max_recv_frag=size,
                auth_type=state.auth_type,
                auth_level=state.auth_level,
            )
        )

    def _step(self, state: AuthState, token: bytes) -> tuple[bytes | None, str | None]:
        """One leg of a handshake (SecurityContexts.step); its end, completed or refused, is an
        Authenticated event (the audit trail's)."""
        out, failed = self.security.step(state, token)
        ctx = state.context
        if failed is not None or state.finished:
            self._events.append(
                Authenticated(
                    auth_type=state.auth_type,
                    auth_level=state.auth_level,
                    context_id=state.context_id,
                    principal=ctx.principal if failed is None else None,
                    anonymous=ctx.anonymous,
                    failure=failed,
                    user=ctx.attempted_user,
                    domain=ctx.attempted_domain,
                )
            )
        return out, failed

    def _agree_header_signing(self) -> int:
        """A bind or alter_context offered PFC_SUPPORT_HEADER_SIGN: we always agree, the first time
        it is offered (MS-RPCE 3.3.1.5.2.2); every security context then signs headers."""
        sec = self.security
        sec.client_header_sign = True
        self._header_sign = True
        for state in sec.by_id.values():
            state.header_sign = True
        return PFC.SUPPORT_HEADER_SIGN

    @staticmethod
    def _answer_verifier(state: AuthState, token: bytes | None) -> AuthVerifier:
        return AuthVerifier(
            auth_type=state.auth_type,
            auth_level=state.auth_level,
            context_id=state.context_id,
            value=token or b"",
        )

    def _contexts(
        self, pdu: Bind, bad_list: Violation, changed: Violation
    ) -> tuple[tuple[ContextResultItem, ...], dict[int, SyntaxId], dict[int, int], int] | None:
        """A bind's or alter_context's presentation contexts negotiated: the results, the accepted
        and rejected contexts, and the answer's flags (PFC_CONC_MPX echoed when a context was
        made); None when the list was refused (answered)."""
        bind = pdu.ptype == PType.BIND
        wrong = self._context_list_fault(pdu.contexts, bind)
        if wrong:
            self._refuse(bad_list, pdu.call_id, wrong)
            return None
        negotiated = self._negotiate(pdu.contexts, bind)
        if isinstance(negotiated, str):
            self._refuse(changed, pdu.call_id, negotiated)
            return None
        results, accepted, rejected, created = negotiated
        flags = PFC.FIRST_FRAG | PFC.LAST_FRAG
        if pdu.flags & PFC.CONC_MPX and created:
            self.multiplexed = True
            flags |= PFC.CONC_MPX
        return results, accepted, rejected, flags

    @staticmethod
    def _context_list_fault(contexts: tuple[ContextElement, ...], bind: bool) -> str | None:
        """C706 12.6.3.1: at least one context, each with at least one transfer syntax; MS-RPCE
        3.3.1.5.3: at most one bind-time feature negotiation context (its first syntax says so)."""
        if not contexts:
            return "no presentation contexts"
        features = 0
        for elem in contexts:
            if not elem.transfer_syntaxes:
                return f"presentation context {elem.context_id} has no transfer syntax"
            if bind and elem.transfer_syntaxes[0].uuid.int >> 64 == const.BTFN_HIGH:
                features += 1
        if features > 1:
            return "more than one bind-time feature negotiation context"
        return None

    def _on_alter(self, pdu: Pdu) -> None:
        assert isinstance(pdu, AlterContext)
        cid = pdu.call_id
        sec = self.security
        state = sec.lookup(pdu.auth, False, True)
        if isinstance(state, Refusal):
            self._refuse(state.kind, cid, state.text)
            return
        ok, refusal = self._alter_auth(state, pdu)
        if refusal is not None:
            self._refuse(refusal.kind, cid, refusal.text)
            return
        negotiated = self._contexts(pdu, Violation.ALTER_BAD_CONTEXT_LIST, Violation.CONTEXT_CHANGED)
        if negotiated is None:
            return
        results, accepted, rejected, flags = negotiated
        if not ok:
            offered = pdu.auth.auth_type if pdu.auth is not None else 0
            if offered != state.auth_type:
                self._refuse(Violation.ALTER_AUTH_CHANGED, cid, "alter_context changes the auth type")
            else:
                self._refuse(Violation.ALTER_AUTH_REFUSED, cid, "alter_context on a refused security context")
            return
        if pdu.flags & PFC.SUPPORT_HEADER_SIGN:
            if not sec.client_header_sign:
                flags |= self._agree_header_signing()
            elif self._header_sign:
                flags |= PFC.SUPPORT_HEADER_SIGN
        out_auth: AuthVerifier | None = None
        if pdu.auth is not None:
            state.header_sign = self._header_sign
            token, failed = self._step(state, pdu.auth.value)
            if failed is not None:
                state.invalid = True
                # a refused token (wrong password, unknown user) is access denied, as Samba 4.18+
                # and Windows answer it (4.17 said sec_pkg_error)
                self._refuse(Violation.ALTER_AUTH_REFUSED, cid, f"authentication refused: {failed}")
                return
            short = sec.level_shortfall(state) if state.finished else None
            if short is not None:
                state.invalid = True
                self._refuse(Violation.ALTER_LEVEL_UNAVAILABLE, cid, short)
                return
            out_auth = self._answer_verifier(state, token)
        assert self.group is not None
        self._send(
            AlterContextResp(
                call_id=cid,
                flags=flags,
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
                rejected_syntaxes=_proposed(pdu.contexts, rejected),
                assoc_group_id=self.group.id,
                max_xmit_frag=self.max_xmit_frag,
                max_recv_frag=self.max_recv_frag,
                alter=True,
                auth_type=state.auth_type,
                auth_level=state.auth_level,
            )
        )

    def _alter_auth(self, state: AuthState, pdu: AlterContext) -> tuple[bool, Refusal | None]:
        """Whether an alter_context's authentication may proceed; a refusal that is answered at
        once, or (False, None) for one answered after the contexts are looked at."""
        verifier = pdu.auth
        if verifier is None:  # a pure change of presentation contexts
            return state.finished, None
        if state.finished:
            return False, Refusal(
                Violation.ALTER_AUTH_REFUSED, "alter_context continues a finished handshake"
            )
        wrong = self._trailer_fault(verifier, self._context_list_end(pdu.contexts))
        if wrong:
            return False, Refusal(Violation.ALTER_BAD_AUTH_TRAILER, wrong)
        if not state.started:
            if self.admit_handshake is not None and not self.admit_handshake():
                return False, Refusal(
                    Violation.ALTER_HANDSHAKE_RATE, "handshakes from this source over their rate"
                )
            refusal = self.security.start(state, verifier, self._header_sign, alter=True)
            return refusal is None, refusal
        if verifier.auth_type == 0:
            return False, Refusal(Violation.ALTER_AUTH_REFUSED, "alter_context continues with auth type none")
        same = (verifier.auth_type, verifier.auth_level, verifier.context_id) == (
            state.auth_type,
            state.auth_level,
            state.context_id,
        )
        return same and not state.invalid, None

    def _negotiate(
        self, proposed: tuple[ContextElement, ...], bind: bool
    ) -> tuple[tuple[ContextResultItem, ...], dict[int, SyntaxId], dict[int, int], bool] | str:
        """One result per proposed context, in order (C706 12.6.3.1, MS-RPCE 3.3.1.5.3); or why the
        list is a protocol error (a context id re-proposed with another abstract syntax).

        As Windows does, one new context is accepted per bind or alter_context: once one is, the
        rest are answered as not negotiated (transfer syntaxes not supported when we serve their
        interface, abstract syntax not supported when we do not). Returns the results, the
        accepted and rejected contexts, and whether a context was made."""
        null = const.NULL_SYNTAX
        results: list[ContextResultItem | None] = [None] * len(proposed)
        accepted: dict[int, SyntaxId] = {}
        rejected: dict[int, int] = {}
        if bind:
            for i, elem in enumerate(proposed):
                btfn = elem.transfer_syntaxes[0]
                if btfn.uuid.int >> 64 == const.BTFN_HIGH:
                    # bind-time feature negotiation: acknowledge what we offer of what was asked (the
                    # flags sit in the low octets of the syntax's last eight)
                    offered = int.from_bytes(btfn.uuid.bytes_le[8:10], "little")
                    ours = offered & (
                        const.BTFN_SECURITY_CONTEXT_MULTIPLEXING | const.BTFN_KEEP_CONNECTION_ON_ORPHAN
                    )
                    results[i] = ContextResultItem(ContextResult.NEGOTIATE_ACK, ours, null)
        done = False  # one context was accepted: the rest are only answered
        created = False
        for i, elem in enumerate(proposed):
            if results[i] is not None:
                continue
            served = self._match(elem.abstract_syntax)
            reason: ProviderReason | None = (
                ProviderReason.ABSTRACT_SYNTAX_NOT_SUPPORTED
                if served is None
                else ProviderReason.PROPOSED_TRANSFER_SYNTAXES_NOT_SUPPORTED
            )
            if served is not None and not done:
                ndr = const.NDR20 in elem.transfer_syntaxes
                known = self.contexts.get(elem.context_id)
                if known is not None:
                    if self._abstract.get(elem.context_id) != elem.abstract_syntax:
                        return f"presentation context {elem.context_id} changes its abstract syntax"
                    if ndr:
                        reason = None
                elif ndr and len(self.contexts) >= self.limits.max_contexts:
                    reason = ProviderReason.LOCAL_LIMIT_EXCEEDED
                elif ndr:
                    self.contexts[elem.context_id] = served
                    self._abstract[elem.context_id] = elem.abstract_syntax
                    created = True
                    reason = None
            if reason is None:
                assert served is not None
                accepted[elem.context_id] = served
                results[i] = ContextResultItem(ContextResult.ACCEPTANCE, 0, const.NDR20)
                done = True
            else:
                rejected[elem.context_id] = reason
                results[i] = ContextResultItem(ContextResult.PROVIDER_REJECTION, reason, null)
        return tuple(r for r in results if r is not None), accepted, rejected, created

    def _on_auth3(self, pdu: Pdu) -> None:
        cid = pdu.call_id
        state = self.security.lookup(pdu.auth, False, True)
        if isinstance(state, Refusal):
            self._refuse(state.kind, cid, state.text)
            return
        if not state.started or state.finished:
            self._refuse(Violation.AUTH3_OUT_OF_STATE, cid, "auth3 without a handshake in progress")
            return
        verifier = pdu.auth
        if verifier is None or state.invalid:
            state.invalid = True
            self._refuse(Violation.AUTH3_REFUSED, cid, "auth3 on a refused security context")
            return
        wrong = self._trailer_fault(verifier, REQUEST_HEADER - 4)  # rpc_auth_3's 4 pad octets
        if wrong:
            state.invalid = True
            self._refuse(Violation.AUTH3_BAD_TRAILER, cid, wrong)
            return
        if (verifier.auth_type, verifier.auth_level, verifier.context_id) != (
            state.auth_type,
            state.auth_level,
            state.context_id,
        ):
            state.invalid = True
            self._refuse(Violation.AUTH3_REFUSED, cid, "auth3 names another security context")
            return
        token, failed = self._step(state, verifier.value)
        if failed is None and state.finished:
            failed = self.security.level_shortfall(state)
        if failed is not None or not state.finished or token:
            # auth3 has no answer: the failure shows on the next request (access denied)
            state.invalid = True
            state.failed = failed or "the handshake did not complete"
            self._refuse(Violation.AUTH3_REFUSED, cid, f"authentication refused: {state.failed}")
