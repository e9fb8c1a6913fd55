"""Connection-oriented PDU numbers: packet types, flags, reasons (C706 12.6.3, MS-RPCE 2.2.2)."""

from __future__ import annotations

import enum
import uuid
from typing import Final

from .syntax import SyntaxId

RPC_VERSION: Final = 5
RPC_VERSION_MINOR: Final = 0  # we accept 0 and 1 (C706 12.6.3.1); Windows and Samba send 0


class PType(enum.IntEnum):
    """PDU types (C706 12.6.3.1, table 12-1); 0-10 are connectionless."""

    REQUEST = 0
    PING = 1
    RESPONSE = 2
    FAULT = 3
    WORKING = 4
    NOCALL = 5
    REJECT = 6
    ACK = 7
    CL_CANCEL = 8
    FACK = 9
    CANCEL_ACK = 10
    BIND = 11
    BIND_ACK = 12
    BIND_NAK = 13
    ALTER_CONTEXT = 14
    ALTER_CONTEXT_RESP = 15
    AUTH3 = 16  # MS-RPCE 2.2.2.10 rpc_auth_3
    SHUTDOWN = 17
    CO_CANCEL = 18
    ORPHANED = 19


class PFC:
    """pfc_flags (C706 12.6.3.1; MS-RPCE 2.2.2.3 reuses 0x04 in binds for header signing).

    Plain ints, not an IntFlag: flags are tested on every fragment, and int arithmetic keeps that
    cheap. :func:`describe_flags` spells them out for logs.
    """

    FIRST_FRAG = 0x01
    LAST_FRAG = 0x02
    PENDING_CANCEL = 0x04
    SUPPORT_HEADER_SIGN = 0x04  # in bind / bind_ack / alter_context only
    RESERVED_1 = 0x08
    CONC_MPX = 0x10
    DID_NOT_EXECUTE = 0x20
    MAYBE = 0x40
    OBJECT_UUID = 0x80


_FLAG_NAMES: Final = (
    (0x01, "FIRST_FRAG"),
    (0x02, "LAST_FRAG"),
    (0x04, "PENDING_CANCEL/SUPPORT_HEADER_SIGN"),
    (0x08, "RESERVED_1"),
    (0x10, "CONC_MPX"),
    (0x20, "DID_NOT_EXECUTE"),
    (0x40, "MAYBE"),
    (0x80, "OBJECT_UUID"),
)


def describe_flags(flags: int) -> str:
    """``FIRST_FRAG|LAST_FRAG`` for 0x03."""
    return "|".join(name for bit, name in _FLAG_NAMES if flags & bit) or "0"


class ContextResult(enum.IntEnum):
    """p_cont_def_result_t (C706 12.6.3.1; MS-RPCE 2.2.2.4 adds negotiate_ack)."""

    ACCEPTANCE = 0
    USER_REJECTION = 1
    PROVIDER_REJECTION = 2
    NEGOTIATE_ACK = 3


class ProviderReason(enum.IntEnum):
    """p_provider_reason_t: why a presentation context was rejected."""

    REASON_NOT_SPECIFIED = 0
    ABSTRACT_SYNTAX_NOT_SUPPORTED = 1
    PROPOSED_TRANSFER_SYNTAXES_NOT_SUPPORTED = 2
    LOCAL_LIMIT_EXCEEDED = 3


class RejectReason(enum.IntEnum):
    """p_reject_reason_t: why a whole bind was refused (bind_nak; MS-RPCE 2.2.2.5 adds 8, 9)."""

    REASON_NOT_SPECIFIED = 0
    TEMPORARY_CONGESTION = 1
    LOCAL_LIMIT_EXCEEDED = 2
    CALLED_PADDR_UNKNOWN = 3
    PROTOCOL_VERSION_NOT_SUPPORTED = 4
    DEFAULT_CONTEXT_NOT_SUPPORTED = 5
    USER_DATA_NOT_READABLE = 6
    NO_PSAP_AVAILABLE = 7
    AUTHENTICATION_TYPE_NOT_RECOGNIZED = 8
    INVALID_CHECKSUM = 9


class AuthType(enum.IntEnum):
    """Security provider numbers in sec_trailer.auth_type (MS-RPCE 2.2.1.1.7)."""

    NONE = 0
    GSS_NEGOTIATE = 9  # SPNEGO
    WINNT = 10  # NTLM
    GSS_SCHANNEL = 14
    GSS_KERBEROS = 16
    NETLOGON = 68
    DEFAULT = 255


class AuthLevel(enum.IntEnum):
    """Protection levels (MS-RPCE 2.2.1.1.8)."""

    DEFAULT = 0
    NONE = 1
    CONNECT = 2
    CALL = 3
    PACKET = 4
    INTEGRITY = 5  # "packet integrity"
    PRIVACY = 6  # "packet privacy"


# Fault statuses the runtime itself sends (C706 Appendix E, MS-RPCE 3.3.3.5.x).
NCA_S_OP_RNG_ERROR: Final = 0x1C010002  # no such operation
NCA_S_UNK_IF: Final = 0x1C010003  # no such interface / presentation context
NCA_S_PROTO_ERROR: Final = 0x1C01000B  # the peer broke the protocol
NCA_S_SERVER_TOO_BUSY: Final = 0x1C010014
NCA_S_FAULT_CANCEL: Final = 0x1C00000D
NCA_S_FAULT_UNSPEC: Final = 0x1C000012
NCA_S_FAULT_CONTEXT_MISMATCH: Final = 0x1C00001A  # a context handle of another group
NCA_S_FAULT_REMOTE_NO_MEMORY: Final = 0x1C00001B
NCA_S_INVALID_PRES_CONTEXT_ID: Final = 0x1C00001C
NCA_S_UNSUPPORTED_AUTHN_LEVEL: Final = 0x1C00001D
RPC_S_ACCESS_DENIED: Final = 0x00000005
RPC_X_BAD_STUB_DATA: Final = 0x000006F7  # a stub that does not decode
RPC_S_CALL_CANCELLED: Final = 0x0000071A
RPC_S_NO_CALL_ACTIVE: Final = 0x000006BD  # a cancel for a call that is not running
RPC_S_SEC_PKG_ERROR: Final = 0x00000721  # a security package refused a token or a signature
RPC_S_OUT_OF_RESOURCES: Final = 0x000006D9

NDR20: Final = SyntaxId(uuid.UUID("8a885d04-1ceb-11c9-9fe8-08002b104860"), (2, 0))
NDR64: Final = SyntaxId(uuid.UUID("71710533-beba-4937-8319-b5dbef9ccc36"), (1, 0))
NULL_SYNTAX: Final = SyntaxId(uuid.UUID(int=0), (0, 0))

# MS-RPCE 2.2.2.14: a transfer syntax 6cb71c2c-9812-4540-xxxx-... whose last eight octets carry
# the bind-time feature flags.
BTFN_PREFIX: Final = uuid.UUID("6cb71c2c-9812-4540-0000-000000000000").bytes_le[:8]
BTFN_HIGH: Final = uuid.UUID("6cb71c2c-9812-4540-0000-000000000000").int >> 64  # the same, as an int
BTFN_SECURITY_CONTEXT_MULTIPLEXING: Final = 0x01
BTFN_KEEP_CONNECTION_ON_ORPHAN: Final = 0x02
