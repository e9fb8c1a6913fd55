"""The verification trailer (MS-RPCE 2.2.2.13): what our client appends, our server finds; any octets
are either a stub or a stub plus a trailer, never an exception."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from dcerpc.pdu import constants as const
from dcerpc.pdu.syntax import SyntaxId
from dcerpc.protocol import verification

ECHO = SyntaxId(uuid.UUID("60a15ec5-4de8-11d7-a637-005056a20182"), (1, 0))


@given(
    stub=st.binary(max_size=300),
    header_sign=st.booleans(),
    call_id=st.integers(0, 2**32 - 1),
    context_id=st.integers(0, 0xFFFF),
    opnum=st.integers(0, 0xFFFF),
)
def test_build_then_split(stub: bytes, header_sign: bool, call_id: int, context_id: int, opnum: int) -> None:
    wire = stub + verification.build(
        header_sign=header_sign,
        interface=ECHO,
        transfer=const.NDR20,
        ptype=0,
        drep=b"\x10\0\0\0",
        call_id=call_id,
        context_id=context_id,
        opnum=opnum,
        stub_length=len(stub),
    )
    rest, trailer = verification.split(wire)
    assert trailer is not None
    assert rest[: len(stub)] == stub and set(rest[len(stub) :]) <= {0} and len(rest) % 4 == 0
    assert trailer.interface == ECHO and trailer.transfer == const.NDR20
    assert trailer.header2 == (0, b"\x10\0\0\0", call_id, context_id, opnum)
    assert (trailer.bitmask == 1) if header_sign else trailer.bitmask is None
    assert trailer.unknown_required == ()


@given(st.binary(max_size=400), st.booleans())
def test_split_is_total(data: bytes, little: bool) -> None:
    rest, trailer = verification.split(data, little)
    assert data.startswith(rest)
    assert (trailer is None) == (rest == data)


def test_magic_inside_stub_data_is_not_a_trailer() -> None:
    stub = bytes(4) + verification.MAGIC + b"\x01\x40\x04\x00" + bytes(4) + b"more stub"
    assert verification.split(stub) == (stub, None)


def test_unknown_required_command_is_reported() -> None:
    trailer = verification.MAGIC + b"\x07\xc0\x00\x00"  # command 7, MUST_PROCESS | END, empty
    rest, found = verification.split(b"abcd" + trailer)
    assert rest == b"abcd" and found is not None and found.unknown_required == (7,)
