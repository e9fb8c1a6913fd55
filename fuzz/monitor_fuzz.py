"""Fuzz harness for the capture monitor's sans-IO core: TCP reassembly and the passive association.

Seeds are real sessions made in memory (our client and server associations: bind, calls, a long
call fragmented both ways, a fault; and an NTLM-authenticated one). Each run mutates a seed's
octets per direction (corrupted headers, lengths, counts and bodies, cuts, insertions), cuts them
into TCP segments of random sizes, then reorders, duplicates, drops, overlaps with conflicting
copies and wraps sequence numbers, sometimes starting mid-stream. The monitor may raise nothing:
every input ends in records (calls, binds, violations) and counts.

    python fuzz/monitor_fuzz.py --seconds 60
"""

from __future__ import annotations

import argparse
import atexit
import random
import shutil
import struct
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path

from dcerpc.auth import NTLM, NtlmProvider
from dcerpc.monitor import Monitor, Reassembler, to_event
from dcerpc.monitor.tcp import ACK, FIN, RST, SYN, Endpoint, Segment
from dcerpc.pdu import SyntaxId
from dcerpc.protocol.client import ClientAssociation
from dcerpc.protocol.events import CallReceived
from dcerpc.protocol.groups import GroupTable
from dcerpc.protocol.limits import Limits
from dcerpc.protocol.security import AuthState
from dcerpc.protocol.server import ServerAssociation

ECHO = SyntaxId(uuid.UUID("60a15ec5-4de8-11d7-a637-005056a20182"), (1, 0))
CLIENT, SERVER = Endpoint("10.1.0.1", 40000), Endpoint("10.1.0.2", 135)
LIMITS = Limits(max_fragment=2048)

_USERS_DIR = tempfile.mkdtemp(prefix="dcerpc-monfuzz-")
atexit.register(shutil.rmtree, _USERS_DIR, True)
_USERS = Path(_USERS_DIR) / "ntlm-users"
_USERS.write_text("FUZZ:alice:wonderland\n")


def session(authenticated: bool) -> tuple[bytes, bytes]:
    """A whole session's octets: (client to server, server to client)."""
    auth, providers = None, {}
    if authenticated:
        ctx = NTLM("FUZZ", "alice", "wonderland").client_context("fuzz", 6)
        auth, providers = AuthState(ctx, 10, 6, 0, header_sign=True), {10: NtlmProvider(_USERS)}
    ca = ClientAssociation(LIMITS, auth)
    sa = ServerAssociation(
        lambda s: s if s.uuid == ECHO.uuid else None, GroupTable(), LIMITS, b"135", providers
    )
    up = down = b""

    def pump() -> None:
        nonlocal up, down
        for _ in range(6):
            c = ca.data_to_send()
            up += c
            sa.receive_data(c)
            for ev in sa.events():
                if isinstance(ev, CallReceived):
                    if ev.opnum == 7:
                        sa.fault(ev.call_id, 0x1C010002)
                    else:
                        sa.respond(ev.call_id, bytes(ev.stub)[:5000])
            s = sa.data_to_send()
            down += s
            ca.receive_data(s)
            ca.events()

    ca.bind({0: ECHO})
    pump()
    for opnum, stub in ((0, struct.pack("<I", 1)), (1, bytes(range(256)) * 20), (7, b"")):
        ca.request(0, opnum, stub)
        pump()
    return up, down


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(0, 6)):
        r = rng.random()
        if r < 0.3 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif r < 0.5 and len(buf) > 10:
            at = rng.randrange(len(buf) - 2)
            buf[at : at + 2] = struct.pack("<H", rng.choice((0, 1, 15, 16, 17, 24, 2048, 0xFFFF)))
        elif r < 0.65 and len(buf) > 4:
            at = rng.randrange(len(buf) - 4)
            buf[at : at + 4] = struct.pack("<I", rng.choice((0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF)))
        elif r < 0.8:
            at = rng.randrange(len(buf) + 1)
            del buf[at : at + rng.randint(1, 64)]
        else:
            at = rng.randrange(len(buf) + 1)
            buf[at:at] = rng.randbytes(rng.randint(1, 24))
    return bytes(buf)


def cut(rng: random.Random, up: bytes, down: bytes) -> list[Segment]:
    """Both directions as segments, interleaved, then reordered, duplicated, dropped, overlapped."""
    isn = {True: rng.randrange(1 << 32), False: rng.randrange(1 << 32)}
    segs: list[Segment] = []
    if rng.random() < 0.7:
        segs += [
            Segment(0.0, CLIENT, SERVER, isn[True], SYN),
            Segment(0.0, SERVER, CLIENT, isn[False], SYN | ACK),
        ]
    pos = {True: 0, False: 0}
    data = {True: up, False: down}
    ts = 1.0
    while pos[True] < len(up) or pos[False] < len(down):
        side = rng.random() < 0.5 if pos[True] < len(up) and pos[False] < len(down) else pos[True] < len(up)
        n = rng.choice((1, 7, 100, 536, 1460, 4000))
        chunk = data[side][pos[side] : pos[side] + n]
        src, dst = (CLIENT, SERVER) if side else (SERVER, CLIENT)
        seq = (isn[side] + 1 + pos[side]) % (1 << 32)
        ts += 0.001
        segs.append(Segment(ts, src, dst, seq, ACK, chunk))
        if rng.random() < 0.05:  # an overlapping copy with other octets
            segs.append(
                Segment(ts, src, dst, (seq + len(chunk) // 2) % (1 << 32), ACK, rng.randbytes(len(chunk)))
            )
        pos[side] += len(chunk)
    for _ in range(rng.randint(0, 6)):
        r = rng.random()
        if not segs:
            break
        i = rng.randrange(len(segs))
        if r < 0.3:
            j = rng.randrange(len(segs))
            segs[i], segs[j] = segs[j], segs[i]
        elif r < 0.6:
            segs.insert(rng.randrange(len(segs) + 1), segs[i])
        elif r < 0.85:
            del segs[i]
        else:
            segs.insert(i, Segment(ts, CLIENT, SERVER, rng.randrange(1 << 32), rng.choice((FIN, RST, SYN, 0)),
                                   rng.randbytes(rng.randint(0, 64))))  # fmt: skip
    if rng.random() < 0.2:  # mid-stream
        segs = segs[rng.randrange(len(segs) + 1) :]
    return segs


def one(rng: random.Random, up: bytes, down: bytes) -> str | None:
    try:
        mon = Monitor(Reassembler(max_held=rng.choice((4096, 1 << 20)), max_connections=rng.choice((1, 100))))
        records = []
        for seg in cut(rng, mutate(rng, up), mutate(rng, down)):
            records += mon.feed(seg)
        records += mon.finish()
        for rec in records:
            to_event(rec)
    except Exception:
        return traceback.format_exc()
    return None


def run(seconds: float, seed: int, crash_dir: Path) -> int:
    rng = random.Random(seed)
    seeds = [session(False), session(True)]
    deadline = time.monotonic() + seconds
    runs = crashes = 0
    while time.monotonic() < deadline:
        up, down = rng.choice(seeds)
        state = rng.getstate()
        failure = one(rng, up, down)
        runs += 1
        if failure is not None:
            crashes += 1
            crash_dir.mkdir(parents=True, exist_ok=True)
            path = crash_dir / f"monitor-{crashes}.txt"
            path.write_text(f"seed {seed} run {runs} state {state!r}\n{failure}")
            print(f"CRASH -> {path}\n{failure}", file=sys.stderr)
    print(f"{runs} captures, {crashes} crashes")
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
