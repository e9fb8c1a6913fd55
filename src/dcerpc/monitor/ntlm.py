"""Who logged on: user, domain and workstation from an NTLM AUTHENTICATE message (MS-NLMP 2.2.1.3).

The message is found by its signature wherever it sits in an auth value: bare (auth type WINNT) or
inside SPNEGO's DER (GSS_NEGOTIATE's NegTokenResp.responseToken), so no DER parser is needed.
Layout, all little-endian:

    0  Signature "NTLMSSP\\0"     8  MessageType (3)
    12 LmChallengeResponseFields  20 NtChallengeResponseFields
    28 DomainNameFields           36 UserNameFields            44 WorkstationFields
    52 EncryptedRandomSessionKeyFields                         60 NegotiateFlags

each ``*Fields`` being (u16 length, u16 max length, u32 offset from the signature). Names are
UTF-16LE when NTLMSSP_NEGOTIATE_UNICODE (flag 0x1, MS-NLMP 2.2.2.5) is set, else the OEM code page
(read here as Latin-1, which cannot fail). pyspnego parses these messages too, but only as part of
a context it drives; an observer has no context, so we read the few fields we need ourselves.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

__all__ = ["NtlmLogon", "find_authenticate"]

_SIGNATURE: Final = b"NTLMSSP\x00"
_AUTHENTICATE: Final = 3
_FIXED: Final = 64  # through NegotiateFlags
_UNICODE: Final = 0x00000001
_DOMAIN, _USER, _WORKSTATION = 28, 36, 44
_NT = 20
_MAX_NAME: Final = 512  # octets of one name worth reading: names are at most 256 UTF-16 units


@dataclass(frozen=True, slots=True)
class NtlmLogon:
    """The names an AUTHENTICATE message carries (empty strings when absent: the anonymous logon)."""

    user: str
    domain: str
    workstation: str
    anonymous: bool  # MS-NLMP 3.2.5.1.2: empty user and an empty (or one-octet) NT response


def _field(msg: bytes, at: int) -> bytes:
    length, _, offset = struct.unpack_from("<HHI", msg, at)
    if offset > len(msg) or offset + length > len(msg):
        return b""
    return msg[offset : offset + min(length, _MAX_NAME)]


def _text(raw: bytes, unicode: bool) -> str:
    if unicode:
        return raw[: len(raw) & ~1].decode("utf-16-le", errors="replace")
    return raw.decode("latin-1")


def find_authenticate(value: bytes) -> NtlmLogon | None:
    """The logon in the first AUTHENTICATE message inside ``value``, or None when there is none.

    Never raises: a message cut short or with offsets outside itself yields None or empty names.
    """
    at = value.find(_SIGNATURE)
    while at >= 0:
        msg = value[at:]
        if len(msg) >= _FIXED and struct.unpack_from("<I", msg, 8)[0] == _AUTHENTICATE:
            (flags,) = struct.unpack_from("<I", msg, 60)
            unicode = bool(flags & _UNICODE)
            nt_len = struct.unpack_from("<H", msg, _NT)[0]
            user = _text(_field(msg, _USER), unicode)
            return NtlmLogon(
                user=user,
                domain=_text(_field(msg, _DOMAIN), unicode),
                workstation=_text(_field(msg, _WORKSTATION), unicode),
                anonymous=not user and nt_len <= 1,
            )
        at = value.find(_SIGNATURE, at + 1)
    return None
