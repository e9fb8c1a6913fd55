"""Real DCE/RPC sessions made in memory (our client and server associations, NTLM through
pyspnego), recorded per direction, and cut into TCP segments for the monitor's sans-IO tests."""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from pathlib import Path

from dcerpc.auth import NTLM, Negotiate, NegotiateProvider, NtlmProvider
from dcerpc.monitor.tcp import ACK, FIN, SYN, Endpoint, Segment
from dcerpc.pdu import SyntaxId
from dcerpc.protocol.client import ClientAssociation
from dcerpc.protocol.events import CallReceived
from dcerpc.protocol.groups import GroupTable
from dcerpc.protocol.limits import Limits
from dcerpc.protocol.security import AuthState
from dcerpc.protocol.server import ServerAssociation

ECHO = SyntaxId(uuid.UUID("60a15ec5-4de8-11d7-a637-005056a20182"), (1, 0))
CLIENT = Endpoint("10.0.0.1", 50000)
SERVER = Endpoint("10.0.0.2", 4999)
DOMAIN, USER, PASSWORD = "MONDOM", "alice", "Secret-1"
Exchange = list[tuple[bool, bytes]]  # (from the client?, octets) in the order they were sent


def session(users: Path | None = None, calls: int = 3, big: int = 0, spnego: bool = False) -> Exchange:
    """A bind (NTLM at integrity when ``users`` is given, inside SPNEGO with ``spnego``), ``calls``
    AddOne calls, one EchoData call of ``big`` octets (fragmented both ways when large), and a call
    to opnum 200 (a fault)."""
    auth = None
    providers: dict[int, NtlmProvider | NegotiateProvider] = {}
    if users is not None and spnego:
        ctx = Negotiate(DOMAIN, USER, PASSWORD, kerberos=False).client_context("mon", 5)
        auth = AuthState(ctx, 9, 5, 0, header_sign=True)
        providers = {9: NegotiateProvider(users)}
    elif users is not None:
        ctx = NTLM(DOMAIN, USER, PASSWORD).client_context("mon", 5)
        auth = AuthState(ctx, 10, 5, 0, header_sign=True)
        providers = {10: NtlmProvider(users)}
    limits = Limits(max_fragment=5840)
    ca = ClientAssociation(limits, auth)
    sa = ServerAssociation(
        lambda s: s if s.uuid == ECHO.uuid else None, GroupTable(), limits, b"4999", providers
    )
    out: Exchange = []

    def pump() -> None:
        for _ in range(6):
            c = ca.data_to_send()
            if c:
                out.append((True, c))
                sa.receive_data(c)
            for ev in sa.events():
                if isinstance(ev, CallReceived):
                    if ev.opnum == 200:
                        sa.fault(ev.call_id, 0x1C010002)
                    elif ev.opnum == 1:
                        sa.respond(ev.call_id, bytes(ev.stub)[:4] + bytes(ev.stub)[4:])
                    else:
                        (n,) = struct.unpack_from("<I", bytes(ev.stub))
                        sa.respond(ev.call_id, struct.pack("<I", n + 1))
            s = sa.data_to_send()
            if s:
                out.append((False, s))
                ca.receive_data(s)
            ca.events()

    ca.bind({0: ECHO})
    pump()
    for i in range(calls):
        ca.request(0, 0, struct.pack("<I", i))
        pump()
    if big:
        data = bytes(range(256)) * (big // 256)
        ca.request(0, 1, struct.pack("<I", len(data)) + data)
        pump()
    ca.request(0, 200, b"")
    pump()
    return out


def segments(
    ex: Exchange, sizes: Sequence[int] = (1460,), syn: bool = True, isn: tuple[int, int] = (1000, 900000)
) -> list[Segment]:
    """The exchange as TCP segments of the given sizes (cycling), with a handshake and FINs."""
    seq = {True: isn[0], False: isn[1]}
    segs: list[Segment] = []
    ts = 1_700_000_000.0
    if syn:
        segs.append(Segment(ts, CLIENT, SERVER, seq[True], SYN))
        segs.append(Segment(ts, SERVER, CLIENT, seq[False], SYN | ACK))
    seq = {k: (v + 1) % (1 << 32) for k, v in seq.items()}
    i = 0
    for from_client, data in ex:
        pos = 0
        while pos < len(data):
            n = sizes[i % len(sizes)]
            i += 1
            ts += 0.001
            src, dst = (CLIENT, SERVER) if from_client else (SERVER, CLIENT)
            segs.append(Segment(ts, src, dst, seq[from_client], ACK, data[pos : pos + n]))
            seq[from_client] = (seq[from_client] + len(data[pos : pos + n])) % (1 << 32)
            pos += n
    ts += 0.001
    segs.append(Segment(ts, CLIENT, SERVER, seq[True], FIN | ACK))
    segs.append(Segment(ts, SERVER, CLIENT, seq[False], FIN | ACK))
    return segs
