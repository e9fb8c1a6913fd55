"""An encoded stub in several parts: long byte arrays are sent from where the caller holds them.

Copying a 16 MiB ``bytes`` into the stub costs as much as the kernel's own copy of it to the
socket. An encoder therefore leaves a long ``bytes`` value where it is and records it
(:meth:`Splices.add`); the stub it returns is then :class:`Pieces`, the encoder's own octets with
those values between them, which the transport writes with one vectored write per fragment.

Only ``bytes`` is left in place: it cannot change between the call and the write, where a
``bytearray`` or a view could (those are copied, as before).

NDR aligns by the offset in the stub (NDR 14.2.2), and the encoders compute it as ``len(out)``.
In place of a value left out, the encoder appends ``len(value) % 8`` filler octets, so that
``len(out)`` stays equal to the true offset modulo 8, the largest alignment NDR has; the filler
is dropped when the parts are put in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, TypeAlias

__all__ = ["SPLICE_MIN", "EncodedStub", "Pieces", "Splices", "extended", "runs"]

SPLICE_MIN: Final = 1 << 16
"""A ``bytes`` value at least this long is left in place. Larger than any fragment's stub (the
16-bit frag_length), so a stub that fits one fragment is always contiguous; below it, copying
costs less than the bookkeeping."""

_FILL: Final = tuple(bytes(i) for i in range(8))


class Splices:
    """The long values an encoder left in place: (offset in ``out``, value) in order."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[tuple[int, bytes]] = []

    def add(self, at: int, value: bytes) -> bytes:
        """Record ``value`` as sent at ``out[at]``; returns the filler to append in its place."""
        self.items.append((at, value))
        return _FILL[len(value) & 7]

    def pieces(self, out: bytearray) -> Pieces:
        """The stub: ``out`` with each value in place of its filler."""
        view = memoryview(out)
        parts: list[bytes | memoryview] = []
        pos = 0
        size = 0
        for at, value in self.items:
            if at > pos:
                parts.append(view[pos:at])
            parts.append(value)
            size += at - pos + len(value)
            pos = at + (len(value) & 7)
        if pos < len(out):
            parts.append(view[pos:])
            size += len(out) - pos
        return Pieces(parts, size)


class Pieces:
    """A stub of several parts, in order (see the module docstring). ``len`` is its length in
    octets; ``bytes(pieces)`` joins it (one copy, for callers that need it contiguous)."""

    __slots__ = ("parts", "size")

    def __init__(self, parts: list[bytes | memoryview], size: int) -> None:
        self.parts = parts
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        return b"".join(self.parts)

    def __repr__(self) -> str:
        return f"Pieces({len(self.parts)} parts, {self.size} octets)"


def runs(stub: EncodedStub, room: int) -> Iterator[tuple[int, list[bytes | memoryview]]]:
    """The stub cut into runs of ``room`` octets (the last may be shorter; an empty stub is one
    empty run): each run's length and the views that make it up, nothing copied."""
    if not isinstance(stub, Pieces):
        view = memoryview(stub)
        for start in range(0, len(view) or 1, room):  # an empty stub is one empty run
            chunk = view[start : start + room]
            yield len(chunk), [chunk]
        return
    run: list[bytes | memoryview] = []
    want = room
    for part in stub.parts:
        view = memoryview(part)
        while len(view) >= want:
            run.append(view[:want])
            yield room, run
            view = view[want:]
            run, want = [], room
        if view:
            run.append(view)
            want -= len(view)
    if run or not stub.size:
        yield room - want, run


EncodedStub: TypeAlias = "bytes | bytearray | memoryview | Pieces"
"""What an encoder returns, and what an association sends as a stub."""


def extended(stub: EncodedStub, tail: bytes) -> EncodedStub:
    """``stub`` followed by ``tail`` (a verification trailer), the long parts still not copied."""
    if isinstance(stub, Pieces):
        return Pieces([*stub.parts, tail], stub.size + len(tail))
    return bytes(stub) + tail
