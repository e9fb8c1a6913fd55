"""Property tests: every NDR construct round-trips in both byte orders, and decoding is total."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dcerpc import NdrError
from dcerpc.ndr import (
    GUID,
    HRESULT,
    NTSTATUS,
    WERROR,
    Case,
    ContextHandle,
    CString,
    Default,
    Enum16,
    Enum32,
    FirstIs,
    Fixed,
    Full,
    LengthIs,
    Ref,
    SizeIs,
    Struct,
    SwitchIs,
    Union,
    Unique,
    VaryingString,
    WString,
    boolean,
    boolean32,
    byte,
    char,
    codec,
    double,
    error_status_t,
    float32,
    hyper,
    int8,
    int16,
    int32,
    int64,
    uint8,
    uint16,
    uint32,
    uint64,
    wchar_t,
)

# --- declarations covering every construct ------------------------------------------------------


class Color(Enum16):
    RED = 1
    GREEN = 2


class Wide(Enum32):
    ONE = 1
    BIG = 0x10000


class Inner(Struct):
    a: uint8
    b: hyper


class Mixed(Struct):
    a: uint8
    b: uint16
    c: uint32
    d: Inner
    e: int8
    f: double
    g: boolean
    h: GUID
    i: ContextHandle
    j: Color
    k: Wide
    m: char
    n: wchar_t
    o: float32
    p: NTSTATUS


class Conformant(Struct):
    """A conformant structure: its max count is hoisted in front (C706 14.3.7.2)."""

    tag: uint16
    count: uint32
    items: Annotated[list[uint32], SizeIs("count")]


class Outer(Struct):
    """A structure whose last member is a conformant structure: the max count goes to the front."""

    x: uint8
    inner: Conformant


class Arrays(Struct):
    fixed: Annotated[list[uint16], Fixed(3)]
    matrix: Annotated[list[Annotated[list[uint8], Fixed(3)]], Fixed(2)]
    octets: Annotated[bytes, Fixed(5)]
    n: uint32
    varying: Annotated[list[hyper], Fixed(4), LengthIs("n")]


class Strings(Struct):
    w: Unique[WString]
    c: Unique[CString]
    v: Annotated[str, VaryingString(16)]


class Node(Struct):
    """A recursive type: a linked list through unique pointers."""

    value: uint32
    next: Unique[Node]


class WithPointers(Struct):
    head: uint32
    p1: Unique[uint32]
    p2: Ref[Inner]
    p3: Unique[Annotated[list[uint16], SizeIs("head")]]
    p4: Full[Inner]
    p5: Full[Inner]
    pp: Unique[Unique[uint16]]


class Arm(Union, switch_type=uint32):
    small: Annotated[uint8, Case(1)]
    big: Annotated[Inner, Case(2, 3)]
    ptr: Annotated[Unique[WString], Case(4)]
    nothing: Annotated[None, Case(5)]
    other: Annotated[uint16, Default]


class Holder(Struct):
    level: uint32
    arm: Annotated[Arm, SwitchIs("level")]  # the codec sends the value's own tag (C706 14.3.8)
    arms: Annotated[list[Arm], Fixed(2)]


class Entry(Struct):
    id: GUID
    name: Unique[WString]
    data: Unique[Annotated[bytes, SizeIs("size")]]
    size: uint32


class Table(Struct):
    count: uint32
    first: uint32
    entries: Annotated[list[Entry], SizeIs("count + 2"), LengthIs("count"), FirstIs("first")]


# --- strategies ---------------------------------------------------------------------------------

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
i64 = st.integers(-(2**63), 2**63 - 1)
guids = st.uuids()
handles = st.builds(ContextHandle, u32, guids)
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)).filter(lambda c: c != "\0"))
latin = st.text(st.characters(max_codepoint=255).filter(lambda c: c != "\0"))
f32 = st.floats(width=32, allow_nan=False)
inners = st.builds(Inner, u8, i64)


@st.composite
def conformants(draw: st.DrawFn) -> Conformant:
    items = draw(st.lists(u32, max_size=8))
    return Conformant(draw(u16), len(items), items)


@st.composite
def tables(draw: st.DrawFn) -> Table:
    entries = []
    for _ in range(draw(st.integers(0, 5))):
        data = draw(st.one_of(st.none(), st.binary(max_size=12)))
        entries.append(
            Entry(draw(guids), draw(st.one_of(st.none(), text)), data, 0 if data is None else len(data))
        )
    return Table(len(entries), draw(st.integers(0, 2)), entries)


@st.composite
def linked(draw: st.DrawFn) -> Node | None:
    head = None
    for v in draw(st.lists(u32, max_size=30)):
        head = Node(v, head)
    return head


@st.composite
def with_pointers(draw: st.DrawFn) -> WithPointers:
    head = draw(st.integers(0, 6))
    shared = draw(inners)
    return WithPointers(
        head,
        draw(st.one_of(st.none(), u32)),
        draw(inners),
        draw(st.one_of(st.none(), st.lists(u16, min_size=head, max_size=head))),
        shared,
        draw(st.sampled_from([None, shared])),
        draw(st.one_of(st.none(), st.just(None), u16)),
    )


arms = st.one_of(
    st.builds(lambda v: Arm(1, v), u8),
    st.builds(Arm, st.sampled_from([2, 3]), inners),
    st.builds(lambda v: Arm(4, v), st.one_of(st.none(), text)),
    st.just(Arm(5, None)),
    st.builds(Arm, st.integers(6, 0xFFFFFFFF), u16),
)

CASES: list[tuple[Any, st.SearchStrategy[Any]]] = [
    (uint8, u8),
    (int8, st.integers(-128, 127)),
    (byte, u8),
    (uint16, u16),
    (int16, st.integers(-(2**15), 2**15 - 1)),
    (uint32, u32),
    (int32, st.integers(-(2**31), 2**31 - 1)),
    (uint64, st.integers(0, 2**64 - 1)),
    (int64, i64),
    (hyper, i64),
    (float32, f32),
    (double, st.floats(allow_nan=False)),
    (boolean, st.booleans()),
    (boolean32, st.booleans()),
    (char, st.characters(max_codepoint=255)),
    (wchar_t, st.characters(max_codepoint=0xFFFF)),
    (error_status_t, u32),
    (GUID, guids),
    (ContextHandle, handles),
    (NTSTATUS, st.builds(NTSTATUS, u32)),
    (WERROR, st.builds(WERROR, u32)),
    (HRESULT, st.builds(HRESULT, u32)),
    (Color, st.builds(Color, u16)),
    (Wide, st.builds(Wide, u32)),
    (
        Mixed,
        st.builds(
            Mixed,
            u8,
            u16,
            u32,
            inners,
            st.integers(-128, 127),
            st.floats(allow_nan=False),
            st.booleans(),
            guids,
            handles,
            st.builds(Color, u16),
            st.builds(Wide, u32),
            st.characters(max_codepoint=255),
            st.characters(max_codepoint=0xFFFF),
            f32,
            st.builds(NTSTATUS, u32),
        ),
    ),
    (Conformant, conformants()),
    (Outer, st.builds(Outer, u8, conformants())),
    (
        Arrays,
        st.integers(0, 4).flatmap(
            lambda n: st.builds(
                Arrays,
                st.lists(u16, min_size=3, max_size=3),
                st.lists(st.lists(u8, min_size=3, max_size=3), min_size=2, max_size=2),
                st.binary(min_size=5, max_size=5),
                st.just(n),
                st.lists(i64, min_size=n, max_size=n),
            )
        ),
    ),
    (
        Strings,
        st.builds(
            Strings,
            st.one_of(st.none(), text),
            st.one_of(st.none(), latin),
            latin.filter(lambda s: len(s) < 16),
        ),
    ),
    (WString, text),
    (CString, latin),
    (Unique[WString], st.one_of(st.none(), text)),
    (Unique[Node], linked()),
    (WithPointers, with_pointers()),
    (Arm, arms),
    (Holder, st.builds(Holder, u32, arms, st.lists(arms, min_size=2, max_size=2))),
    (Table, tables()),
]


@pytest.mark.parametrize(
    ("tp", "strategy"), CASES, ids=[getattr(t, "__name__", repr(t))[:40] for t, _ in CASES]
)
@pytest.mark.parametrize("big_endian", [False, True], ids=["le", "be"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip(tp: Any, strategy: st.SearchStrategy[Any], big_endian: bool, data: st.DataObject) -> None:
    value = data.draw(strategy)
    c = codec(tp)
    wire = c.encode(value, big_endian=big_endian)
    back = c.decode(wire, big_endian=big_endian)
    assert back == value
    # canonical: encoding what we decoded gives the same octets
    assert c.encode(back, big_endian=big_endian) == wire


# --- decoding is total --------------------------------------------------------------------------

HOSTILE_TYPES = [t for t, _ in CASES]


@pytest.mark.parametrize(
    "tp", HOSTILE_TYPES, ids=[getattr(t, "__name__", repr(t))[:40] for t in HOSTILE_TYPES]
)
@settings(max_examples=150, deadline=None)
@given(blob=st.binary(max_size=256), big_endian=st.booleans())
def test_decoding_arbitrary_bytes_raises_only_ndr_error(tp: Any, blob: bytes, big_endian: bool) -> None:
    try:
        codec(tp).decode(blob, big_endian=big_endian, allow_trailing=True)
    except NdrError as e:
        assert e.offset >= 0
        assert e.reason


@pytest.mark.parametrize(
    "tp", HOSTILE_TYPES, ids=[getattr(t, "__name__", repr(t))[:40] for t in HOSTILE_TYPES]
)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_decoding_mutated_encodings_raises_only_ndr_error(tp: Any, data: st.DataObject) -> None:
    """Valid encodings with a few octets flipped, truncated or extended: the nastiest inputs."""
    strategy = {id(t): s for t, s in CASES}[id(tp)]
    wire = bytearray(codec(tp).encode(data.draw(strategy)))
    for _ in range(data.draw(st.integers(1, 4))):
        if wire:
            i = data.draw(st.integers(0, len(wire) - 1))
            wire[i] = data.draw(u8)
    cut = data.draw(st.integers(0, len(wire)))
    blob = bytes(wire[:cut]) + data.draw(st.binary(max_size=8))
    try:
        codec(tp).decode(blob, allow_trailing=True)
    except NdrError as e:
        assert e.offset >= 0


def test_unknown_enum_values_are_kept() -> None:
    """Peers send values the declaration does not name (smbtorture sends 76 for a 1/2 enum)."""
    value = codec(Color).decode(b"\x4c\x00")
    assert value == 76
    assert isinstance(value, Color)


def test_guid_value_type() -> None:
    g = uuid.UUID("60a15ec5-4de8-11d7-a637-005056a20182")
    assert codec(GUID).encode(g) == g.bytes_le
    assert codec(GUID).encode(g, big_endian=True) == g.bytes
