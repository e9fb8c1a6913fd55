"""The in-memory transport behaves as asyncio's socket transports do, in the ways our protocols rely on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from dcerpc.testing import MemoryTransport, transport_pair


class Recorder(asyncio.Protocol):
    """A plain protocol noting every callback in order."""

    def __init__(self, keep_open: bool = False) -> None:
        self.log: list[tuple[str, Any]] = []
        self.keep_open = keep_open
        self.transport: MemoryTransport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, MemoryTransport)
        self.transport = transport
        self.log.append(("made", None))

    def data_received(self, data: bytes) -> None:
        self.log.append(("data", data))

    def eof_received(self) -> bool:
        self.log.append(("eof", None))
        return self.keep_open

    def connection_lost(self, exc: Exception | None) -> None:
        self.log.append(("lost", type(exc).__name__ if exc else None))

    def pause_writing(self) -> None:
        self.log.append(("pause_writing", None))

    def resume_writing(self) -> None:
        self.log.append(("resume_writing", None))

    @property
    def data(self) -> list[bytes]:
        return [d for k, d in self.log if k == "data"]


class Buffered(asyncio.BufferedProtocol):
    """A buffered protocol offering ``room`` octets a read."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.buf = bytearray(room)
        self.reads: list[bytes] = []

    def get_buffer(self, sizehint: int) -> memoryview:
        assert sizehint == -1
        return memoryview(self.buf)

    def buffer_updated(self, nbytes: int) -> None:
        self.reads.append(bytes(self.buf[:nbytes]))


async def turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(main())


def test_writes_arrive_on_a_later_turn_together() -> None:
    async def main() -> None:
        a, b = Recorder(), Recorder()
        ta, _ = transport_pair(a, b)
        assert b.log == [("made", None)] and a.log == [("made", None)]
        ta.write(b"one")
        ta.writelines([b"two", memoryview(b"three")])
        assert b.data == []  # never within write
        assert ta.get_write_buffer_size() == 11
        await turns(1)
        assert b.data == [b"onetwothree"]  # what was written in one turn: one read
        assert ta.get_write_buffer_size() == 0

    run(main)


def test_chunks_split_reads_where_asked_one_a_turn() -> None:
    async def main() -> None:
        a, b = Recorder(), Recorder()
        ta, _ = transport_pair(a, b)
        ta.chunks = [3, 1]
        ta.write(b"abcdefghij")
        await turns(1)
        assert b.data == [b"abc"]
        await turns(10)
        assert b.data == [b"abc", b"d", b"efg", b"h", b"ij"]
        with pytest.raises(ValueError, match="positive"):
            ta.chunks = [0]

    run(main)


def test_buffered_protocols_read_into_their_buffer() -> None:
    async def main() -> None:
        a, b = Recorder(), Buffered(room=4)
        ta, _ = transport_pair(a, b)
        ta.write(b"0123456789")
        await turns(10)
        assert b.reads == [b"0123", b"4567", b"89"]  # a short buffer: the rest on later turns

    run(main)


def test_extra_info_names_both_ends() -> None:
    async def main() -> None:
        ta, tb = transport_pair(Recorder(), Recorder(), client_address=("10.0.0.1", 1), server_address="x")
        assert ta.get_extra_info("sockname") == ("10.0.0.1", 1) == tb.get_extra_info("peername")
        assert ta.get_extra_info("peername") == "x" == tb.get_extra_info("sockname")
        assert ta.get_extra_info("socket") is None and ta.get_extra_info("nothing", 7) == 7
        assert ta.peer is tb and tb.peer is ta

    run(main)


def test_pause_reading_holds_deliveries_and_the_writer_is_paused_past_high_water() -> None:
    async def main() -> None:
        a, b = Recorder(), Recorder()
        ta, tb = transport_pair(a, b)
        ta.set_write_buffer_limits(high=10, low=4)
        assert ta.get_write_buffer_limits() == (4, 10)
        tb.pause_reading()
        assert not tb.is_reading()
        ta.write(b"x" * 8)
        await turns()
        assert b.data == [] and ("pause_writing", None) not in a.log
        ta.write(b"y" * 8)  # 16 queued: past 10
        assert a.log[-1] == ("pause_writing", None)
        tb.resume_reading()
        await turns()
        assert b.data == [b"x" * 8 + b"y" * 8]
        assert a.log[-1] == ("resume_writing", None)

    run(main)


def test_write_eof_then_the_peer_closes_unless_it_keeps_the_connection() -> None:
    async def main() -> None:
        a, b = Recorder(), Recorder()
        ta, tb = transport_pair(a, b)
        assert ta.can_write_eof()
        ta.write(b"last")
        ta.write_eof()
        with pytest.raises(RuntimeError):
            ta.write(b"more")
        await turns()
        assert b.log[1:] == [("data", b"last"), ("eof", None), ("lost", None)]  # closed on eof
        assert tb.is_closing()
        assert a.log[1:] == [("eof", None), ("lost", None)]  # and its end-of-file closed us

        c, d = Recorder(), Recorder(keep_open=True)
        tc, td = transport_pair(c, d)
        tc.write_eof()
        await turns()
        assert d.log[1:] == [("eof", None)] and not td.is_closing()
        td.write(b"answer")  # half-closed: the other way still works
        await turns()
        assert c.data == [b"answer"]

    run(main)


def test_close_sends_what_is_queued_then_the_peer_loses_the_connection() -> None:
    async def main() -> None:
        a, b = Recorder(), Recorder()
        ta, tb = transport_pair(a, b)
        ta.write(b"bye")
        ta.close()
        assert ta.is_closing()
        ta.write(b"ignored")  # as asyncio: no error after close
        await ta.wait_closed()
        assert a.log[1:] == [("lost", None)]
        await tb.wait_closed()
        assert b.log[1:] == [("data", b"bye"), ("eof", None), ("lost", None)]

    run(main)


def test_abort_resets_the_peer() -> None:
    async def main() -> None:
        a, b = Recorder(), Recorder()
        ta, tb = transport_pair(a, b)
        ta.write(b"dropped")
        ta.abort()
        await turns()
        assert a.log[1:] == [("lost", None)]
        assert b.log[1:] == [("lost", "ConnectionResetError")]  # nothing delivered
        assert tb.is_closing()

    run(main)


def test_an_exception_in_a_protocol_is_reported_and_aborts_its_end() -> None:
    class Broken(Recorder):
        def data_received(self, data: bytes) -> None:
            raise ValueError("broken")

    async def main() -> list[dict[str, Any]]:
        reports: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: reports.append(ctx))
        a, b = Recorder(), Broken()
        ta, _ = transport_pair(a, b)
        ta.write(b"x")
        await turns()
        assert b.log[1:] == [("lost", "ValueError")]
        assert a.log[1:] == [("lost", "ConnectionResetError")]
        return reports

    reports = asyncio.run(main())
    assert len(reports) == 1 and isinstance(reports[0]["exception"], ValueError)
