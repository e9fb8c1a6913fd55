"""Fuzz harness for the PDU parser and both sans-IO associations.

Seeds are real PDU streams (bind, alter_context, fragmented requests, co_cancel, orphaned, auth3,
and the server's answers); mutations corrupt headers, lengths, counts and bodies, split and join
streams at random points. ``parse`` may only raise ``PduError``; the associations may raise nothing
at all: every input ends in events and output octets (a bind_nak, a fault, a close). Authenticated
seeds are real NTLM and SPNEGO handshakes with signed and sealed requests (their tokens reach
pyspnego's parsers through the server's providers); every input is also offered to the
verification-trailer parser, which may raise nothing.

    python fuzz/pdu_fuzz.py --seconds 60
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import random
import shutil
import struct
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path

from dcerpc.auth import NTLM, Negotiate, NegotiateProvider, NtlmProvider, SecurityProvider
from dcerpc.pdu import (
    NDR20,
    PFC,
    AlterContext,
    Auth3,
    AuthVerifier,
    Bind,
    BindAck,
    CoCancel,
    ContextElement,
    ContextResultItem,
    Fault,
    Orphaned,
    PduError,
    Request,
    Response,
    SyntaxId,
    parse,
)
from dcerpc.protocol import verification
from dcerpc.protocol.client import ClientAssociation
from dcerpc.protocol.groups import GroupTable
from dcerpc.protocol.limits import Limits
from dcerpc.protocol.security import AuthState
from dcerpc.protocol.server import ServerAssociation

ECHO = SyntaxId(uuid.UUID("60a15ec5-4de8-11d7-a637-005056a20182"), (1, 0))
LIMITS = Limits(max_call_size=32 * 1024, max_outstanding_calls=8, max_contexts=8)


def server_streams() -> list[bytes]:
    bind = Bind(call_id=1, contexts=(ContextElement(0, ECHO, (NDR20,)), ContextElement(1, ECHO, (NDR20,))))
    stub = struct.pack("<I", 41)
    big = bytes(range(256)) * 30
    frags = [
        Request(call_id=3, flags=PFC.FIRST_FRAG, opnum=1, stub=big[:3000]),
        Request(call_id=3, flags=0, opnum=1, stub=big[3000:6000]),
        Request(call_id=3, flags=PFC.LAST_FRAG, opnum=1, stub=big[6000:]),
    ]
    return [
        bind.encode() + Request(call_id=2, opnum=0, stub=stub).encode(),
        bind.encode() + b"".join(f.encode() for f in frags),
        bind.encode()
        + AlterContext(call_id=4, contexts=(ContextElement(2, ECHO, (NDR20,)),)).encode()
        + Request(
            call_id=5,
            context_id=2,
            opnum=0,
            object=uuid.UUID(int=9),
            flags=PFC.FIRST_FRAG | PFC.LAST_FRAG | PFC.OBJECT_UUID,
            stub=stub,
        ).encode()
        + CoCancel(call_id=5).encode()
        + Orphaned(call_id=5).encode(),
        Bind(
            call_id=1,
            contexts=(ContextElement(0, ECHO, (NDR20,)),),
            auth=AuthVerifier(auth_type=10, auth_level=6, value=b"NTLMSSP\0" + bytes(24)),
        ).encode()
        + Auth3(call_id=1, auth=AuthVerifier(auth_type=10, auth_level=6, value=bytes(16))).encode(),
    ]


_USERS_DIR = tempfile.mkdtemp(prefix="dcerpc-fuzz-")
atexit.register(shutil.rmtree, _USERS_DIR, True)
_USERS = Path(_USERS_DIR) / "ntlm-users"
_USERS.write_text("FUZZ:alice:wonderland\n")


def providers() -> dict[int, SecurityProvider]:
    return {10: NtlmProvider(_USERS), 9: NegotiateProvider(_USERS)}


LIVE = [(NTLM("FUZZ", "alice", "wonderland"), 5), (NTLM("FUZZ", "alice", "wonderland"), 6)]
LIVE += [(Negotiate("FUZZ", "alice", "wonderland", kerberos=False), 6)]


def live_session(index: int) -> tuple[ServerAssociation, bytes, bytes]:
    """A server association after a real handshake, the handshake's octets, and protected requests."""
    creds, level = LIVE[index]
    ctx = creds.client_context("fuzz", level)
    ca = ClientAssociation(LIMITS, AuthState(ctx, creds.auth_type, level, 0, header_sign=True))
    sa = ServerAssociation(
        lambda s: s if s.uuid == ECHO.uuid else None, GroupTable(), LIMITS, b"135", providers()
    )
    ca.bind({0: ECHO})
    sent = b""
    for _ in range(4):  # the handshake's legs
        out = ca.data_to_send()
        sent += out
        sa.receive_data(out)
        sa.events()
        ca.receive_data(sa.data_to_send())
        ca.events()
    ca.request(0, 0, struct.pack("<I", 41))
    ca.request(0, 1, struct.pack("<I", 3000) + bytes(range(256)) * 11 + bytes(184))
    return sa, sent, ca.data_to_send()


def auth_server_streams() -> list[bytes]:
    """What clients send in real NTLM / SPNEGO sessions (replayed to fresh servers: the handshake
    fails there, which exercises the token parsers and the refusals)."""
    out = []
    for i in range(len(LIVE)):
        _, handshake, requests = live_session(i)
        out.append(handshake + requests)
    return out


def one_live(rng: random.Random) -> str | None:
    """Mutated protected requests after a handshake that succeeded: the verify / unseal paths."""
    try:
        sa, _, requests = live_session(rng.randrange(len(LIVE)))
        feed(sa, rng, mutate(rng, requests))
        for cid in list(sa.outstanding):
            sa.respond(cid, b"\0" * rng.randint(0, 9000))
        sa.data_to_send()
        sa.connection_lost()
    except Exception:
        return traceback.format_exc()
    return None


def client_streams() -> list[bytes]:
    ack = BindAck(
        call_id=1, assoc_group_id=0x1234, sec_addr=b"49152", results=(ContextResultItem(0, 0, NDR20),)
    )
    return [
        ack.encode() + Response(call_id=2, stub=struct.pack("<I", 42)).encode(),
        ack.encode() + Fault(call_id=2, status=0x1C010002).encode(),
        ack.encode()
        + Response(call_id=2, flags=PFC.FIRST_FRAG, stub=bytes(4000)).encode()
        + Response(call_id=2, flags=PFC.LAST_FRAG, stub=bytes(100)).encode(),
    ]


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        r = rng.random()
        if r < 0.3 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif r < 0.5 and len(buf) > 10:
            at = rng.randrange(len(buf) - 2)
            buf[at : at + 2] = struct.pack("<H", rng.choice((0, 1, 15, 16, 17, 1432, 5840, 0xFFFF)))
        elif r < 0.65 and len(buf) > 4:
            at = rng.randrange(len(buf) - 4)
            buf[at : at + 4] = struct.pack("<I", rng.choice((0, 1, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF)))
        elif r < 0.8:
            del buf[rng.randrange(len(buf) + 1) :]
        else:
            at = rng.randrange(len(buf) + 1)
            buf[at:at] = rng.randbytes(rng.randint(1, 24))
    return bytes(buf)


def feed(assoc: ServerAssociation | ClientAssociation, rng: random.Random, data: bytes) -> None:
    """Deliver in random chunks, as TCP may."""
    pos = 0
    while pos < len(data):
        n = rng.randint(1, 600)
        assoc.receive_data(data[pos : pos + n])
        pos += n
        assoc.events()
        assoc.data_to_send()


def one(rng: random.Random, server: bool, data: bytes) -> str | None:
    try:
        verification.split(data, rng.random() < 0.5)
        if server:
            match = lambda s: s if s.uuid == ECHO.uuid else None  # noqa: E731
            sa = ServerAssociation(match, GroupTable(), LIMITS, b"135", providers())
            feed(sa, rng, data)
            for cid in list(sa.outstanding):
                sa.respond(cid, b"\0" * rng.randint(0, 9000))
            sa.data_to_send()
            sa.connection_lost()
        else:
            ca = ClientAssociation(LIMITS)
            ca.bind({0: ECHO})
            ca.request(0, 0, b"\0\0\0\0")
            feed(ca, rng, data)
        with contextlib.suppress(PduError):
            parse(data)
    except Exception:
        return traceback.format_exc()
    return None


def run(seconds: float, seed: int, crash_dir: Path) -> int:
    rng = random.Random(seed)
    seeds = [(True, s) for s in server_streams() + auth_server_streams()]
    seeds += [(False, s) for s in client_streams()]
    deadline = time.monotonic() + seconds
    runs = crashes = 0
    while time.monotonic() < deadline:
        server, base = rng.choice(seeds)
        data = mutate(rng, base)
        failure = one_live(rng) if rng.random() < 0.2 else one(rng, server, data)
        runs += 1
        if failure is not None:
            crashes += 1
            crash_dir.mkdir(parents=True, exist_ok=True)
            path = crash_dir / f"pdu-{'server' if server else 'client'}-{crashes}.bin"
            path.write_bytes(data)
            print(f"CRASH -> {path}\n{failure}", file=sys.stderr)
    print(f"{runs} streams, {crashes} crashes")
    return 1 if crashes else 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crash-dir", type=Path, default=Path(__file__).parent / "crashes")
    args = parser.parse_args()
    return run(args.seconds, args.seed, args.crash_dir)


if __name__ == "__main__":
    sys.exit(main())
