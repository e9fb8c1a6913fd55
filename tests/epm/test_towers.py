"""Tower octets (C706 Appendix L): exact layout, round trips, and total decoding."""

from __future__ import annotations

import contextlib
import struct
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcerpc.epm.towers import Tower, TowerError, tcp_tower
from dcerpc.pdu import NDR20, SyntaxId
from dcerpc.rpcecho import Echo

ECHO = Echo.__syntax__


def test_tcp_tower_octets() -> None:
    octets = tcp_tower(ECHO, 49152, "127.0.0.1").encode()
    expect = struct.pack("<H", 5)
    expect += (
        struct.pack("<H", 19) + b"\x0d" + ECHO.uuid.bytes_le + struct.pack("<H", 1) + struct.pack("<HH", 2, 0)
    )
    expect += (
        struct.pack("<H", 19)
        + b"\x0d"
        + NDR20.uuid.bytes_le
        + struct.pack("<H", 2)
        + struct.pack("<HH", 2, 0)
    )
    expect += struct.pack("<H", 1) + b"\x0b" + struct.pack("<HH", 2, 0)
    expect += (
        struct.pack("<H", 1) + b"\x07" + struct.pack("<H", 2) + struct.pack(">H", 49152)
    )  # big-endian port
    expect += struct.pack("<H", 1) + b"\x09" + struct.pack("<H", 4) + bytes([127, 0, 0, 1])
    assert octets == expect
    assert Tower.decode(octets).binding == "ncacn_ip_tcp:127.0.0.1[49152]"


hosts = st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str))
names = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)
syntaxes = st.builds(SyntaxId, st.uuids(), st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)))


@settings(max_examples=200)
@given(
    iface=syntaxes,
    shape=st.one_of(
        st.tuples(
            st.sampled_from(["ncacn_ip_tcp", "ncadg_ip_udp", "ncacn_http"]),
            st.integers(0, 65535).map(str),
            hosts,
        ),
        st.tuples(st.just("ncalrpc"), names, st.just("")),
        st.tuples(st.just("ncacn_np"), names.map(lambda n: "\\PIPE\\" + n), names),
    ),
)
def test_round_trip(iface: SyntaxId, shape: tuple[str, str, str]) -> None:
    protseq, endpoint, host = shape
    tower = Tower(iface, NDR20, protseq, endpoint, host)
    assert Tower.decode(tower.encode()) == tower


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_decoding_arbitrary_octets_raises_only_tower_error(blob: bytes) -> None:
    with contextlib.suppress(TowerError):
        Tower.decode(blob)


def test_more_than_six_floors_is_refused() -> None:
    octets = bytearray(tcp_tower(ECHO, 1).encode())
    octets[0:2] = struct.pack("<H", 7)
    with pytest.raises(TowerError, match="more than 6"):
        Tower.decode(bytes(octets))


def test_unknown_protocol_floors_are_named() -> None:
    octets = Tower(SyntaxId(uuid.uuid4(), (1, 0)), NDR20, "ncacn_ip_tcp", "1", "1.2.3.4").encode()
    bad = octets.replace(b"\x01\x00\x0b", b"\x01\x00\x42", 1)
    with pytest.raises(TowerError, match="0x42"):
        Tower.decode(bad)


def test_a_decoded_tower_that_cannot_be_encoded_says_so() -> None:
    """An ncacn_ip_tcp tower whose address floor is NetBIOS (a name, not an IP address) decodes;
    encoding it again raised ValueError out of towers.py, and ept_insert / ept_mgmt_delete, which
    encode what they decode, answered a generic fault (found by fuzz_towers)."""
    octets = bytearray(tcp_tower(ECHO, 135).encode())
    ip_floor = octets.rindex(b"\x01\x00\x09\x04\x00")
    octets[ip_floor:] = b"\x01\x00\x11\x02\x00\x02\x00"  # NetBIOS floor: the name "\x02"
    tower = Tower.decode(bytes(octets))
    assert (tower.protseq, tower.endpoint, tower.host) == ("ncacn_ip_tcp", "135", "\x02")
    with pytest.raises(TowerError, match="not an IP address"):
        tower.encode()
