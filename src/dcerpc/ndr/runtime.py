"""What generated NDR code runs with: per-stub contexts, limits, and the helpers it calls.

Theory of operation. The generators (``encoder.py``, ``decoder.py``) emit Python source that refers
to a few names: the helpers below, bound under short names (``_nref``, ``_short``, ...) in the
namespace each generated function is executed in (:func:`encode_helpers`, :data:`DEC_HELPERS`), and
the per-stub state passed as ``c``: an :class:`EncodeContext` (referent-id counter, full-pointer
aliasing, byte arrays left in place) or a :class:`DecodeContext` (element budget, pointer depth,
full-pointer referents; bounded by :class:`Limits`). Nothing here generates code; this is the run
time of the hot path, so each helper does one small thing and the common cases are cached.
"""

from __future__ import annotations

import array
import struct
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from .._errors import NdrError
from .declarations import ContextHandle
from .pieces import Pieces, Splices

__all__ = [
    "ARRAY_CODE",
    "DEC_HELPERS",
    "DEFAULT_LIMITS",
    "SWAP",
    "DecodeContext",
    "DecodeFn",
    "EncodeContext",
    "EncodeFn",
    "Limits",
    "encode_helpers",
    "guid_be",
    "guid_le",
    "uses_context",
]


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one decoded stub may cost, whatever the peer claims.

    Attributes:
        max_elements: total array elements and string characters across a stub. Stops a stub of a
            few bytes that declares millions of zero-size elements (empty structs, empty arms) from
            allocating millions of Python objects.
        max_depth: nesting through pointers of recursive types (linked lists, trees). Stops a chain
            of self-referencing pointers from exhausting the interpreter stack.
    """

    max_elements: int = 1 << 24
    max_depth: int = 200


DEFAULT_LIMITS: Final = Limits()


class EncodeContext:
    """Per-stub encoding state: the referent-id counter and full-pointer aliasing."""

    __slots__ = ("count", "owned", "refs", "splices")

    def __init__(self) -> None:
        # One counter for all pointers of a stub, as Samba keeps it (Windows numbers the same way):
        # a unique / ref pointer gets 0x00020000 + 4 * count, a full pointer gets count + 1 (the
        # full-pointer table's numbering), and each takes one step.
        self.count = 0
        self.refs: dict[int, int] = {}  # id(object) -> referent id, for full pointers
        self.owned: set[int] = set()  # full-pointer referents already sent
        self.splices: Splices | None = None  # long byte arrays left in place (see pieces.py)

    def splice(self, at: int, value: bytes) -> bytes:
        """Leave ``value`` (sent at offset ``at`` of ``out``) where it is; returns the filler that
        keeps ``len(out)`` aligned as if it had been appended."""
        if self.splices is None:
            self.splices = Splices()
        return self.splices.add(at, value)


class DecodeContext:
    """Per-stub decoding state: element budget, pointer depth, full-pointer referents."""

    __slots__ = ("budget", "depth", "full", "max_depth")

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.budget = limits.max_elements
        self.depth = 0
        self.max_depth = limits.max_depth
        self.full: dict[int, Any] = {}


# What the entry points hand out: ``encode(*values) -> stub`` and
# ``decode(stub, offset, ctx) -> (values, end_offset)``.
EncodeFn = Callable[..., "bytes | bytearray | Pieces"]
DecodeFn = Callable[[bytes | memoryview, int, DecodeContext], tuple[tuple[Any, ...], int]]


def uses_context(decode: DecodeFn) -> bool:
    """Whether a compiled decoder reads its DecodeContext (those of scalars only do not)."""
    return bool(getattr(decode, "uses_context", True))


# --- runtime helpers the generated code calls -------------------------------------------------------

_PAD: Final = tuple(bytes(i) for i in range(8))
_GUID_CACHE_MAX: Final = 4096  # bounded: a peer sending endless distinct GUIDs cannot grow memory
_guids_le: dict[bytes, uuid.UUID] = {}
_guids_be: dict[bytes, uuid.UUID] = {}
_guid_bytes: dict[uuid.UUID, bytes] = {}
SWAP: Final = sys.byteorder != "little"  # native order is big-endian: little-endian arrays swap


def guid_le(raw: bytes) -> uuid.UUID:
    """The UUID of 16 octets in little-endian NDR (cached, bounded: GUIDs repeat, and a peer
    sending endless distinct ones cannot grow memory)."""
    u = _guids_le.get(raw)
    if u is None:
        if len(_guids_le) >= _GUID_CACHE_MAX:
            _guids_le.clear()
        u = _guids_le[raw] = uuid.UUID(bytes_le=raw)
    return u


def guid_be(raw: bytes) -> uuid.UUID:
    """The same for big-endian NDR."""
    u = _guids_be.get(raw)
    if u is None:
        if len(_guids_be) >= _GUID_CACHE_MAX:
            _guids_be.clear()
        u = _guids_be[raw] = uuid.UUID(bytes=raw)
    return u


def _guid_out(u: uuid.UUID) -> bytes:
    raw = _guid_bytes.get(u)
    if raw is None:
        if not isinstance(u, uuid.UUID):
            raise NdrError(f"a GUID must be a uuid.UUID, not {type(u).__name__}")
        if len(_guid_bytes) >= _GUID_CACHE_MAX:
            _guid_bytes.clear()
        raw = _guid_bytes[u] = u.bytes_le
    return raw


def _short(p: int, need: int, have: int, what: str) -> NdrError:
    return NdrError(f"{what}: need {need} octets, {max(have - p, 0)} remain", p)


def _nref(c: EncodeContext) -> int:
    r = 0x00020000 + 4 * c.count
    c.count += 1
    return r


def _rref(c: EncodeContext, x: object) -> int:
    if x is None:
        raise NdrError("a [ref] pointer cannot be NULL (None)")
    return _nref(c)


def _fref(c: EncodeContext, x: object) -> int:
    if x is None:
        return 0
    r = c.refs.get(id(x))
    if r is None:
        c.count += 1
        r = c.refs[id(x)] = c.count
    return r


def _fown(c: EncodeContext, x: object) -> bool:
    if id(x) in c.owned:
        return False
    c.owned.add(id(x))
    return True


def _numbers(fmt: str, b: bytes, p: int, n: int, size: int, swap: bool) -> list[Any]:
    a = array.array(fmt)
    a.frombytes(b[p : p + n * size])
    if swap:
        a.byteswap()
    return a.tolist()


def _numbers_out(fmt: str, values: Any, swap: bool) -> bytes:
    a = array.array(fmt, values)
    if swap:
        a.byteswap()
    return a.tobytes()


def _guid_out_be(u: uuid.UUID) -> bytes:
    if not isinstance(u, uuid.UUID):
        raise NdrError(f"a GUID must be a uuid.UUID, not {type(u).__name__}")
    return u.bytes


def _check_len(x: Any, n: int, what: str) -> None:
    if len(x) != n:
        raise NdrError(f"{what}: the value has {len(x)} elements, its size/length says {n}")


def _str_out(s: str, encoding: str, width: int) -> bytes:
    try:
        return s.encode(encoding, "surrogatepass" if width == 2 else "strict") + _PAD[width]
    except UnicodeEncodeError as e:
        raise NdrError(f"string {s!r} cannot be encoded as {encoding}: {e.reason}") from None


def _str_count(s: str, encoding: str, width: int) -> int:
    if s.isascii():
        return len(s) + 1
    return len(_str_out(s, encoding, width)) // width


# Array typecodes with the same sizes as NDR's (checked once at import).
ARRAY_CODE: Final = {
    "B": "B",
    "b": "b",
    "H": "H",
    "h": "h",
    "I": "I",
    "i": "i",
    "Q": "Q",
    "q": "q",
    "f": "f",
    "d": "d",
}
for _k, _v in ARRAY_CODE.items():
    assert array.array(_v).itemsize == struct.calcsize(_k), "unexpected C type sizes"


def encode_helpers(endian: str) -> dict[str, Any]:
    """The names encoders of byte order ``endian`` (``"<"`` or ``">"``) see besides their constants."""
    return {
        "NdrError": NdrError,
        "_PAD": _PAD,
        "_gout": _guid_out if endian == "<" else _guid_out_be,
        "_nref": _nref,
        "_rref": _rref,
        "_fref": _fref,
        "_fown": _fown,
        "_nout": _numbers_out,
        "_chk": _check_len,
        "_sout": _str_out,
        "_scount": _str_count,
        "_Z4": b"\0\0\0\0",
        "_EC": EncodeContext,
    }


DEC_HELPERS: Final = {
    "NdrError": NdrError,
    "_short": _short,
    "_gle": guid_le,
    "_gbe": guid_be,
    "_nums": _numbers,
    "_CH": ContextHandle,
    "_new": object.__new__,
}
