"""DCE/RPC over SMB2 named pipes (ncacn_np), seen from the side: one TCP connection in, records out.

A client reaches a named pipe through SMB2 (MS-SMB2): NEGOTIATE, SESSION_SETUP (the logon, inside
SPNEGO), TREE_CONNECT to ``\\\\server\\IPC$``, CREATE of the pipe (``srvsvc``, ``svcctl``, ...), then
DCE/RPC PDUs written with WRITE and read back with READ, or both at once with IOCTL
FSCTL_PIPE_TRANSCEIVE; CLOSE ends it. :class:`Smb2Connection` reads both directions of one TCP
connection and gives each open pipe its own :class:`~.passive.PassiveAssociation`, fed the pipe's
client-to-server octets (WRITE data, IOCTL input) and server-to-client octets (READ data, IOCTL
output): the same PDU parser and the same call records as over TCP, with ``named_pipe`` set, the
transport ``ncacn_np``, and the SMB2 session's NTLM user when the DCE/RPC bind names none.

Framing (MS-SMB2 2.1): each message is preceded by a 4-octet Direct TCP / NetBIOS session service
header, a zero type octet and a 24-bit big-endian length (on port 139 the NetBIOS session request,
response and keepalive frames, types 0x81-0x85, are skipped). A message starts with a protocol id:
0xFE 'SMB' (SMB2, read), 0xFD 'SMB' (a transform header: encrypted, 2.2.41), 0xFC 'SMB' (compressed,
2.2.42) or 0xFF 'SMB' (SMB1); the last three are counted and skipped, never read as SMB2. An SMB2
message may be a compound (2.2.1: NextCommand chains headers within one frame); a related operation
(SMB2_FLAGS_RELATED_OPERATIONS) inherits the session, tree and FileId of the one before it, so a
CREATE compounded with a WRITE or IOCTL on FileId 0xFFFF... feeds the pipe the CREATE opens
(3.2.4.1.4). Responses are paired with requests by MessageId; an async interim response
(STATUS_PENDING with SMB2_FLAGS_ASYNC_COMMAND, 3.3.4.2) leaves the request pending until its final
response. Credits, signatures and the rest of SMB2 play no part.

Recognition is by content on any port (:func:`looks_like_smb`); after a gap, or at a mid-stream
start, the framer hunts for the next plausible header (a zero type octet, then a protocol id).
Malformed messages (a header or body too short, offsets outside the message) are counted in the
shared ``stats`` and skipped; nothing here raises on peer data. Bounds below, each with the attack it
stops; docs/monitor.md lists them.
"""

from __future__ import annotations

import struct
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Final, TypeVar

from .ntlm import NtlmLogon, find_authenticate
from .passive import PassiveAssociation
from .records import Record
from .tcp import Endpoint

__all__ = [
    "FSCTL_PIPE_TRANSCEIVE",
    "MAX_MESSAGE",
    "MAX_PENDING",
    "MAX_PIPES",
    "Smb2Connection",
    "looks_like_smb",
]

SMB2: Final = b"\xfeSMB"
TRANSFORM: Final = b"\xfdSMB"
COMPRESSED: Final = b"\xfcSMB"
SMB1: Final = b"\xffSMB"
_MAGICS: Final = frozenset({SMB2, TRANSFORM, COMPRESSED, SMB1})
_NBSS_CONTROL: Final = frozenset({0x81, 0x82, 0x83, 0x84, 0x85})  # RFC 1002 4.3: request .. keepalive

# Commands (MS-SMB2 2.2.1.2)
NEGOTIATE, SESSION_SETUP, TREE_CONNECT, CREATE, CLOSE = 0, 1, 3, 5, 6
READ, WRITE, IOCTL, CANCEL = 8, 9, 11, 12
# Flags (2.2.1.2)
SERVER_TO_REDIR: Final = 0x1
ASYNC_COMMAND: Final = 0x2
RELATED_OPERATIONS: Final = 0x4
# Status values (MS-ERREF 2.3)
STATUS_SUCCESS: Final = 0
STATUS_PENDING: Final = 0x103
STATUS_BUFFER_OVERFLOW: Final = 0x80000005  # a message-mode pipe read in parts: the data is there
FSCTL_PIPE_TRANSCEIVE: Final = 0x0011C017  # MS-FSCC 2.3.51
ANY_FILE: Final = b"\xff" * 16  # the FileId of a related operation that inherits it (2.2.13.1)
_SHARE_PIPE: Final = 2  # TREE_CONNECT response ShareType (2.2.10)
_SESSION_NULL: Final = 0x2  # SESSION_SETUP response SessionFlags: anonymous (2.2.6)
_HEADER: Final = 64

# Bounds (a capture is as hostile as its sender):
MAX_MESSAGE: Final = 1 << 20
"""Octets of one SMB2 message buffered (1 MiB; the frame length is 24 bits: 16 MiB). Stops a frame
that claims 16 MiB, and a large file WRITE, from costing their length: a longer message keeps its
first :data:`MAX_HEAD` octets (the headers), the rest is skipped, and a pipe it carried data for
counts a gap in that direction."""
MAX_HEAD: Final = 4096
MAX_PIPES: Final = 256
"""Open pipes followed per connection. Stops a client that opens pipe after pipe and never closes
them from growing the table (each holds an association and its framers): the oldest is closed
(its unanswered calls reported)."""
MAX_PENDING: Final = 1024
"""Requests awaiting their response per connection (MessageIds). Stops requests that are never
answered (or a capture of one direction) from growing the table: the oldest is forgotten."""
MAX_SESSIONS: Final = 256
"""Sessions (their logon names), trees and CREATE answers remembered per connection, each: stops
SESSION_SETUP, TREE_CONNECT and CREATE floods. Past the bound the oldest is forgotten."""
MAX_DEFERRED: Final = 64 * 1024
"""Octets of related WRITE / IOCTL input held until the CREATE they follow in a compound is
answered (the FileId comes with the answer)."""
HUNT_LIMIT: Final = 64 * 1024
"""Octets searched for a plausible header after a gap before the direction is given up until the
next gap (the same bound as passive.HUNT_LIMIT)."""

PipeKey = tuple[int, int, bytes]  # SessionId, TreeId, FileId
_K = TypeVar("_K")
_V = TypeVar("_V")


def _plausible(buf: bytes | bytearray, at: int = 0) -> bool:
    """A frame header at ``at``: type 0, a length that holds a protocol id, a protocol id we know."""
    if len(buf) - at < 8 or buf[at] != 0:
        return False
    n = buf[at + 1] << 16 | buf[at + 2] << 8 | buf[at + 3]
    return n >= 4 and bytes(buf[at + 4 : at + 8]) in _MAGICS


def looks_like_smb(data: bytes) -> bool:
    """True when ``data`` (a direction's first octets) starts with an SMB frame (any version), a
    NetBIOS session request (port 139), or, shorter than a frame header, could be the start of one
    (a DCE/RPC header starts with 5, never 0)."""
    if len(data) >= 8:
        return _plausible(data) or data[0] == 0x81
    if not data or data[0] not in (0, 0x81):
        return False
    return (
        data[0] == 0x81
        or len(data) < 5
        or (data[4] in (0xFE, 0xFD, 0xFC, 0xFF) and b"SMB".startswith(data[5:]))
    )


@dataclass(slots=True)
class _Framer:
    """One direction's frame cutter: whole messages out, (message or its head, full length)."""

    buf: bytearray = field(default_factory=bytearray)
    hunting: bool = False
    skip: int = 0  # octets of an oversize message still to drop
    scanned: int = 0
    given_up: bool = False

    def cut(self, data: bytes, stats: Counter[str]) -> list[tuple[bytes, int]]:
        out: list[tuple[bytes, int]] = []
        if self.given_up:
            return out
        if self.skip:
            n = min(self.skip, len(data))
            self.skip -= n
            data = data[n:]
        buf = self.buf
        buf += data
        while len(buf) >= 4:
            if self.hunting:
                at = buf.find(b"SMB", 5)
                while at >= 0 and not _plausible(buf, at - 5):
                    at = buf.find(b"SMB", at + 1)
                if at < 0:
                    drop = max(0, len(buf) - 7)
                    self.scanned += drop
                    del buf[:drop]
                    if self.scanned > HUNT_LIMIT:
                        self.given_up = True
                        buf.clear()
                    break
                self.scanned = 0
                del buf[: at - 5]
                self.hunting = False
            kind = buf[0]
            n = buf[1] << 16 | buf[2] << 8 | buf[3]
            if kind in _NBSS_CONTROL:
                n &= 0x1FFFF
                if len(buf) < 4 + n:
                    break
                del buf[: 4 + n]
                continue
            if kind != 0 or (len(buf) >= 8 and not _plausible(buf)):
                stats["smb2_bad_frames"] += 1
                self.hunting = True
                del buf[:1]
                continue
            if n > MAX_MESSAGE:
                if len(buf) < 4 + MAX_HEAD:
                    break
                stats["smb2_oversize"] += 1
                out.append((bytes(buf[4 : 4 + MAX_HEAD]), n))
                rest = len(buf) - 4 - MAX_HEAD
                left = n - MAX_HEAD
                if rest >= left:
                    del buf[: 4 + n]
                else:
                    self.skip = left - rest
                    buf.clear()
                continue
            if len(buf) < 4 + n:
                break
            out.append((bytes(buf[4 : 4 + n]), n))
            del buf[: 4 + n]
        return out

    def lost(self) -> None:
        self.buf.clear()
        self.skip = 0
        self.hunting = True
        self.scanned = 0
        self.given_up = False


@dataclass(slots=True)
class _Pending:
    """A request awaiting its response."""

    command: int
    session: int
    tree: int
    key: PipeKey | None = None  # READ / IOCTL / CLOSE: the pipe
    via: int | None = None  # ... or the MessageId of the CREATE (in the same compound) that opens it
    name: str = ""  # TREE_CONNECT path, CREATE name
    logon: NtlmLogon | None = None  # SESSION_SETUP: the AUTHENTICATE message it carried
    deferred: list[bytes] = field(default_factory=list)  # CREATE: related input held for its pipe


@dataclass(slots=True)
class _Pipe:
    name: str
    assoc: PassiveAssociation


def _u16(b: bytes, at: int) -> int:
    return int.from_bytes(b[at : at + 2], "little")


def _u32(b: bytes, at: int) -> int:
    return int.from_bytes(b[at : at + 4], "little")


def _slice(msg: bytes, offset: int, length: int) -> bytes | None:
    """``length`` octets at ``offset`` from the message (header) start, None when outside it."""
    if length == 0:
        return b""
    if offset < _HEADER or offset + length > len(msg):
        return None
    return msg[offset : offset + length]


def _utf16(raw: bytes) -> str:
    return raw[: len(raw) & ~1].decode("utf-16-le", errors="replace")


class Smb2Connection:
    """One TCP connection carrying SMB (see the module); the monitor feeds it like a
    :class:`~.passive.PassiveAssociation`: ``data``, ``gap``, ``close``, ``buffered``, ``drop_buffers``."""

    def __init__(
        self,
        uid: str,
        a: Endpoint,
        b: Endpoint,
        client: Endpoint | None = None,
        saw_syn: bool = False,
        stats: Counter[str] | None = None,
    ) -> None:
        self.uid = uid
        self.a, self.b = a, b
        self.client = client
        self.saw_syn = saw_syn
        self.stats: Counter[str] = stats if stats is not None else Counter()
        self.framers = {a: _Framer(), b: _Framer()}
        self.pending: OrderedDict[int, _Pending] = OrderedDict()
        self.sessions: OrderedDict[int, NtlmLogon | None] = OrderedDict()
        self.trees: OrderedDict[tuple[int, int], bool] = OrderedDict()  # (session, tree) -> a pipe share
        self.created: OrderedDict[int, PipeKey] = OrderedDict()  # CREATE MessageId -> the pipe it opened
        self.pipes: OrderedDict[PipeKey, _Pipe] = OrderedDict()
        self.dcerpc_pipes = 0  # pipes closed that carried DCE/RPC

    @property
    def is_dcerpc(self) -> bool:
        return self.dcerpc_pipes > 0 or any(p.assoc.is_dcerpc for p in self.pipes.values())

    @property
    def buffered(self) -> int:
        return sum(len(f.buf) for f in self.framers.values()) + sum(
            p.assoc.buffered for p in self.pipes.values()
        )

    # --- input (the monitor's side) --------------------------------------------------------------

    def data(self, src: Endpoint, ts: float, data: bytes) -> list[Record]:
        out: list[Record] = []
        framer = self.framers.get(src)
        if framer is None:
            return out
        for msg, full in framer.cut(data, self.stats):
            self._message(src, ts, msg, full, out)
        return out

    def gap(self, src: Endpoint, ts: float, missing: int) -> list[Record]:
        out: list[Record] = []
        framer = self.framers.get(src)
        if framer is not None:
            framer.lost()
        for pipe in self.pipes.values():
            out += pipe.assoc.gap(src, ts, missing)
        return out

    def drop_buffers(self) -> None:
        for f in self.framers.values():
            f.lost()
        for pipe in self.pipes.values():
            pipe.assoc.drop_buffers()

    def close(self, ts: float) -> list[Record]:
        out: list[Record] = []
        for key in list(self.pipes):
            self._close_pipe(key, ts, out)
        self.pending.clear()
        return out

    # --- messages --------------------------------------------------------------------------------

    def _message(self, src: Endpoint, ts: float, msg: bytes, full: int, out: list[Record]) -> None:
        magic = msg[:4]
        if magic == TRANSFORM:
            self.stats["smb2_encrypted"] += 1
            return
        if magic == COMPRESSED:
            self.stats["smb2_compressed"] += 1
            return
        if magic == SMB1:
            self.stats["smb1"] += 1
            return
        # a compound: headers chained by NextCommand within the frame (MS-SMB2 3.2.4.1.4)
        at = 0
        chain: tuple[int, int, bytes | int | None] = (0, 0, None)  # session, tree, FileId (or CREATE id)
        while True:
            if len(msg) - at < _HEADER or msg[at : at + 4] != SMB2 or _u16(msg, at + 4) != _HEADER:
                self.stats["smb2_malformed"] += 1
                return
            (nxt,) = struct.unpack_from("<I", msg, at + 20)
            end = at + nxt if nxt else len(msg)
            if nxt and (nxt < _HEADER or end > len(msg)):
                self.stats["smb2_malformed"] += 1
                return
            self.stats["smb2_messages"] += 1
            chain = self._one(src, ts, msg[at:end], nxt or full - at, chain, out)
            if not nxt:
                return
            at = end

    def _one(
        self,
        src: Endpoint,
        ts: float,
        m: bytes,
        full: int,
        chain: tuple[int, int, bytes | int | None],
        out: list[Record],
    ) -> tuple[int, int, bytes | int | None]:
        status, command, flags = struct.unpack_from("<I H 2x I", m, 8)
        (mid,) = struct.unpack_from("<Q", m, 24)
        (session,) = struct.unpack_from("<Q", m, 40)
        tree = _u32(m, 36)
        response = bool(flags & SERVER_TO_REDIR)
        if self.client is None:
            self.client = (self.b if src == self.a else self.a) if response else src
        if (src == self.client) == response:  # a request from the server or an answer from the client
            self.stats["smb2_malformed"] += 1
            return chain
        if response:
            self._response(src, ts, m, full, status, command, flags, mid, session, tree, out)
            return chain
        if flags & RELATED_OPERATIONS:
            session, tree = chain[0], chain[1]
        return self._request(src, ts, m, full, command, flags, mid, session, tree, chain, out)

    def _request(
        self,
        src: Endpoint,
        ts: float,
        m: bytes,
        full: int,
        command: int,
        flags: int,
        mid: int,
        session: int,
        tree: int,
        chain: tuple[int, int, bytes | int | None],
        out: list[Record],
    ) -> tuple[int, int, bytes | int | None]:
        body = m[_HEADER:]
        pend = _Pending(command, session, tree)
        inherited = chain[2]
        if command == SESSION_SETUP and len(body) >= 24:
            blob = _slice(m, _u16(body, 12), _u16(body, 14))
            pend.logon = find_authenticate(blob) if blob else None
        elif command == TREE_CONNECT and len(body) >= 8:
            raw = _slice(m, _u16(body, 4), _u16(body, 6))
            pend.name = _utf16(raw) if raw else ""
        elif command == CREATE and len(body) >= 56:
            raw = _slice(m, _u16(body, 44), _u16(body, 46))
            pend.name = _utf16(raw) if raw else ""
            self._expect(mid, pend)
            return session, tree, mid
        elif command in (WRITE, READ, IOCTL, CLOSE):
            fid_at = {WRITE: 16, READ: 16, IOCTL: 8, CLOSE: 8}[command]
            if len(body) < fid_at + 16:
                self.stats["smb2_malformed"] += 1
                return session, tree, None
            fid = body[fid_at : fid_at + 16]
            target: bytes | int | None = fid
            if fid == ANY_FILE and flags & RELATED_OPERATIONS:
                target = inherited
            if isinstance(target, int):
                pend.via = target
            elif target is not None:
                pend.key = (session, tree, target)
            data: bytes | None = b""
            if command == WRITE and len(body) >= 48:
                data = self._payload(m, full, _u16(body, 2), _u32(body, 4))
            elif command == IOCTL and len(body) >= 56 and _u32(body, 4) == FSCTL_PIPE_TRANSCEIVE:
                data = self._payload(m, full, _u32(body, 24), _u32(body, 28))
            elif command == IOCTL:  # another FSCTL (PIPE_WAIT, VALIDATE_NEGOTIATE_INFO): no pipe octets
                pend.key = pend.via = None
            if data is None or data:
                self._to_pipe(pend, src, ts, data, out)
            self._expect(mid, pend)
            return session, tree, target
        if command != CANCEL:  # a CANCEL has no answer and bears the MessageId of what it cancels
            self._expect(mid, pend)
        return session, tree, None

    def _payload(self, m: bytes, full: int, offset: int, length: int) -> bytes | None:
        """The data a WRITE or IOCTL carries; None when the message was cut (oversize: a gap)."""
        if length and offset + length > len(m) and offset + length <= full:
            return None
        data = _slice(m, offset, length)
        if data is None:
            self.stats["smb2_malformed"] += 1
            return b""
        return data

    def _expect(self, mid: int, pend: _Pending) -> None:
        while len(self.pending) >= MAX_PENDING:
            self.pending.popitem(last=False)
            self.stats["smb2_unanswered"] += 1
        self.pending[mid] = pend

    def _to_pipe(
        self, pend: _Pending, src: Endpoint, ts: float, data: bytes | None, out: list[Record]
    ) -> None:
        """Octets (or a gap, for None) for the pipe the request names."""
        if pend.via is not None:
            create = self.pending.get(pend.via)
            if create is not None and create.command == CREATE:
                if data is not None and sum(map(len, create.deferred)) + len(data) <= MAX_DEFERRED:
                    create.deferred.append(data)
                return
            key = self.created.get(pend.via)
            if key is None:
                return
            pend.key = key
        if pend.key is None:
            return
        pipe = self._pipe(pend.key, ts, out)
        if pipe is None:
            return
        if data is None:
            out += pipe.assoc.gap(src, ts, 0)
        else:
            out += pipe.assoc.data(src, ts, data)

    def _pipe(self, key: PipeKey, ts: float, out: list[Record], name: str | None = None) -> _Pipe | None:
        """The pipe ``key`` names; opened here for a CREATE's answer (``name``), or for a FileId never
        seen opened (a capture begun mid-session) unless its tree is known not to be a pipe share."""
        pipe = self.pipes.get(key)
        if pipe is not None and name is None:
            self.pipes.move_to_end(key)
            return pipe
        if pipe is not None:  # the FileId again: the old open's end was not seen
            self._close_pipe(key, ts, out)
        if name is None and self.trees.get((key[0], key[1])) is False:
            return None  # a file on a disk share
        while len(self.pipes) >= MAX_PIPES:
            self._close_pipe(next(iter(self.pipes)), ts, out)
        client = self.client or self.a
        server = self.b if client == self.a else self.a
        assoc = PassiveAssociation(self.uid, client, server, client, self.saw_syn and name is not None)
        assoc.named_pipe = "" if not name else name if name.startswith("\\") else "\\pipe\\" + name
        logon = self.sessions.get(key[0])
        if logon is not None:
            assoc.auth.user, assoc.auth.domain = logon.user, logon.domain
            assoc.auth.workstation, assoc.auth.anonymous = logon.workstation, logon.anonymous
        pipe = self.pipes[key] = _Pipe(name or "", assoc)
        self.stats["smb2_pipes"] += 1
        return pipe

    def _close_pipe(self, key: PipeKey, ts: float, out: list[Record]) -> None:
        pipe = self.pipes.pop(key)
        if pipe.assoc.is_dcerpc:
            self.dcerpc_pipes += 1
        out += pipe.assoc.close(ts)

    def _response(
        self,
        src: Endpoint,
        ts: float,
        m: bytes,
        full: int,
        status: int,
        command: int,
        flags: int,
        mid: int,
        session: int,
        tree: int,
        out: list[Record],
    ) -> None:
        if status == STATUS_PENDING and flags & ASYNC_COMMAND:
            return  # interim: the final response comes later with the same MessageId
        pend = self.pending.pop(mid, None)
        if pend is None or pend.command != command:
            self.stats["smb2_unmatched"] += 1
            return
        body = m[_HEADER:]
        ok = status == STATUS_SUCCESS
        if command == SESSION_SETUP:
            if ok or pend.logon is not None:
                anonymous = len(body) >= 4 and bool(_u16(body, 2) & _SESSION_NULL)
                logon = pend.logon
                if anonymous:  # SMB2_SESSION_FLAG_IS_NULL: whatever the message said, a null session
                    logon = NtlmLogon("", "", logon.workstation if logon else "", True)
                if ok:
                    self._remember(self.sessions, session, logon)
        elif command == TREE_CONNECT and ok and len(body) >= 4:
            self._remember(self.trees, (pend.session, tree), body[2] == _SHARE_PIPE)
        elif command == CREATE:
            if not ok or len(body) < 80:
                return
            if self.trees.get((pend.session, pend.tree)) is False:
                return  # a file on a disk share
            key = (pend.session, pend.tree, body[64:80])
            pipe = self._pipe(key, ts, out, pend.name or "")
            self._remember(self.created, mid, key)
            if pipe is not None:
                for held in pend.deferred:
                    out += pipe.assoc.data(self.client or self.a, ts, held)
        elif command in (READ, IOCTL):
            if status not in (STATUS_SUCCESS, STATUS_BUFFER_OVERFLOW):
                return
            data: bytes | None
            if command == READ and len(body) >= 16:
                data = self._payload(m, full, body[2], _u32(body, 4))
            elif command == IOCTL and len(body) >= 48:
                data = self._payload(m, full, _u32(body, 32), _u32(body, 36))
            else:
                self.stats["smb2_malformed"] += 1
                return
            if data is None or data:
                self._to_pipe(pend, src, ts, data, out)
        elif command == CLOSE and ok:
            closing = pend.key if pend.key is not None else self.created.get(pend.via or -1)
            if closing is not None and closing in self.pipes:
                self._close_pipe(closing, ts, out)

    @staticmethod
    def _remember(table: OrderedDict[_K, _V], key: _K, value: _V) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > MAX_SESSIONS:
            table.popitem(last=False)
