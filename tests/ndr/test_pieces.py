"""Long byte arrays are left where the caller holds them (ndr/pieces.py): the stub in pieces is,
octet for octet, the stub made by copying, whatever comes before and after them."""

from __future__ import annotations

from typing import Annotated

from hypothesis import given, settings
from hypothesis import strategies as st

from dcerpc.ndr import SizeIs, Struct, Unique, hyper, uint8, uint16, uint32
from dcerpc.ndr.compiler import DecodeContext, compile_params
from dcerpc.ndr.pieces import SPLICE_MIN, Pieces, runs
from dcerpc.ndr.schema import resolve


class Tail(Struct):
    m: uint32
    second: Unique[Annotated[bytes, SizeIs("m")]]  # deferred: after ``last``
    last: hyper  # 8-aligned: the filler must keep the true offset modulo 8


# an operation's [in] side: the first array at top level, the second inside a struct's referent
_PARAMS = [
    ("tag", resolve(uint8)),
    ("n", resolve(uint32)),
    ("first", resolve(Annotated[bytes, SizeIs("n")])),
    ("after", resolve(uint16)),
    ("tail", resolve(Tail)),
    ("end", resolve(hyper)),
]
_encode, _decode = compile_params(_PARAMS)[:2]
_lengths = st.one_of(
    st.integers(0, 64), st.integers(SPLICE_MIN - 9, SPLICE_MIN + 9), st.just(3 * SPLICE_MIN + 5)
)


@settings(max_examples=40, deadline=None)
@given(a=_lengths, b=_lengths, fill=st.integers(0, 255), last=st.integers(-(2**63), 2**63 - 1))
def test_pieces_are_the_copied_stub(a: int, b: int, fill: int, last: int) -> None:
    first = bytes([fill]) * a
    second = bytes(range(256)) * (b // 256) + bytes(b % 256)
    made = _encode(7, a, first, 0xBEEF, Tail(b, second, last), ~last)
    # a bytearray is copied, never left in place: the reference encoding
    copied = _encode(7, a, bytearray(first), 0xBEEF, Tail(b, bytearray(second), last), ~last)
    assert not isinstance(copied, Pieces)
    assert isinstance(made, Pieces) == (max(a, b) >= SPLICE_MIN)
    assert len(made) == len(copied)
    assert bytes(made) == bytes(copied)
    assert _decode(bytes(made), 0, DecodeContext())[0] == (7, a, first, 0xBEEF, Tail(b, second, last), ~last)
    # cut into fragments' runs, the pieces give the same octets in the same places
    for room in (1432 - 24, 65528 - 24):
        cut = list(runs(made, room))
        assert all(n == sum(map(len, run)) for n, run in cut)  # each run's length as given
        assert all(n == room for n, _ in cut[:-1])
        assert b"".join(b"".join(bytes(p) for p in run) for _, run in cut) == bytes(copied)


def test_long_bytes_are_not_copied() -> None:
    data = bytes(SPLICE_MIN)
    made = _encode(0, len(data), data, 0, Tail(0, None, 0), 0)
    assert isinstance(made, Pieces)
    assert any(part is data for part in made.parts)


def test_empty_stub_is_one_empty_run() -> None:
    assert [(n, b"".join(run)) for n, run in runs(b"", 100)] == [(0, b"")]
