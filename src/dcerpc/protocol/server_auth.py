"""The server role's security contexts: which one each PDU belongs to, and the handshake legs.

An association holds an unauthenticated default context and up to MAX_AUTH_CONTEXTS (2049)
authenticated ones, keyed by auth_context_id (MS-RPCE 3.3.1.5.2, security context multiplexing).
A PDU without a verifier belongs to the default (or, once a bind or alter_context set one up at
connect level and no request has named a context, to that connect-level context); one with a
verifier to the context its auth_context_id names, made on first sight. Each context is
*started* by the leg that names its provider, *finished* when the handshake completes, and
*invalid* once anything about it was refused: an invalid context serves nothing again.

The decisions (which violation each failure is) are the observed Windows behaviour that Samba's
raw-PDU suite checks; the answers are rules.ANSWERS'. Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..auth.base import AuthError, Protection, SecurityProvider
from ..pdu.co import AuthVerifier
from ..pdu.constants import AuthLevel
from .rules import KNOWN_AUTH_TYPES, MAX_AUTH_CONTEXTS, Violation
from .security import NULL_CONTEXT, AuthState

__all__ = ["Refusal", "SecurityContexts"]


@dataclass(frozen=True, slots=True)
class Refusal:
    """A leg refused: the violation and the log's words for it."""

    kind: Violation
    text: str


class SecurityContexts:
    """One association's security contexts (server role)."""

    def __init__(self, providers: dict[int, SecurityProvider]) -> None:
        self.providers = providers
        self.by_id: dict[int, AuthState] = {}
        # the unauthenticated context: finished by the bind (MS-RPCE 3.3.1.5.2.1)
        self.default = AuthState(NULL_CONTEXT, 0, AuthLevel.NONE, 0)
        self.connect_default: AuthState | None = None  # a connect-level context requests default to
        self.explicit_connect = False  # a request named a connect-level context: no default any more
        self.client_header_sign = False  # the client asked for header signing (bind or alter)
        self.mismatch = False  # the last lookup's verifier differed from its context in type or level

    def __bool__(self) -> bool:
        return bool(self.by_id)

    def lookup(self, verifier: AuthVerifier | None, is_request: bool, first: bool) -> AuthState | Refusal:
        """The context a PDU belongs to (made when its auth_context_id is new). A first fragment
        whose verifier names a known context with another type or level makes that context
        invalid; any PDU's such verifier sets :attr:`mismatch`."""
        self.mismatch = False
        if verifier is None:
            if is_request and self.connect_default is not None:
                return self.connect_default
            return self.default
        if is_request:
            self.connect_default = None
            if verifier.auth_level == AuthLevel.CONNECT:
                self.explicit_connect = True
        state = self.by_id.get(verifier.context_id)
        if state is not None:
            if state.auth_type != verifier.auth_type or state.auth_level != verifier.auth_level:
                self.mismatch = True
                if first:
                    state.invalid = True
            return state
        if len(self.by_id) >= MAX_AUTH_CONTEXTS:
            return Refusal(
                Violation.TOO_MANY_AUTH_CONTEXTS, f"more than {MAX_AUTH_CONTEXTS} security contexts"
            )
        state = self.by_id[verifier.context_id] = AuthState(
            NULL_CONTEXT, verifier.auth_type, verifier.auth_level, verifier.context_id
        )
        if is_request:
            state.invalid = True  # a request cannot start a handshake
        return state

    def bind_finished(self, state: AuthState) -> None:
        """The bind was answered: the unauthenticated context serves PDUs without a verifier."""
        default = self.default
        if state is not default and not default.started and not default.invalid:
            default.started = default.finished = True

    def start(
        self, state: AuthState, verifier: AuthVerifier, header_sign: bool, alter: bool
    ) -> Refusal | None:
        """Begin the handshake ``verifier`` asks for on a context not yet started."""
        if state.started:
            return Refusal(Violation.ALTER_AUTH_REFUSED, "the security context was started already")
        state.started = True
        if state.invalid or state.finished:
            return Refusal(Violation.ALTER_AUTH_REFUSED, "the security context cannot be started")
        # the level is looked at before the type (observed Windows behaviour)
        if not AuthLevel.CONNECT <= verifier.auth_level <= AuthLevel.PRIVACY:
            return self._refused(
                alter, Violation.BAD_AUTH_LEVEL, f"auth level {verifier.auth_level} is not connect..privacy"
            )
        if verifier.auth_level == AuthLevel.CALL:
            # no provider protects calls but not packets (MS-RPCE 2.2.1.1.8 maps call to packet on
            # connection-oriented transports; Windows refuses it in a bind as it refuses a provider)
            known = verifier.auth_type in KNOWN_AUTH_TYPES
            kind = Violation.AUTH_TYPE_UNAVAILABLE if known else Violation.UNKNOWN_AUTH_TYPE
            return self._refused(alter, kind, "auth level call is not served")
        state.auth_type, state.auth_level = verifier.auth_type, verifier.auth_level
        state.context_id = verifier.context_id
        if state.auth_level == AuthLevel.CONNECT and not self.explicit_connect:
            self.connect_default = state
        provider = self.providers.get(verifier.auth_type)
        if provider is None:
            kind = (
                Violation.AUTH_TYPE_UNAVAILABLE
                if verifier.auth_type in KNOWN_AUTH_TYPES
                else Violation.UNKNOWN_AUTH_TYPE
            )
            return self._refused(alter, kind, f"auth type {verifier.auth_type} is not configured here")
        state.context = provider.server_context()
        state.header_sign = header_sign
        return None

    @staticmethod
    def _refused(alter: bool, kind: Violation, text: str) -> Refusal:
        # an alter_context that cannot start its context is access denied, whatever the cause
        return Refusal(Violation.ALTER_AUTH_REFUSED if alter else kind, text)

    @staticmethod
    def step(state: AuthState, token: bytes) -> tuple[bytes | None, str | None]:
        """One leg of the handshake: our answer, or why the provider refused."""
        try:
            out = state.context.step(token)
        except AuthError as e:
            return None, str(e)
        if state.context.complete:
            state.finished = True
        return out, None

    @staticmethod
    def level_shortfall(state: AuthState) -> str | None:
        """Why a finished context cannot serve its auth level (None: it can).

        Privacy needs a context that negotiated confidentiality and integrity (an NTLM without
        NEGOTIATE_SEAL, or an anonymous logon, is refused when its handshake completes: observed
        Windows behaviour, and Samba's, whose gensec server requires SEAL and SIGN at privacy).
        Packet and integrity are not checked here: a context that cannot sign fails the first
        request's signature instead (observed Windows behaviour; Samba's server wants SIGN only as a
        client).
        """
        if state.auth_level < AuthLevel.PRIVACY:
            return None
        need = Protection.INTEGRITY | Protection.CONFIDENTIALITY
        if need & state.context.protections == need:
            return None
        return "auth level privacy, but the security context negotiated no sealing"
