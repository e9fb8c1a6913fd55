"""The security-provider seam: what the associations need from NTLM, Kerberos, SPNEGO (or nothing).

A :class:`SecurityProvider` makes a :class:`SecurityContext` per authenticated presentation of an
association (one per auth_context_id). The association drives the handshake by handing each leg's
token to :meth:`SecurityContext.step` (bind -> bind_ack -> auth3 for three legs; alter_context
round trips for more) and, once complete, protects and checks every request and response fragment
through :meth:`sign` / :meth:`verify` / :meth:`seal` / :meth:`unseal`. Which octets are signed and which
are sealed is the association's business (MS-RPCE 3.3.1.5.2.2): the context only transforms them.

Providers know nothing of PDUs, and the associations know nothing of NTLM or Kerberos.
"""

from __future__ import annotations

import abc
import enum

from .._errors import RpcError

__all__ = ["AuthError", "ClientCredentials", "Protection", "SecurityContext", "SecurityProvider"]


class AuthError(RpcError):
    """Authentication failed, or a signature did not verify."""


class Protection(enum.Flag):
    """What a complete security context can do to messages (the mechanism's negotiated flags)."""

    NONE = 0
    INTEGRITY = enum.auto()  # sign and verify (NTLM's NEGOTIATE_SIGN, GSS_C_INTEG_FLAG)
    CONFIDENTIALITY = enum.auto()  # seal and unseal (NTLM's NEGOTIATE_SEAL, GSS_C_CONF_FLAG)


class SecurityContext(abc.ABC):
    """One security context (one auth_context_id on one association)."""

    auth_type: int
    # who the peer proved to be, once complete; None for an anonymous peer (it proved nothing)
    principal: str | None = None
    # the peer authenticated as nobody (anonymous NTLM, MS-NLMP 3.2.5.1.2): principal stays None
    anonymous: bool = False
    # the name a refused peer gave, where the mechanism shows it (an NTLM AUTHENTICATE's user and
    # domain); None when it does not (Kerberos: the client's name travels encrypted in the ticket)
    attempted_user: str | None = None
    attempted_domain: str | None = None
    # How a client sends the last leg when the handshake completes on its side with a token still
    # to deliver: "auth3" (NTLM, and Samba's Kerberos) or "alter_context" (MS-RPCE 3.3.1.5.2.1).
    third_leg: str = "auth3"

    @property
    @abc.abstractmethod
    def complete(self) -> bool:
        """True once the handshake is done and messages can be protected."""

    @property
    def protections(self) -> Protection:
        """What the complete context can give: an RPC auth level beyond it cannot be served.

        Contexts that do not say are taken to give both.
        """
        return Protection.INTEGRITY | Protection.CONFIDENTIALITY

    @property
    def signs_whole_pdu(self) -> bool:
        """True when signatures cover the whole PDU even without header signing.

        NTLM signs header, body, padding and sec_trailer whether or not PFC_SUPPORT_HEADER_SIGN
        was negotiated; Kerberos only when it was (MS-RPCE 3.3.1.5.2.2; Windows and Samba agree).
        """
        return False

    @abc.abstractmethod
    def step(self, token: bytes | None) -> bytes | None:
        """Consume the peer's token (None to start, client side); return ours (None: nothing to send).

        Raises:
            AuthError: the peer's token is refused (wrong password, unknown user, bad ticket).
        """

    @abc.abstractmethod
    def signature_size(self, seal: bool = False) -> int:
        """Octets of the auth value: a signature (integrity), or a sealed message's token (privacy).

        The two differ for Kerberos (a 28-octet MIC token; a 76-octet wrap token with AES).
        """

    @abc.abstractmethod
    def sign(self, data: bytes) -> bytes:
        """A signature over ``data`` (integrity level)."""

    @abc.abstractmethod
    def verify(self, data: bytes, signature: bytes) -> None:
        """Check a signature over ``data``; AuthError when it does not match (or is replayed)."""

    @abc.abstractmethod
    def seal(self, prefix: bytes, plain: bytes, suffix: bytes) -> tuple[bytes, bytes]:
        """Encrypt ``plain``; sign ``prefix + plain + suffix``. Returns (cipher, signature).

        ``prefix`` / ``suffix`` are signed but not encrypted (the PDU header and sec_trailer when
        header signing is on; empty otherwise), as in SSPI / GSS IOV wrapping.
        """

    @abc.abstractmethod
    def unseal(self, prefix: bytes, cipher: bytes, suffix: bytes, signature: bytes) -> bytes:
        """Decrypt ``cipher`` and verify ``signature`` over ``prefix + plain + suffix``; the plaintext."""


class SecurityProvider(abc.ABC):
    """Makes server-side security contexts for one auth_type (10 NTLM, 9 SPNEGO, 16 Kerberos)."""

    auth_type: int

    @abc.abstractmethod
    def server_context(self) -> SecurityContext:
        """A fresh context to accept a client's handshake."""


class ClientCredentials(abc.ABC):
    """What a client authenticates with; makes one client-side context per connection."""

    auth_type: int

    @abc.abstractmethod
    def client_context(self, target: str, auth_level: int = 6) -> SecurityContext:
        """A fresh context to authenticate to ``target`` (the server's host name) at ``auth_level``."""
