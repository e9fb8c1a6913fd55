"""Write the seed corpus of the ``smb2`` target (fuzz/corpus/smb2/) in the records form of
fuzz_smb2.py: hand-built SMB2 pipe sessions (tests/monitor/smb2_streams.py: WRITE / READ, IOCTL
transceive, a compound CREATE + related IOCTL, an async READ, encrypted and SMB1 messages) carrying
a real DCE/RPC session made in memory, and, given captures (pcap / pcapng, e.g. of the interop test
tests/interop/test_smb2_monitor.py), every SMB connection in them, one record per in-order chunk.

    .venv/bin/python fuzz/make_smb2_corpus.py [CAPTURE ...]
"""

from __future__ import annotations

import hashlib
import sys
from collections import Counter
from pathlib import Path

import records

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from dcerpc.monitor.capture import segments  # noqa: E402
from dcerpc.monitor.smb2 import looks_like_smb  # noqa: E402
from dcerpc.monitor.tcp import Data, Reassembler  # noqa: E402
from tests.monitor import smb2_streams as b  # noqa: E402
from tests.monitor.streams import session  # noqa: E402

MAX_SEED = 65536
OUT = HERE / "corpus" / "smb2"


def built() -> dict[str, list[tuple[int, bytes]]]:
    ex = session(calls=2, big=3000)
    seeds = {f"built-{mode}": b.over_pipe(ex, mode) for mode in ("rw", "ioctl")}
    p = b.Pipe()
    p.c(b"\xffSMB" + bytes(28))
    p.logon()
    c1, c2 = p.next(), p.next()
    p.c(b.create_request(c1, "svcctl"), b.ioctl_request(c2, b.ANY, ex[0][1], flags=b.RELATED))
    p.s(b.create_response(c1, p.fid), b.ioctl_response(c2, p.fid, ex[1][1]))
    m = p.next()
    p.c(b.write_request(m, p.fid, ex[2][1]))
    p.s(b.write_response(m, len(ex[2][1])))
    m = p.next()
    p.c(b.read_request(m, p.fid))
    p.s(b.error_response(b.READ, m, b.PENDING, b.ASYNC), b.read_response(m, ex[3][1], flags=b.ASYNC))
    p.c(b"\xfdSMB" + bytes(48) + ex[4][1])
    p.close()
    seeds["built-compound"] = p.out
    return {k: [(0 if c else 1, data) for c, data in v] for k, v in seeds.items()}


def captured(path: Path) -> dict[str, list[tuple[int, bytes]]]:
    tcp = Reassembler()
    conns: dict[str, list[tuple[int, bytes]]] = {}
    first: dict[str, object] = {}
    stats: Counter[str] = Counter()
    for seg in segments(path, stats):
        for ev in tcp.feed(seg):
            if isinstance(ev, Data):
                client = first.setdefault(ev.conn.uid, ev.conn.client or ev.src)
                conns.setdefault(ev.conn.uid, []).append((0 if ev.src == client else 1, ev.data))
    return {f"{path.stem}-{uid}": recs for uid, recs in conns.items() if looks_like_smb(recs[0][1])}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    seeds = built()
    for arg in sys.argv[1:]:
        seeds.update(captured(Path(arg)))
    for name, recs in seeds.items():
        data = records.encode(recs)[:MAX_SEED]
        digest = hashlib.sha1(data).hexdigest()[:8]
        (OUT / f"{name}-{digest}").write_bytes(data)
        print(name, len(data))


if __name__ == "__main__":
    main()
