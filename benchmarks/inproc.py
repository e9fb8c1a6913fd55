"""The CPU one small call costs, client and server together, with no sockets in the way.

Our client and server run in one process and one event loop, joined by dcerpc.testing's in-memory
transport (``connect_in_memory``), which hands each write to the other side's
``get_buffer``/``buffer_updated`` on the next turn of the loop, as a socket would. rpcecho AddOne,
one call in flight (or ``--in-flight N``). What it prints:

- the wall time per call, which here is the CPU of both sides (no kernel, no waiting);
- with ``--callgrind``, the instructions per call: the run is repeated under valgrind's callgrind
  at two call counts and the difference divided out, so start-up is not counted. Deterministic to
  a fraction of a percent (the runs share one hash seed), it shows a change of 1% that timings
  cannot; it takes about a minute. A change elsewhere can still move it by some hundreds, as it
  moves the heap's layout.

    .venv/bin/python benchmarks/inproc.py [--calls N] [--in-flight N] [--callgrind] [--no-uvloop]
                                          [--audit FILE] [--metrics] [--detect] [--policy]

``--audit FILE`` writes every event to FILE: under callgrind the loop's side only (valgrind follows
no child, and the events are formatted in the audit's writer process; a writer thread, for sinks of
other kinds, would be counted); ``--metrics`` keeps the per-call metrics counters; ``--policy``
puts benchmarks/policy.py's 20-rule policy (and its rate limits) in force. ``--audit FILE --metrics
--policy`` is policy.py's secured server, here in one process: its loop's side of a call.

The transport's own work is part of the figure. Moving from this file's former private pipe onto
dcerpc.testing's transport lowered it from about 107,900 to about 103,200 instructions per call
(uvloop, one in flight) with the library unchanged: the old pipe copied each read memoryview to
memoryview, which costs more than copying the bytes object written. Compare figures from before that
change with 107,900, and later ones with 103,200.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import time

from common import callgrind_total, use_uvloop


async def _run(
    calls: int,
    in_flight: int,
    audit_file: str | None = None,
    metrics: bool = False,
    detect: bool = False,
    policy: bool = False,
) -> float:
    from dcerpc.audit import Audit, FileSink
    from dcerpc.detect import Inline
    from dcerpc.rpcecho import Echo
    from dcerpc.rpcecho.server import EchoServer
    from dcerpc.server.server import Server
    from dcerpc.testing import connect_in_memory

    audit = Audit([FileSink(audit_file)]) if audit_file else Audit() if detect else None
    if audit is not None and detect:
        audit.detect = Inline()  # the detectors inline (docs/detection.md)
    server = Server(EchoServer(), audit=audit, metrics=metrics)
    if policy:
        from policy import policy_text

        from dcerpc.policy import parse

        server.policy = parse(policy_text())
    if audit is not None:
        assert audit.flush(60)  # the writer (a process) is up before the first call
    async with connect_in_memory(server) as conn:
        echo = await conn.bind(Echo)
        assert await echo.AddOne(41) == 42

        async def worker(n: int) -> None:
            for _ in range(n):
                await echo.AddOne(41)

        start = time.perf_counter()
        await asyncio.gather(*(worker(calls // in_flight) for _ in range(in_flight)))
        if audit is not None:
            audit.flush(60)  # the writer's work is part of the cost
        return (time.perf_counter() - start) / calls


def _instructions(calls: int, argv: list[str]) -> int:
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            *argv,
            "--calls",
            str(calls),
        ],
        capture_output=True,
        text=True,
        check=True,
        # one hash seed for every run: str hashes place dict entries, and so the heap's layout, and
        # with it how often a buffer grows in place or by a copy (which valgrind counts by the byte)
        env={**os.environ, "PYTHONHASHSEED": "0"},
    ).stderr
    return callgrind_total(out)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--in-flight", type=int, default=1)
    parser.add_argument("--callgrind", action="store_true", help="count instructions per call")
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument("--audit", metavar="FILE", default=None, help="audit every event to FILE")
    parser.add_argument("--metrics", action="store_true", help="keep the metrics counters")
    parser.add_argument("--detect", action="store_true", help="run the detectors inline")
    parser.add_argument("--policy", action="store_true", help="benchmarks/policy.py's 20-rule policy")
    args = parser.parse_args()
    inner = ["--in-flight", str(args.in_flight)] + (["--no-uvloop"] if args.no_uvloop else [])
    inner += (["--audit", args.audit] if args.audit else []) + (["--metrics"] if args.metrics else [])
    inner += (["--detect"] if args.detect else []) + (["--policy"] if args.policy else [])
    if args.callgrind:
        if shutil.which("valgrind") is None:
            print("valgrind is not installed (apt install valgrind)")
            return 1
        few, many = 1_000, 11_000
        per_call = (_instructions(many, inner) - _instructions(few, inner)) / (many - few)
        print(f"{per_call:,.0f} instructions per call ({args.in_flight} in flight, client and server)")
        return 0
    loop = use_uvloop(not args.no_uvloop)
    per_call = asyncio.run(
        _run(args.calls, args.in_flight, args.audit, args.metrics, args.detect, args.policy)
    )
    print(f"{per_call * 1e6:.2f} us per call on {loop} ({args.in_flight} in flight, client and server CPU)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
