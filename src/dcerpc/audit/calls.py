"""Call events as numbers: the loop appends a few integers per call to a list; the writer makes
the lines.

What a connection's calls of one operation, caller and outcome share is their **site**
(observer.Site), made once: its event's JSON line as a **form** (observer.call_template), octets
for ``%``: the line with every ``%`` doubled and a conversion where each call's own numbers go
(see :data:`Form`). The loop appends a turn's answers to the writer's **open chunk**
(:class:`CallChunks`, which both writers are) as **runs**: the calls of one read, site and octet
counts that one turn answered share everything but their call ids (the read's clock, the turn's
clock, the form, the octets in and out), so a run is those numbers once and the ids after:

    numbers     a list of ints, run after run: its number of calls, its site's slot, their
                duration (ns), the first call's id, the octets in, the octets out, the answer's
                time in µs after the chunk's ``base`` (the start of the wall clock's second the
                chunk began in: its @timestamp's microseconds as they are, or past them for a
                later second), then the ids of its other calls (:data:`RUN` numbers for a run of
                one call; from the duration on, the order its form takes them)
    templates   the forms of the sites the chunk's runs name; a site's slot is its index here,
                given at the site's first run in the chunk (``site.chunk is not templates``: one
                test per run, the enrolment once per site and chunk)
    calls       the chunk's calls so far

So a call costs the loop the four tests that tell whether it continues the run before it, and one
``append`` of its id: no record object, no tuple, no clock of its own (one per read and one per
turn; perf_counter_ns becomes wall-clock time with one offset, ``time_ns() - perf_counter_ns()``,
taken when the chunk begins: a clock step in between moves a chunk's stamps by at most ``_POLL``).
At 64 calls in flight on one connection a run is some 25 calls; at one in flight, one.

A chunk is **shipped** (one tuple, ``(None, second, templates, octets, calls)``, its numbers packed
into octets by one ``struct.pack``, and queued like any other event) when it holds ``CHUNK_CALLS``
calls, when another event is queued (so events keep their order), at the writer's timer (``_POLL``
after the chunk's first call), before a flush or a reopen, and when a turn is answered past the
chunk's second (the observer's one test a turn: a chunk's times are then within its second, but for
calls answered on several loops, which the writer takes one by one). The open chunk belongs to the loop
that fills it: a flush from another thread asks that loop to ship it (``call_soon_threadsafe``)
rather than take it from under the loop's hands. Outside a running loop each turn is shipped at
once (``limit``). The metrics count a chunk's calls as it is shipped, a run at a time (``fold``).

The writer's side (:func:`format_calls`, in the writer process or the writer thread) is one ``%``
for the chunk, and one more when it has runs of several calls. A run of one call's numbers, past
its count and slot, are its form's in order: such runs are their forms side by side, the text of
the chunk's second written in once, their numbers unpacked as ``%`` takes them. A longer run's
form has its shared numbers written in (one ``%`` for all such runs' forms), is repeated for its
calls and leaves their ids to the chunk's ``%``. Measured against the layout before runs (six
numbers a call, the chunk's five numbers a call in one ``%``): at runs of 25 calls (64 in flight
on one connection) formatting takes 111-122 ns an event instead of 212-267, the writer process
3,063 instructions an event instead of about 4,730 (callgrind, benchmarks/audit_writer.py), and
the loop 1,427 fewer a call (no tuple of six numbers a call, a fifth as many numbers packed, the
metrics a run at a time). A run of one call costs about what a call did (5,515 instructions an
event in the writer; the loop 1,557 more a call at one in flight, 0.8% of the call); runs of two
to four are the dear case (295-518 ns an event formatted, against about 220; 7,363 instructions
an event at three: each run's Python, some 0.5 us, is shared by few calls).
"""

from __future__ import annotations

import asyncio
import re
import struct
import threading
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

from .fields import iso_second

__all__ = [
    "AT",
    "CALL_ID",
    "CHUNK_CALLS",
    "COUNT",
    "DURATION",
    "RUN",
    "SLOT",
    "CallChunks",
    "CallSite",
    "Form",
    "format_calls",
]

COUNT: Final = 0
"""How many calls a run in a chunk is: the index of that number among the run's."""
SLOT: Final = 1
"""Their site's slot in the chunk: its index."""
DURATION: Final = 2
"""Their duration (ns): its index. From here on, a run's numbers are its form's, in order."""
CALL_ID: Final = 3
"""The first call's id: its index (the others' follow the run's numbers)."""
AT: Final = 6
"""When they were answered (µs after the chunk's base, a wall-clock second's start): its index
(after the octets in and out)."""
RUN: Final = 7
"""Numbers a run of one call is; one of ``n`` calls, ``RUN + n - 1``."""
CHUNK_CALLS: Final = 256
"""Calls per chunk at most (the writer's batch)."""

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
    appends runs to ``numbers`` (the time: µs after ``base``), adds their calls to ``calls``, and
    calls :meth:`ship` when ``calls >= limit``; every other event is :meth:`put`. A writer
    (process.ProcessWriter, writer.Writer) defines ``_enqueue`` (an event, or a shipped chunk, and
    the events it is) and ``_arm`` (its timer on the running loop; False when there is none)."""

    templates: list[Form]
    numbers: list[int]
    calls: int
    limit: int
    fold: Callable[[list[Any], list[int], int], None] | None
    """Told each chunk's sites, numbers and calls as it is shipped (the observer's metrics, counted
    from the chunk rather than per call)."""

    def _init_chunks(self) -> None:
        self.templates = []
        self.numbers = []
        self.calls = 0
        self.sites: list[CallSite] = []  # the open chunk's sites, by slot
        self.fold = None
        self.limit = CHUNK_CALLS
        self.base = 0  # perf_counter_ns() at the start of the wall clock's second the chunk began in
        self.second = 0  # that second (since the epoch): its calls are answered base + at µs after it
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
        """Open a chunk at ``now`` (perf_counter_ns): the caller saw ``templates`` empty. Its
        ``base`` is the perf_counter_ns() of the start of the wall clock's second ``now`` is in, so
        that a call's time (µs after ``base``) is its @timestamp's microseconds. Arms the timer
        that ships it, when on a loop."""
        offset = time.time_ns() - time.perf_counter_ns()  # the wall clock less perf_counter
        self.second = second = (now + offset) // 1_000_000_000
        self.base = second * 1_000_000_000 - offset
        if not self.templates:
            if self._arm():
                self.limit = CHUNK_CALLS
                self._filler = (asyncio.get_running_loop(), threading.get_ident())
            else:
                self.limit = 1  # no loop to ship it later: each turn's calls go at once
                self._filler = None

    def enrol(self, site: CallSite) -> None:
        """Give ``site`` its slot in the open chunk (its first run there, after :meth:`begin`)."""
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
        if self.fold is not None:
            self.fold(self.sites, numbers, self.calls)
        calls = self.calls
        chunk = (None, self.second, self.templates, _unpacker("q", len(numbers)).pack(*numbers), calls)
        self.templates = []
        self.numbers = []
        self.calls = 0
        self.sites = []
        self._enqueue(chunk, calls)

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
    """A shipped chunk's call events, as JSON lines (UTF-8), with one ``%`` of the chunk's forms
    (and one more for its runs of several calls, if any): the forms of its runs of one call side
    by side, their numbers as they are in the chunk (:func:`_singles`); those of the longer runs
    each made once with the run's numbers written in, repeated for its calls, and
    only their ids left to fill in."""
    _, second, forms, octets, calls = chunk
    if len(octets) == calls * RUN * 8:  # every run one call (no two calls of a read in a turn)
        alone = _singles(second, forms, octets, 0, calls)
        if alone is not None:
            lines: bytes = alone[0] % alone[1]
            return lines
    numbers = _unpacker("q", len(octets) >> 3).unpack(octets)
    pieces: list[bytes] = []  # the chunk's format, in parts
    values: list[int] = []  # what it takes
    runs: list[tuple[int, int]] = []  # the longer runs: their part's index, their calls
    heads: list[Form] = []  # their forms, to have their numbers written in
    numbered: list[Any] = []  # those numbers
    stamp = _stamp(second)
    end = len(numbers)
    at = 0
    apart = 0  # runs of one call before this are taken one by one (their second is not the chunk's)
    while at < end:
        count = numbers[at]
        if count == 1 and at >= apart:
            start = at
            at += RUN
            while at < end and numbers[at] == 1:
                at += RUN
            alone = _singles(second, forms, octets, start, (at - start) // RUN)
            if alone is not None:
                pieces.append(alone[0])
                values += alone[1]
                continue
            apart, at = at, start  # one of them outside the chunk's second: each as a run
        _, slot, duration, call_id, received, sent, answered = numbers[at : at + RUN]
        runs.append((len(pieces), count))
        pieces.append(b"")
        form = forms[slot]
        heads.append(_repeats.get(form) or _repeat(form))
        if 0 <= answered < 1_000_000:
            numbered += (duration, received, sent, stamp, answered)
        else:  # a later second's (or an earlier one's), past the chunk's
            numbered += (
                duration,
                received,
                sent,
                _stamp(second + answered // 1_000_000),
                answered % 1_000_000,
            )
        values.append(call_id)
        values += numbers[at + RUN : at + RUN + count - 1]
        at += RUN + count - 1
    if runs:
        # each a line but its call id, one after the other: a line ends at its newline, and none
        # is in its text (JSON escapes a newline and a carriage return)
        made = (b"".join(heads) % tuple(numbered)).splitlines(keepends=True)
        for (part, count), line in zip(runs, made, strict=True):
            pieces[part] = line * count
    lines = b"".join(pieces) % tuple(values)
    return lines


def _singles(
    second: int, forms: list[Form], octets: bytes, start: int, count: int
) -> tuple[Form, Any] | None:
    """The format and the numbers of ``count`` runs of one call each, from index ``start`` of a
    chunk's numbers; None when one was answered outside the chunk's second (a chunk that spans
    one, or calls answered on several loops). A run's numbers from its duration on are its form's,
    in order: their octets unpack, past each run's count and slot, as ``%`` takes them. Their
    forms with the second's text written in, side by side; their microseconds ``%d`` unless one
    has fewer than six digits (``%06d`` for all then: CPython's padded ``%`` of octets makes a
    str first, three times the cost)."""
    line = _unpacker(_LINE, count).unpack_from(octets, start << 3)
    answered = line[_LINE_AT::_SINGLE]
    first = min(answered)
    if first < 0 or max(answered) >= 1_000_000:
        return None
    padded = first < 100_000
    stamp = _stamp(second)
    if len(forms) == 1:
        return _stamped(forms[0], stamp, padded) * count, line
    stamped = [_stamped(form, stamp, padded) for form in forms]
    slots = _unpacker(_SLOT, count).unpack_from(octets, start << 3)
    return b"".join(map(stamped.__getitem__, slots)), line


_SINGLE: Final = RUN - DURATION
"""Numbers of a run of one call its line takes (its count and slot skipped)."""
_LINE: Final = f"{DURATION * 8}x{_SINGLE}q"
"""A run of one call's numbers, as its line takes them."""
_LINE_AT: Final = AT - DURATION
_SLOT: Final = f"{SLOT * 8}xq{(RUN - SLOT - 1) * 8}x"
"""A run of one call's slot alone."""
_structs: dict[tuple[str, int], struct.Struct] = {}


def _unpacker(each: str, count: int) -> struct.Struct:
    """Packs or unpacks ``count`` times ``each`` (a few sizes recur: kept, bounded)."""
    found = _structs.get((each, count))
    if found is None:
        if len(_structs) >= 256:
            _structs.clear()
        found = _structs[each, count] = struct.Struct("<" + each * count)
    return found


def _stamped(form: Form, stamp: bytes, padded: bool) -> Form:
    """``form`` with its ``@timestamp``'s second written in (the ``%s`` before its microseconds:
    the last ``%s%06d`` of the form, whose end holds no text of a caller's), its microseconds
    ``%d`` unless ``padded``."""
    at = form.rindex(b"%s%06d")
    return form[:at] + stamp + (b"%06d" if padded else b"%d") + form[at + 6 :]


_repeats: dict[Form, Form] = {}


def _repeat(form: Form) -> Form:
    """``form`` for a run: its numbers but the call id converted by a first ``%`` (the run's),
    the call id's left for a second (each call's); the ``%`` of its text doubled once more, to be
    one after both."""
    found = _repeats.get(form)
    if found is None:
        if len(_repeats) >= 1024:
            _repeats.clear()
        pieces = _CONVERSION.split(form)  # text, conversion, text, ...: the call id's is the 2nd %d
        assert pieces[1::2].count(b"%d") == 4 and pieces[3] == b"%d"
        pieces[3] = b"%%d"
        found = _repeats[form] = b"".join(b"%%%%" if p == b"%%" else p for p in pieces)
    return found


_CONVERSION: Final = re.compile(rb"(%%|%d|%s|%06d)")
"""What ``%`` reads in a form (Form): a ``%`` of its text, doubled, or a conversion."""


def _stamp(second: int) -> bytes:
    """The ``@timestamp`` of ``second`` (since the epoch) to its dot, as every event spells it."""
    return (iso_second(second) + ".").encode()
