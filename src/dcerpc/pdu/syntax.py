"""Presentation syntax identifiers: an interface or transfer syntax's UUID and version."""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field

_SYNTAX = struct.Struct("<16sI")
_SYNTAX_BE = struct.Struct(">16sI")


@dataclass(frozen=True, slots=True)
class SyntaxId:
    """p_syntax_id_t (C706 12.6.3.1): UUID and (major, minor) version.

    On the wire the version is one 32-bit word in the sender's integer order, major version in the
    low 16 bits and minor in the high 16 (so a big-endian sender puts the minor first).
    """

    uuid: uuid.UUID
    version: tuple[int, int]
    # computed once: a syntax is a dictionary key on every call (UUID's own hash is Python code)
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.uuid.int, self.version)))

    def __hash__(self) -> int:
        return self._hash

    def __str__(self) -> str:
        return f"{self.uuid} v{self.version[0]}.{self.version[1]}"

    def pack(self) -> bytes:
        """The 20 octets of p_syntax_id_t, little-endian."""
        packed = _packed.get(self)
        if packed is None:
            packed = _SYNTAX.pack(self.uuid.bytes_le, self.version[0] | self.version[1] << 16)
            if len(_packed) < _KNOWN_MAX:
                _packed[self] = packed
        return packed

    @classmethod
    def unpack(cls, data: bytes, offset: int, little: bool = True) -> SyntaxId:
        """Read 20 octets at ``offset`` in the sender's integer order (caller checks the length)."""
        key = (data[offset : offset + 20], little)
        known = _known.get(key)
        if known is not None:
            return known
        raw, version = (_SYNTAX if little else _SYNTAX_BE).unpack_from(data, offset)
        u = uuid.UUID(bytes_le=raw) if little else uuid.UUID(bytes=raw)
        made = cls(u, (version & 0xFFFF, version >> 16))
        if len(_known) < _KNOWN_MAX:
            _known[key] = made
        return made


# Syntaxes seen on the wire, so that each bind does not build UUIDs anew. Bounded: a peer proposing
# endless made-up interfaces fills it once and then only misses it (no memory growth).
_KNOWN_MAX = 4096
_known: dict[tuple[bytes, bool], SyntaxId] = {}
_packed: dict[SyntaxId, bytes] = {}
