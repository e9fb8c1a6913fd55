"""Dynamic ports: one allocator over the configured range (default 49152-65535, as on Windows).

A port is taken by binding a listener to it, so the operating system is the arbiter between
processes; within one process the allocator also remembers what it handed out, so two listeners
never get the same port even if one has not bound yet.
"""

from __future__ import annotations

import errno
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["DEFAULT_RANGE", "PortAllocator", "PortRange", "parse_range"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PortRange:
    low: int
    high: int

    def __post_init__(self) -> None:
        if not 1 <= self.low <= self.high <= 65535:
            raise ValueError(f"bad port range {self.low}-{self.high}")

    def __str__(self) -> str:
        return f"{self.low}-{self.high}"

    def __len__(self) -> int:
        return self.high - self.low + 1


DEFAULT_RANGE = PortRange(49152, 65535)  # MS-RPCE / Windows dynamic RPC ports


def parse_range(text: str) -> PortRange:
    """``"49152-65535"`` (or a single port)."""
    lo, _, hi = text.partition("-")
    try:
        return PortRange(int(lo), int(hi or lo))
    except ValueError:
        raise ValueError(f"a port range is LOW-HIGH, got {text!r}") from None


class PortAllocator:
    """Hands out ports from a range by trying them in random order."""

    def __init__(self, ports: PortRange = DEFAULT_RANGE, rng: random.Random | None = None) -> None:
        self.range = ports
        self.taken: set[int] = set()
        self._rng = rng or random.Random()

    async def bind(self, listen: Callable[[int], Awaitable[T]], pinned: int | None = None) -> tuple[int, T]:
        """Call ``listen(port)`` on free ports until one binds; returns (port, what listen returned).

        Args:
            listen: binds a listener to the given port, raising OSError(EADDRINUSE) if taken.
            pinned: a fixed port to use instead (what firewall administrators ask for).

        Raises:
            OSError: the pinned port is taken, or every port of the range is.
        """
        if pinned is not None:
            result = await listen(pinned)
            self.taken.add(pinned)
            return pinned, result
        candidates = [p for p in range(self.range.low, self.range.high + 1) if p not in self.taken]
        self._rng.shuffle(candidates)
        for port in candidates:
            self.taken.add(port)
            try:
                return port, await listen(port)
            except OSError as e:
                if e.errno not in (errno.EADDRINUSE, errno.EACCES):
                    self.taken.discard(port)
                    raise
        raise OSError(errno.EADDRINUSE, f"no free port in {self.range}")

    def release(self, port: int) -> None:
        self.taken.discard(port)
