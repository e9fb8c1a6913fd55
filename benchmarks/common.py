"""What the benchmarks share: free ports, the event loop choice, process tuning, rate measurement."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
import time
from collections.abc import Awaitable, Callable

from dcerpc.tuning import NON_TEMPORAL_THRESHOLD, streaming_copies_environ


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def streaming_copies(enabled: bool) -> str:
    """With ``enabled``, run this benchmark again (the same arguments) in a process whose glibc
    streams large copies, as every process it starts will too (dcerpc.tuning explains why this
    machine needs it); returns what the header line says about it."""
    if enabled:
        env = streaming_copies_environ()
        if env is not None:
            sys.stdout.flush()
            os.execve(sys.executable, [sys.executable, *sys.argv], env)
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if f"x86_non_temporal_threshold={NON_TEMPORAL_THRESHOLD:#x}" in tunables:
        return f"glibc: copies of {NON_TEMPORAL_THRESHOLD >> 20} MiB and more stream, in every process"
    return f"glibc: GLIBC_TUNABLES={tunables}" if tunables else "glibc: copies as it chooses"


def use_uvloop(enabled: bool) -> str:
    """Install uvloop's event loop policy when asked and installed; returns the loop's name."""
    if enabled:
        try:
            import uvloop
        except ImportError:
            return "asyncio"
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return "uvloop"
    return "asyncio"


def rate(seconds: float, fn: Callable[[], object]) -> float:
    """Calls per second of a blocking ``fn`` (after one warm-up call)."""
    fn()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - start)


async def arate(seconds: float, fn: Callable[[], Awaitable[object]], in_flight: int = 1) -> float:
    """Calls per second with ``in_flight`` calls outstanding at all times (after one warm-up)."""
    await fn()
    count = 0
    start = time.perf_counter()
    deadline = start + seconds

    async def worker() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await fn()
            count += 1

    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return count / (time.perf_counter() - start)


def callgrind_total(stderr: str) -> int:
    """The instructions valgrind's callgrind counted, from what it printed (its ``Collected :``)."""
    found = re.search(r"Collected : (\d+)", stderr)
    if found is None:
        raise RuntimeError(f"callgrind printed no total:\n{stderr[-2000:]}")
    return int(found.group(1))
