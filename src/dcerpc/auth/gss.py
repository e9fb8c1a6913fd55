"""A :class:`SecurityContext` over a pyspnego context: NTLM, Kerberos and SPNEGO as RPC uses them.

pyspnego does the mechanisms (tokens, keys, signatures, RC4 / AES); this adapter maps the RPC
vocabulary onto it:

- ``step`` is ``ContextProxy.step``; pyspnego's errors become :class:`AuthError`.
- ``sign`` / ``verify`` are the per-message MIC with the context's sequence numbers, so a replayed or
  reordered PDU fails verification.
- ``seal`` / ``unseal`` are IOV wrapping: the PDU header and sec_trailer travel as SIGN_ONLY buffers
  (SSPI's READONLY_WITH_CHECKSUM), the stub and padding as the DATA buffer, and the signature is the
  HEADER buffer (MS-RPCE 3.3.1.5.2.2).

Which octets are signed is the association's business, with one mechanism quirk it must know:
NTLM signs the whole PDU whether or not header signing was negotiated, Kerberos only when it was
(Windows and Samba agree; see PROTOCOL_NOTES.md). :attr:`GssContext.signs_whole_pdu` carries it.

pyspnego's NTLM acceptor reads its users from the file named by the environment variable
NTLM_USER_FILE (its only store on Linux). A context whose pyspnego calls may read it (an NTLM or SPNEGO
acceptor, a client without explicit credentials) makes them inside a
:class:`~.ntlm_users.UsersFileGuard`: one process-wide lock with the variable set to that context's
file, so several servers in one process, and clients beside them, each see their own. An acceptor
with a users file also passes the client's tokens through a :class:`~.ntlm_v2.ResponseNormaliser`,
so NTLMv2 responses from Samba and impacket verify, and an NTLM or SPNEGO acceptor's tokens through
:class:`~.acceptor.AcceptorAnswers`, which answers the anonymous logon and the SPNEGO exchanges
pyspnego answers otherwise than Windows and Samba. Only public pyspnego API is used (docs/pyspnego.md
says where it falls short).

A complete context knows what it negotiated (:attr:`GssContext.protections`, read from pyspnego's
``context_attr``): it signs and verifies only with integrity, seals only with confidentiality, so a
request at auth level integrity on an NTLM context that negotiated no signing fails its signature
(rather than matching NTLM's constant null signature).
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal

import spnego
import spnego.exceptions
import spnego.iov
from spnego import ContextProxy, ContextReq

from .acceptor import AcceptorAnswers
from .base import AuthError, Protection, SecurityContext
from .ntlm_users import AS_IS, UsersFile, UsersFileGuard
from .ntlm_v2 import ResponseNormaliser

__all__ = ["NTLM_OID", "GssContext", "context_flags"]

NTLM_OID = "1.3.6.1.4.1.311.2.2.10"
_NTLM_SIGNATURE = 16  # MS-NLMP 2.2.2.9: version, checksum, sequence number


def context_flags(auth_level: int, *, dce_style: bool = False) -> ContextReq:
    """The GSS flags a client asks for at an RPC authentication level (MS-RPCE 3.3.1.5.2)."""
    flags = ContextReq.mutual_auth
    if auth_level >= 4:  # packet, integrity: every fragment signed and sequenced
        flags |= ContextReq.integrity | ContextReq.replay_detect | ContextReq.sequence_detect
    if auth_level >= 6:  # privacy: sealed as well
        flags |= ContextReq.confidentiality
    if dce_style:
        flags |= ContextReq.dce_style
    return flags


def _reason(e: Exception) -> str:
    msg = getattr(e, "message", None) or str(e)
    return " ".join(str(msg).split())


class GssContext(SecurityContext):
    """One pyspnego context serving one auth_context_id."""

    def __init__(
        self,
        make: Any,
        auth_type: int,
        *,
        reads_users: Literal["acceptor", "client"] | None = None,
        users: UsersFile | None = None,
        third_leg: str = "auth3",
        answers: AcceptorAnswers | None = None,
    ) -> None:
        """Args:
        make: a callable returning the pyspnego context (called inside the guard, if any).
        auth_type: the RPC auth type this context answers to (10, 9, 16).
        reads_users: pyspnego may read NTLM_USER_FILE in this context: an "acceptor"'s calls then
            see ``users`` (or no file at all), a "client"'s the process's own value.
        users: the NTLM users of an acceptor.
        third_leg: how a client delivers a last token ("auth3" or "alter_context").
        answers: an NTLM or SPNEGO acceptor's answers where they differ from pyspnego's.
        """
        self.auth_type = auth_type
        self.third_leg = third_leg
        self._guard: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if reads_users == "acceptor":
            self._guard = UsersFileGuard(users.path if users else None)
        elif reads_users == "client":
            self._guard = UsersFileGuard(AS_IS)
        try:
            with self._guard:
                self._ctx: ContextProxy = make()
        except Exception as e:  # pyspnego's errors, and krb5's when a ticket cannot be had
            raise AuthError(f"cannot start {auth_type_name(auth_type)}: {_reason(e)}") from e
        self._normaliser = ResponseNormaliser(users) if users is not None else None
        self._answers = answers
        self._sizes: dict[bool, int] = {}
        self._done = False  # complete (pyspnego's context, or our own answer to the last leg)
        self._integrity = False  # what the complete context negotiated
        self._confidentiality = False

    @property
    def complete(self) -> bool:
        return self._done

    @property
    def protections(self) -> Protection:
        out = Protection.NONE
        if self._integrity:
            out |= Protection.INTEGRITY
        if self._confidentiality:
            out |= Protection.CONFIDENTIALITY
        return out

    @property
    def negotiated(self) -> str:
        """The mechanism actually in use ("ntlm", "kerberos"), once known."""
        return str(self._ctx.negotiated_protocol or "")

    @property
    def signs_whole_pdu(self) -> bool:
        return self.negotiated == "ntlm"

    def step(self, token: bytes | None) -> bytes | None:
        if self._done:
            raise AuthError(f"the {auth_type_name(self.auth_type)} handshake is already complete")
        answers = self._answers
        if answers is not None and token and answers.anonymous(token):
            # pyspnego refuses the anonymous logon; Windows and Samba accept it (acceptor.py)
            out = answers.answer()
            self.anonymous = True
            self._finish()
            return out
        normaliser = self._normaliser
        if normaliser is not None:
            token = normaliser.inbound(token)
        if answers is not None:
            answers.inbound(token)
        try:
            with self._guard:
                out = self._ctx.step(token)
        except spnego.exceptions.SpnegoError as e:
            self._attempted()
            raise AuthError(_reason(e)) from e
        except Exception as e:  # a malformed token can surface as anything from a parser
            self._attempted()
            raise AuthError(f"malformed {auth_type_name(self.auth_type)} token: {e!r}") from e
        if normaliser is not None:
            normaliser.outbound(out)
        if answers is not None:
            out = answers.outbound(out, bool(self._ctx.context_attr & ContextReq.integrity))
        if self._ctx.complete or (answers is not None and answers.completed):
            if self._ctx.usage == "accept":
                self.principal = self._ctx.client_principal
            attr = self._ctx.context_attr
            self._integrity = bool(attr & ContextReq.integrity)
            self._confidentiality = bool(attr & ContextReq.confidentiality)
            self._finish()
        return out or None

    def _attempted(self) -> None:
        """A refused handshake: the name its AUTHENTICATE gave, when NTLM carried one (for the
        audit trail; pyspnego's errors do not say it)."""
        if self._normaliser is not None and self._normaliser.user is not None:
            self.attempted_user = self._normaliser.user
            self.attempted_domain = self._normaliser.domain

    def _finish(self) -> None:
        self._done = True
        self._normaliser = None  # the handshake's messages are no longer needed
        self._answers = None

    def signature_size(self, seal: bool = False) -> int:
        if self.negotiated == "ntlm":
            return _NTLM_SIGNATURE
        cached = self._sizes.get(seal)
        if cached is None:
            if not self._ctx.complete:
                return _NTLM_SIGNATURE  # not established yet: a placeholder, not cached
            cached = self._sizes[seal] = _gss_token_size(self._ctx, seal)
        return cached

    def sign(self, data: bytes) -> bytes:
        if not self._integrity:
            raise AuthError("cannot sign: the security context negotiated no integrity")
        try:
            return bytes(self._ctx.sign(data))
        except spnego.exceptions.SpnegoError as e:
            raise AuthError(f"cannot sign: {_reason(e)}") from e

    def verify(self, data: bytes, signature: bytes) -> None:
        if not self._integrity:
            raise AuthError("signature does not verify: the security context negotiated no integrity")
        try:
            self._ctx.verify(data, signature)
        except spnego.exceptions.SpnegoError as e:
            raise AuthError(f"signature does not verify: {_reason(e)}") from e

    def seal(self, prefix: bytes, plain: bytes, suffix: bytes) -> tuple[bytes, bytes]:
        if not self._confidentiality:
            raise AuthError("cannot seal: the security context negotiated no confidentiality")
        bt = spnego.iov.BufferType
        iov = [
            spnego.iov.IOVBuffer(bt.sign_only, prefix),
            spnego.iov.IOVBuffer(bt.data, plain),
            spnego.iov.IOVBuffer(bt.sign_only, suffix),
            spnego.iov.IOVBuffer(bt.header, True),  # allocated by the mechanism
        ]
        try:
            res = self._ctx.wrap_iov(iov, encrypt=True).buffers
        except spnego.exceptions.SpnegoError as e:
            raise AuthError(f"cannot seal: {_reason(e)}") from e
        return bytes(res[1].data or b""), bytes(res[3].data or b"")

    def unseal(self, prefix: bytes, cipher: bytes, suffix: bytes, signature: bytes) -> bytes:
        if not self._confidentiality:
            raise AuthError("sealed PDU does not verify: the security context negotiated no confidentiality")
        bt = spnego.iov.BufferType
        iov = [
            spnego.iov.IOVBuffer(bt.sign_only, prefix),
            spnego.iov.IOVBuffer(bt.data, cipher),
            spnego.iov.IOVBuffer(bt.sign_only, suffix),
            spnego.iov.IOVBuffer(bt.header, signature),
        ]
        try:
            res = self._ctx.unwrap_iov(iov).buffers
        except spnego.exceptions.SpnegoError as e:
            raise AuthError(f"sealed PDU does not verify: {_reason(e)}") from e
        return bytes(res[1].data or b"")


def _gss_token_size(ctx: ContextProxy, seal: bool) -> int:
    """The token a Kerberos context adds to a PDU: a wrap token (seal) or a MIC token (sign).

    Asked of GSSAPI (gss_wrap_iov_length) for a DCE-style IOV layout, where the padding and trailer
    live in the header buffer: 76 octets sealed and 28 signed with AES, as Windows sends them. A MIC
    token (RFC 4121 4.2.6.1) has the length of an unencrypted wrap token's header and trailer.
    """
    import gssapi.raw as graw  # type: ignore[import-not-found, unused-ignore]  # noqa: PLC0415

    inner: Any = ctx
    while isinstance(getattr(inner, "_context", None), ContextProxy):  # SPNEGO around Kerberos
        inner = inner._context
    iov = graw.IOV(graw.IOVBufferType.header, b"", std_layout=False)
    graw.wrap_iov_length(inner._context, iov, confidential=seal)
    return len(iov[0].value or b"")


def auth_type_name(auth_type: int) -> str:
    return {9: "SPNEGO", 10: "NTLM", 16: "Kerberos"}.get(auth_type, f"auth type {auth_type}")
