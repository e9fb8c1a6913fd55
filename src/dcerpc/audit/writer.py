"""How an audit event becomes its JSON line (:func:`format_record`, used by the writer process of
process.py and by this module's thread), and the thread writer: a bounded queue the event loop
appends to, and a thread that formats and writes. The thread serves sinks that cannot be made again
in a process (a sink class of the caller's, a StdoutSink given a stream object); ours go to the
writer process, which shares no interpreter with the loop.

The loop's share of an event is one tuple: a formatter, the time (``time.time_ns()``) and what the
event names, as the loop already holds it (a peer's address tuple, a SyntaxId, a status number).
:meth:`Writer.put` appends it to a deque, or counts it in :attr:`Writer.dropped` when
``capacity`` events wait already: writing never blocks the loop, a slow disk or a stuck syslog
costs events, never a call's time. The thread wakes every ``_POLL`` seconds, or as soon as
``_WAKE`` events wait (the loop signals nothing for the others: waking a thread per event would
cost more than the event), calls each formatter for the event's object (ECS's nesting), and writes
the batch's JSON lines to every sink at once.

A sink that fails to write counts the failure (:attr:`Writer.errors`) and the thread goes on.
:meth:`Writer.reopen` asks the file sinks to reopen their files at the next batch (SIGHUP after
logrotate moved them).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Protocol, cast

from .calls import CallChunks, format_calls
from .fields import iso_timestamp

__all__ = ["ECS_VERSION", "Record", "Sink", "Writer", "nest"]

log = logging.getLogger("dcerpc.audit")

ECS_VERSION: Final = "8.11.0"
_POLL: Final = 0.05  # the longest an event waits to be written (when fewer than _WAKE wait)
_WAKE: Final = 256  # events waiting that wake the writer at once
_BATCH: Final = 512  # events formatted per write

Record = tuple[Any, ...]
"""(formatter, time_ns, *args): the formatter makes the event's object from the args. Or a shipped
chunk of call events, (None, second, forms, octets, calls) (calls.py)."""


class Sink(Protocol):
    """Where formatted events go: one call per batch of JSON lines (each ending in a newline), as
    UTF-8 octets (what a file, a pipe or a socket takes: no text layer between)."""

    def write(self, lines: bytes) -> None: ...

    def reopen(self) -> None: ...

    def close(self) -> None: ...


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"event.action": "bind"}`` -> ``{"event": {"action": "bind"}}``; None values left out."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if value is None:
            continue
        *path, last = key.split(".")
        where = out
        for part in path:
            where = where.setdefault(part, {})
        where[last] = value
    return out


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode
_ECS: Final = {"version": ECS_VERSION}


def format_record(record: Record) -> str:
    """One event (not a chunk of calls: :func:`format_lines`) as its JSON line (with the newline)."""
    event = cast(Callable[..., dict[str, Any]], record[0])(*record[2:])
    event["@timestamp"] = iso_timestamp(record[1])
    event["ecs"] = _ECS
    return _encode(event) + "\n"


def events_in(record: Record) -> int:
    """Events a queued record is: one, or a shipped chunk's calls."""
    return int(record[4]) if record[0] is None else 1


def format_lines(records: Iterable[Record]) -> tuple[list[bytes], int]:
    """The JSON lines of queued records (events and chunks of calls), UTF-8, and the events they
    were: a record that does not format (a formatter's bug) loses itself, not the batch (logged)."""
    lines: list[bytes] = []
    events = 0
    for record in records:
        events += events_in(record)
        try:
            if record[0] is None:
                lines.append(format_calls(record))  # (its calls' lines, in one)
            else:
                lines.append(format_record(record).encode())
        except Exception:
            log.exception("audit event %r does not format", record[0])
    return lines, events


class Writer(CallChunks):
    """Formats and writes queued events on a thread of its own (see the module docstring).

    Args:
        sinks: where every event goes.
        capacity: events that may wait; more are dropped and counted.
    """

    def __init__(self, sinks: Sequence[Sink], capacity: int = 65536) -> None:
        self.sinks = list(sinks)
        self.capacity = capacity
        self._handoff = capacity // 2  # events waiting from which put() hands the GIL to the writer
        self.dropped = 0  # events not queued: the queue was full
        self.written = 0  # events written (to every sink that took them)
        self.errors = 0  # batches a sink failed to write
        self._queue: collections.deque[Record] = collections.deque()
        self._queued = 0  # events queued so far (counted by the loop only)
        self._taken = 0  # of them, taken by the thread (counted by it only): no count shared
        self._timer: asyncio.TimerHandle | None = None  # ships the open chunk of calls
        self._init_chunks()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._reopen = False
        self._stop = False
        self._thread = threading.Thread(target=self._main, name="dcerpc-audit", daemon=True)
        self._thread.start()

    def _enqueue(self, record: Record, events: int) -> None:
        n = self._queued - self._taken
        if n + events > self.capacity:
            self.dropped += events
            return
        self._queue.append(record)
        self._queued += events
        if n < _WAKE <= n + events:
            self._wake.set()
        elif n >= self._handoff and n >> 8 != (n + events) >> 8:
            # half full: the writer thread is not getting the interpreter (a loop that never waits
            # on a socket keeps the GIL). Let it have it now, a switch interval's worth: not a wait
            # on the disk (a writer blocked in write() does not hold the GIL), so no call waits on I/O
            self._wake.set()
            time.sleep(0)

    def _arm(self) -> bool:
        if self._timer is not None:
            return True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        self._timer = loop.call_later(_POLL, self._tick)
        return True

    def _tick(self) -> None:
        self._timer = None
        self.ship()

    def reopen(self) -> None:
        """Reopen the sinks' files before the next batch (logrotate moved them)."""
        self.ship_open(time.monotonic() + 5.0)
        self._reopen = True
        self._wake.set()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued event is written (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        if not self.ship_open(deadline):
            return False
        while self._queue or not self._idle.is_set():
            self._wake.set()
            if time.monotonic() > deadline:
                return False
            self._idle.wait(0.01)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, stop the thread, close the sinks."""
        self.flush(timeout)
        self._stop = True
        self._wake.set()
        self._thread.join(timeout)
        for sink in self.sinks:
            sink.close()

    def _main(self) -> None:
        queue = self._queue
        while not self._stop:
            self._wake.wait(_POLL)
            self._wake.clear()
            if self._reopen:
                self._reopen = False
                self._each(lambda s: s.reopen())
            while queue:
                self._idle.clear()
                lines, events = format_lines(queue.popleft() for _ in range(min(len(queue), _BATCH)))
                self._taken += events  # out of the queue: room for more while the sinks write
                self._write(b"".join(lines))
                self.written += events
            self._idle.set()

    def _write(self, lines: bytes) -> None:
        for sink in self.sinks:
            try:
                sink.write(lines)
            except Exception:
                self.errors += 1
                log.exception("audit sink %r failed", sink)

    def _each(self, do: Callable[[Sink], None]) -> None:
        for sink in self.sinks:
            try:
                do(sink)
            except Exception:
                self.errors += 1
                log.exception("audit sink %r failed", sink)


def drain(records: Iterable[Record]) -> list[dict[str, Any]]:
    """The events ``records`` make, as objects (what the writer would write; for tests)."""
    return [json.loads(line) for line in b"".join(format_lines(records)[0]).splitlines()]
