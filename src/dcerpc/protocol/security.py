"""Protecting request and response fragments with a security context (MS-RPCE 3.3.1.5.2.2).

Layout of an authenticated fragment:

    header(16) | body header (8, or 24 with an object UUID) | stub | pad | sec_trailer(8) | auth value

The stub is padded to a multiple of 16 octets (``auth_pad_length``; Samba and Windows both use 16).
At packet and integrity levels the signature covers the stub and padding, or, when header signing
was negotiated (PFC_SUPPORT_HEADER_SIGN), everything in front of the auth value. At privacy the stub
and padding are sealed as well. At connect and call levels fragments carry no verifier.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from ..auth.base import AuthError, SecurityContext
from ..pdu.constants import AuthLevel, PType
from ..pdu.header import HEADER_SIZE, pack_header

__all__ = ["AUTH_PAD", "NULL_CONTEXT", "AuthState", "protect", "unprotect"]

AUTH_PAD: Final = 16
SEC_TRAILER: Final = 8
_TRAILER: Final = struct.Struct("<BBBBI")


class _NoContext(SecurityContext):
    """The context of unauthenticated PDUs, and of one whose provider is not known yet: complete,
    nobody, and it protects nothing (asking it to is a bug, not a peer's doing)."""

    auth_type = 0

    @property
    def complete(self) -> bool:
        return True

    def step(self, token: bytes | None) -> bytes | None:
        raise AuthError("no security provider for this context")

    def signature_size(self, seal: bool = False) -> int:
        return 0

    def sign(self, data: bytes) -> bytes:
        raise AuthError("an unauthenticated context signs nothing")

    def verify(self, data: bytes, signature: bytes) -> None:
        raise AuthError("an unauthenticated context verifies nothing")

    def seal(self, prefix: bytes, plain: bytes, suffix: bytes) -> tuple[bytes, bytes]:
        raise AuthError("an unauthenticated context seals nothing")

    def unseal(self, prefix: bytes, cipher: bytes, suffix: bytes, signature: bytes) -> bytes:
        raise AuthError("an unauthenticated context unseals nothing")


NULL_CONTEXT: Final = _NoContext()


@dataclass(slots=True)
class AuthState:
    """A security context as an association uses it.

    ``started``, ``finished`` and ``invalid`` are the server's view of its handshake (see
    server_auth.py): started by the leg that names its provider, finished when the handshake
    completes, invalid once anything about it was refused.
    """

    context: SecurityContext
    auth_type: int
    auth_level: int
    context_id: int
    header_sign: bool = False
    failed: str | None = None  # why the handshake failed (the next request is refused)
    started: bool = False
    finished: bool = False
    invalid: bool = False

    @property
    def protects(self) -> bool:
        """True when fragments carry a signature (packet, integrity, privacy)."""
        return self.auth_level >= AuthLevel.PACKET

    def overhead(self) -> int:
        """Octets a protected fragment spends beyond its stub (worst-case padding included)."""
        return AUTH_PAD - 1 + SEC_TRAILER + self.signature_size() if self.protects else 0

    def signature_size(self) -> int:
        """Octets of the auth value a protected fragment carries at this level."""
        return self.context.signature_size(self.auth_level >= AuthLevel.PRIVACY)


def protect(
    state: AuthState, ptype: PType, flags: int, call_id: int, body_header: bytes, stub: bytes
) -> bytes:
    """One fragment with its auth verifier, signed (and sealed at privacy)."""
    ctx = state.context
    pad = -len(stub) % AUTH_PAD
    sig_size = state.signature_size()
    start = HEADER_SIZE + len(body_header)
    end = start + len(stub) + pad
    frag_length = end + SEC_TRAILER + sig_size
    header = pack_header(ptype, flags, frag_length, sig_size, call_id)
    trailer = _TRAILER.pack(state.auth_type, state.auth_level, pad, 0, state.context_id)
    prefix = header + body_header
    payload = stub + bytes(pad)
    if state.header_sign or ctx.signs_whole_pdu:
        pre, post = prefix, trailer
    else:
        pre, post = b"", b""
    if state.auth_level >= AuthLevel.PRIVACY:
        cipher, signature = ctx.seal(pre, payload, post)
        return prefix + cipher + trailer + signature
    signature = ctx.sign(pre + payload + post)
    return prefix + payload + trailer + signature


def unprotect(
    state: AuthState, fragment: bytes, stub_start: int, body_end: int, pad: int, signature: bytes
) -> bytes:
    """The plaintext stub of a received protected fragment.

    Args:
        fragment: the whole fragment as received.
        stub_start: offset of the stub (after the body header and any object UUID).
        body_end: offset of the sec_trailer.
        pad: auth_pad_length from the trailer.
        signature: the auth value.

    Raises:
        AuthError: the signature does not verify (tampered, replayed, out of order).
    """
    ctx = state.context
    if len(signature) < state.signature_size():
        raise AuthError(f"auth value of {len(signature)} octets is shorter than a signature")
    payload = fragment[stub_start:body_end]
    if state.header_sign or ctx.signs_whole_pdu:
        pre, post = fragment[:stub_start], fragment[body_end : body_end + SEC_TRAILER]
    else:
        pre, post = b"", b""
    if state.auth_level >= AuthLevel.PRIVACY:
        plain = ctx.unseal(pre, payload, post, signature)
    else:
        ctx.verify(pre + payload + post, signature)
        plain = payload
    return plain[: len(plain) - pad] if pad else plain


def check_pad(pad: int, stub_len: int) -> None:
    """auth_pad_length must be padding, not a way to hide stub octets."""
    if pad >= AUTH_PAD or pad > stub_len:
        raise AuthError(f"auth_pad_length {pad} is not padding of a {stub_len}-octet stub")
