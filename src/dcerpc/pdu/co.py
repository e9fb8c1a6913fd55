"""Connection-oriented PDU bodies (C706 12.6.4, MS-RPCE 2.2.2): one dataclass each, parse and encode.

``parse(fragment)`` reads one whole fragment (its length known from the header) and returns the PDU
object; it never raises anything but :class:`PduError`. Each PDU's ``encode()`` gives a
little-endian fragment. Auth verifiers (sec_trailer + auth value, MS-RPCE 2.2.2.11) are parsed and
emitted here; computing and checking them is the security provider's job. Nothing here does I/O, so
the same code reads captures.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from .constants import PFC, PType
from .header import HEADER_SIZE, Header, PduError, pack_header, parse_header
from .syntax import SyntaxId

__all__ = [
    "AlterContext",
    "AlterContextResp",
    "Auth3",
    "AuthVerifier",
    "Bind",
    "BindAck",
    "BindNak",
    "CoCancel",
    "ContextElement",
    "ContextResultItem",
    "Fault",
    "Orphaned",
    "Pdu",
    "Request",
    "Response",
    "Shutdown",
    "parse",
]

SEC_TRAILER_SIZE: Final = 8
_TRAILER = struct.Struct("<BBBBI")
_U16 = {True: struct.Struct("<H"), False: struct.Struct(">H")}
_U32 = {True: struct.Struct("<I"), False: struct.Struct(">I")}
# Limit: presentation contexts and transfer syntaxes per bind are u8 counts on the wire; each
# element is bounds-checked against the fragment, so a count cannot make us read or allocate more
# than the fragment holds.


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthVerifier:
    """sec_trailer and auth value (MS-RPCE 2.2.2.11)."""

    auth_type: int
    auth_level: int
    pad_length: int = 0
    context_id: int = 0
    value: bytes = b""

    def pack(self) -> bytes:
        return (
            _TRAILER.pack(self.auth_type, self.auth_level, self.pad_length, 0, self.context_id) + self.value
        )


@dataclass(frozen=True, slots=True)
class ContextElement:
    """p_cont_elem_t: a presentation context proposed in bind / alter_context."""

    context_id: int
    abstract_syntax: SyntaxId
    transfer_syntaxes: tuple[SyntaxId, ...]


@dataclass(frozen=True, slots=True)
class ContextResultItem:
    """p_result_t: the answer for one proposed context, in proposal order."""

    result: int
    reason: int
    transfer_syntax: SyntaxId


_NULL_SYNTAX = SyntaxId(uuid.UUID(int=0), (0, 0))


@dataclass(frozen=True, slots=True, kw_only=True)
class Pdu:
    """Fields every connection-oriented PDU has."""

    ptype: ClassVar[PType]
    call_id: int
    flags: int = PFC.FIRST_FRAG | PFC.LAST_FRAG
    auth: AuthVerifier | None = None

    def _frame(self, body: bytes) -> bytes:
        auth = self.auth.pack() if self.auth is not None else b""
        auth_length = len(auth) - SEC_TRAILER_SIZE if auth else 0
        total = HEADER_SIZE + len(body) + len(auth)
        return pack_header(self.ptype, self.flags, total, auth_length, self.call_id) + body + auth

    def encode(self) -> bytes:
        """The little-endian fragment."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True, kw_only=True)
class Bind(Pdu):
    """bind (C706 12.6.4.3): propose presentation contexts, fragment sizes, an association group."""

    ptype: ClassVar[PType] = PType.BIND
    max_xmit_frag: int = 5840
    max_recv_frag: int = 5840
    assoc_group_id: int = 0
    contexts: tuple[ContextElement, ...] = ()

    def encode(self) -> bytes:
        body = bytearray(
            struct.pack(
                "<HHIBBH",
                self.max_xmit_frag,
                self.max_recv_frag,
                self.assoc_group_id,
                len(self.contexts),
                0,
                0,
            )
        )
        for c in self.contexts:
            body += struct.pack("<HBB", c.context_id, len(c.transfer_syntaxes), 0)
            body += c.abstract_syntax.pack()
            for ts in c.transfer_syntaxes:
                body += ts.pack()
        return self._frame(_pad_for_auth(bytes(body), self.auth))


@dataclass(frozen=True, slots=True, kw_only=True)
class AlterContext(Bind):
    """alter_context (C706 12.6.4.1): more contexts (or authentication) on an existing association."""

    ptype: ClassVar[PType] = PType.ALTER_CONTEXT


@dataclass(frozen=True, slots=True, kw_only=True)
class BindAck(Pdu):
    """bind_ack (C706 12.6.4.4): accepted sizes, the group, the secondary address, per-context results."""

    ptype: ClassVar[PType] = PType.BIND_ACK
    max_xmit_frag: int = 5840
    max_recv_frag: int = 5840
    assoc_group_id: int = 0
    sec_addr: bytes = b""  # port_spec without its NUL; empty means none
    results: tuple[ContextResultItem, ...] = ()

    def encode(self) -> bytes:
        spec = self.sec_addr + b"\0" if self.sec_addr else b""
        body = bytearray(
            struct.pack("<HHIH", self.max_xmit_frag, self.max_recv_frag, self.assoc_group_id, len(spec))
        )
        body += spec
        body += bytes(-(HEADER_SIZE + len(body)) % 4)  # the result list is 4-aligned
        body += struct.pack("<BBH", len(self.results), 0, 0)
        for r in self.results:
            body += struct.pack("<HH", r.result, r.reason) + r.transfer_syntax.pack()
        return self._frame(_pad_for_auth(bytes(body), self.auth))


@dataclass(frozen=True, slots=True, kw_only=True)
class AlterContextResp(BindAck):
    """alter_context_resp (C706 12.6.4.2): same shape as bind_ack."""

    ptype: ClassVar[PType] = PType.ALTER_CONTEXT_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class BindNak(Pdu):
    """bind_nak (C706 12.6.4.5): the whole bind refused, with a reason and the versions we speak."""

    ptype: ClassVar[PType] = PType.BIND_NAK
    reason: int = 0
    versions: tuple[tuple[int, int], ...] = ((5, 0),)

    def encode(self) -> bytes:
        body = struct.pack("<HB", self.reason, len(self.versions))
        body += b"".join(bytes(v) for v in self.versions)
        body += bytes(-len(body) % 4)
        return self._frame(body)


@dataclass(frozen=True, slots=True, kw_only=True)
class Request(Pdu):
    """request (C706 12.6.4.9): one fragment of a call's [in] stub."""

    ptype: ClassVar[PType] = PType.REQUEST
    alloc_hint: int = 0
    context_id: int = 0
    opnum: int = 0
    object: uuid.UUID | None = None
    stub: bytes = b""

    def encode(self) -> bytes:
        body = struct.pack("<IHH", self.alloc_hint, self.context_id, self.opnum)
        if self.object is not None:
            body += self.object.bytes_le
        return self._frame(body + _pad_for_auth(self.stub, self.auth))


@dataclass(frozen=True, slots=True, kw_only=True)
class Response(Pdu):
    """response (C706 12.6.4.10): one fragment of a call's [out] stub."""

    ptype: ClassVar[PType] = PType.RESPONSE
    alloc_hint: int = 0
    context_id: int = 0
    cancel_count: int = 0
    stub: bytes = b""

    def encode(self) -> bytes:
        body = struct.pack("<IHBB", self.alloc_hint, self.context_id, self.cancel_count, 0)
        return self._frame(body + _pad_for_auth(self.stub, self.auth))


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault(Pdu):
    """fault (C706 12.6.4.7, MS-RPCE 2.2.2.8): a call failed with ``status``.

    Servers send no stub data; bit 0 of the reserved octet flags extended error information.
    """

    ptype: ClassVar[PType] = PType.FAULT
    alloc_hint: int = 0
    context_id: int = 0
    cancel_count: int = 0
    status: int = 0
    extended: bool = False
    stub: bytes = b""

    def encode(self) -> bytes:
        body = struct.pack(
            "<IHBBII",
            self.alloc_hint,
            self.context_id,
            self.cancel_count,
            1 if self.extended else 0,
            self.status,
            0,
        )
        return self._frame(body + _pad_for_auth(self.stub, self.auth))


@dataclass(frozen=True, slots=True, kw_only=True)
class Auth3(Pdu):
    """rpc_auth_3 (MS-RPCE 2.2.2.10): the third leg of a three-leg authentication."""

    ptype: ClassVar[PType] = PType.AUTH3

    def encode(self) -> bytes:
        return self._frame(b"\0\0\0\0")


@dataclass(frozen=True, slots=True, kw_only=True)
class Shutdown(Pdu):
    """shutdown (C706 12.6.4.11): the server asks the client to close the association."""

    ptype: ClassVar[PType] = PType.SHUTDOWN

    def encode(self) -> bytes:
        return self._frame(b"")


@dataclass(frozen=True, slots=True, kw_only=True)
class CoCancel(Pdu):
    """co_cancel (C706 12.6.4.6): cancel the call with this call_id."""

    ptype: ClassVar[PType] = PType.CO_CANCEL

    def encode(self) -> bytes:
        return self._frame(b"")


@dataclass(frozen=True, slots=True, kw_only=True)
class Orphaned(Pdu):
    """orphaned (C706 12.6.4.8): the client abandons the call with this call_id."""

    ptype: ClassVar[PType] = PType.ORPHANED

    def encode(self) -> bytes:
        return self._frame(b"")


@dataclass(frozen=True, slots=True)
class Parsed:
    """A parsed fragment: the PDU, its header, and where the authenticated body ends."""

    pdu: Pdu
    header: Header
    body_end: int = field(default=0)  # offset of the sec_trailer (== frag_length without auth)


def _pad_for_auth(body: bytes, auth: AuthVerifier | None) -> bytes:
    if auth is None or not auth.pad_length:
        return body
    return body + bytes(auth.pad_length)


_PADDED: Final = frozenset({PType.REQUEST, PType.RESPONSE, PType.FAULT})


def parse(data: bytes) -> Parsed:
    """Parse one whole fragment.

    Raises:
        PduError: anything malformed; ``reason`` says what, ``call_id`` / ``ptype`` when known.
    """
    h = parse_header(data)
    little = h.little_endian
    end = h.frag_length
    auth: AuthVerifier | None = None
    if h.auth_length:
        tstart = end - h.auth_length - SEC_TRAILER_SIZE
        if tstart < HEADER_SIZE:
            raise PduError(f"auth_length {h.auth_length} leaves no sec_trailer", h.call_id, h.ptype)
        atype, alevel, pad, _, ctx = struct.unpack_from("<BBBBI" if little else ">BBBBI", data, tstart)
        if pad > tstart - HEADER_SIZE and h.ptype in _PADDED:
            raise PduError(f"auth_pad_length {pad} exceeds the body", h.call_id, h.ptype)
        auth = AuthVerifier(
            auth_type=atype,
            auth_level=alevel,
            pad_length=pad,
            context_id=ctx,
            value=bytes(data[tstart + SEC_TRAILER_SIZE : end]),
        )
        end = tstart
    body_end = end
    # auth_pad_length pads a stub: in bind, alter_context, auth3 and their answers it means nothing
    # (the associations judge its value there: MS-RPCE 2.2.2.11, observed Windows behaviour)
    stub_end = end - (auth.pad_length if auth and h.ptype in _PADDED else 0)
    try:
        reader = _READERS[h.ptype]
    except KeyError:
        raise PduError(
            f"packet type {h.ptype} is not a connection-oriented PDU", h.call_id, h.ptype
        ) from None
    try:
        pdu = reader(data, h, little, stub_end, auth)
    except struct.error:
        raise PduError(f"{PType(h.ptype).name.lower()} PDU is truncated", h.call_id, h.ptype) from None
    return Parsed(pdu, h, body_end)


def _need(data: bytes, h: Header, at: int, n: int, end: int, what: str) -> None:
    if at + n > end:
        raise PduError(f"{what}: need {n} octets at {at}, the body ends at {end}", h.call_id, h.ptype)


def _read_bind(data: bytes, h: Header, little: bool, end: int, auth: AuthVerifier | None) -> Pdu:
    e = "<" if little else ">"
    # 9 octets: a bind with no contexts may end at n_context_elem (Samba sends it so; it is refused
    # for having none, not as truncated)
    _need(data, h, 16, 9, end, "bind")
    xmit, recv, group, n_ctx = struct.unpack_from(e + "HHIB", data, 16)
    key = (bytes(data[24:end]), little)  # n_context_elem onwards: the context list
    known = _context_lists.get(key)
    if known is None:
        pos = 28
        contexts = []
        for _ in range(n_ctx):
            _need(data, h, pos, 24, end, "presentation context")
            cid, n_ts = struct.unpack_from(e + "HB", data, pos)
            abstract = SyntaxId.unpack(data, pos + 4, little)
            pos += 24
            _need(data, h, pos, 20 * n_ts, end, "transfer syntaxes")
            ts = tuple(SyntaxId.unpack(data, pos + 20 * i, little) for i in range(n_ts))
            pos += 20 * n_ts
            contexts.append(ContextElement(cid, abstract, ts))
        known = tuple(contexts)
        _remember(_context_lists, key, known)
    cls = Bind if h.ptype == PType.BIND else AlterContext
    return cls(
        call_id=h.call_id,
        flags=h.flags,
        auth=auth,
        max_xmit_frag=xmit,
        max_recv_frag=recv,
        assoc_group_id=group,
        contexts=known,
    )


# Context and result lists seen, by their octets: clients send the same few binds again and again,
# and the answers repeat as well. Bounded in entries and in octets, so made-up lists cannot grow
# memory (a client sending a thousand alter_contexts of 61 KB of random syntaxes once left ~940 MiB
# behind when only entries were counted): only lists of at most _LIST_MOST octets are kept (real
# binds offer a few contexts: about 50-200 octets), and when the cache is full it starts over.
_LISTS_MAX = 1024
_LIST_MOST = 1024  # octets of one list worth keeping; 1024 of them hold at most 1 MiB of keys
_context_lists: dict[tuple[bytes, bool], tuple[ContextElement, ...]] = {}
_result_lists: dict[tuple[bytes, bool], tuple[ContextResultItem, ...]] = {}


def _remember(cache: dict[tuple[bytes, bool], Any], key: tuple[bytes, bool], value: Any) -> None:
    if len(key[0]) > _LIST_MOST:
        return
    if len(cache) >= _LISTS_MAX:
        cache.clear()
    cache[key] = value


def _read_bind_ack(data: bytes, h: Header, little: bool, end: int, auth: AuthVerifier | None) -> Pdu:
    e = "<" if little else ">"
    _need(data, h, 16, 10, end, "bind_ack")
    xmit, recv, group, spec_len = struct.unpack_from(e + "HHIH", data, 16)
    _need(data, h, 26, spec_len, end, "secondary address")
    spec = bytes(data[26 : 26 + spec_len]).rstrip(b"\0")
    pos = 26 + spec_len
    pos += -pos % 4
    _need(data, h, pos, 4, end, "result list")
    n = data[pos]
    pos += 4
    _need(data, h, pos, 24 * n, end, "results")
    key = (bytes(data[pos - 4 : pos + 24 * n]), little)
    results = _result_lists.get(key)
    if results is None:
        made = []
        for i in range(n):
            result, reason = struct.unpack_from(e + "HH", data, pos + 24 * i)
            made.append(ContextResultItem(result, reason, SyntaxId.unpack(data, pos + 24 * i + 4, little)))
        results = tuple(made)
        _remember(_result_lists, key, results)
    cls = BindAck if h.ptype == PType.BIND_ACK else AlterContextResp
    return cls(
        call_id=h.call_id,
        flags=h.flags,
        auth=auth,
        max_xmit_frag=xmit,
        max_recv_frag=recv,
        assoc_group_id=group,
        sec_addr=spec,
        results=results,
    )


def _read_bind_nak(data: bytes, h: Header, little: bool, end: int, auth: AuthVerifier | None) -> Pdu:
    _need(data, h, 16, 2, end, "bind_nak")
    (reason,) = _U16[little].unpack_from(data, 16)
    versions: list[tuple[int, int]] = []
    if end >= 19:
        n = data[18]
        if 19 + 2 * n <= end:
            versions = [(data[19 + 2 * i], data[20 + 2 * i]) for i in range(n)]
    return BindNak(call_id=h.call_id, flags=h.flags, reason=reason, versions=tuple(versions))


def _read_request(data: bytes, h: Header, little: bool, end: int, auth: AuthVerifier | None) -> Pdu:
    e = "<" if little else ">"
    _need(data, h, 16, 8, end, "request")
    hint, cid, opnum = struct.unpack_from(e + "IHH", data, 16)
    pos = 24
    obj = None
    if h.flags & PFC.OBJECT_UUID:
        _need(data, h, pos, 16, end, "object UUID")
        raw = bytes(data[pos : pos + 16])
        obj = uuid.UUID(bytes_le=raw) if little else uuid.UUID(bytes=raw)
        pos += 16
    return Request(
        call_id=h.call_id,
        flags=h.flags,
        auth=auth,
        alloc_hint=hint,
        context_id=cid,
        opnum=opnum,
        object=obj,
        stub=bytes(data[pos:end]),
    )


def _read_response(data: bytes, h: Header, little: bool, end: int, auth: AuthVerifier | None) -> Pdu:
    e = "<" if little else ">"
    _need(data, h, 16, 8, end, "response")
    hint, cid, cancels = struct.unpack_from(e + "IHB", data, 16)
    return Response(
        call_id=h.call_id,
        flags=h.flags,
        auth=auth,
        alloc_hint=hint,
        context_id=cid,
        cancel_count=cancels,
        stub=bytes(data[24:end]),
    )


def _read_fault(data: bytes, h: Header, little: bool, end: int, auth: AuthVerifier | None) -> Pdu:
    e = "<" if little else ">"
    _need(data, h, 16, 12, end, "fault")
    hint, cid, cancels, flags, status = struct.unpack_from(e + "IHBBI", data, 16)
    stub = bytes(data[32:end]) if end > 32 else b""
    return Fault(
        call_id=h.call_id,
        flags=h.flags,
        auth=auth,
        alloc_hint=hint,
        context_id=cid,
        cancel_count=cancels,
        status=status,
        extended=bool(flags & 1),
        stub=stub,
    )


def _read_simple(data: bytes, h: Header, little: bool, end: int, auth: AuthVerifier | None) -> Pdu:
    cls = {PType.AUTH3: Auth3, PType.SHUTDOWN: Shutdown, PType.CO_CANCEL: CoCancel, PType.ORPHANED: Orphaned}[
        PType(h.ptype)
    ]
    return cls(call_id=h.call_id, flags=h.flags, auth=auth)


_READERS: dict[int, Callable[[bytes, Header, bool, int, AuthVerifier | None], Pdu]] = {
    PType.BIND: _read_bind,
    PType.ALTER_CONTEXT: _read_bind,
    PType.BIND_ACK: _read_bind_ack,
    PType.ALTER_CONTEXT_RESP: _read_bind_ack,
    PType.BIND_NAK: _read_bind_nak,
    PType.REQUEST: _read_request,
    PType.RESPONSE: _read_response,
    PType.FAULT: _read_fault,
    PType.AUTH3: _read_simple,
    PType.SHUTDOWN: _read_simple,
    PType.CO_CANCEL: _read_simple,
    PType.ORPHANED: _read_simple,
}
