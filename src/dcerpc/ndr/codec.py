"""Encode and decode any declared NDR type: the public face of the compiler.

``codec(T)`` compiles ``T`` once (cached) and returns a :class:`Codec`; ``encode`` / ``decode`` are
shortcuts. A value is treated as a top-level element, as an operation parameter would be: a pointer's
referent follows it at once, a conformant type starts with its max count.
"""

from __future__ import annotations

import struct
from typing import Any, Generic, TypeVar

from .._errors import NdrError
from .compiler import DEFAULT_LIMITS, DecodeContext, Limits, compile_params
from .explain import misfit
from .schema import build_lock, resolve

__all__ = ["Codec", "codec", "decode", "encode"]

T = TypeVar("T")


class Codec(Generic[T]):
    """The compiled NDR 2.0 codec of one declared type."""

    __slots__ = ("_dec_be", "_dec_le", "_enc", "_enc_be", "_node", "type")

    def __init__(self, tp: Any) -> None:
        self.type = tp
        self._node = resolve(tp)
        self._enc, self._dec_le, self._dec_be, self._enc_be = compile_params(
            [("value", self._node)], name=_name(tp)
        )

    def encode(self, value: T, *, big_endian: bool = False) -> bytes:
        """The canonical NDR encoding of ``value`` (little-endian unless asked otherwise).

        Raises:
            NdrError: the value does not fit the declaration (wrong type, out of range, a list
                whose length disagrees with its size_is field, a NULL [ref] pointer); the
                message names the member or element, ``value.items[1].name: expected str``.
        """
        try:
            return bytes((self._enc_be if big_endian else self._enc)(value))
        except (NdrError, *_ENCODE_ERRORS) as e:
            error = NdrError(f"cannot encode {value!r:.200} as {_name(self.type)}: {self._why(value, e)}")
            # the runtime's own error keeps the generated line that raised it in the chain
            raise error from (e if isinstance(e, NdrError) else None)

    def _why(self, value: Any, exc: BaseException) -> str:
        """Which member or element did not fit (walked again after the failure: explain.py)."""
        try:
            found = misfit([("value", self._node)], (value,))
        except Exception:  # values odd enough to break the walk: the encoder's words stand
            found = None
        if found is None:
            return exc.reason if isinstance(exc, NdrError) else str(exc)
        return f"{found[0]}: {found[1]}"

    def decode(
        self,
        data: bytes,
        *,
        big_endian: bool = False,
        allow_trailing: bool = False,
        limits: Limits = DEFAULT_LIMITS,
    ) -> T:
        """Decode one value from ``data`` (integers in the byte order the sender declared).

        Raises:
            NdrError: the bytes are not a valid encoding, or (unless ``allow_trailing``) octets
                are left over.
        """
        value, end = self.decode_from(bytes(data), 0, big_endian=big_endian, limits=limits)
        if not allow_trailing and end != len(data):
            raise NdrError(f"{len(data) - end} octets left over after the value", end)
        return value

    def decode_from(
        self, data: bytes, offset: int, *, big_endian: bool = False, limits: Limits = DEFAULT_LIMITS
    ) -> tuple[T, int]:
        """Decode one value at ``offset``; returns it and the offset just past it."""
        dec = self._dec_be if big_endian else self._dec_le
        (value,), end = dec(data, offset, DecodeContext(limits))
        return value, end


_ENCODE_ERRORS = (struct.error, TypeError, ValueError, OverflowError, AttributeError, RecursionError)
"""What a compiled encoder raises, besides NdrError, for values that do not fit their types."""

_codecs: dict[Any, Codec[Any]] = {}


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or repr(tp)


def codec(tp: Any) -> Codec[Any]:
    """The cached codec for a declaration (compiled on first request)."""
    try:
        c = _codecs.get(tp)
    except TypeError:  # an unhashable declaration: compile every time
        return Codec(tp)
    if c is None:
        with build_lock:  # one codec per type, however many threads ask first
            c = _codecs.get(tp)
            if c is None:
                c = _codecs[tp] = Codec(tp)
    return c


def encode(tp: Any, value: Any, *, big_endian: bool = False) -> bytes:
    """Encode ``value`` as the NDR type ``tp``."""
    return codec(tp).encode(value, big_endian=big_endian)


def decode(tp: Any, data: bytes, *, big_endian: bool = False, allow_trailing: bool = False) -> Any:
    """Decode ``data`` as the NDR type ``tp``."""
    return codec(tp).decode(data, big_endian=big_endian, allow_trailing=allow_trailing)
