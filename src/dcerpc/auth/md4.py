"""MD4 (RFC 1320) and the NT hash built on it (MS-NLMP 3.3.1, NTOWFv1).

NTLM keys every user by ``MD4(UTF-16LE(password))``. OpenSSL 3 moved MD4 to its legacy provider, so
``hashlib.new("md4")`` fails on most systems; pyspnego carries its own copy, but only in a private
module. This one is small and used once per users-file line or client credential, never per
message, so plain Python is fast enough.
"""

from __future__ import annotations

import struct

__all__ = ["md4", "nt_hash"]

_MASK = 0xFFFFFFFF
# RFC 1320 3.4: the order the sixteen words are taken in by rounds 2 and 3, and the shifts.
_ROUND2 = (0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15)
_ROUND3 = (0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15)
_SHIFTS = ((3, 7, 11, 19), (3, 5, 9, 13), (3, 9, 11, 15))


def _rotl(x: int, n: int) -> int:
    x &= _MASK
    return ((x << n) | (x >> (32 - n))) & _MASK


def md4(data: bytes) -> bytes:
    """The 16-octet MD4 digest of ``data`` (RFC 1320)."""
    length = len(data) * 8
    data += b"\x80" + b"\x00" * ((55 - len(data)) % 64) + struct.pack("<Q", length & 0xFFFFFFFFFFFFFFFF)
    h = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476]
    for block in range(0, len(data), 64):
        x = struct.unpack_from("<16I", data, block)
        a, b, c, d = h
        for i in range(16):  # round 1: F(b, c, d) = (b & c) | (~b & d)
            a = _rotl(a + ((b & c) | (~b & d)) + x[i], _SHIFTS[0][i % 4])
            a, b, c, d = d, a, b, c
        for i, k in enumerate(_ROUND2):  # round 2: G = majority(b, c, d)
            a = _rotl(a + ((b & c) | (b & d) | (c & d)) + x[k] + 0x5A827999, _SHIFTS[1][i % 4])
            a, b, c, d = d, a, b, c
        for i, k in enumerate(_ROUND3):  # round 3: H = b ^ c ^ d
            a = _rotl(a + (b ^ c ^ d) + x[k] + 0x6ED9EBA1, _SHIFTS[2][i % 4])
            a, b, c, d = d, a, b, c
        h = [(v + w) & _MASK for v, w in zip(h, (a, b, c, d), strict=True)]
    return struct.pack("<4I", *h)


def nt_hash(password: str) -> bytes:
    """NTOWFv1 (MS-NLMP 3.3.1): MD4 of the password in UTF-16LE.

    ``surrogatepass`` keeps a machine account's password (which may hold lone surrogates) as the
    octets Windows hashes.
    """
    return md4(password.encode("utf-16-le", "surrogatepass"))
