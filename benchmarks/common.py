"""What the benchmarks share: free ports, the event loop choice, and rate measurement."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
