"""The clock of one server connection: the deadlines that keep a peer from holding a slot for free.

Four deadlines, each a field of ``protocol.limits.Limits`` (which says the attack it stops):

    bind_timeout   the association is bound within N seconds of accept       one timer, fires once
                   (and its handshake finished, unless it has made calls)
    pdu_timeout    a PDU is whole within N seconds of its first octet         the watch, below
    idle_timeout   a whole PDU arrives, or a call runs, at least every N s    the watch, below
    write_timeout  with our write buffer full, the peer reads some of it      the watch, below
                   at least every N s

Expiry closes the connection (there is no PDU to answer) after telling the owner which deadline
it was (``on_expired``: the server counts and logs it).

The watch costs a read nothing but an addition (the protocol's ``received``, octets so far): one
timer per connection looks every ``period`` (a quarter of the shorter deadline) at how many octets
came since its last look and at how many the fragment being received still misses
(``Inbox.missing``). Octets arrive in order, so a fragment that missed ``m`` octets at the last
look is whole now if and only if ``m`` more arrived since: that tells a trickled fragment (still
the same one, however many octets trickled in) from a stream of fragments that are each whole in
time, without asking the clock or the association anything per read. Where what was missing is
not known exactly (a fragment's first 10 octets, before its frag_length; one begun since the last
look), the watch assumes progress: it never closes a connection by mistake, and a trickled fragment
is caught a look or two later. Hence the precision: a PDU deadline expires between N and
N + 2 periods after the first octet, an idle one between N and N + 2 periods after the last PDU.

While the server has stopped reading (its write buffer full: backpressure) the peer is not to
blame for octets that do not arrive, and the PDU and idle deadlines wait; the write deadline takes
over: the peer must read. Progress there is the transport's write buffer shrinking between looks,
or writing resumed since the last (``StreamProtocol.resumed``); a peer that reads nothing holds its
slot and its unwritten answers for at most N + 2 periods.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from ..protocol.framing import Inbox

__all__ = ["BIND_TIMEOUT", "IDLE_TIMEOUT", "PDU_TIMEOUT", "WRITE_TIMEOUT", "Deadlines", "Watched"]

BIND_TIMEOUT = "bind_timeout"
PDU_TIMEOUT = "pdu_timeout"
IDLE_TIMEOUT = "idle_timeout"
WRITE_TIMEOUT = "write_timeout"


class Watched(Protocol):
    """What the deadlines need of a connection (``stream.StreamProtocol`` has it)."""

    inbox: Inbox
    received: int  # octets received so far
    resumed: int  # times writing resumed after the write buffer was full

    @property
    def stopped_reading(self) -> bool:
        """The connection does not read now (backpressure), or is closing."""
        ...

    @property
    def write_blocked(self) -> int | None:
        """Octets in the transport's write buffer while it is full (writing paused), else None."""
        ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class Deadlines:
    """One connection's deadlines (see the module docstring); 0 turns one off.

    Args:
        conn: the connection.
        loop: its event loop (the clock).
        bind: seconds from now within which ``unbound()`` must have become false.
        pdu: seconds a fragment may stay partly received.
        idle: seconds without a whole PDU while ``busy()`` is false.
        write: seconds the write buffer may stay full without the peer reading any of it.
        unbound: the association is still waiting for its bind.
        busy: calls are running (work in progress is not idleness).
        on_expired: told the deadline's name (BIND_TIMEOUT, PDU_TIMEOUT, IDLE_TIMEOUT) before the
            connection is closed.
    """

    __slots__ = (
        "_bind",
        "_busy",
        "_conn",
        "_idle",
        "_loop",
        "_missing",
        "_on_expired",
        "_partial_at",
        "_pdu",
        "_period",
        "_progress_at",
        "_seen",
        "_unbound",
        "_watch",
        "_write",
        "_write_at",
        "_write_seen",
    )

    def __init__(
        self,
        conn: Watched,
        loop: asyncio.AbstractEventLoop,
        *,
        bind: float,
        pdu: float,
        idle: float,
        write: float = 0.0,
        unbound: Callable[[], bool],
        busy: Callable[[], bool],
        on_expired: Callable[[str], None],
    ) -> None:
        self._conn = conn
        self._loop = loop
        self._pdu = pdu
        self._idle = idle
        self._write = write
        self._unbound = unbound
        self._busy = busy
        self._on_expired = on_expired
        now = loop.time()
        self._progress_at = now  # the look that saw the last whole PDU (or a running call)
        self._partial_at = now  # the look that first saw the fragment now partly received
        self._seen = conn.received  # octets received at the last look
        self._missing = conn.inbox.missing  # what the fragment being received missed then
        self._write_at = now  # the look that last saw the peer read (or nothing waiting to go)
        self._write_seen: tuple[int | None, int] = (
            None,
            conn.resumed,
        )  # the full write buffer's size then, and resumes
        self._bind = loop.call_later(bind, self._bind_expired) if bind > 0 else None
        shortest = min((t for t in (pdu, idle, write) if t > 0), default=0.0)
        self._period = shortest / 4
        self._watch = loop.call_later(self._period, self._look) if shortest else None

    def cancel(self) -> None:
        """Stop the clock (the connection is gone)."""
        if self._bind is not None:
            self._bind.cancel()
            self._bind = None
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def _expire(self, kind: str) -> None:
        self.cancel()
        self._on_expired(kind)
        if kind == WRITE_TIMEOUT:
            self._conn.abort()  # a close would wait for the peer to read what is buffered
        else:
            self._conn.close()

    def _bind_expired(self) -> None:
        self._bind = None
        if self._unbound():
            self._expire(BIND_TIMEOUT)

    def _look(self) -> None:
        conn = self._conn
        now = self._loop.time()
        received = conn.received
        arrived = received - self._seen
        self._seen = received
        was_missing = self._missing
        missing = self._missing = conn.inbox.missing
        # A fragment was completed since the last look when at least what it missed has arrived
        # (in order: nothing else can come first); with nothing partly here then, any octet may
        # have been one. Where what was missing is a lower bound, this may see progress that was
        # not made: never the other way round.
        completed = arrived >= was_missing if was_missing else arrived > 0
        stopped = conn.stopped_reading
        if completed or stopped or self._busy():
            self._progress_at = now
        if completed or stopped:
            self._partial_at = now  # a new fragment, if any is partly here; or not ours to blame
        elif missing and self._pdu and now - self._partial_at >= self._pdu:
            self._expire(PDU_TIMEOUT)
            return
        if self._idle and now - self._progress_at >= self._idle:
            self._expire(IDLE_TIMEOUT)
            return
        if self._write:
            blocked = conn.write_blocked
            seen = (blocked, conn.resumed)
            before, resumes = self._write_seen
            self._write_seen = seen
            if blocked is None or seen[1] != resumes or (before is not None and blocked < before):
                self._write_at = now  # nothing waits on the peer, or it read some since the last look
            elif now - self._write_at >= self._write:
                self._expire(WRITE_TIMEOUT)
                return
        self._watch = self._loop.call_later(self._period, self._look)
