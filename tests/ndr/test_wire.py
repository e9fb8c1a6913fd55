"""Exact octets for the NDR rules (C706 chapter 14), limits, and the errors bad input gets."""

from __future__ import annotations

import struct
from typing import Annotated

import pytest

from dcerpc import NdrError
from dcerpc.ndr import (
    Case,
    Fixed,
    Full,
    LengthIs,
    Limits,
    Ref,
    SizeIs,
    Struct,
    Union,
    Unique,
    VaryingString,
    WString,
    codec,
    decode,
    encode,
    hyper,
    uint8,
    uint16,
    uint32,
)


class Pair(Struct):
    a: uint8
    b: hyper


class Sized(Struct):
    n: uint32
    data: Annotated[list[uint16], SizeIs("n")]


class Holder(Struct):
    first: uint8
    tail: Sized


class Ptrs(Struct):
    a: Unique[uint32]
    b: Unique[uint32]
    c: Unique[uint32]


class Link(Struct):
    value: uint32
    next: Unique[Link]


class Shared(Struct):
    x: Full[Pair]
    y: Full[Pair]


class Tagged(Union, switch_type=uint16):
    one: Annotated[uint8, Case(1)]
    eight: Annotated[hyper, Case(8)]


def le(fmt: str, *values: int) -> bytes:
    return struct.pack("<" + fmt, *values)


def test_alignment_is_natural_and_padding_is_zero() -> None:
    # uint8 at 0, seven zero octets, hyper at 8 (C706 14.2.2)
    assert encode(Pair, Pair(1, 2)) == b"\x01" + bytes(7) + le("q", 2)


def test_conformant_struct_hoists_max_count_to_the_front() -> None:
    # max count first, then the structure (C706 14.3.7.2)
    wire = encode(Sized, Sized(2, [7, 9]))
    assert wire == le("II", 2, 2) + le("HH", 7, 9)
    # nested as the last member, it is hoisted in front of the outer structure
    wire = encode(Holder, Holder(5, Sized(1, [3])))
    assert wire == le("I", 1) + b"\x05" + bytes(3) + le("I", 1) + le("H", 3)


def test_max_count_must_agree_with_size_field() -> None:
    bad = le("II", 3, 2) + le("HHH", 1, 2, 3)
    with pytest.raises(NdrError, match="disagrees with size_is"):
        decode(Sized, bad)


def test_referent_ids_are_deterministic_and_referents_deferred() -> None:
    wire = encode(Ptrs, Ptrs(10, None, 30))
    ids = le("III", 0x20000, 0, 0x20004)
    assert wire == ids + le("II", 10, 30)


def test_full_pointers_alias() -> None:
    shared = Pair(1, 2)
    wire = encode(Shared, Shared(shared, shared))
    assert wire[:8] == le("II", 1, 1)  # full pointers are numbered 1, 2, ... (Samba, Windows)
    assert len(wire) == 8 + 16  # one referent only
    back = decode(Shared, wire)
    assert back.x is back.y


def test_top_level_unique_pointer_referent_follows_immediately() -> None:
    assert encode(Unique[uint32], 5) == le("II", 0x20000, 5)
    assert encode(Unique[uint32], None) == le("I", 0)


def test_conformant_varying_string() -> None:
    # max count, offset, actual count, UTF-16 with the NUL (C706 14.3.4)
    assert encode(WString, "hi") == le("III", 3, 0, 3) + "hi\0".encode("utf-16-le")
    assert decode(WString, le("III", 3, 0, 3) + "hi\0".encode("utf-16-le")) == "hi"


def test_varying_string_with_fixed_bound() -> None:
    tp = Annotated[str, VaryingString(4)]
    assert encode(tp, "abc") == le("II", 0, 4) + b"abc\0"
    with pytest.raises(NdrError, match="exceeds its bound"):
        encode(tp, "abcd")
    with pytest.raises(NdrError):
        decode(tp, le("II", 0, 5) + b"abcd\0")


def test_string_with_nonzero_offset_is_rejected() -> None:
    with pytest.raises(NdrError, match="offset 1"):
        decode(WString, le("III", 3, 1, 2) + "hi".encode("utf-16-le"))


def test_union_discriminant_then_selected_arm() -> None:
    assert encode(Tagged, Tagged(1, 5)) == le("H", 1) + b"\x05"
    assert encode(Tagged, Tagged(8, 5)) == le("H", 8) + bytes(6) + le("q", 5)
    with pytest.raises(NdrError, match="no arm for discriminant 3"):
        decode(Tagged, le("H", 3) + bytes(8))
    assert Tagged(eight=4).eight == 4
    with pytest.raises(AttributeError):
        _ = Tagged(eight=4).one


def test_fixed_and_varying_arrays() -> None:
    tp = Annotated[list[uint16], Fixed(3)]
    assert encode(tp, [1, 2, 3]) == le("HHH", 1, 2, 3)
    with pytest.raises(NdrError, match="3"):
        encode(tp, [1, 2])

    class V(Struct):
        n: uint32
        items: Annotated[list[uint32], Fixed(4), LengthIs("n")]

    assert encode(V, V(2, [5, 6])) == le("I", 2) + le("II", 0, 2) + le("II", 5, 6)
    with pytest.raises(NdrError, match="exceeds"):
        decode(V, le("I", 5) + le("II", 0, 5) + bytes(20))


def test_count_is_checked_before_allocation() -> None:
    # a conformant array claiming 2**32-1 elements in a 12-octet stub is refused at once
    with pytest.raises(NdrError, match="cannot fit") as e:
        decode(Sized, le("II", 0xFFFFFFFF, 0xFFFFFFFF) + bytes(4))
    assert e.value.offset == 8


def test_element_budget_limits_zero_size_elements() -> None:
    class Empty(Struct):
        pass

    class Many(Struct):
        n: uint32
        items: Annotated[list[Empty], SizeIs("n")]

    c = codec(Many)
    with pytest.raises(NdrError, match="stub limit"):
        c.decode(le("II", 5000, 5000), limits=Limits(max_elements=1000))
    assert len(c.decode(le("II", 10, 10)).items) == 10


def test_recursion_depth_is_bounded() -> None:
    depth = 400
    wire = bytearray()
    for i in range(depth):
        wire += le("II", i, 0x20000 + 4 * i if i < depth - 1 else 0)
    c = codec(Link)
    with pytest.raises(NdrError, match="deeper than the limit"):
        c.decode(bytes(wire))
    chain = c.decode(bytes(wire), limits=Limits(max_depth=depth + 1))
    assert chain.value == 0


def test_truncated_input_reports_offset() -> None:
    with pytest.raises(NdrError) as e:
        decode(Pair, b"\x01" + bytes(7) + b"\x02\x00")
    assert e.value.offset == 8
    assert "need 8 octets" in e.value.reason


def test_trailing_octets_are_reported_unless_allowed() -> None:
    with pytest.raises(NdrError, match="left over"):
        decode(uint32, bytes(6))
    assert decode(uint32, le("I", 7) + b"xx", allow_trailing=True) == 7


def test_null_ref_pointer_cannot_be_encoded() -> None:
    with pytest.raises(NdrError):
        encode(uint32, None)

    class R(Struct):
        p: Ref[Pair]

    with pytest.raises(NdrError, match="NULL"):
        encode(R, R(None))  # type: ignore[arg-type]


def test_values_that_do_not_fit_raise_ndr_error() -> None:
    with pytest.raises(NdrError):
        encode(uint8, 256)
    with pytest.raises(NdrError):
        encode(Sized, Sized(3, [1]))


def test_top_level_full_pointers_that_alias_send_one_referent() -> None:
    from dcerpc.interface import Interface, operation

    class Aliases(Interface, uuid="11111111-2222-3333-4444-555555555555"):
        @operation(0)
        async def Two(self, a: Full[Pair], b: Full[Pair]) -> None: ...

    op = Aliases.operation_named("Two")
    shared = Pair(3, 4)
    stub = op.encode_request(shared, shared)
    assert stub[:4] == le("I", 1)
    # id, padding to 8, the referent (uint8, padding, hyper), the same id again, no second referent
    assert stub[24:28] == le("I", 1)
    assert len(stub) == 28
    (a, b), end = op.decode_request(stub)
    assert a is b and a == shared and end == len(stub)


def test_an_encode_error_names_the_member_that_does_not_fit() -> None:
    class Item(Struct):
        id: uint32
        name: Unique[WString]

    class Bag(Struct):
        n: uint32
        items: Unique[Annotated[list[Item], SizeIs("n")]]

    with pytest.raises(NdrError, match=r"as Bag: value\.items\[1\]\.name: expected str, got bytes$"):
        encode(Bag, Bag(2, [Item(1, None), Item(2, b"x")]))  # type: ignore[arg-type]
    with pytest.raises(NdrError, match=r"as Bag: value\.items: has 1 elements, size_is\(n\) = 2$"):
        encode(Bag, Bag(2, [Item(1, None)]))
    with pytest.raises(NdrError, match=r"as Bag: value\.n: -1 is out of range for uint32"):
        encode(Bag, Bag(-1, None))
