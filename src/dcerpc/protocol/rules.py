"""The association's rules as data: everything that decides what a PDU may do and what breaking a
rule gets on the wire lives here (after h11's ``_state.py``).

This module does not know which role it plays where a rule is the same for both: fragment-size
negotiation, the header checks every received fragment passes, the flags each PDU type may carry.
Where the roles differ, each has its own table (``SERVER``, ``CLIENT``): state x PDU type -> the
handler that takes it, or the violation it is.

Every refusal is a :class:`Violation`; :data:`ANSWERS` maps each kind, in this one place, to its
wire answer (a bind_nak reason, a fault status with or without PFC_DID_NOT_EXECUTE, or nothing) and
to whether the association closes after it. The text that goes with a violation is for the log
only: no code chooses an answer by reading it.

The answers are Windows Server's, as Samba's raw-PDU conformance suite (samba.tests.dcerpc.
raw_protocol, written against Windows) checks them; docs/protocol-behaviours.md explains each one
and cites C706 or MS-RPCE where they say it, "observed Windows behaviour" where neither does.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from ..pdu import constants as const
from ..pdu.constants import PType, RejectReason

__all__ = [
    "ANSWERS",
    "BIND_MAX_FRAGMENT",
    "CLIENT",
    "KNOWN_AUTH_TYPES",
    "MAX_AUTH_CONTEXTS",
    "MIN_NEGOTIATED_FRAGMENT",
    "SERVER",
    "WINDOWS_MAX_FRAGMENT",
    "Answer",
    "Role",
    "State",
    "Violation",
    "header_ok",
    "negotiate_fragment",
]


class State(enum.Enum):
    """Where an association is (C706 12.4; both roles)."""

    IDLE = "idle"  # client: nothing sent yet
    AWAIT_BIND = "await_bind"  # server: nothing received yet; client: bind sent, no answer yet
    OPEN = "open"  # bound: alter_context, requests and the rest
    CLOSED = "closed"  # a fatal violation or the transport's end: nothing more is taken


class Role(enum.Enum):
    SERVER = "server"
    CLIENT = "client"


# --- fragment sizes (shared) ---------------------------------------------------------------------

WINDOWS_MAX_FRAGMENT: Final = 5840
"""What Windows offers and receives over ncacn_ip_tcp (and Samba, DCERPC_FRAG_MAX_SIZE)."""
MIN_NEGOTIATED_FRAGMENT: Final = 2048
"""A bind's sizes are raised to at least this (observed Windows Server 2012R2 behaviour: a bind
offering 0 is answered with 2048 both ways)."""
BIND_MAX_FRAGMENT: Final = 0xFFFF
"""bind and alter_context may be as long as frag_length allows, whatever was negotiated."""


def negotiate_fragment(max_xmit: int, max_recv: int, ours: int) -> int:
    """The one fragment size both directions use after a bind (observed Windows behaviour, which
    Samba follows): the smaller of the client's two sizes, at least 2048, at most what we take,
    rounded down to a multiple of 8. C706 12.6.3.1 lets each direction differ; Windows answers the
    same value for both, and clients are built for it."""
    size = max(MIN_NEGOTIATED_FRAGMENT, min(max_xmit, max_recv))
    return min(size, ours) & 0xFFF8


def header_ok(minor: int, drep: bytes | bytearray, auth_length: int, frag_length: int) -> bool:
    """The checks every received PDU's header passes before its type is looked at (C706 12.6.3.1,
    MS-RPCE 2.2.2.1): version 5.0, integers big or little endian in ASCII with IEEE floats and the
    reserved data representation octets zero, an auth_length that fits the fragment."""
    return (
        minor == 0
        and drep[0] & ~0x10 == 0
        and drep[1] == 0
        and drep[2] == 0
        and drep[3] == 0
        and auth_length <= frag_length
    )


# --- authentication (server) -----------------------------------------------------------------

MAX_AUTH_CONTEXTS: Final = 2049
"""Security contexts one association may hold (observed Windows behaviour; Samba's "max auth
states"): the 2050th auth_context_id is a protocol error. Stops a client from making the server
keep a security context per alter_context without end."""
KNOWN_AUTH_TYPES: Final = frozenset(
    {const.AuthType.GSS_NEGOTIATE, const.AuthType.WINNT, const.AuthType.GSS_KERBEROS, const.AuthType.NETLOGON}
)
"""Providers we know of even when this server has none configured: a bind asking for one of these
is refused as invalid_checksum, one asking for anything else as authentication_type_not_recognized
(MS-RPCE 3.3.1.5.2.1 and observed Windows behaviour)."""


# --- violations and their answers ----------------------------------------------------------------


class Violation(enum.Enum):
    """What a peer did wrong: one kind per wire answer (see ANSWERS); the log line says the rest."""

    # the first PDU
    NOT_A_BIND = "not_a_bind"  # the first PDU is not a bind, or its header is not v5.0 ASCII/IEEE
    BAD_VERSION = "bad_version"  # not DCE/RPC 5.x at all, or an unknown integer representation
    BAD_FRAGMENT_LENGTH = "bad_fragment_length"  # frag_length outside 16..the limit
    MALFORMED = "malformed"  # a PDU that does not parse (after the bind)
    MALFORMED_BIND = "malformed_bind"  # the first PDU does not parse
    # bind
    SECOND_BIND = "second_bind"
    UNKNOWN_GROUP = "unknown_group"  # assoc_group_id names no group of ours
    BAD_CONTEXT_LIST = "bad_context_list"  # no contexts, a context with no transfer syntax, two BTFN
    CONTEXT_CHANGED = "context_changed"  # a context id re-proposed with another syntax
    BAD_AUTH_TRAILER = "bad_auth_trailer"  # misaligned, or padding longer than the PDU
    BAD_AUTH_LEVEL = "bad_auth_level"  # outside connect..privacy
    UNKNOWN_AUTH_TYPE = "unknown_auth_type"
    AUTH_TYPE_UNAVAILABLE = "auth_type_unavailable"  # known, but not configured here
    AUTH_REFUSED = "auth_refused"  # the provider refused a bind's token
    # alter_context
    ALTER_BAD_CONTEXT_LIST = "alter_bad_context_list"
    ALTER_AUTH_REFUSED = "alter_auth_refused"  # a token refused, or a finished context continued
    ALTER_AUTH_CHANGED = "alter_auth_changed"  # auth type differs from the context's
    ALTER_LEVEL_UNAVAILABLE = "alter_level_unavailable"  # the finished context cannot give the level
    ALTER_BAD_AUTH_TRAILER = "alter_bad_auth_trailer"
    # auth3
    AUTH3_OUT_OF_STATE = "auth3_out_of_state"  # no handshake in progress, or one already finished
    AUTH3_BAD_TRAILER = "auth3_bad_trailer"  # misaligned, or padding longer than the PDU
    AUTH3_REFUSED = "auth3_refused"  # refused (mismatch, or the provider's no): the next request fails
    # requests
    TOO_MANY_AUTH_CONTEXTS = "too_many_auth_contexts"
    AUTH_IN_PROGRESS = "auth_in_progress"  # a request while the handshake is not finished
    REQUEST_TOO_LONG = "request_too_long"  # a request fragment longer than the transport takes
    INTERLEAVED = "interleaved"  # a new call while another is half received
    INTERLEAVED_AUTH = "interleaved_auth"  # ... on the same context with another security context
    PENDING_CANCEL_FIRST = "pending_cancel_first"  # a first fragment that is already cancelled
    UNKNOWN_CONTEXT = "unknown_context"  # a presentation context never accepted
    ORPHAN_FRAGMENT = "orphan_fragment"  # a continuation with no first fragment
    ORPHAN_FRAGMENT_AUTH = "orphan_fragment_auth"  # ... on a security context it may not use
    FRAGMENT_CHANGED = "fragment_changed"  # a continuation of another PDU type or data representation
    AUTH_INVALID = "auth_invalid"  # a request on a refused or mismatched security context
    AUTH_NOT_FINISHED = "auth_not_finished"
    VERIFY_INVALID = "verify_invalid"  # a verifier checked against a refused or unstarted context
    VERIFY_NOT_FINISHED = "verify_not_finished"  # ... against a handshake not finished
    VERIFIER_MISSING = "verifier_missing"  # a request without the verifier its level requires
    BAD_VERIFIER_TRAILER = "bad_verifier_trailer"  # misaligned, or padding beyond the stub
    UNSUPPORTED_LEVEL = "unsupported_level"  # call level: MS-RPCE 3.3.1.5.2 has no such protection
    VERIFIER_MISMATCH = "verifier_mismatch"  # verifier absent where required, or of another context
    VERIFIER_UNEXPECTED = "verifier_unexpected"  # a verifier on an unauthenticated request
    SIGNATURE = "signature"  # does not verify, or does not decrypt
    CALL_TOO_LARGE = "call_too_large"  # beyond max_call_size / max_buffered
    TOO_MANY_CALLS = "too_many_calls"  # beyond max_outstanding_calls
    CALL_ID_REUSED = "call_id_reused"
    VERIFICATION_TRAILER = "verification_trailer"  # MS-RPCE 2.2.2.13 contradicted
    SERVER_PDU = "server_pdu"  # a client sent a PDU only servers send
    # rates (Limits.handshake_rate, or a policy's [rate_limit]): the peer's pace, not its manners
    HANDSHAKE_RATE = "handshake_rate"  # a bind starting a handshake, over its source's rate
    ALTER_HANDSHAKE_RATE = "alter_handshake_rate"  # an alter_context starting one, the same
    # resources (not necessarily the peer's fault: the process's memory budget, budget.py)
    OUT_OF_RESOURCES = "out_of_resources"  # no memory to receive a call: refused before it ran
    RESPONSE_OUT_OF_RESOURCES = "response_out_of_resources"  # no memory to hold a call's answer
    # client role
    PEER_PROTOCOL = "peer_protocol"  # the server broke a rule (the call or connection fails)


@dataclass(frozen=True, slots=True)
class Answer:
    """What a violation gets: a bind_nak with ``reason``, or a fault with ``status`` (``None``: nothing
    is sent), PFC_DID_NOT_EXECUTE or not, and whether the association closes after it."""

    nak: int | None = None
    status: int | None = None
    did_not_execute: bool = False
    close: bool = True


_PROTO: Final = const.NCA_S_PROTO_ERROR
_DENIED: Final = const.RPC_S_ACCESS_DENIED
_SEC_PKG: Final = const.RPC_S_SEC_PKG_ERROR
_V = Violation

ANSWERS: Final[dict[Violation, Answer]] = {
    _V.NOT_A_BIND: Answer(nak=RejectReason.PROTOCOL_VERSION_NOT_SUPPORTED),
    _V.BAD_VERSION: Answer(nak=RejectReason.PROTOCOL_VERSION_NOT_SUPPORTED),
    _V.BAD_FRAGMENT_LENGTH: Answer(status=_PROTO, did_not_execute=True),
    _V.MALFORMED: Answer(status=_PROTO, did_not_execute=True),
    _V.MALFORMED_BIND: Answer(nak=RejectReason.REASON_NOT_SPECIFIED),
    _V.SECOND_BIND: Answer(nak=RejectReason.REASON_NOT_SPECIFIED),
    _V.UNKNOWN_GROUP: Answer(nak=RejectReason.REASON_NOT_SPECIFIED),
    _V.BAD_CONTEXT_LIST: Answer(nak=RejectReason.REASON_NOT_SPECIFIED),
    _V.CONTEXT_CHANGED: Answer(status=_PROTO, did_not_execute=True),
    _V.BAD_AUTH_TRAILER: Answer(nak=RejectReason.PROTOCOL_VERSION_NOT_SUPPORTED),
    _V.BAD_AUTH_LEVEL: Answer(nak=RejectReason.REASON_NOT_SPECIFIED),
    _V.UNKNOWN_AUTH_TYPE: Answer(nak=RejectReason.AUTHENTICATION_TYPE_NOT_RECOGNIZED),
    _V.AUTH_TYPE_UNAVAILABLE: Answer(nak=RejectReason.INVALID_CHECKSUM),
    _V.AUTH_REFUSED: Answer(nak=RejectReason.REASON_NOT_SPECIFIED),
    _V.ALTER_BAD_CONTEXT_LIST: Answer(status=_PROTO, did_not_execute=True),
    _V.ALTER_AUTH_REFUSED: Answer(status=_DENIED, did_not_execute=True),
    _V.ALTER_AUTH_CHANGED: Answer(status=_SEC_PKG, did_not_execute=True),
    _V.ALTER_LEVEL_UNAVAILABLE: Answer(status=_SEC_PKG, did_not_execute=True),
    _V.ALTER_BAD_AUTH_TRAILER: Answer(status=_PROTO, did_not_execute=True),
    _V.AUTH3_OUT_OF_STATE: Answer(status=_PROTO, did_not_execute=True),
    _V.AUTH3_BAD_TRAILER: Answer(status=const.NCA_S_FAULT_REMOTE_NO_MEMORY, did_not_execute=True),
    _V.AUTH3_REFUSED: Answer(close=False),
    _V.TOO_MANY_AUTH_CONTEXTS: Answer(status=_PROTO, did_not_execute=True),
    _V.AUTH_IN_PROGRESS: Answer(status=_PROTO, did_not_execute=True),
    _V.REQUEST_TOO_LONG: Answer(status=_PROTO),
    _V.INTERLEAVED: Answer(status=_PROTO),
    _V.INTERLEAVED_AUTH: Answer(status=_SEC_PKG),
    _V.PENDING_CANCEL_FIRST: Answer(status=const.RPC_S_NO_CALL_ACTIVE, did_not_execute=True),
    _V.UNKNOWN_CONTEXT: Answer(status=const.NCA_S_UNK_IF, did_not_execute=True, close=False),
    _V.ORPHAN_FRAGMENT: Answer(status=_PROTO),
    _V.ORPHAN_FRAGMENT_AUTH: Answer(status=_DENIED),
    _V.FRAGMENT_CHANGED: Answer(status=_PROTO, did_not_execute=True),
    _V.AUTH_INVALID: Answer(status=_PROTO, did_not_execute=True),
    _V.AUTH_NOT_FINISHED: Answer(status=_PROTO, did_not_execute=True),
    _V.VERIFY_INVALID: Answer(status=_DENIED),
    _V.VERIFY_NOT_FINISHED: Answer(status=_PROTO),
    _V.VERIFIER_MISSING: Answer(status=_PROTO),
    _V.BAD_VERIFIER_TRAILER: Answer(status=_PROTO),
    _V.UNSUPPORTED_LEVEL: Answer(status=const.NCA_S_UNSUPPORTED_AUTHN_LEVEL),
    _V.VERIFIER_MISMATCH: Answer(status=_DENIED),
    _V.VERIFIER_UNEXPECTED: Answer(status=_DENIED),
    _V.SIGNATURE: Answer(status=_SEC_PKG),
    _V.CALL_TOO_LARGE: Answer(status=_DENIED),
    _V.TOO_MANY_CALLS: Answer(status=const.NCA_S_SERVER_TOO_BUSY, did_not_execute=True, close=False),
    _V.CALL_ID_REUSED: Answer(status=_PROTO, did_not_execute=True),
    _V.VERIFICATION_TRAILER: Answer(status=_DENIED, close=False),
    _V.SERVER_PDU: Answer(status=_PROTO, did_not_execute=True),
    _V.HANDSHAKE_RATE: Answer(nak=RejectReason.TEMPORARY_CONGESTION),
    _V.ALTER_HANDSHAKE_RATE: Answer(status=const.NCA_S_SERVER_TOO_BUSY, did_not_execute=True, close=False),
    _V.OUT_OF_RESOURCES: Answer(status=const.RPC_S_OUT_OF_RESOURCES, did_not_execute=True, close=False),
    _V.RESPONSE_OUT_OF_RESOURCES: Answer(status=const.RPC_S_OUT_OF_RESOURCES, close=False),
    _V.PEER_PROTOCOL: Answer(),
}


# --- who takes which PDU in which state ----------------------------------------------------------

# Server: before anything else, every PDU is taken as the bind (one that is not a bind, or whose
# header is not 5.0, gets bind_nak protocol_version_not_supported: observed Windows behaviour).
SERVER: Final[dict[tuple[State, int], str | Violation]] = {
    (State.AWAIT_BIND, PType.BIND): "bind",
    **{(State.AWAIT_BIND, int(t)): _V.NOT_A_BIND for t in PType if t != PType.BIND},
    (State.OPEN, PType.BIND): _V.SECOND_BIND,
    (State.OPEN, PType.ALTER_CONTEXT): "alter",
    (State.OPEN, PType.REQUEST): "request",
    (State.OPEN, PType.AUTH3): "auth3",
    (State.OPEN, PType.CO_CANCEL): "cancel",
    (State.OPEN, PType.ORPHANED): "orphaned",
    **{
        (State.OPEN, int(t)): _V.SERVER_PDU
        for t in PType
        if t
        not in (PType.BIND, PType.ALTER_CONTEXT, PType.REQUEST, PType.AUTH3, PType.CO_CANCEL, PType.ORPHANED)
    },
}

# Client: what a server may send us, and when (anything else ends the association: the calls in
# flight fail, C706 12.4).
CLIENT: Final[dict[tuple[State, int], str | Violation]] = {
    (State.AWAIT_BIND, PType.BIND_ACK): "bind_ack",
    (State.AWAIT_BIND, PType.BIND_NAK): "bind_nak",
    (State.AWAIT_BIND, PType.FAULT): "fault",
    (State.AWAIT_BIND, PType.SHUTDOWN): "shutdown",
    (State.OPEN, PType.ALTER_CONTEXT_RESP): "bind_ack",
    (State.OPEN, PType.BIND_NAK): "bind_nak",
    (State.OPEN, PType.RESPONSE): "response",
    (State.OPEN, PType.FAULT): "fault",
    (State.OPEN, PType.SHUTDOWN): "shutdown",
}
