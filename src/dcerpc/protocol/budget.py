"""The process's memory budget for what peers make it hold, shared fairly between their addresses.

Per-connection limits (``Limits.max_buffered``, ``max_call_size``) bound one connection; this bounds
them all together. Without it, the 1,024 connections a listener takes could hold 64 GiB of
half-received calls between them, and one address opening many connections could take everything
an honest client needs. Three rules, checked before memory is committed (never after):

    1. all connections together hold at most ``total`` octets;
    2. one source address holds at most ``per_source`` of them (default a quarter of the total):
       one address cannot take the whole budget, however many connections it opens;
    3. under pressure (more than half the total held), a source already holding more than an
       equal share (total / the sources holding anything) gets no more: the others still do.

What draws on it (each connection through its :class:`Account`): the buffers of calls being
reassembled, the one spare buffer a connection keeps for its next long call, and answers of more
than one fragment waiting to be written (``protocol.outbox``). Refused memory is answered as the
protocol prescribes (``rules.Violation.OUT_OF_RESOURCES``: fault rpc_s_out_of_resources, the
connection stays). A closed account gives back everything it held, whatever its holders forget:
nothing a connection held outlives it, in the budget's arithmetic at least.

Pure bookkeeping: no I/O, no clock. A lock makes it safe for servers on several threads' loops.
"""

from __future__ import annotations

import os
import threading
from typing import Final

__all__ = ["Account", "Budget", "default_total", "process_budget", "set_process_budget"]

_MIN_TOTAL: Final = 64 * 1024 * 1024  # below this, honest 32 MiB calls could not be received


def default_total() -> int:
    """A quarter of the machine's physical memory (at least 64 MiB): the process's default budget.
    RPC buffers are not all a process holds; the rest is the implementations' own."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 4 * 1024**3
    return max(_MIN_TOTAL, ram // 4)


class Budget:
    """Octets the process holds for peers (see the module docstring).

    Args:
        total: the most all connections hold together (None: :func:`default_total`).
        per_source: the most one source address holds (None: a quarter of ``total``).
    """

    def __init__(self, total: int | None = None, per_source: int | None = None) -> None:
        self.total = default_total() if total is None else int(total)
        self.per_source = self.total // 4 if per_source is None else int(per_source)
        if self.total < 1 or self.per_source < 1:
            raise ValueError("a memory budget and its per-source share must be positive")
        self.held = 0
        self.refused = 0  # requests for memory refused, all reasons together
        self._sources: dict[str | None, int] = {}  # octets held, by source (None: local peers)
        self._lock = threading.Lock()

    def account(self, source: str | None) -> Account:
        """An account for one connection from ``source`` (an IP address; None for local peers)."""
        return Account(self, source)

    def source_held(self, source: str | None) -> int:
        """Octets held for connections from ``source``."""
        return self._sources.get(source, 0)

    @property
    def sources(self) -> int:
        """How many sources hold anything (bounded: only sources with live connections are kept)."""
        return len(self._sources)

    def _take(self, source: str | None, n: int) -> bool:
        with self._lock:
            mine = self._sources.get(source, 0)
            held = self.held + n
            if held > self.total or mine + n > self.per_source:
                self.refused += 1
                return False
            if held > self.total // 2 and mine + n > self.total // max(1, len(self._sources) + (mine == 0)):
                self.refused += 1  # under pressure, beyond an equal share: the others come first
                return False
            self.held = held
            self._sources[source] = mine + n
            return True

    def _give(self, source: str | None, n: int) -> None:
        with self._lock:
            self.held -= n
            left = self._sources.get(source, 0) - n
            if left > 0:
                self._sources[source] = left
            else:
                self._sources.pop(source, None)


class Account:
    """What one connection holds of a :class:`Budget`. Its holders ask :meth:`take` before they
    commit memory and :meth:`give` it back; :meth:`close` gives back whatever is left."""

    __slots__ = ("budget", "closed", "held", "source")

    def __init__(self, budget: Budget, source: str | None) -> None:
        self.budget = budget
        self.source = source
        self.held = 0
        self.closed = False

    def take(self, n: int) -> bool:
        """Hold ``n`` more octets (False: the budget refuses, nothing is held)."""
        if n <= 0:
            return True
        if self.closed or not self.budget._take(self.source, n):
            return False
        self.held += n
        return True

    def give(self, n: int) -> None:
        """``n`` octets held are let go (after :meth:`close`, nothing: all went then)."""
        n = min(n, self.held)
        if n > 0 and not self.closed:
            self.held -= n
            self.budget._give(self.source, n)

    def close(self) -> None:
        """The connection is gone: everything it held goes back to the budget."""
        if not self.closed:
            self.give(self.held)
            self.closed = True


_process: list[Budget] = []  # the process's budget, once made (a list: set in place, no global)
_process_lock = threading.Lock()


def process_budget() -> Budget:
    """The budget every server of this process shares unless given its own (made with the
    defaults on first use; :func:`set_process_budget` replaces it, e.g. from configuration)."""
    with _process_lock:
        if not _process:
            _process.append(Budget())
        return _process[0]


def set_process_budget(budget: Budget) -> None:
    """Make ``budget`` the one servers made from now on share (the command line's ``max_memory``)."""
    with _process_lock:
        _process[:] = [budget]
