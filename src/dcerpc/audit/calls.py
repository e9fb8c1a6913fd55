"""Call events as numbers: the loop appends six integers per call to a list; the writer makes
the lines.

What a connection's calls of one operation, caller and outcome share is their **site**
(observer.Site), made once: its event's JSON line as a **form** (observer.call_template), octets
for ``%``: the line with every ``%`` doubled and a conversion where each call's own numbers go
(see :data:`Form`). A call is then five numbers and its site's slot, appended by the loop to the
writer's **open chunk** (:class:`CallChunks`, which both writers are):

    numbers     a list, CALL_NUMBERS ints per call, in the order its form takes them: the duration
                (ns), the call id, octets in, octets out, the answer's time (microseconds after
                the chunk's ``base``, the start of the wall clock's second the chunk began in:
                its @timestamp's microseconds as they are, one int for a turn's calls), the
                site's slot
    templates   the forms of the sites the chunk's calls name; a site's slot is its index here,
                given at the site's first call in the chunk (``site.chunk is not templates``: one
                test per call, the enrolment once per site and chunk)

So a call costs the loop one tuple and one list extension: no record object, no pickling of its
own (a shipped chunk's numbers are packed into octets by one ``struct.pack``, about half what
pickling the ints costs, and a third of what ``array('q').extend`` costs per call, measured with
callgrind), no wall clock per call (perf_counter_ns becomes wall-clock time with one offset,
``time_ns() - perf_counter_ns()``, taken when the chunk begins: a clock step in between moves a
chunk's stamps by at most ``_POLL``). The loop tells the writer whether a turn's time left the
chunk's second (``spilled``: a chunk begun late in a second, about one in twenty under load).

A chunk is **shipped** (one tuple, ``(None, second, templates, octets, spilled)``, queued like any other
event) when it holds ``CHUNK_CALLS`` calls, when another event is queued (so events keep their
order), at the writer's timer (``_POLL`` after the chunk's first call), and before a flush or a
reopen. The open chunk belongs to the loop that fills it: a flush from another thread asks that
loop to ship it (``call_soon_threadsafe``) rather than take it from under the loop's hands. Outside
a running loop each call is shipped at once (``limit``).

The writer's side (:func:`format_calls`, in the writer process or the writer thread) fills the
whole chunk in with one ``%`` of octets: the forms of its calls side by side, each with the text
of the chunk's second written in once (not a ``%s`` per call), and its numbers less the slots.
A chunk that did not spill is taken whole, the calls' times being their microseconds already;
one that did is cut into runs of one second each. The numbers are unpacked past the slots (pad
octets in the struct), and the microseconds are a plain ``%d`` in a chunk where each call's has
six digits (nine in ten: ``%06d`` costs three times as much, CPython making a str for it). The
format of a site's full chunk is kept for the next of the same second (hundreds a second under
load). That is C from end to end: under callgrind about 4,250 instructions an event (4,820 with
``%06d`` for every call and the slots deleted from a list; 6,180 with a ``%s`` per call for the
second, and the microseconds computed in the writer; 9,300 for one f-string per call: a ``%`` of
text, unlike one of octets, reads its form a character at a time).
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

from .fields import iso_second

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
"""When the call was answered (µs after the chunk's base, a wall-clock second's start): its index."""
SLOT: Final = 5
"""Its site's slot in the chunk: its index."""
CHUNK_CALLS: Final = 256
"""Calls per chunk at most (the writer's batch)."""
CALL: Final = struct.Struct(f"<{CALL_NUMBERS}q")
"""One call's numbers in a shipped chunk's octets."""
_FULL: Final = struct.Struct(f"<{CALL_NUMBERS * CHUNK_CALLS}q")
_LINE: Final = CALL_NUMBERS - 1
"""A call's numbers its line takes (all but its slot)."""

Form = bytes
"""A call event's JSON line (UTF-8) for ``%``: every ``%`` of its text doubled, and in its numbers'
places ``%d`` for the duration, the call id, the octets in and the octets out, then ``%s%06d`` for
the ``@timestamp``'s date and time to the second (with its dot: the writer writes it into the form
once a chunk) and its microseconds."""


class CallSite(Protocol):
    """What a chunk reads of a site (observer.Site is one)."""

    form: Form | None
    chunk: list[Form] | None  # the templates of the chunk it was last enrolled in
    slot: int  # its index there


class CallChunks:
    """A writer's open chunk of call events (see the module docstring). The observer calls
    :meth:`begin` when ``templates`` is empty, :meth:`enrol` when ``site.chunk is not templates``,
    appends to ``numbers`` (the time: µs after ``base``; ``spilled`` set when a time is not within
    the second that starts there), and calls :meth:`ship` when
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
        self.base = 0  # perf_counter_ns() at the start of the wall clock's second the chunk began in
        self.second = 0  # that second (since the epoch): its calls are answered base + at µs after it
        self.spilled = False  # a call of the open chunk was answered outside that second
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
        self.spilled = False
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
        chunk = (None, self.second, self.templates, octets, self.spilled)
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


def _stamped(form: Form, stamp: bytes, padded: bool) -> Form:
    """``form`` with its ``@timestamp``'s second written in (the ``%s`` before its microseconds:
    the last ``%s%06d`` of the form, whose end holds no text of a caller's), its microseconds
    ``%d`` unless ``padded`` (``%06d``, a conversion of three times the cost: CPython's padded
    ``%`` of octets makes a str first)."""
    at = form.rindex(b"%s%06d")
    return form[:at] + stamp + (b"%06d" if padded else b"%d") + form[at + 6 :]


_SHORT: Final = 100_000
"""Microseconds below this have fewer than six digits: only then is a ``%06d`` needed."""


def format_calls(chunk: tuple[Any, ...]) -> bytes:
    """A shipped chunk's call events, as JSON lines (UTF-8). Its calls are cut in runs of one
    second each, whose forms have that second's text written in: one run, taken whole, unless the
    loop saw the chunk's calls leave its second (``spilled``: the chunk spans a second, or calls
    answered on several loops)."""
    _, second, forms, octets, spilled = chunk
    count = len(octets) // CALL.size
    if spilled:
        return _runs(second, forms, octets, count)
    slots = _unpacker(_SLOTS, count).unpack(octets) if len(forms) > 1 else None  # each call's form's
    numbers = _unpacker(_LINES, count).unpack(octets)  # as the lines take them (the slots skipped)
    padded = min(numbers[AT::_LINE]) < _SHORT
    return _format(forms, slots, second, count, padded) % numbers


def _runs(second: int, forms: list[Form], octets: bytes, count: int) -> bytes:
    """:func:`format_calls` of a chunk that spilled: each call's second and microseconds into
    it, then runs of the same second."""
    every: list[int] = list(struct.unpack(f"<{len(octets) >> 3}q", octets))
    slots = every[SLOT::CALL_NUMBERS] if len(forms) > 1 else None
    answered = every[AT::CALL_NUMBERS]
    seconds = [second + at // 1_000_000 for at in answered]
    every[AT::CALL_NUMBERS] = [at % 1_000_000 for at in answered]
    del every[SLOT::CALL_NUMBERS]  # (its form is the slot's)
    out = []
    start = 0
    for end in range(1, count + 1):
        if end == count or seconds[end] != seconds[start]:
            out.append(
                _format(forms, slots and slots[start:end], seconds[start], end - start, True)
                % tuple(every[start * _LINE : end * _LINE])
            )
            start = end
    return b"".join(out)


_LINES: Final = f"{_LINE}q8x"
"""A call's numbers less its slot (pad octets in its place)."""
_SLOTS: Final = f"{_LINE * 8}xq"
"""A call's slot alone."""
_structs: dict[tuple[str, int], struct.Struct] = {}


def _unpacker(call: str, count: int) -> struct.Struct:
    """Unpacks ``count`` calls, each by ``call`` (:data:`_LINES`, :data:`_SLOTS`)."""
    found = _structs.get((call, count))
    if found is None:
        if len(_structs) >= 64:
            _structs.clear()
        found = _structs[call, count] = struct.Struct("<" + call * count)
    return found


_kept: list[tuple[Form, int, int, bool, bytes]] = [(b"", -1, 0, False, b"")]
"""The last format of one site's calls: its form, second, calls, padding (one tuple: threads swap
it whole)."""


def _format(forms: list[Form], slots: Sequence[int] | None, second: int, count: int, padded: bool) -> bytes:
    """The format of ``count`` calls answered in ``second``, each of its slot's form (``slots``
    None: all of the one form), their microseconds ``padded`` to six digits or not. One site's is
    kept: the next chunk of the same form, second, size and padding (hundreds a second under load)
    takes it as it is, rather than writing ``count`` forms again (4 % of the writer's
    instructions, callgrind)."""
    if slots is None:
        form = forms[0]
        kept = _kept[0]
        if kept[1] == second and kept[2] == count and kept[3] is padded and kept[0] == form:
            return kept[4]
        made = _stamped(form, _stamp(second), padded) * count
        _kept[0] = (form, second, count, padded, made)
        return made
    stamp = _stamp(second)
    stamped = [_stamped(f, stamp, padded) for f in forms]
    return b"".join(map(stamped.__getitem__, slots))


def _stamp(second: int) -> bytes:
    """The ``@timestamp`` of ``second`` (since the epoch) to its dot, as every event spells it."""
    return (iso_second(second) + ".").encode()
