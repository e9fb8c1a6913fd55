"""The input framing the state-machine harnesses share: an input is a sequence of records.

    record = tag (u8) | length (u16, little-endian) | payload (length octets; cut short at the end)

Each harness maps ``tag % len(its actions)`` to an action (feed octets, answer a call, drain the
output, lose the connection, ...), so every input means something and a mutation of a tag or of a
length still gives a valid script: libFuzzer explores *sequences* of PDUs and of the segments TCP
cut them into, not single PDUs. ``make_corpus.py`` writes seeds in this form from real sessions.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

__all__ = ["MAX_PAYLOAD", "decode", "encode"]

MAX_PAYLOAD = 0xFFFF
_HEAD = struct.Struct("<BH")


def decode(data: bytes) -> Iterator[tuple[int, bytes]]:
    """The records of ``data``: (tag, payload), the last payload possibly shorter than it said."""
    pos = 0
    end = len(data)
    while pos < end:
        if end - pos < _HEAD.size:
            yield data[pos], b""
            return
        tag, n = _HEAD.unpack_from(data, pos)
        pos += _HEAD.size
        yield tag, data[pos : pos + n]
        pos += n


def encode(records: Iterable[tuple[int, bytes]]) -> bytes:
    """The input that :func:`decode` reads back as ``records`` (payloads longer than
    MAX_PAYLOAD are split into records of the same tag)."""
    out = bytearray()
    for tag, payload in records:
        for at in range(0, max(len(payload), 1), MAX_PAYLOAD):
            part = payload[at : at + MAX_PAYLOAD]
            out += _HEAD.pack(tag, len(part)) + part
    return bytes(out)
