"""Received octets cut into fragments where they arrived: the part both association roles share.

A read usually holds whole fragments; they are read in place (no copy into a buffer first). Only
the start of a fragment whose end has not arrived is held back, and the next read is appended to it.

    buf = self._held.with_data(data)
    pos = 0
    while <a whole fragment of ``length`` octets is at pos>:
        fragment = fragment_at(buf, pos, length)   # or read its fields in place
        pos += length
    self._held.keep(buf, pos, alive)
"""

from __future__ import annotations

__all__ = ["Held", "fragment_at"]


class Held(bytearray):
    """The octets of an incomplete fragment, held until the rest arrives."""

    __slots__ = ()

    def with_data(self, data: bytes) -> bytes | bytearray:
        """What to read fragments from: ``data`` itself, or what is held with ``data`` after it."""
        if self:
            self += data
            return self
        return data

    def keep(self, buf: bytes | bytearray, pos: int, alive: bool) -> None:
        """Hold what is left of ``buf`` after ``pos`` (nothing once the association is over)."""
        if buf is self:
            del self[:pos]
        elif pos < len(buf) and alive:
            self += memoryview(buf)[pos:]


def fragment_at(buf: bytes | bytearray, pos: int, length: int) -> bytes:
    """The fragment at ``pos`` as bytes of its own (the read itself when it is exactly that)."""
    if type(buf) is bytes:
        return buf if pos == 0 and length == len(buf) else buf[pos : pos + length]
    return bytes(memoryview(buf)[pos : pos + length])
