"""Connectionless PDUs (C706 12.5, ncadg_ip_udp; MS-RPCE 2.2.3): parse and build, no I/O.

A connectionless PDU is one datagram: an 80-octet header, then ``len`` octets of body, then (when
``auth_proto`` is not 0) the authentication verifier, whose length no field gives: it is the rest
of the datagram, kept here as opaque octets (C706 12.5, the authentication verifier; checking it is
a provider's job). Its first octets are the sec_trailer_cl (MS-RPCE 2.2.3.4: the stub padded to an
8-octet boundary, then auth_level u8, key_vers_num u8, padding, the token; C706 13.3.4's Kerberos
verifier opens with its protection level the same way, as Wireshark's dissector reads it):
:func:`cl_auth_level` reads the level.

    u8 rpc_vers (4)  u8 ptype  u8 flags1  u8 flags2  u8 drep[3]  u8 serial_hi
    uuid object  uuid if_id  uuid act_id                           (in the sender's integer order)
    u32 server_boot  u32 if_vers  u32 seqnum
    u16 opnum  u16 ihint  u16 ahint  u16 len  u16 fragnum  u8 auth_proto  u8 serial_lo

Calls are named by (activity, sequence number), not by a call_id; a request names its interface
(UUID and version) and operation itself: there is no bind. Fragments of one PDU share the header
but their ``fragnum`` (C706 12.5, the fragment fields) and are whole when the one with ``lastfrag``
and every number below it have arrived.

Bodies with structure (C706 12.5): fault and reject carry a status (u32; Windows may add extended
error information after it, kept as octets); fack, and optionally nocall, the fack body (version,
window size, max TSDU, max fragment size, serial number, selective acknowledgement bitmasks);
cl_cancel a version and a cancel id; cancel_ack those and whether the server accepts cancels.
Request and response bodies are stubs; ping, working and ack have none.

:func:`parse_cl` reads one datagram and returns a :class:`Datagram` or raises :class:`ClError`,
whose ``kind`` is the :class:`~dcerpc.protocol.rules.Violation` a receiver reports (nothing else
escapes it on any octets); :meth:`Datagram.encode` builds one in either integer order.
"""

from __future__ import annotations

import enum
import struct
import uuid
from dataclasses import dataclass
from typing import Final

from ..ndr.runtime import guid_be, guid_le
from .header import PduError

__all__ = [
    "CLIENT_PTYPES",
    "CL_HEADER_SIZE",
    "CL_VERSION",
    "NIL",
    "SERVER_PTYPES",
    "CancelAckBody",
    "CancelBody",
    "ClError",
    "ClPType",
    "Datagram",
    "FackBody",
    "Flags1",
    "Flags2",
    "StatusBody",
    "cl_auth_level",
    "cl_plausible",
    "parse_cl",
]

CL_VERSION: Final = 4
CL_HEADER_SIZE: Final = 80
NIL: Final = uuid.UUID(int=0)
_HEAD = {
    True: struct.Struct("<BBBB3sB16s16s16sIIIHHHHHBB"),
    False: struct.Struct(">BBBB3sB16s16s16sIIIHHHHHBB"),
}
_LEN_AT: Final = 74  # the body length's offset


class ClPType(enum.IntEnum):
    """Connectionless packet types (C706 12.1, the PDU type table)."""

    REQUEST = 0
    PING = 1
    RESPONSE = 2
    FAULT = 3
    WORKING = 4
    NOCALL = 5
    REJECT = 6
    ACK = 7
    CL_CANCEL = 8
    FACK = 9
    CANCEL_ACK = 10


_FRAGMENTED: Final = frozenset({ClPType.REQUEST, ClPType.RESPONSE})
CLIENT_PTYPES: Final = frozenset({ClPType.REQUEST, ClPType.PING, ClPType.ACK, ClPType.CL_CANCEL})
"""What a client sends (C706 12.1, the PDU type table); fack goes both ways (it acknowledges
fragments)."""
SERVER_PTYPES: Final = frozenset(
    {ClPType.RESPONSE, ClPType.FAULT, ClPType.WORKING, ClPType.NOCALL, ClPType.REJECT, ClPType.CANCEL_ACK}
)


class Flags1(enum.IntFlag):
    """flags1 (C706 12.5, the header); 0x01 and 0x80 are reserved for implementations."""

    LASTFRAG = 0x02
    FRAG = 0x04
    NOFACK = 0x08
    MAYBE = 0x10
    IDEMPOTENT = 0x20
    BROADCAST = 0x40


_FRAG: Final = int(Flags1.FRAG)  # plain ints: IntFlag's operators cost a call each, per datagram
_LASTFRAG: Final = int(Flags1.LASTFRAG)


class Flags2(enum.IntFlag):
    """flags2 (C706 12.5, the header); the other bits are reserved (must be zero; not checked on
    receipt)."""

    CANCEL_PENDING = 0x02


class ClError(PduError):
    """A datagram that breaks a rule; ``kind`` is the violation a receiver reports for it."""

    def __init__(self, reason: str, kind: str, ptype: int = -1) -> None:
        super().__init__(reason, 0, ptype)
        self.kind = kind


# the violation kinds (protocol/rules.py's Violation values; the import would point upward)
BAD_VERSION: Final = "bad_version"
BAD_LENGTH: Final = "bad_fragment_length"
MALFORMED: Final = "malformed"


@dataclass(frozen=True, slots=True)
class StatusBody:
    """The body of fault and reject (C706 12.5, the fault and reject PDUs): a status, and whatever
    follows it (Windows may add extended error information) as octets."""

    status: int
    detail: bytes = b""

    def pack(self, little: bool) -> bytes:
        return (_U32[little].pack(self.status)) + self.detail


@dataclass(frozen=True, slots=True)
class FackBody:
    """The fack body (C706 12.5, the fack PDU), also a nocall's when it has one. The DCE reference
    implementation sends version 1."""

    version: int = 1
    window_size: int = 0
    max_tsdu: int = 0
    max_frag_size: int = 0
    serial: int = 0
    selack: tuple[int, ...] = ()  # bitmasks of fragments received beyond ``fragnum``

    def pack(self, little: bool) -> bytes:
        e = "<" if little else ">"
        head = struct.pack(e + "BxHIIHH", self.version, self.window_size, self.max_tsdu,
                           self.max_frag_size, self.serial, len(self.selack))  # fmt: skip
        return head + struct.pack(f"{e}{len(self.selack)}I", *self.selack)


@dataclass(frozen=True, slots=True)
class CancelBody:
    """The cl_cancel body (C706 12.5, the cl_cancel PDU, once "quit"): version 0 and the cancel's id."""

    cancel_id: int
    version: int = 0

    def pack(self, little: bool) -> bytes:
        return struct.pack("<II" if little else ">II", self.version, self.cancel_id)


@dataclass(frozen=True, slots=True)
class CancelAckBody:
    """The cancel_ack body (C706 12.5, the cancel_ack PDU, once "quack"): version (u32), the cancel's
    id (u32), and whether the server accepts cancels: an NDR boolean, one octet (C706 14.2.2: zero is
    false, anything else true), so the body is 9 octets (the DCE reference implementation's
    on-the-wire size; Wireshark reads it so too)."""

    cancel_id: int
    accepting: bool = True
    version: int = 0

    def pack(self, little: bool) -> bytes:
        return struct.pack("<IIB" if little else ">IIB", self.version, self.cancel_id, int(self.accepting))


Body = bytes | StatusBody | FackBody | CancelBody | CancelAckBody
_U32 = {True: struct.Struct("<I"), False: struct.Struct(">I")}


@dataclass(frozen=True, slots=True, kw_only=True)
class Datagram:
    """One connectionless PDU: the header's fields, the body, the verifier."""

    ptype: ClPType
    flags1: int = 0
    flags2: int = 0
    drep: bytes = b"\x10\x00\x00"  # little-endian integers, ASCII, IEEE floats
    serial: int = 0  # serial_hi << 8 | serial_lo: which transmission of the fragment
    object: uuid.UUID = NIL
    interface: uuid.UUID = NIL
    activity: uuid.UUID = NIL
    server_boot: int = 0
    interface_version: int = 0  # u32: major in the low 16 bits, minor in the high
    sequence: int = 0
    opnum: int = 0
    interface_hint: int = 0xFFFF
    activity_hint: int = 0xFFFF
    fragment: int = 0
    auth_proto: int = 0
    body: Body = b""
    auth: bytes = b""  # the verifier (auth_proto != 0), opaque

    @property
    def little_endian(self) -> bool:
        return (self.drep[0] & 0xF0) == 0x10

    @property
    def version(self) -> tuple[int, int]:
        """The interface version, (major, minor)."""
        return self.interface_version & 0xFFFF, self.interface_version >> 16

    @property
    def last_fragment(self) -> bool:
        """True when nothing of this PDU follows: an unfragmented PDU, or the last fragment."""
        return not self.flags1 & _FRAG or bool(self.flags1 & _LASTFRAG)

    def encode(self) -> bytes:
        """The datagram, in the integer order ``drep`` names."""
        little = self.little_endian
        body = self.body if isinstance(self.body, bytes) else self.body.pack(little)

        def u(x: uuid.UUID) -> bytes:
            return x.bytes_le if little else x.bytes

        head = _HEAD[little].pack(
            CL_VERSION, self.ptype, self.flags1, self.flags2, self.drep, self.serial >> 8,
            u(self.object), u(self.interface), u(self.activity), self.server_boot,
            self.interface_version, self.sequence, self.opnum, self.interface_hint,
            self.activity_hint, len(body), self.fragment, self.auth_proto, self.serial & 0xFF,
        )  # fmt: skip
        return head + body + self.auth


def cl_plausible(data: bytes | bytearray) -> bool:
    """True when ``data`` looks like a connectionless PDU (for recognising one by content on any
    port): version 4, a known packet type, a data representation we read, a body that fits."""
    if len(data) < CL_HEADER_SIZE or data[0] != CL_VERSION or data[1] > ClPType.CANCEL_ACK:
        return False
    if data[4] not in (0x00, 0x10) or data[5] != 0:
        return False
    n = data[_LEN_AT] | data[_LEN_AT + 1] << 8 if data[4] else data[_LEN_AT] << 8 | data[_LEN_AT + 1]
    room = len(data) - CL_HEADER_SIZE
    return n <= room and (data[78] != 0 or n == room)


def parse_cl(data: bytes) -> Datagram:
    """Read one datagram.

    Raises:
        ClError: not version 4, an integer order or character / float format we do not read, a
            header or body length that does not fit, an unknown packet type, a body that breaks its
            type's layout, octets after the body with no auth_proto, a fragment number without the
            frag flag.
    """
    if len(data) < CL_HEADER_SIZE:
        raise ClError(f"a connectionless PDU needs {CL_HEADER_SIZE} octets, got {len(data)}", BAD_LENGTH)
    ptype = data[1]
    if data[0] != CL_VERSION:
        raise ClError(f"RPC version {data[0]} is not 4 (connectionless)", BAD_VERSION, ptype)
    d0 = data[4]
    if d0 & 0xF0 not in (0x00, 0x10):
        raise ClError(f"unknown integer representation 0x{d0 >> 4:x}", BAD_VERSION, ptype)
    if d0 & 0x0F:
        raise ClError("EBCDIC character representation is not supported", BAD_VERSION, ptype)
    if data[5]:
        raise ClError(
            f"non-IEEE floating point representation {data[5]} is not supported", BAD_VERSION, ptype
        )
    little = d0 == 0x10
    (_, _, f1, f2, drep, shi, obj, iface, act, boot, ifv, seq, opnum, ihint, ahint, n, fragnum, proto,
     slo) = _HEAD[little].unpack_from(data)  # fmt: skip
    if n > len(data) - CL_HEADER_SIZE:
        raise ClError(f"body length {n} does not fit the {len(data)}-octet datagram", BAD_LENGTH, ptype)
    try:
        kind = ClPType(ptype)
    except ValueError:
        raise ClError(f"packet type {ptype} is not a connectionless PDU", MALFORMED, ptype) from None
    raw = bytes(data[CL_HEADER_SIZE : CL_HEADER_SIZE + n])
    auth = bytes(data[CL_HEADER_SIZE + n :])
    if auth and not proto:
        raise ClError(f"{len(auth)} octets after the body and no auth_proto", MALFORMED, ptype)
    if fragnum and not f1 & _FRAG and kind in _FRAGMENTED:
        # C706 12.5, the header: in a request or response, fragnum numbers the fragments of one PDU (in a
        # fack or nocall it is the fragment acknowledged, and the flag is not set)
        raise ClError(f"fragment number {fragnum} without the frag flag", MALFORMED, ptype)
    u = guid_le if little else guid_be
    return Datagram(
        ptype=kind, flags1=f1, flags2=f2, drep=drep, serial=shi << 8 | slo,
        object=u(obj), interface=u(iface), activity=u(act),
        server_boot=boot, interface_version=ifv, sequence=seq, opnum=opnum, interface_hint=ihint,
        activity_hint=ahint, fragment=fragnum, auth_proto=proto, body=_body(kind, raw, little), auth=auth,
    )  # fmt: skip


def _body(ptype: ClPType, raw: bytes, little: bool) -> Body:
    e = "<" if little else ">"
    if ptype in (ClPType.REQUEST, ClPType.RESPONSE):
        return raw
    if ptype in (ClPType.PING, ClPType.WORKING, ClPType.ACK):  # C706 12.5: no body
        if raw:
            raise ClError(
                f"a {ptype.name.lower()} has no body, this one has {len(raw)} octets", MALFORMED, ptype
            )
        return raw
    if ptype in (ClPType.FAULT, ClPType.REJECT):
        if len(raw) < 4:
            raise ClError(
                f"a {ptype.name.lower()} body holds a 4-octet status, got {len(raw)}", MALFORMED, ptype
            )
        return StatusBody(_U32[little].unpack_from(raw)[0], raw[4:])
    if ptype in (ClPType.FACK, ClPType.NOCALL):
        if not raw:  # a nocall without one; a fack of an older sender (C706 12.5, the fack PDU)
            return raw
        if len(raw) < 16:
            raise ClError(f"a fack body is 16 octets and more, got {len(raw)}", MALFORMED, ptype)
        vers, window, tsdu, frag, serial, count = struct.unpack_from(e + "BxHIIHH", raw)
        if len(raw) < 16 + 4 * count:  # more is allowed: the DCE reference sizes its body for one mask
            raise ClError(
                f"a fack body of {len(raw)} octets cannot hold {count} selective acks", MALFORMED, ptype
            )
        selack = struct.unpack_from(f"{e}{count}I", raw, 16)
        return FackBody(vers, window, tsdu, frag, serial, selack)
    size = 8 if ptype is ClPType.CL_CANCEL else 9
    if len(raw) != size:
        raise ClError(f"a {ptype.name.lower()} body is {size} octets, got {len(raw)}", MALFORMED, ptype)
    if ptype is ClPType.CL_CANCEL:
        vers, cid = struct.unpack(e + "II", raw)
        return CancelBody(cid, vers)
    vers, cid, accepting = struct.unpack(e + "IIB", raw)
    return CancelAckBody(cid, accepting != 0, vers)


_LEVELS: Final = range(1, 7)  # none .. privacy (MS-RPCE 2.2.1.1.8); 0 (default) is never on the wire


def cl_auth_level(verifier: bytes) -> int | None:
    """The auth_level of a connectionless verifier's sec_trailer_cl (MS-RPCE 2.2.3.4), None when it
    holds none. The trailer follows the stub padded to an 8-octet boundary; a sender whose ``len``
    does not count that padding puts up to 7 zero octets first, and a level is never zero, so
    they are skipped."""
    at = 0
    while at < 7 and at < len(verifier) and verifier[at] == 0:
        at += 1
    if at < len(verifier) and verifier[at] in _LEVELS:
        return verifier[at]
    return None
