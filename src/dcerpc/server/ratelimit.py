"""Log lines that a flood cannot multiply: at most a burst per kind per window, then one summary.

A client that sends ten thousand malformed PDUs a second must not make the server write ten thousand
log lines a second (the disk, the journal and whoever reads them pay for it, and the lines that
matter drown). Each kind of line (a violation kind, a refusal) gets ``burst`` lines per ``window``
seconds; what is held back is counted and said in one line when the next window opens.

    limiter = LogLimiter(log, burst=100, window=10.0)   # 100 lines per kind per 10 s at most
    limiter.warning("second_bind", "protocol violation %s from %s: %s", kind, peer, text)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["LogLimiter"]

_KINDS_MOST = 256  # kinds tracked at once: the kinds are ours (violations, refusals), not the peer's


class LogLimiter:
    """Rate-limits log lines per kind (see the module docstring)."""

    def __init__(
        self,
        log: logging.Logger,
        burst: int = 100,
        window: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.burst = burst
        self.window = window
        self._clock = clock
        self._windows: dict[str, tuple[float, int, int]] = {}  # kind -> (start, logged, held back)

    def warning(self, kind: str, message: str, *args: object) -> None:
        self._emit(logging.WARNING, kind, message, args)

    def info(self, kind: str, message: str, *args: object) -> None:
        self._emit(logging.INFO, kind, message, args)

    def error(self, kind: str, message: str, *args: object) -> None:
        self._emit(logging.ERROR, kind, message, args)

    def _emit(self, level: int, kind: str, message: str, args: tuple[object, ...]) -> None:
        if not self.log.isEnabledFor(level):
            return
        now = self._clock()
        start, logged, held = self._windows.get(kind, (now, 0, 0))
        if now - start >= self.window:
            if held:
                self.log.log(level, "%d more %s lines held back in %.0f s", held, kind, now - start)
            start, logged, held = now, 0, 0
        if logged < self.burst:
            self.log.log(level, message, *args)
            logged += 1
        else:
            held += 1
        if kind not in self._windows and len(self._windows) >= _KINDS_MOST:
            self._windows.clear()
        self._windows[kind] = (start, logged, held)
