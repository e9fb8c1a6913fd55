"""The security verification trailer (MS-RPCE 2.2.2.13): what a signed request says about itself.

A client at packet level or above may end a request's stub with a trailer that repeats, under the
signature, facts an attacker in the middle could otherwise change without touching signed octets:
whether the client asked for header signing (a downgrade check), the presentation context's
abstract and transfer syntaxes, and the request's own header fields.

    stub | zero pad to 4 | magic (8) | command (u16: type | END 0x4000 | MUST_PROCESS 0x8000)
                                     | length (u16) | value ...   (repeated; the last has END)

Commands: BITMASK_1 (1; u32, bit 0 = client supports header signing), PCONTEXT (2; interface and
transfer syntax, 20 octets each), HEADER2 (3; ptype, 3 reserved, drep (4), call_id, context_id,
opnum: 16 octets). Integers are in the request's byte order, like the stub they end (NDR).

The server finds the trailer by its magic at a 4-aligned offset, searching back from the end of
the stub; a candidate that does not parse to exactly the end of the stub is stub data, not a
trailer. The server checks each command it knows; an unknown one marked MUST_PROCESS fails the call
(MS-RPCE 3.3.3.5.4 in substance). Samba sends the trailer on the first request of each context at
sign and seal; so does our client.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from ..pdu.syntax import SyntaxId
from .events import Stub

__all__ = ["MAGIC", "Trailer", "build", "split"]

MAGIC: Final = bytes.fromhex("8ae3137102f43671")
BITMASK_1: Final = 0x0001
PCONTEXT: Final = 0x0002
HEADER2: Final = 0x0003
END: Final = 0x4000
MUST_PROCESS: Final = 0x8000
CLIENT_SUPPORT_HEADER_SIGNING: Final = 0x00000001

_CMD = struct.Struct("<HH")
_HEADER2 = struct.Struct("<B3x4sIHH")
_CMD_BE = struct.Struct(">HH")
_HEADER2_BE = struct.Struct(">B3x4sIHH")
# The trailer cannot be larger than this: three known commands (8 + 8 + 44 + 20 = 80). A bound on
# the backward search keeps a stub full of candidate magics from costing quadratic time.
_MAX_TRAILER: Final = 1024


@dataclass(frozen=True, slots=True)
class Trailer:
    """The commands of a received verification trailer."""

    bitmask: int | None = None
    interface: SyntaxId | None = None
    transfer: SyntaxId | None = None
    header2: tuple[int, bytes, int, int, int] | None = None  # ptype, drep, call_id, context_id, opnum
    unknown_required: tuple[int, ...] = ()  # commands marked MUST_PROCESS that we do not know


def build(
    *,
    header_sign: bool,
    interface: SyntaxId,
    transfer: SyntaxId,
    ptype: int,
    drep: bytes,
    call_id: int,
    context_id: int,
    opnum: int,
    stub_length: int,
) -> bytes:
    """The octets to append to a stub of ``stub_length`` octets: alignment padding and the trailer."""
    commands: list[tuple[int, bytes]] = []
    if header_sign:
        commands.append((BITMASK_1, CLIENT_SUPPORT_HEADER_SIGNING.to_bytes(4, "little")))
    commands.append((PCONTEXT, interface.pack() + transfer.pack()))
    commands.append((HEADER2 | MUST_PROCESS, _HEADER2.pack(ptype, drep, call_id, context_id, opnum)))
    out = bytearray(-stub_length % 4)
    out += MAGIC
    for i, (command, value) in enumerate(commands):
        flag = END if i == len(commands) - 1 else 0
        out += _CMD.pack(command | flag, len(value)) + value
    return bytes(out)


def _parse(data: bytes, at: int, little: bool) -> Trailer | None:
    """The trailer whose magic is at ``at``, or None when the octets from there are not one."""
    cmd, header2 = (_CMD, _HEADER2) if little else (_CMD_BE, _HEADER2_BE)
    pos = at + len(MAGIC)
    fields: dict[str, object] = {}
    unknown: list[int] = []
    while True:
        if pos + 4 > len(data):
            return None
        command, length = cmd.unpack_from(data, pos)
        pos += 4
        if pos + length > len(data):
            return None
        value = data[pos : pos + length]
        pos += length
        kind = command & 0x3FFF
        if kind == BITMASK_1 and length == 4:
            fields["bitmask"] = int.from_bytes(value, "little" if little else "big")
        elif kind == PCONTEXT and length == 40:
            fields["interface"] = SyntaxId.unpack(value, 0, little)
            fields["transfer"] = SyntaxId.unpack(value, 20, little)
        elif kind == HEADER2 and length == 16:
            fields["header2"] = header2.unpack(value)
        elif kind in (BITMASK_1, PCONTEXT, HEADER2):
            return None  # a known command with the wrong length: not a trailer
        elif command & MUST_PROCESS:
            unknown.append(kind)
        if command & END:
            break
    if pos != len(data):
        return None
    return Trailer(unknown_required=tuple(unknown), **fields)  # type: ignore[arg-type]


def split(stub: Stub, little: bool = True) -> tuple[Stub, Trailer | None]:
    """The stub without its verification trailer, and the trailer (None when there is none)."""
    lowest = max(0, len(stub) - _MAX_TRAILER)
    tail = bytes(stub[lowest:])  # the trailer ends the stub: only this much is searched
    at = tail.rfind(MAGIC)
    while at >= 0:
        if (lowest + at) % 4 == 0:
            trailer = _parse(tail, at, little)
            if trailer is not None:
                return stub[: lowest + at], trailer
        at = tail.rfind(MAGIC, 0, at + len(MAGIC) - 1)
    return stub, None
