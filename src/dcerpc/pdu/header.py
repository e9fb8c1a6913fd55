"""The 16-octet common header of every connection-oriented PDU (C706 12.6.3.1).

    u8 rpc_vers (5)   u8 rpc_vers_minor (0/1)   u8 PTYPE   u8 pfc_flags
    u8 packed_drep[4]                                       (data representation)
    u16 frag_length   u16 auth_length   u32 call_id          (in the sender's integer order)

``packed_drep[0]`` high nibble is the integer order (0 big-endian, 1 little-endian), low nibble the
character set (0 ASCII); ``packed_drep[1]`` the floating-point format (0 IEEE). We accept either
integer order and refuse EBCDIC and non-IEEE floats with a clear reason (C706 14.1).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from .._errors import ProtocolError
from .constants import RPC_VERSION, PType

HEADER_SIZE: Final = 16
DREP_LE: Final = b"\x10\x00\x00\x00"  # little-endian integers, ASCII, IEEE floats

_TAIL_LE: Final = struct.Struct("<HHI")
_TAIL_BE: Final = struct.Struct(">HHI")
_HEAD: Final = struct.Struct("<BBBB4sHHI")


class PduError(ProtocolError):
    """A PDU that breaks the rules; ``reason`` names which, ``call_id`` is known when parsed."""

    def __init__(self, reason: str, call_id: int = 0, ptype: int = -1) -> None:
        self.reason = reason
        self.call_id = call_id
        self.ptype = ptype
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class Header:
    """A parsed common header."""

    ptype: int
    flags: int
    drep: bytes
    frag_length: int
    auth_length: int
    call_id: int
    vers_minor: int = 0

    @property
    def little_endian(self) -> bool:
        """True when the sender's integers are little-endian."""
        return (self.drep[0] & 0xF0) == 0x10


def frame_length(data: bytes | bytearray | memoryview, pos: int = 0, end: int | None = None) -> int | None:
    """The frag_length of the PDU at ``pos`` in ``data[:end]`` (None until 10 octets are there)."""
    if (len(data) if end is None else end) - pos < 10:
        return None
    if data[pos + 4] & 0xF0 == 0x10:  # little-endian integers
        return data[pos + 8] | data[pos + 9] << 8
    return data[pos + 8] << 8 | data[pos + 9]


def parse_header(data: bytes) -> Header:
    """Read and check the common header of one whole fragment.

    Raises:
        PduError: wrong version, unsupported data representation, lengths that disagree.
    """
    if len(data) < HEADER_SIZE:
        raise PduError(f"a PDU needs {HEADER_SIZE} octets of header, got {len(data)}")
    vers, minor, ptype, flags = data[0], data[1], data[2], data[3]
    drep = bytes(data[4:8])
    little = (drep[0] & 0xF0) == 0x10
    frag_length, auth_length, call_id = (_TAIL_LE if little else _TAIL_BE).unpack_from(data, 8)
    if vers != RPC_VERSION or minor > 1:
        raise PduError(f"unsupported RPC version {vers}.{minor}", call_id, ptype)
    if drep[0] & 0xF0 not in (0x00, 0x10):
        raise PduError(f"unknown integer representation 0x{drep[0] >> 4:x}", call_id, ptype)
    if drep[0] & 0x0F != 0:
        raise PduError("EBCDIC character representation is not supported", call_id, ptype)
    if drep[1] != 0:
        raise PduError(f"non-IEEE floating point representation {drep[1]} is not supported", call_id, ptype)
    if frag_length != len(data):
        raise PduError(
            f"frag_length {frag_length} disagrees with the {len(data)} octets received", call_id, ptype
        )
    if auth_length and auth_length + 8 > frag_length - HEADER_SIZE:
        raise PduError(f"auth_length {auth_length} does not fit in a {frag_length}-octet PDU", call_id, ptype)
    return Header(ptype, flags, drep, frag_length, auth_length, call_id, minor)


def pack_header(ptype: PType, flags: int, frag_length: int, auth_length: int, call_id: int) -> bytes:
    """A little-endian common header."""
    return _HEAD.pack(RPC_VERSION, 0, ptype, flags, DREP_LE, frag_length, auth_length, call_id)
