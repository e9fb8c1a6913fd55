"""The audit writer process's work an event, by itself: frames of call events as the server's loop
sends them (audit/calls.py's chunks: 16 of 256 calls a frame, one site, runs of ``--run`` calls),
fed through a pipe to the writer process (``python -c "from dcerpc.audit.process import main;
main()"``), which formats them into a file.

It prints the process's CPU time an event (user and system, from its rusage), or with
``--callgrind`` its instructions an event (valgrind's callgrind; deterministic to a fraction of a
percent: one hash seed for both): the process runs at two frame counts and the difference is
divided out, so its start-up is not counted. A
run of 25 calls is what 64 calls in flight on one connection give (the calls of a read that a turn
answered); a run of one, one call in flight, or many connections of one call each.

    .venv/bin/python benchmarks/audit_writer.py [--run N] [--frames N] [--callgrind]

2026-12-02 (asyncio, this project's 2-core test machine), instructions an event: 3,063 in runs of
25, 5,515 in runs of one, 7,363 in runs of three; about 4,730 for the layout before runs (every call's
numbers, whatever the run).
"""

from __future__ import annotations

import argparse
import os
import pickle
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from common import callgrind_total

CHUNKS = 16  # a frame's (process._BATCH: 4,096 events)
CALLS = 256  # a chunk's (calls.CHUNK_CALLS)


def frames(count: int, run: int, path: Path) -> bytes:
    """The pipe's content: the sinks' settings, ``count`` frames, a close."""
    from dcerpc.audit import process
    from dcerpc.audit.observer import call_template
    from dcerpc.audit.sinks import FileSink
    from dcerpc.pdu.syntax import SyntaxId

    syntax = SyntaxId(uuid.UUID("60a15ec5-4de8-11d7-a637-005056a20182"), (1, 0))
    form = call_template(1, ("127.0.0.1", 50000), syntax, "rpcecho", "AddOne", 0, None, 0, 1, None, 0)

    def chunk(k: int) -> tuple[object, ...]:
        first = 1_000_000 + k * CALLS
        numbers: list[int] = []
        for at in range(0, CALLS, run):
            n = min(run, CALLS - at)
            # count, slot, duration, first id, octets in and out, answered (µs), the other ids
            numbers += (n, 0, 150_000 + at * 37, first + at, 4, 4, 500_000 + at * 11)
            numbers += range(first + at + 1, first + at + n)
        return (None, 1_764_680_000, [form], struct.pack(f"<{len(numbers)}q", *numbers), CALLS)

    def frame(message: object) -> bytes:
        data = process._dumps(message)
        return process._LEN.pack(len(data)) + data

    spec = pickle.dumps([FileSink(path)], 5)
    body = b"".join(frame([chunk(f * CHUNKS + j) for j in range(CHUNKS)]) for f in range(count))
    return process._LEN.pack(len(spec)) + spec + body + frame(("close",))


def _writer(feed: bytes, wrap: list[str]) -> tuple[float, str]:
    """Run the writer process on ``feed``: its CPU seconds, and what it printed to stderr."""
    status = os.open(os.devnull, os.O_WRONLY)  # (its reports: not read here)
    try:
        with tempfile.TemporaryFile() as stdin:
            stdin.write(feed)
            stdin.seek(0)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            done = subprocess.run(
                [*wrap, sys.executable, "-c", "from dcerpc.audit.process import main; main()", str(status)],
                stdin=stdin, stderr=subprocess.PIPE, text=True, check=True, pass_fds=(status,),
                env={**os.environ, "PYTHONHASHSEED": "0"},
            )  # fmt: skip
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        os.close(status)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, done.stderr


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=int, default=25, help="calls a run (1: one call in flight)")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--callgrind", action="store_true", help="count instructions an event")
    args = parser.parse_args()
    if args.callgrind and shutil.which("valgrind") is None:
        print("valgrind is not installed (apt install valgrind)")
        return 1
    wrap = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"] if args.callgrind else []
    few, many = 2, 2 + (max(args.frames // 4, 2) if args.callgrind else args.frames)
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        trail = Path(tmp, "audit.jsonl")
        for n in (few, many):
            cpu, err = _writer(frames(n, args.run, trail), wrap)
            assert trail.read_bytes().count(b"\n") == n * CHUNKS * CALLS  # every event written
            trail.unlink()
            if args.callgrind:
                figures.append(float(callgrind_total(err)))
            else:
                figures.append(cpu)
    per = (figures[1] - figures[0]) / ((many - few) * CHUNKS * CALLS)
    if args.callgrind:
        print(f"{per:,.0f} instructions an event (runs of {args.run} calls)")
    else:
        print(f"{per * 1e9:,.0f} ns of the writer process's CPU an event (runs of {args.run} calls)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
