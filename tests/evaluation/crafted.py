"""Attack-shaped PDUs built with our own PDU code, sent over a real socket (the evaluation corpus).

    python -m tests.evaluation.crafted blaster HOST PORT
    python -m tests.evaluation.crafted fragments HOST PORT
    python -m tests.evaluation.crafted malformed HOST PORT

``blaster``: MS03-026's shape (the Blaster worm, 2003): a bind to IRemoteActivation
(4d9f4ab8-7d1c-11cf-861e-0020af6e7c57, RemoteActivation is opnum 0) and one to ISystemActivator
(000001a0-..., RemoteCreateInstance is opnum 4), each followed by a request whose object name is a
UNC path with an overlong server name (``\\\\AAAA...\\c$\\x.doc``), the buffer the vulnerable
server-name parsing overran. ``fragments``: CVE-2022-26809's shape (the fragment reassembly
integer overflow in rpcrt4): a bind to rpcecho, then a call whose first fragment announces an
alloc_hint near 2^32 and which is carried by a long run of fragments, on two connections (the
second one never sends its last fragment). ``malformed``: one connection each, after a good
bind, for a header of version 4.0, a frag_length below the header's 16 octets, a bind whose
context list runs past its fragment, an unknown packet type and a response sent by the client (a
fuzzer's or a broken client's traffic). None of them exploits anything: the servers here fault or
drop them; they only have to be seen on the wire.
"""

from __future__ import annotations

import socket
import struct
import sys
import uuid

from dcerpc.pdu import NDR20, PFC, Bind, ContextElement, Request, Response, SyntaxId

IREMOTEACTIVATION = SyntaxId(uuid.UUID("4d9f4ab8-7d1c-11cf-861e-0020af6e7c57"), (0, 0))
ISYSTEMACTIVATOR = SyntaxId(uuid.UUID("000001a0-0000-0000-c000-000000000046"), (0, 0))
RPCECHO = SyntaxId(uuid.UUID("60a15ec5-4de8-11d7-a637-005056a20182"), (1, 0))


def _wstring(text: str) -> bytes:
    """A conformant varying NDR string of UTF-16 code units, NUL included."""
    units = text.encode("utf-16-le") + b"\0\0"
    n = len(units) // 2
    return struct.pack("<III", n, 0, n) + units + bytes(-len(units) % 4)


def activation_stub(server_len: int = 2000) -> bytes:
    """RemoteActivation's [in] (MS-DCOM 3.1.2.5.2.3.1 shape): ORPCTHIS, CLSID, the object name."""
    orpcthis = struct.pack("<HHII", 5, 7, 0, 0) + uuid.uuid4().bytes_le + struct.pack("<I", 0)
    clsid = uuid.UUID("e1af8308-5d1f-11c9-91a4-08002b14a0fa").bytes_le
    name = "\\\\" + "A" * server_len + "\\c$\\x.doc"
    rest = struct.pack("<IIIIII", 0, 2, 0, 1, 0, 0)  # storage, impersonation, mode, one IID, ...
    return orpcthis + clsid + struct.pack("<I", 0x20000) + _wstring(name) + rest


def _exchange(host: str, port: int, pdus: list[bytes], answer: bool = True) -> None:
    with socket.create_connection((host, port), timeout=5) as s:
        for p in pdus:
            try:
                s.sendall(p)
            except OSError:  # the server hung up on us: what it saw is on the wire
                return
        if answer:
            try:
                s.settimeout(0.5)
                while s.recv(65536):
                    pass
            except OSError:
                pass


def _bind(syntax: SyntaxId, call_id: int = 1) -> bytes:
    return Bind(call_id=call_id, contexts=(ContextElement(0, syntax, (NDR20,)),)).encode()


def blaster(host: str, port: int) -> None:
    stub = activation_stub()
    for syntax, opnum in ((IREMOTEACTIVATION, 0), (ISYSTEMACTIVATOR, 4)):
        request = Request(call_id=2, opnum=opnum, alloc_hint=len(stub), stub=stub)
        _exchange(host, port, [_bind(syntax), request.encode()])


def fragments(host: str, port: int, count: int = 48, size: int = 4096) -> None:
    chunk = bytes(size)
    for finished in (True, False):
        run = [_bind(RPCECHO)]
        for i in range(count):
            flags = (PFC.FIRST_FRAG if i == 0 else 0) | (PFC.LAST_FRAG if finished and i == count - 1 else 0)
            run.append(Request(call_id=2, flags=flags, opnum=1, alloc_hint=0xFFFFFFF0, stub=chunk).encode())
        _exchange(host, port, run, answer=finished)


def malformed(host: str, port: int) -> None:
    good = _bind(RPCECHO)
    wrong_version = b"\x04\x00" + good[2:]
    short = good[:8] + struct.pack("<H", 12) + good[10:]
    cut_bind = bytearray(good)
    cut_bind[24] = 9  # nine contexts announced, one there
    unknown_type = good[:2] + b"\x55" + good[3:]
    response = Response(call_id=1, stub=b"\0" * 8).encode()
    for pdu in (wrong_version, short, bytes(cut_bind), unknown_type):
        _exchange(host, port, [good, pdu])  # a good bind first: the monitor knows DCE/RPC by content
    _exchange(host, port, [good, response])


if __name__ == "__main__":
    what, target, port_text = sys.argv[1:4]
    {"blaster": blaster, "fragments": fragments, "malformed": malformed}[what](target, int(port_text))
