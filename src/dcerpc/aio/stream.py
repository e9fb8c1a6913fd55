"""The asyncio end of one stream connection, for either role: octets in, octets out, nothing else.

An association (``protocol.server.ServerAssociation`` or ``protocol.client.ClientAssociation``)
decides everything; this class only moves its octets, as asyncio's BufferedProtocol:

    transport reads into     assoc.inbox.get_buffer()     (bound once: no Python call of ours per read)
    buffer_updated(n)   ->   assoc.buffer_updated(n)      the association cuts fragments, makes events
                        ->   on_events()                  the owner (server dispatch, client
                                                          connection) takes the events
                        ->   flush()                      what the owner answered meanwhile: one write
    flush()                  outbox.take(FLUSH_BUDGET)    a long answer goes a budget per loop turn
    pause_writing()          stop making fragments (and, as a server, stop reading new requests)
    assoc.backlog            the association left whole PDUs for later (Limits.pdus_per_turn):
                             reads stop, the rest is handled a turn of the loop at a time
                             (assoc.take_backlog), then reads resume: round-robin fairness
    resume_writing()         go on
    close_gracefully()       our last octets, then FIN, then discard input for a moment
    set_deadlines()          bind, whole-PDU and idle deadlines (deadlines.py: one timer looks at
                             ``received`` and the inbox when it fires; a read only counts octets)

The owner attaches itself with :meth:`attach` (an association, what to call on events, what to call
when the connection is lost). Everything that knows what a PDU or a call is lives in the owner.
"""

from __future__ import annotations

import asyncio
import fcntl
import sys
import termios
from collections.abc import Callable
from typing import Protocol, cast

from ..protocol.framing import Inbox
from ..protocol.outbox import FLUSH_BUDGET, Outbox
from .deadlines import Deadlines

__all__ = ["Association", "StreamProtocol"]


class Association(Protocol):
    """What a stream protocol needs of an association (both roles have it)."""

    inbox: Inbox
    outbox: Outbox

    backlog: bool

    def buffer_updated(self, n: int) -> None: ...

    def take_backlog(self) -> None: ...

    def connection_lost(self) -> None: ...


def _nothing() -> None:
    pass


class StreamProtocol(asyncio.BufferedProtocol):
    """One stream connection's octets (see the module docstring).

    Attributes:
        transport: the asyncio transport, once connected (None before).
        reading: True while the events of a read are being handled; what is answered meanwhile
            leaves in one write after it (an owner answering then should not :meth:`flush`).
        loop: the transport's event loop, once connected.
    """

    pause_reading_when_full = False
    """Whether a full write buffer stops reads too (a server's new requests make new answers)."""

    def __init__(self, inbox: Inbox) -> None:
        self.transport: asyncio.Transport | None = None
        # the transport's, set by connection_made (typed as always there: read on every call, where
        # a cast would cost a Python call)
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.inbox = inbox
        self.assoc: Association | None = None
        self.on_events: Callable[[], None] = _nothing
        self.on_lost: Callable[[Exception | None], None] = _ignore_loss
        self.reading = False
        self._paused = False  # the transport's buffer is full: make no more fragments yet
        self._more = False  # a flush is scheduled for the next turn of the loop
        self._draining = False  # closing: whatever still arrives is discarded
        self._held = False  # reads held back for a while (hold): the owner paces the peer
        self._behind = False  # reads stopped while the association's backlog is handled
        self.received = 0  # octets read so far (what the deadlines look at, when their timer fires)
        # octets written while ``counting`` (an observed connection's close event tells them). Others
        # pay one test a write: counting every connection's writes cost a plain call some 1,470
        # instructions at one in flight (client and server, inproc.py --callgrind), and the wrapper
        # of the transport that counted them before cost each of its attributes a __getattr__ hook
        self.counting = False
        self.sent = 0
        self.resumed = 0  # times writing resumed after pause_writing (the write deadline's progress)
        self.deadlines: Deadlines | None = None
        # A transport takes get_buffer from its protocol once (uvloop) or per read (asyncio): bound
        # to the inbox's own, each read costs a Python call fewer. Until an association is
        # attached, and once draining, buffer_updated ignores what lands there.
        self.get_buffer = inbox.get_buffer  # type: ignore[method-assign]

    def attach(
        self,
        assoc: Association,
        on_events: Callable[[], None],
        on_lost: Callable[[Exception | None], None],
    ) -> None:
        """Give the connection its owner: reads go to ``assoc`` (whose inbox must be this
        protocol's), ``on_events`` takes its events after each read, ``on_lost`` hears of the end."""
        assert assoc.inbox is self.inbox
        self.assoc = assoc
        self.on_events = on_events
        self.on_lost = on_lost

    # asyncio.BufferedProtocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they are transports
        self.transport = cast(asyncio.Transport, transport)
        # asking asyncio for the running loop costs a getpid() system call per ask on Python 3.11
        self.loop = asyncio.get_running_loop()

    def buffer_updated(self, nbytes: int) -> None:
        assoc = self.assoc
        if assoc is None or self._draining:
            return
        self.received += nbytes
        assoc.buffer_updated(nbytes)
        self.reading = True
        try:
            self.on_events()
        finally:
            self.reading = False
        if assoc.outbox:
            self.flush()
        if assoc.backlog:
            self._fall_behind()

    # turns: a connection that sent more than a turn's worth ------------------------------------------

    def _fall_behind(self) -> None:
        """The association left whole PDUs for a later turn (Limits.pdus_per_turn): read nothing
        more until they are handled, a turn of the loop at a time, the other connections' reads
        between (round-robin)."""
        t = self.transport
        if t is None or t.is_closing():
            return
        if not self._behind:
            self._behind = True
            t.pause_reading()
        if self._may_read():
            self.loop.call_soon(self._catch_up)
        # else: resume_writing or the end of a hold calls _catch_up

    def _may_read(self) -> bool:
        return not self._held and not (self._paused and self.pause_reading_when_full)

    def _catch_up(self) -> None:
        assoc = self.assoc
        t = self.transport
        if assoc is None or self._draining or t is None or t.is_closing() or not self._may_read():
            return
        if not self._behind:  # already caught up (resumed twice in one turn)
            return
        if assoc.backlog:
            assoc.take_backlog()
            self.reading = True
            try:
                self.on_events()
            finally:
                self.reading = False
            if assoc.outbox:
                self.flush()
        if assoc.backlog and self.assoc is not None:
            if self._may_read():
                self.loop.call_soon(self._catch_up)
            return
        self._behind = False
        if self.assoc is not None and not t.is_closing() and self._may_read():
            t.resume_reading()

    def _resume(self) -> None:
        """Reading may go on (a hold ended, the write buffer drained): the backlog first."""
        t = self.transport
        if t is None or t.is_closing():
            return
        if self._behind:
            self.loop.call_soon(self._catch_up)
        else:
            t.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.deadlines is not None:
            self.deadlines.cancel()
            self.deadlines = None
        if self.assoc is not None:
            self.assoc.connection_lost()
        on_lost = self.on_lost
        # the owner and this protocol refer to each other (bound methods both ways): let go now, so
        # that what the connection held goes when the last reference does, not at the next cycle
        # collection, which a quiet server may not run for a long time
        self.assoc = None
        self.on_events = _nothing
        self.on_lost = _ignore_loss
        on_lost(exc)

    def pause_writing(self) -> None:
        self._paused = True
        if self.pause_reading_when_full and self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        self.resumed += 1
        t = self.transport
        if t is not None and not t.is_closing():
            if self.pause_reading_when_full and not self._held:
                self._resume()
            self.flush()

    # writing --------------------------------------------------------------------------------------

    def flush(self, everything: bool = False) -> None:
        """Write what the association has; a long call goes out a budget per loop turn (the rest
        on the next turns), so the peer verifies its first fragments while the later ones are made."""
        assoc = self.assoc
        if assoc is None:
            return
        outbox = assoc.outbox
        if not outbox:
            return
        t = self.transport
        if t is None or t.is_closing():
            return
        data = outbox.take(None if everything else FLUSH_BUDGET)
        if isinstance(data, bytes):
            t.write(data)
            if self.counting:
                self.sent += len(data)
        else:
            t.writelines(data)
            if self.counting:
                self.sent += sum(map(len, data))
        if outbox and not self._more and not self._paused:
            self._more = True
            self.loop.call_soon(self._flush_more)

    def flush_soon(self) -> None:
        """Flush at the next turn of the loop (what else is answered or asked in this turn goes
        in the same write)."""
        if not self._more:
            self._more = True
            (self.loop or asyncio.get_running_loop()).call_soon(self._flush_more)

    def _flush_more(self) -> None:
        self._more = False
        self.flush()

    # closing --------------------------------------------------------------------------------------

    def close_gracefully(self) -> None:
        """Send our last octets and a FIN, then discard what the peer still sends for a moment.

        Closing a socket with unread input makes the kernel send RST, which can destroy the bind_nak
        or fault just written before the peer reads it; half-closing first lets it arrive.
        """
        self.flush(everything=True)
        t = self.transport
        if t is None or t.is_closing():
            return
        if t.can_write_eof():
            t.write_eof()
            self._draining = True
            self.loop.call_later(1.0, t.close)
        else:
            t.close()

    def close(self) -> None:
        """Close now."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        """Close now, discarding what is not yet written (a refused connection)."""
        if self.transport is not None:
            self.transport.abort()

    def hold(self, seconds: float) -> None:
        """Read nothing more for ``seconds`` (pacing a peer that sends faster than it may): the
        peer's own window fills and it waits. Holding again while held extends nothing."""
        t = self.transport
        if self._held or t is None or t.is_closing():
            return
        self._held = True
        t.pause_reading()
        self.loop.call_later(seconds, self._release)

    def _release(self) -> None:
        self._held = False
        t = self.transport
        if t is not None and not t.is_closing() and not (self._paused and self.pause_reading_when_full):
            self._resume()

    # deadlines ------------------------------------------------------------------------------------

    @property
    def stopped_reading(self) -> bool:
        """Reads are paused (backpressure, a backlog) or the connection is closing: octets that do
        not arrive now are not the peer's doing."""
        t = self.transport
        if t is None or t.is_closing() or self._draining or self._held or self._behind:
            return True
        return self._paused and self.pause_reading_when_full

    @property
    def write_blocked(self) -> int | None:
        """While the transport's write buffer is full (else None): the octets the peer has yet to
        take, ours and the kernel's (its send queue, SIOCOUTQ: what a peer that reads frees first,
        so its reading shows even while the transport's own buffer waits for room)."""
        t = self.transport
        if not self._paused or t is None or t.is_closing():
            return None
        return t.get_write_buffer_size() + _kernel_queue(t)

    def set_deadlines(
        self,
        *,
        bind: float,
        pdu: float,
        idle: float,
        write: float = 0.0,
        unbound: Callable[[], bool],
        busy: Callable[[], bool],
        on_expired: Callable[[str], None],
    ) -> None:
        """Close the connection when a deadline passes (``deadlines.Deadlines``; 0 turns one off):
        ``unbound()`` still true ``bind`` seconds from now, a fragment partly received for ``pdu``
        seconds, ``idle`` seconds without a whole PDU while ``busy()`` is false, ``write`` seconds
        with the write buffer full and none of it read. ``on_expired`` hears which one first.
        Reads pay an addition for it, nothing more."""
        if self.deadlines is not None:
            self.deadlines.cancel()
        self.deadlines = Deadlines(
            self,
            self.loop,
            bind=bind,
            pdu=pdu,
            idle=idle,
            write=write,
            unbound=unbound,
            busy=busy,
            on_expired=on_expired,
        )


def _ignore_loss(exc: Exception | None) -> None:
    pass


def _kernel_queue(transport: asyncio.BaseTransport) -> int:
    """Octets in the socket's send queue not yet acknowledged by the peer (0 when unknown)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return 0
    return int.from_bytes(raw, sys.byteorder, signed=True)
