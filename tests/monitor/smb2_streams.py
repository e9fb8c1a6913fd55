"""SMB2 byte streams built by hand (MS-SMB2 2.2) for the monitor's SMB2 reader: our own builder of
the few messages a named-pipe session uses, and a wrapper that carries a DCE/RPC exchange
(streams.session) through a pipe, by WRITE / READ or by IOCTL FSCTL_PIPE_TRANSCEIVE."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from tests.monitor.streams import DOMAIN, USER, Exchange

RESPONSE, ASYNC, RELATED = 0x1, 0x2, 0x4
NEGOTIATE, SESSION_SETUP, TREE_CONNECT, CREATE, CLOSE, READ, WRITE, IOCTL = 0, 1, 3, 5, 6, 8, 9, 11
TRANSCEIVE = 0x0011C017
PENDING, MORE_PROCESSING, BUFFER_OVERFLOW = 0x103, 0xC0000016, 0x80000005
ANY = b"\xff" * 16
SESSION, TREE = 0x0000_1000_0000_0041, 7


def header(
    command: int,
    mid: int,
    *,
    flags: int = 0,
    status: int = 0,
    session: int = SESSION,
    tree: int = TREE,
    next_command: int = 0,
) -> bytes:
    # async: AsyncId in place of Reserved + TreeId
    ids = struct.pack("<Q", 0xA000 + mid) if flags & ASYNC else struct.pack("<II", 0, tree)
    return (
        b"\xfeSMB"
        + struct.pack("<HHIHHIIQ", 64, 1, status, command, 1, flags, next_command, mid)
        + ids
        + struct.pack("<Q", session)
        + bytes(16)
    )


def frame(*messages: bytes) -> bytes:
    """One NetBIOS session message holding ``messages`` (more than one: a compound, each but the
    last padded to 8 octets and chained by NextCommand)."""
    body = b""
    for i, msg in enumerate(messages):
        m = msg
        if i < len(messages) - 1:
            m += bytes(-len(m) % 8)
            m = m[:20] + struct.pack("<I", len(m)) + m[24:]
        body += m
    return struct.pack(">I", len(body)) + body


def utf16(s: str) -> bytes:
    return s.encode("utf-16-le")


def negotiate_request(mid: int = 0) -> bytes:
    return (
        header(NEGOTIATE, mid, session=0, tree=0)
        + struct.pack("<HHHHI16sQ", 36, 1, 1, 0, 0, bytes(16), 0)
        + struct.pack("<H", 0x311)
    )


def negotiate_response(mid: int = 0) -> bytes:
    return (
        header(NEGOTIATE, mid, flags=RESPONSE, session=0, tree=0)
        + struct.pack("<HHH", 65, 1, 0x311)
        + bytes(58)
    )


def session_setup_request(mid: int, blob: bytes, session: int = SESSION) -> bytes:
    return (
        header(SESSION_SETUP, mid, session=session, tree=0)
        + struct.pack("<HBBIIHHQ", 25, 0, 1, 0, 0, 88, len(blob), 0)
        + blob
    )


def session_setup_response(mid: int, status: int = 0, session: int = SESSION, flags: int = 0) -> bytes:
    return header(SESSION_SETUP, mid, flags=RESPONSE, status=status, session=session, tree=0) + struct.pack(
        "<HHHH", 9, flags, 72, 0
    )


def tree_connect_request(mid: int, path: str = "\\\\server\\IPC$", session: int = SESSION) -> bytes:
    p = utf16(path)
    return header(TREE_CONNECT, mid, session=session, tree=0) + struct.pack("<HHHH", 9, 0, 72, len(p)) + p


def tree_connect_response(mid: int, tree: int = TREE, share_type: int = 2, session: int = SESSION) -> bytes:
    return header(TREE_CONNECT, mid, flags=RESPONSE, session=session, tree=tree) + struct.pack(
        "<HBBIII", 16, share_type, 0, 0, 0, 0x1F01FF
    )


def create_request(mid: int, name: str, *, flags: int = 0, tree: int = TREE) -> bytes:
    n = utf16(name)
    fixed = struct.pack("<HBBIQQIIIIIHHII", 57, 0, 0, 2, 0, 0, 0x12019F, 0, 7, 1, 0, 120, len(n), 0, 0)
    return header(CREATE, mid, flags=flags, tree=tree) + fixed + n


def create_response(mid: int, fid: bytes, *, status: int = 0, tree: int = TREE) -> bytes:
    if status:
        return error_response(CREATE, mid, status)
    fixed = (
        struct.pack("<HBBI", 89, 0, 0, 1)
        + bytes(48)
        + struct.pack("<II", 0x80, 0)
        + fid
        + struct.pack("<II", 0, 0)
    )
    return header(CREATE, mid, flags=RESPONSE, tree=tree) + fixed


def write_request(mid: int, fid: bytes, data: bytes, *, flags: int = 0) -> bytes:
    fixed = struct.pack("<HHIQ16sIIHHI", 49, 112, len(data), 0, fid, 0, 0, 0, 0, 0)
    return header(WRITE, mid, flags=flags) + fixed + data


def write_response(mid: int, n: int) -> bytes:
    return header(WRITE, mid, flags=RESPONSE) + struct.pack("<HHIIHH", 17, 0, n, 0, 0, 0)


def read_request(mid: int, fid: bytes, n: int = 4280, *, flags: int = 0) -> bytes:
    fixed = struct.pack("<HBBIQ16sIIIHH", 49, 0, 0, n, 0, fid, 0, 0, 0, 0, 0) + b"\0"
    return header(READ, mid, flags=flags) + fixed


def read_response(mid: int, data: bytes, *, status: int = 0, flags: int = 0) -> bytes:
    return (
        header(READ, mid, flags=RESPONSE | flags, status=status)
        + struct.pack("<HBBIII", 17, 80, 0, len(data), 0, 0)
        + data
    )


def ioctl_request(mid: int, fid: bytes, data: bytes, *, ctl: int = TRANSCEIVE, flags: int = 0) -> bytes:
    fixed = struct.pack("<HHI16sIIIIIIII", 57, 0, ctl, fid, 120, len(data), 0, 120, 0, 4280, 1, 0)
    return header(IOCTL, mid, flags=flags) + fixed + data


def ioctl_response(
    mid: int, fid: bytes, data: bytes, *, status: int = 0, flags: int = 0, ctl: int = TRANSCEIVE
) -> bytes:
    fixed = struct.pack("<HHI16sIIIIII", 49, 0, ctl, fid, 112, 0, 112, len(data), 0, 0)
    return header(IOCTL, mid, flags=RESPONSE | flags, status=status) + fixed + data


def close_request(mid: int, fid: bytes) -> bytes:
    return header(CLOSE, mid) + struct.pack("<HHI16s", 24, 0, 0, fid)


def close_response(mid: int) -> bytes:
    return header(CLOSE, mid, flags=RESPONSE) + struct.pack("<HHI", 60, 0, 0) + bytes(52)


def error_response(command: int, mid: int, status: int, flags: int = 0) -> bytes:
    return (
        header(command, mid, flags=RESPONSE | flags, status=status) + struct.pack("<HBBI", 9, 0, 0, 0) + b"\0"
    )


def authenticate(user: str = USER, domain: str = DOMAIN, workstation: str = "WS1") -> bytes:
    """An NTLM AUTHENTICATE message (MS-NLMP 2.2.1.3) with these names, Unicode, a 24-octet NT
    response; wrapped in a few octets of SPNEGO-looking DER (the reader finds it by signature)."""
    names = [utf16(domain), utf16(user), utf16(workstation)]
    nt = bytes(range(24))
    offset = 72
    fields = []
    payload = b""
    for blob in (b"", nt, *names, b""):  # Lm, Nt, Domain, User, Workstation, session key
        fields.append(struct.pack("<HHI", len(blob), len(blob), offset + len(payload)))
        payload += blob
    msg = b"NTLMSSP\0" + struct.pack("<I", 3) + b"".join(fields) + struct.pack("<I", 0x1) + bytes(8) + payload
    return b"\xa1\x82\x01\x00\x30\x82\x00\xfc\xa2\x82\x00\xf8\x04\x82\x00\xf4" + msg


@dataclass
class Pipe:
    """A client of one pipe: allocates MessageIds and builds the session around the exchange."""

    fid: bytes = bytes.fromhex("0123456789abcdef0011223344556677")
    mid: int = 0
    out: Exchange = field(default_factory=list)

    def next(self) -> int:
        self.mid += 1
        return self.mid

    def c(self, *messages: bytes) -> None:
        self.out.append((True, frame(*messages)))

    def s(self, *messages: bytes) -> None:
        self.out.append((False, frame(*messages)))

    def logon(self, anonymous: bool = False) -> None:
        self.c(negotiate_request(0))
        self.s(negotiate_response(0))
        m = self.next()
        self.c(session_setup_request(m, b"NTLMSSP\0\x01\0\0\0" + bytes(24), session=0))
        self.s(session_setup_response(m, MORE_PROCESSING))
        m = self.next()
        self.c(session_setup_request(m, authenticate("", "", "") if anonymous else authenticate()))
        self.s(session_setup_response(m, 0, flags=0x2 if anonymous else 0))
        m = self.next()
        self.c(tree_connect_request(m))
        self.s(tree_connect_response(m))

    def open(self, name: str = "srvsvc") -> None:
        m = self.next()
        self.c(create_request(m, name))
        self.s(create_response(m, self.fid))

    def close(self) -> None:
        m = self.next()
        self.c(close_request(m, self.fid))
        self.s(close_response(m))


def over_pipe(ex: Exchange, mode: str = "rw", name: str = "srvsvc", logon: bool = True) -> Exchange:
    """The DCE/RPC exchange carried through a named pipe: a logon (NTLM alice of MONDOM), IPC$,
    CREATE ``name``, then each client chunk a WRITE and each server chunk a READ (``rw``), or each
    client chunk answered by the next server chunk an IOCTL transceive (``ioctl``); CLOSE."""
    p = Pipe()
    if logon:
        p.logon()
    p.open(name)
    i = 0
    while i < len(ex):
        from_client, data = ex[i]
        if mode == "ioctl" and from_client and i + 1 < len(ex) and not ex[i + 1][0]:
            m = p.next()
            p.c(ioctl_request(m, p.fid, data))
            p.s(ioctl_response(m, p.fid, ex[i + 1][1]))
            i += 2
            continue
        m = p.next()
        if from_client:
            p.c(write_request(m, p.fid, data))
            p.s(write_response(m, len(data)))
        else:
            p.c(read_request(m, p.fid))
            p.s(read_response(m, data))
        i += 1
    p.close()
    return p.out
