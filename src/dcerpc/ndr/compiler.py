"""NDR 2.0 code generation: each type becomes Python functions, built once and cached.

Theory of operation. A schema node (``schema.py``) is turned into Python source that encodes or
decodes exactly that shape, then ``exec``-ed once into a shared namespace. The hot path is therefore
straight-line code: consecutive fixed-size members of a structure become one precompiled
``struct.Struct`` call with their padding folded in, arrays of numbers go through ``array``, and
nothing parses a declaration or inspects a type per call.

NDR ordering (C706 14.3.12): a constructed type is sent as its *scalars* (members, with a referent id
in place of each embedded pointer), then its *buffers* (the referents of those pointers, in member
order, each again scalars then buffers). Structures and unions get a scalars and a buffers function of
their own, so recursive types work; everything else is emitted inline. Top-level pointers (operation
parameters and roots) send their referent right away. A conformant structure's max count is
hoisted in front of it (C706 14.3.7.2) by whoever places the structure at the top or behind a pointer.

Decoding is total: every read is bounds-checked, every count from the wire is checked against the
octets that remain *before* anything is allocated, the total number of elements per stub is capped,
and recursion through pointers is bounded. All failures raise :class:`NdrError` with the offset.

Encoding is canonical: referent ids follow marshalling order as Samba and Windows number them
(unique pointers 0x00020000, 0x00020004, ...; full pointers 1, 2, ... from the same counter), and
padding is zero.

The work is split by concept; this module ties it together and is what other packages import:

- ``runtime.py``: what generated code runs with (contexts, limits, helpers);
- ``source.py``: building source text and compiling it, registered with linecache so that
  tracebacks and ``inspect.getsource`` show generated lines (``<ndr decode EchoInfo5 #12>``);
- ``layout.py``: what both directions share (runs of fixed-size members, union arm dispatch, IDL
  size expressions);
- ``encoder.py`` and ``decoder.py``: the generators, one instance per byte order.

NDR64 will be a second generator over the same schema (``Syntax``); nothing here is flag-driven.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .decoder import Decoder
from .encoder import Encoder
from .runtime import (
    DEFAULT_LIMITS,
    DecodeContext,
    DecodeFn,
    EncodeContext,
    EncodeFn,
    Limits,
    uses_context,
)
from .schema import Node, build_lock

__all__ = [
    "DEFAULT_LIMITS",
    "NDR20",
    "DecodeContext",
    "DecodeFn",
    "EncodeContext",
    "EncodeFn",
    "Limits",
    "Syntax",
    "compile_params",
    "uses_context",
]


@dataclass(frozen=True, slots=True)
class Syntax:
    """A transfer syntax's sizes. NDR20 is the only one generated today; NDR64 gets its own plan."""

    name: str
    pointer_size: int
    count_size: int


NDR20: Final = Syntax("ndr20", 4, 4)

_ENCODERS: Final = {"<": Encoder("<"), ">": Encoder(">")}
_DECODERS: Final = {"<": Decoder("<"), ">": Decoder(">")}


def compile_params(
    params: list[tuple[str, Node]], context: tuple[str, ...] = (), *, name: str = "stub"
) -> tuple[EncodeFn, DecodeFn, DecodeFn, EncodeFn]:
    """Compile a sequence of top-level elements (an operation's [in] or [out] side, or one root).

    Args:
        params: (name, node) in wire order.
        context: names of further values that size expressions may use when encoding (an [out]
            array sized by an [in] parameter); they are passed after the params.
        name: what the stub is, for the generated code's filenames in tracebacks
            (``<ndr decode {name} #7>``).

    Returns:
        ``encode(*values, *context_values) -> bytes`` (little-endian; a bytearray unless the
        values are all scalars, or :class:`~.pieces.Pieces` when a long byte array was left in
        place: callers that hand it out make bytes of it), little- and big-endian
        ``decode(stub, offset, ctx) -> (values, end_offset)``, and a big-endian encoder.
    """
    with build_lock:  # the generators cache functions before they are defined (schema.py)
        enc_le = _ENCODERS["<"].entry(params, context, name)
        enc_be = _ENCODERS[">"].entry(params, context, name)
        dec_le = _DECODERS["<"].entry(params, name)
        dec_be = _DECODERS[">"].entry(params, name)
    return enc_le, dec_le, dec_be, enc_be
