"""The connectionless PDU codec (pdu/cl.py, C706 12.5): the header's octets where C706 puts them,
every type's body, both integer orders, each refusal's violation kind; hypothesis round trips every
type and feeds the parser arbitrary octets (it raises ClError or nothing)."""

from __future__ import annotations

import contextlib
import struct
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcerpc.pdu import PduError
from dcerpc.pdu.cl import (
    CL_HEADER_SIZE,
    CancelAckBody,
    CancelBody,
    ClError,
    ClPType,
    Datagram,
    FackBody,
    Flags1,
    Flags2,
    StatusBody,
    cl_auth_level,
    cl_plausible,
    parse_cl,
)
from dcerpc.protocol.rules import Violation

EPM = uuid.UUID("e1af8308-5d1f-11c9-91a4-08002b14a0fa")
ACT = uuid.UUID("6d4c1a2b-3e5f-4071-8293-a4b5c6d7e8f9")
OBJ = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
LE, BE = b"\x10\x00\x00", b"\x00\x00\x00"


def request(drep: bytes = LE, **kw: Any) -> Datagram:
    return Datagram(**{
        "ptype": ClPType.REQUEST, "flags1": Flags1.IDEMPOTENT, "drep": drep, "serial": 0x0102,
        "object": OBJ, "interface": EPM, "activity": ACT, "server_boot": 0x11223344,
        "interface_version": 3, "sequence": 7, "opnum": 2, "interface_hint": 5, "activity_hint": 6,
        "body": b"stub-octets", **kw,
    })  # fmt: skip


def test_header_octets_where_c706_puts_them() -> None:
    raw = request().encode()
    assert len(raw) == CL_HEADER_SIZE + len(b"stub-octets")
    assert raw[0] == 4 and raw[1] == 0 and raw[2] == Flags1.IDEMPOTENT and raw[3] == 0
    assert raw[4:7] == LE and raw[7] == 0x01 and raw[79] == 0x02  # serial_hi, serial_lo
    assert raw[8:24] == OBJ.bytes_le and raw[24:40] == EPM.bytes_le and raw[40:56] == ACT.bytes_le
    assert struct.unpack_from("<IIIHHHHHB", raw, 56) == (0x11223344, 3, 7, 2, 5, 6, 11, 0, 0)
    big = request(BE).encode()
    assert big[24:40] == EPM.bytes and struct.unpack_from(">IIIHHHHH", big, 56)[:7] == (
        0x11223344, 3, 7, 2, 5, 6, 11,
    )  # fmt: skip


@pytest.mark.parametrize("drep", [LE, BE])
def test_every_type_round_trips(drep: bytes) -> None:
    bodies: dict[ClPType, object] = {
        ClPType.REQUEST: b"in",
        ClPType.PING: b"",
        ClPType.RESPONSE: b"out",
        ClPType.FAULT: StatusBody(0x1C010002),
        ClPType.WORKING: b"",
        ClPType.NOCALL: FackBody(0, 16, 4096, 1464, 3, (0x5,)),
        ClPType.REJECT: StatusBody(0x1C010003, b"eeinfo"),
        ClPType.ACK: b"",
        ClPType.CL_CANCEL: CancelBody(9),
        ClPType.FACK: FackBody(1, 8, 65000, 1464, 2, ()),
        ClPType.CANCEL_ACK: CancelAckBody(9, False),
    }
    for ptype, body in bodies.items():
        d = request(drep, ptype=ptype, body=body)
        back = parse_cl(d.encode())
        assert back == d, ptype
        assert back.little_endian == (drep == LE) and back.version == (3, 0)


def test_fragments_and_flags() -> None:
    d = request(
        flags1=Flags1.FRAG | Flags1.LASTFRAG | Flags1.NOFACK, flags2=Flags2.CANCEL_PENDING, fragment=3
    )
    back = parse_cl(d.encode())
    assert back.fragment == 3 and back.last_fragment and back.flags2 == Flags2.CANCEL_PENDING
    assert not parse_cl(request(flags1=Flags1.FRAG, fragment=0).encode()).last_fragment
    assert parse_cl(request().encode()).last_fragment  # not fragmented at all


def test_auth_verifier_is_the_rest_of_the_datagram() -> None:
    d = request(auth_proto=10, auth=b"\x06\x00" + bytes(14))
    back = parse_cl(d.encode())
    assert back.auth == d.auth and back.body == b"stub-octets" and back.auth_proto == 10


def kind_of(raw: bytes) -> Violation:
    with pytest.raises(ClError) as e:
        parse_cl(raw)
    assert isinstance(e.value, PduError)
    return Violation(e.value.kind)


def test_refusals_and_their_kinds() -> None:
    good = request().encode()
    assert kind_of(good[:79]) is Violation.BAD_FRAGMENT_LENGTH
    assert kind_of(b"\x05" + good[1:]) is Violation.BAD_VERSION
    assert kind_of(good[:4] + b"\x20" + good[5:]) is Violation.BAD_VERSION  # integer order 2
    assert kind_of(good[:4] + b"\x11" + good[5:]) is Violation.BAD_VERSION  # EBCDIC
    assert kind_of(good[:5] + b"\x01" + good[6:]) is Violation.BAD_VERSION  # VAX floats
    assert kind_of(good[:-1]) is Violation.BAD_FRAGMENT_LENGTH  # len says 11, 10 are there
    assert kind_of(good[:1] + b"\x0b" + good[2:]) is Violation.MALFORMED  # packet type 11
    assert kind_of(good + b"xx") is Violation.MALFORMED  # trailing octets, auth_proto 0
    assert kind_of(request(fragment=1).encode()) is Violation.MALFORMED  # fragnum without frag
    assert parse_cl(request(ptype=ClPType.FACK, body=b"", fragment=1).encode()).fragment == 1  # acknowledged
    assert kind_of(request(ptype=ClPType.PING, body=b"x").encode()) is Violation.MALFORMED
    assert kind_of(request(ptype=ClPType.FAULT, body=b"abc").encode()) is Violation.MALFORMED
    assert kind_of(request(ptype=ClPType.FACK, body=bytes(15)).encode()) is Violation.MALFORMED
    fack = FackBody(selack=(1, 2)).pack(True)
    assert kind_of(request(ptype=ClPType.FACK, body=fack[:-4]).encode()) is Violation.MALFORMED
    assert kind_of(request(ptype=ClPType.CL_CANCEL, body=bytes(12)).encode()) is Violation.MALFORMED
    assert kind_of(request(ptype=ClPType.CANCEL_ACK, body=bytes(12)).encode()) is Violation.MALFORMED


def test_bodies_as_the_reference_implementation_sends_them() -> None:
    """cancel_ack is 9 octets (its boolean is one NDR octet, nonzero true); a fack body may be
    longer than its masks need (the DCE reference sizes it for one mask, 20 octets)."""
    quack = request(ptype=ClPType.CANCEL_ACK, body=struct.pack("<IIB", 0, 7, 2), drep=LE).encode()
    assert len(quack) == CL_HEADER_SIZE + 9 and parse_cl(quack).body == CancelAckBody(7, True)
    assert len(CancelAckBody(7, False).pack(False)) == 9
    fack = FackBody(1, 8, 4096, 1464, 5).pack(True) + bytes(4)
    assert parse_cl(request(ptype=ClPType.FACK, body=fack).encode()).body == FackBody(1, 8, 4096, 1464, 5)


def test_plausible() -> None:
    good = request().encode()
    assert cl_plausible(good)
    assert not cl_plausible(good[:-1]) and not cl_plausible(good + b"x")
    assert cl_plausible(request(auth_proto=1, auth=b"sig").encode())
    assert not cl_plausible(b"\x05" + good[1:]) and not cl_plausible(good[:1] + b"\x0b" + good[2:])
    assert not cl_plausible(bytes(200))  # version 0


uuids = st.uuids()
u16, u32 = st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)
bodies: dict[ClPType, st.SearchStrategy[object]] = {
    ClPType.REQUEST: st.binary(max_size=200),
    ClPType.RESPONSE: st.binary(max_size=200),
    ClPType.PING: st.just(b""),
    ClPType.WORKING: st.just(b""),
    ClPType.ACK: st.just(b""),
    ClPType.FAULT: st.builds(StatusBody, u32, st.binary(max_size=20)),
    ClPType.REJECT: st.builds(StatusBody, u32, st.binary(max_size=20)),
    ClPType.FACK: st.one_of(
        st.just(b""),
        st.builds(FackBody, st.integers(0, 255), u16, u32, u32, u16, st.lists(u32, max_size=5).map(tuple)),
    ),
    ClPType.NOCALL: st.one_of(st.just(b""), st.builds(FackBody, st.integers(0, 255), u16, u32, u32, u16)),
    ClPType.CL_CANCEL: st.builds(CancelBody, u32, u32),
    ClPType.CANCEL_ACK: st.builds(CancelAckBody, u32, st.booleans(), u32),
}


@st.composite
def datagrams(draw: st.DrawFn) -> Datagram:
    ptype = draw(st.sampled_from(list(ClPType)))
    frag = draw(st.booleans())
    proto = draw(st.integers(0, 255))
    flags = draw(st.integers(0, 255))
    return Datagram(
        ptype=ptype,
        flags1=(flags | Flags1.FRAG) if frag else (flags & ~Flags1.FRAG),
        flags2=draw(st.integers(0, 255)),
        drep=draw(st.sampled_from([LE, BE, b"\x10\x00\x07", b"\x00\x00\xff"])),
        serial=draw(u16), object=draw(uuids), interface=draw(uuids), activity=draw(uuids),
        server_boot=draw(u32), interface_version=draw(u32), sequence=draw(u32), opnum=draw(u16),
        interface_hint=draw(u16), activity_hint=draw(u16),
        fragment=draw(u16) if frag or ptype not in (ClPType.REQUEST, ClPType.RESPONSE) else 0,
        auth_proto=proto, body=draw(bodies[ptype]),  # type: ignore[arg-type]
        auth=draw(st.binary(max_size=40)) if proto else b"",
    )  # fmt: skip


@settings(max_examples=400)
@given(datagrams())
def test_build_parse_round_trip(d: Datagram) -> None:
    raw = d.encode()
    assert parse_cl(raw) == d
    assert cl_plausible(raw)


@settings(max_examples=400)
@given(st.binary(max_size=300))
def test_parse_raises_only_its_error(raw: bytes) -> None:
    try:
        d = parse_cl(raw)
    except ClError as e:
        Violation(e.kind)  # a kind the server knows
        return
    assert parse_cl(d.encode()) == d  # padding (the fack body's pad octet) is written as zero


@settings(max_examples=200)
@given(datagrams(), st.integers(0, 400), st.integers(0, 255))
def test_parse_mutated(d: Datagram, at: int, value: int) -> None:
    raw = bytearray(d.encode())
    raw[at % len(raw)] = value
    with contextlib.suppress(ClError):
        parse_cl(bytes(raw))


def test_the_verifiers_auth_level() -> None:
    assert cl_auth_level(b"\x04\x01" + bytes(14)) == 4  # MS-RPCE 2.2.3.4: auth_level first
    assert cl_auth_level(bytes(3) + b"\x06\x00") == 6  # the stub's padding first
    assert cl_auth_level(bytes(8) + b"\x06") is None  # more than 7 octets of padding: not a trailer
    assert cl_auth_level(b"\x09\x00") is None and cl_auth_level(b"") is None
