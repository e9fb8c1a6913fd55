"""Call events as numbers: the loop appends six integers per call to a list; the writer makes
the lines.

What a connection's calls of one operation, caller and outcome share is their **site**
(observer.Site), made once: its event's JSON line as a **form** (observer.call_template), octets
for ``%``: the line with every ``%`` doubled and a conversion where each call's own numbers go
(see :data:`Form`). A call is then five numbers and its site's slot, appended by the loop to the
writer's **open chunk** (:class:`CallChunks`, which both writers are):

    numbers     a list, CALL_NUMBERS ints per call, in the order its form takes them: the duration
                (ns), the call id, octets in, octets out, the answer's time (perf_counter_ns less
                the chunk's ``base``, when it began: a small int, which struct packs in a fraction
                of a large one's cost), the site's slot
    templates   the forms of the sites the chunk's calls name; a site's slot is its index here,
                given at the site's first call in the chunk (``site.chunk is not templates``: one
                test per call, the enrolment once per site and chunk)

So a call costs the loop one tuple and one list extension: no record object, no pickling of its
own (a shipped chunk's numbers are packed into octets by one ``struct.pack``, about half what
pickling the ints costs, and a third of what ``array('q').extend`` costs per call, measured with
callgrind), no wall clock (the answer's perf_counter_ns becomes wall-clock time with one offset,
``time_ns() - perf_counter_ns()``, taken when the chunk is shipped: a clock step in between moves
a chunk's stamps by at most ``_POLL``).

A chunk is **shipped** (one tuple, ``(None, offset, templates, octets)``, queued like any other
event) when it holds ``CHUNK_CALLS`` calls, when another event is queued (so events keep their
order), at the writer's timer (``_POLL`` after the chunk's first call), and before a flush or a
reopen. The open chunk belongs to the loop that fills it: a flush from another thread asks that
loop to ship it (``call_soon_threadsafe``) rather than take it from under the loop's hands. Outside
a running loop each call is shipped at once (``limit``).

The writer's side (:func:`format_calls`, in the writer process or the writer thread) fills the
whole chunk in with one ``%`` of octets: the forms of its calls side by side, and its numbers with
each call's time and slot replaced by its ``@timestamp``'s second and microseconds. That is C
from end to end: under callgrind 6,500 instructions an event, against 9,300 for one f-string per
call (a ``%`` of text, unlike one of octets, reads its form a character at a time: slower still).
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, Protocol

__all__ = [
    "AT",
    "CALL_NUMBERS",
    "CHUNK_CALLS",
    "DURATION",
    "SLOT",
    "CallChunks",
    "CallSite",
    "Form",
    "format_calls",
]

CALL_NUMBERS: Final = 6
"""Numbers per call in a chunk: duration, call id, octets in, octets out, answered, slot."""
DURATION: Final = 0
"""A call's duration (ns): its index among its numbers."""
AT: Final = 4
"""When the call was answered (perf_counter_ns less the chunk's base): its index."""
SLOT: Final = 5
"""Its site's slot in the chunk: its index."""
CHUNK_CALLS: Final = 256
"""Calls per chunk at most (the writer's batch)."""
CALL: Final = struct.Struct(f"<{CALL_NUMBERS}q")
"""One call's numbers in a shipped chunk's octets."""
_FULL: Final = struct.Struct(f"<{CALL_NUMBERS * CHUNK_CALLS}q")

Form = bytes
"""A call event's JSON line (UTF-8) for ``%``: every ``%`` of its text doubled, and in its numbers'
places ``%d`` for the duration, the call id, the octets in and the octets out, then ``%s%06d`` for
the ``@timestamp``'s date and time to the second (with its dot) and its microseconds."""


class CallSite(Protocol):
    """What a chunk reads of a site (observer.Site is one)."""

    form: Form | None
    chunk: list[Form] | None  # the templates of the chunk it was last enrolled in
    slot: int  # its index there


class CallChunks:
    """A writer's open chunk of call events (see the module docstring). The observer calls
    :meth:`begin` when ``templates`` is empty, :meth:`enrol` when ``site.chunk is not templates``,
    appends to ``numbers`` (the time less ``base``), and calls :meth:`ship` when
    ``len(numbers) >= limit``; every other event is :meth:`put`. A writer (process.ProcessWriter,
    writer.Writer) defines ``_enqueue`` (an event, or a shipped chunk, and the events it is) and
    ``_arm`` (its timer on the running loop; False when there is none)."""

    templates: list[Form]
    numbers: list[int]
    limit: int
    fold: Callable[[list[Any], list[int]], None] | None
    """Told each chunk's sites and numbers as it is shipped (the observer's metrics, counted from
    the chunk rather than per call)."""

    def _init_chunks(self) -> None:
        self.templates = []
        self.numbers = []
        self.sites: list[CallSite] = []  # the open chunk's sites, by slot
        self.fold = None
        self.limit = CHUNK_CALLS * CALL_NUMBERS
        self.base = 0  # perf_counter_ns() when the open chunk began: its calls' times are after it
        self._filler: tuple[asyncio.AbstractEventLoop, int] | None = None  # its loop, and thread

    def _enqueue(self, chunk: tuple[Any, ...], calls: int) -> None:
        raise NotImplementedError

    def put(self, record: tuple[Any, ...]) -> None:
        """Queue one event other than a call (the loop's call: never blocks; dropped and counted
        when the writer's capacity waits), after the open chunk's calls: events keep their order."""
        if self.numbers:
            self.ship()
        self._enqueue(record, 1)

    def _arm(self) -> bool:
        raise NotImplementedError

    def begin(self, now: int) -> None:
        """Open a chunk at ``now`` (perf_counter_ns, its ``base``): the caller saw ``templates``
        empty. Arms the timer that ships it, when on a loop."""
        self.base = now
        if not self.templates:
            if self._arm():
                self.limit = CHUNK_CALLS * CALL_NUMBERS
                self._filler = (asyncio.get_running_loop(), threading.get_ident())
            else:
                self.limit = CALL_NUMBERS  # no loop to ship it later: each call goes at once
                self._filler = None

    def enrol(self, site: CallSite) -> None:
        """Give ``site`` its slot in the open chunk (its first call there, after :meth:`begin`)."""
        templates = self.templates
        site.chunk = templates
        site.slot = len(templates)
        assert site.form is not None
        templates.append(site.form)
        self.sites.append(site)

    def ship(self) -> None:
        """Queue the open chunk (the loop's call; see :meth:`ship_open` from elsewhere)."""
        numbers = self.numbers
        if not numbers:
            return
        n = len(numbers)
        if self.fold is not None:
            self.fold(self.sites, numbers)
        octets = _FULL.pack(*numbers) if n == _FULL.size >> 3 else struct.pack(f"<{n}q", *numbers)
        chunk = (None, time.time_ns() - time.perf_counter_ns() + self.base, self.templates, octets)
        self.templates = []
        self.numbers = []
        self.sites = []
        self._enqueue(chunk, n // CALL_NUMBERS)

    def ship_open(self, deadline: float) -> bool:
        """Ship the open chunk from any thread: here when on its loop's thread or when that loop
        is not running, else by the loop (waited for until ``deadline``, time.monotonic())."""
        filler = self._filler
        if not self.numbers:
            return True
        if filler is None or filler[1] == threading.get_ident() or not filler[0].is_running():
            self.ship()
            return True
        done = threading.Event()

        def ship() -> None:
            self.ship()
            done.set()

        try:
            filler[0].call_soon_threadsafe(ship)
        except RuntimeError:  # the loop is closed: nobody fills the chunk any more
            self.ship()
            return True
        return done.wait(max(0.0, deadline - time.monotonic()))


def format_calls(chunk: tuple[Any, ...]) -> bytes:
    """A shipped chunk's call events, as JSON lines (UTF-8). Its calls are cut in runs of one
    second each (one run, found by C's min and max, unless the chunk spans a second, or its calls'
    times go back: calls answered on several loops), whose ``@timestamp`` shares the text of that
    second."""
    _, offset, forms, octets = chunk
    numbers: list[Any] = list(struct.unpack(f"<{len(octets) >> 3}q", octets))
    answered = numbers[AT::CALL_NUMBERS]
    slots = numbers[SLOT::CALL_NUMBERS]
    count = len(slots)
    start = 0
    while start < count:
        second = (answered[start] + offset) // 1_000_000_000  # wall clock
        shift = offset - second * 1_000_000_000  # at + shift: ns into that second
        micros = [(at + shift) // 1000 for at in answered[start:]]
        if min(micros) >= 0 and max(micros) < 1_000_000:
            end = count
        else:  # (micros[0] is in the run: one call past it is not)
            end = start + next(i for i, us in enumerate(micros) if not 0 <= us < 1_000_000)
            del micros[end - start :]
        stamp = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.").encode()
        numbers[start * CALL_NUMBERS + AT : end * CALL_NUMBERS : CALL_NUMBERS] = [stamp] * (end - start)
        numbers[start * CALL_NUMBERS + SLOT : end * CALL_NUMBERS : CALL_NUMBERS] = micros
        start = end
    form = forms[0] * count if len(forms) == 1 else b"".join(map(forms.__getitem__, slots))
    return form % tuple(numbers)
