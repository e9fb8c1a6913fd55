"""Two asyncio transports joined back to back in memory: a connection with no socket under it.

    client_t, server_t = transport_pair(client_protocol, server_protocol)
    client_t.chunks = [1]          # what the client writes now reaches the server an octet a read
    client_t.write(b"...")         # the server's protocol reads it on a later turn of the loop
    await client_t.wait_closed()

Theory of operation. Each end is a :class:`MemoryTransport` (an ``asyncio.Transport``) holding
what its protocol wrote, bound for the other end, in a queue. Octets are never handed over inside
``write``: one callback scheduled with ``call_soon`` delivers them a turn of the loop later, as a
socket's reader would see them, and that callback does one read per turn: everything queued, or
with :attr:`MemoryTransport.chunks` set, the next size in that list (cycling), so a test splits a
PDU at exactly the octet it wants, with no sleep and no luck. A read goes into the receiving
protocol the way asyncio's socket transports do it: ``get_buffer(-1)`` / ``buffer_updated(n)`` for
an ``asyncio.BufferedProtocol`` (less than asked for when the buffer is shorter: the rest follows
next turn), ``data_received`` for any other protocol.

The rest behaves as a TCP connection does under asyncio:

- ``pause_reading`` stops deliveries to this end until ``resume_reading``; what the peer writes in
  the meantime queues on the peer, whose protocol gets ``pause_writing`` past the write buffer's
  high-water mark (64 KiB unless ``set_write_buffer_limits`` says otherwise) and
  ``resume_writing`` once it drained to the low-water mark.
- ``write_eof`` (``can_write_eof`` is True) sends end-of-file after what is queued: the peer's
  ``eof_received`` is called; unless it returns true, the peer's transport closes itself.
- ``close`` stops reading (what the peer still sends is dropped), sends what is queued and then
  end-of-file, and the protocol's ``connection_lost(None)`` follows on the next turn (the kernel
  would take the octets at once).
- ``abort`` discards what is queued; ``connection_lost(None)`` here, and the peer's protocol gets
  ``connection_lost(ConnectionResetError)`` as after an RST.
- ``get_extra_info`` answers ``peername`` and ``sockname`` (given to :func:`transport_pair`);
  ``socket`` is None.
- An exception out of a protocol's callback is reported to the loop's exception handler and aborts
  that end, as asyncio does.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["MemoryTransport", "transport_pair"]

_HIGH_WATER = 64 * 1024  # asyncio's default for socket transports


class MemoryTransport(asyncio.Transport):
    """One end of an in-memory connection (make them with :func:`transport_pair`).

    Attributes beyond ``asyncio.Transport``:
        peer: the other end.
        chunks: sizes of the reads in which the peer gets what this end writes, used in turn and
            cycling (None: each turn's read takes everything written so far).
        wait_closed(): returns once this end's protocol has had ``connection_lost``.
    """

    __slots__ = (
        "_buffer_updated",
        "_chunk_at",
        "_chunks",
        "_closing",
        "_data_received",
        "_eof_queued",
        "_get_buffer",
        "_high",
        "_loop",
        "_lost",
        "_low",
        "_peer",
        "_protocol",
        "_queue",
        "_reading",
        "_scheduled",
        "_shut",
        "_size",
        "_waiters",
        "_writing_paused",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol: asyncio.BaseProtocol,
        *,
        peername: Any = None,
        sockname: Any = None,
    ) -> None:
        super().__init__({"peername": peername, "sockname": sockname, "socket": None})
        self._loop = loop
        self._peer: MemoryTransport = self
        self._queue: deque[bytes] = deque()  # written here, not yet read by the peer
        self._size = 0  # octets in the queue
        self._scheduled = False  # a delivery to the peer is scheduled
        self._reading = True  # deliveries to this end may happen (not paused, not closing)
        self._shut = False  # nothing more may be written (write_eof, close or abort)
        self._eof_queued = False  # end-of-file goes to the peer once the queue is empty
        self._closing = False
        self._lost = False  # connection_lost was called on our protocol
        self._chunks: tuple[int, ...] | None = None
        self._chunk_at = 0
        self._high = _HIGH_WATER
        self._low = _HIGH_WATER // 4
        self._writing_paused = False
        self._waiters: list[asyncio.Future[None]] = []
        self._get_buffer: Callable[[int], Any] | None = None
        self._buffer_updated: Callable[[int], object] = _nothing
        self._data_received: Callable[[bytes], object] = _nothing
        self._protocol = protocol
        self.set_protocol(protocol)

    # the peer and the reads it sees -------------------------------------------------------------

    @property
    def peer(self) -> MemoryTransport:
        """The other end of the connection."""
        return self._peer

    @property
    def chunks(self) -> tuple[int, ...] | None:
        """Sizes of the reads in which the peer gets what this end writes (cycling); None: all."""
        return self._chunks

    @chunks.setter
    def chunks(self, sizes: Sequence[int] | None) -> None:
        if sizes is not None:
            sizes = tuple(sizes)
            if not sizes or any(n < 1 for n in sizes):
                raise ValueError(f"chunk sizes must be positive, and at least one: {sizes!r}")
        self._chunks = sizes
        self._chunk_at = 0

    # asyncio.BaseTransport ----------------------------------------------------------------------

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        # Like uvloop, the read methods are taken from the protocol once, here, not per read.
        self._protocol = protocol
        if isinstance(protocol, asyncio.BufferedProtocol):
            self._get_buffer = protocol.get_buffer
            self._buffer_updated = protocol.buffer_updated
        else:
            self._get_buffer = None
            self._data_received = getattr(protocol, "data_received", _nothing)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Send what is queued, then end-of-file; ``connection_lost(None)`` on the next turn."""
        if self._closing:
            return
        self._closing = True
        self._reading = False
        if not self._shut:
            self._shut = True
            self._eof_queued = True
            self._schedule()
        self._peer._schedule()  # what the peer has queued for us is dropped
        self._loop.call_soon(self._connection_lost, None)

    def abort(self) -> None:
        """Drop what is queued; the peer sees a reset (``connection_lost(ConnectionResetError)``)."""
        self._force_close(None)

    # asyncio.ReadTransport ----------------------------------------------------------------------

    def is_reading(self) -> bool:
        return self._reading

    def pause_reading(self) -> None:
        if not self._closing:
            self._reading = False

    def resume_reading(self) -> None:
        if self._closing or self._reading:
            return
        self._reading = True
        self._peer._schedule()

    # asyncio.WriteTransport ---------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._shut:
            if self._closing:
                return  # as asyncio's socket transports do after close (they log, later)
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data:
            return
        data = bytes(data)  # the caller may reuse its buffer
        self._queue.append(data)
        self._size += len(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._deliver)
        if self._size > self._high and not self._writing_paused:
            self._writing_paused = True
            self._call(self._protocol.pause_writing)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        """End-of-file to the peer after what is queued (this end still reads)."""
        if self._shut:
            return
        self._shut = True
        self._eof_queued = True
        self._schedule()

    def can_write_eof(self) -> bool:
        return True

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = _HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def get_write_buffer_size(self) -> int:
        return self._size

    # extras for tests ---------------------------------------------------------------------------

    async def wait_closed(self) -> None:
        """Return once this end's protocol has had ``connection_lost``."""
        if self._lost:
            return
        fut = self._loop.create_future()
        self._waiters.append(fut)
        await fut

    def __repr__(self) -> str:
        state = "lost" if self._lost else "closing" if self._closing else "open"
        here, there = self.get_extra_info("sockname"), self.get_extra_info("peername")
        return f"<MemoryTransport {here} -> {there} {state}>"

    # internals ----------------------------------------------------------------------------------

    def _schedule(self) -> None:
        if not self._scheduled and (self._queue or self._eof_queued):
            self._scheduled = True
            self._loop.call_soon(self._deliver)

    def _deliver(self) -> None:
        """One read by the peer of what this end wrote (then end-of-file, once all is read)."""
        self._scheduled = False
        dst = self._peer
        if not dst._reading:
            if dst._closing:  # it reads no more: what it would have read is lost
                self._queue.clear()
                self._size = 0
                self._eof_queued = False
                if self._writing_paused:
                    self._writing_paused = False
                    self._call(self._protocol.resume_writing)
            return  # paused: resume_reading schedules us again
        queue = self._queue
        if queue:
            if len(queue) == 1:
                data = queue.popleft()
            else:  # writes since the last read arrive together, as in a socket
                data = b"".join(queue)
                queue.clear()
            size = n = len(data)
            chunks = self._chunks
            if chunks is not None:
                n = min(n, chunks[self._chunk_at])
                self._chunk_at = (self._chunk_at + 1) % len(chunks)
            try:
                get_buffer = dst._get_buffer
                if get_buffer is not None:
                    room = get_buffer(-1)
                    if len(room) < n:
                        n = len(room)
                        if not n:
                            raise RuntimeError("get_buffer() returned an empty buffer")
                    room[:n] = data if n == size else data[:n]
                    dst._buffer_updated(n)
                else:
                    dst._data_received(data if n == size else data[:n])
            except Exception as exc:
                self._report(dst, exc, "a protocol's read callback failed")
                return
            if n < size:
                queue.appendleft(data[n:])
            self._size -= n
            if self._writing_paused and self._size <= self._low:
                self._writing_paused = False
                self._call(self._protocol.resume_writing)
            if queue or self._eof_queued:
                self._schedule()  # the next read (or the end-of-file) on the next turn
            return
        if self._eof_queued:
            self._eof_queued = False
            dst._receive_eof()

    def _receive_eof(self) -> None:
        """The peer sent end-of-file: tell our protocol; close unless it keeps the connection."""
        if self._closing:
            return
        try:
            keep = getattr(self._protocol, "eof_received", _nothing)()
        except Exception as exc:
            self._report(self, exc, "a protocol's eof_received failed")
            return
        if not keep:
            self.close()
        else:
            self._reading = False  # nothing more will arrive

    def _force_close(self, exc: BaseException | None) -> None:
        """Abort: drop the queue; connection_lost(exc) here and a reset for the peer."""
        if self._lost:
            return
        self._closing = True
        self._shut = True
        self._reading = False
        self._queue.clear()
        self._size = 0
        self._eof_queued = False
        self._loop.call_soon(self._connection_lost, exc)
        peer = self._peer
        if peer is not self and not peer._closing:
            peer._closing = peer._shut = True
            peer._reading = False
            peer._queue.clear()
            peer._size = 0
            peer._eof_queued = False
            self._loop.call_soon(peer._connection_lost, ConnectionResetError("Connection reset by peer"))

    def _connection_lost(self, exc: BaseException | None) -> None:
        if self._lost:
            return
        self._lost = True
        try:
            self._protocol.connection_lost(exc)  # type: ignore[arg-type]
        finally:
            for fut in self._waiters:
                if not fut.done():
                    fut.set_result(None)
            self._waiters.clear()

    def _call(self, callback: Callable[[], object]) -> None:
        try:
            callback()
        except Exception as exc:
            self._report(self, exc, "a protocol's flow-control callback failed")

    def _report(self, end: MemoryTransport, exc: Exception, message: str) -> None:
        self._loop.call_exception_handler(
            {"message": message, "exception": exc, "transport": end, "protocol": end._protocol}
        )
        end._force_close(exc)


def _nothing(*args: object) -> None:
    return None


def transport_pair(
    client: asyncio.BaseProtocol,
    server: asyncio.BaseProtocol,
    *,
    client_address: Any = ("127.0.0.1", 49152),
    server_address: Any = ("127.0.0.1", 135),
) -> tuple[MemoryTransport, MemoryTransport]:
    """Connect two protocols in memory; returns (the client's transport, the server's).

    ``connection_made`` is called at once, the server's first (as a listener accepts before the
    client's connect returns), so call this where the event loop is running (in a coroutine or a
    callback). ``client_address`` / ``server_address`` are what ``get_extra_info`` reports as
    each end's ``sockname`` and the other's ``peername``.
    """
    loop = asyncio.get_running_loop()
    c = MemoryTransport(loop, client, peername=server_address, sockname=client_address)
    s = MemoryTransport(loop, server, peername=client_address, sockname=server_address)
    c._peer, s._peer = s, c
    server.connection_made(s)
    client.connection_made(c)
    return c, s
