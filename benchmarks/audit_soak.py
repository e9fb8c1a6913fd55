"""A soak of audit events: N real calls (default 1,000,000), each a call event written to a file,
with the server's memory watched as it goes (issue 15: "a soak of a million events keeps memory
flat").

Our client and server in one process, joined in memory (``dcerpc.testing.connect_in_memory``),
64 calls in flight, every call audited by ``dcerpc.audit`` to a file, metrics on. Every tenth of
the run it reads what Python holds (tracemalloc's current octets) and the process's RSS; the
memory must stay flat once warm (drift of the Python heap under 5%, against the first reading) and
every event must reach the file (the writer's queue is bounded: a dropped event is counted, shown,
and fails the run).

First run (2026-12-01, 1,000,000 calls, 8,173/s under tracemalloc): the Python heap stayed at
11.0-11.2 MiB (-1.5% first to last), RSS 104-116 MiB; but 311,380 events were dropped. Client,
server and writer share one interpreter here, and with no socket to wait on the loop seldom let
the writer thread run: its queue (65,536) filled between the readings. Then a queue half full
handed the interpreter to the writer thread (``audit.writer.Writer.put``): none was dropped. Now
the events are formatted in a writer process (``audit.process``), whose memory is read too: a
million calls (beside the whole test suite, 1,560/s), all in the file, none dropped, the heap at
9.10 MiB (-0.02%), RSS 50.5 MiB, the writer process's 39.0 MiB, flat. With call events as chunks
of numbers (audit/calls.py; 2026-12-01, 9,516/s): all 1,000,000 in the file, none dropped, the heap
at 10.66 MiB from the 100,000th call to the millionth (-0.01%), RSS 58.7 MiB, the writer process's
46.4 MiB, flat.

    .venv/bin/python benchmarks/audit_soak.py [--events 1000000] [--json]

``tests/audit/test_soak_events.py`` runs 40,000 in the unit suite, with a queue of 4,096.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any


def _rss(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def soak(
    events: int, where: Path, in_flight: int = 64, samples: int = 10, capacity: int = 65536
) -> dict[str, Any]:
    """``events`` audited calls; readings of memory at ``samples`` points; what the file holds."""
    from dcerpc.audit import Audit, FileSink
    from dcerpc.rpcecho import Echo
    from dcerpc.rpcecho.server import EchoServer
    from dcerpc.server import Server
    from dcerpc.testing import connect_in_memory

    path = where / "audit.jsonl"
    audit = Audit([FileSink(path)], metrics=True, capacity=capacity)
    server = Server(EchoServer(), audit=audit, metrics=True)
    readings: list[dict[str, float]] = []
    start = time.perf_counter()
    async with connect_in_memory(server, max_concurrent_calls=in_flight) as conn:
        echo = await conn.bind(Echo)
        step = max(1, events // samples)
        done = 0
        while done < events:
            n = min(step, events - done)
            for first in range(0, n, in_flight):
                batch = range(first, min(first + in_flight, n))
                await asyncio.gather(*(echo.AddOne(i) for i in batch))
            done += n
            assert audit.flush(30.0), "the writer did not catch up"
            proc = getattr(audit.writer, "_proc", None)  # the writer process's, when there is one
            readings.append({"events": done, "python": tracemalloc.get_traced_memory()[0], "rss": _rss(),
                             "writer_rss": _rss(proc.pid) if proc is not None else 0})  # fmt: skip
    took = time.perf_counter() - start
    assert audit.flush(30.0)
    dropped = audit.dropped
    audit.close()
    lines = sum(1 for line in path.open() if '"action":"call"' in line)
    first, last = readings[0], readings[-1]
    return {
        "events": events,
        "seconds": took,
        "calls_per_s": events / took,
        "call_events_in_file": lines,
        "dropped": dropped,
        "python_first": first["python"],
        "python_last": last["python"],
        "python_drift_pct": 100.0 * (last["python"] - first["python"]) / first["python"],
        "rss_first": first["rss"],
        "rss_last": last["rss"],
        "readings": readings,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tracemalloc.start()
    with tempfile.TemporaryDirectory() as tmp:
        r = asyncio.run(soak(args.events, Path(tmp)))
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        rate = f"{r['calls_per_s']:,.0f}/s, under tracemalloc"
        print(f"{r['events']:,} audited calls in {r['seconds']:.1f} s ({rate})")
        print(f"call events in the file: {r['call_events_in_file']:,}; dropped: {r['dropped']:,}")
        for x in r["readings"]:
            heap, rss = x["python"] / 2**20, x["rss"] / 2**20
            writer = x["writer_rss"] / 2**20
            print(f"  after {x['events']:>9,}: Python heap {heap:7.2f} MiB, RSS {rss:7.1f} MiB, "
                  f"writer process RSS {writer:5.1f} MiB")  # fmt: skip
        print(f"Python heap drift first to last reading: {r['python_drift_pct']:+.2f}% (target < 5%)")
    accounted = r["call_events_in_file"] + r["dropped"] == r["events"]
    if r["dropped"]:
        print(f"NOT MET: {r['dropped']:,} events dropped (the writer's queue was full): nothing may be lost")
    ok = accounted and not r["dropped"] and abs(r["python_drift_pct"]) < 5.0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
