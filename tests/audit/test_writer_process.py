"""The writer process (audit/process.py), a real process writing a real file: events complete and
in order after close; reopen on SIGHUP and on Audit.reopen; a writer killed costs counted events
and the server goes on serving; a writer that does not read drops and counts, never blocks; it
ends with its server; a forked server gets a writer of its own."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import dcerpc
from dcerpc.audit import Audit, FileSink, process
from dcerpc.audit.observer import call_template
from dcerpc.audit.process import ProcessWriter
from dcerpc.pdu.syntax import SyntaxId
from dcerpc.rpcecho import Echo
from dcerpc.rpcecho.server import EchoServer
from dcerpc.server.server import Server
from dcerpc.testing import ServerThread, connect_in_memory

from .helpers import by_action, read_events, wait_until

PEER, LOCAL = ("127.0.0.1", 40000), ("127.0.0.1", 135)


def _writer(audit: Audit) -> ProcessWriter:
    w = audit.writer
    assert isinstance(w, ProcessWriter), w
    return w


def _pid(audit: Audit) -> int:
    proc = _writer(audit)._proc
    assert proc is not None
    return proc.pid


def test_events_complete_and_in_order_after_close(tmp_path: Path) -> None:
    path = tmp_path / "audit.json"
    audit = Audit([FileSink(path)])
    writer = _writer(audit)
    calls = 3000

    async def run() -> None:
        async with connect_in_memory(Server(EchoServer(), audit=audit)) as conn:
            echo = await conn.bind(Echo)
            for i in range(calls):  # one after another: the call ids rise
                assert await echo.AddOne(i) == i + 1

    asyncio.run(run())
    proc = writer._proc
    audit.close()  # no flush() first: close writes everything
    assert proc is not None and proc.poll() == 0  # the process is gone, and ended well
    events = read_events(path)
    actions = [e["event"]["action"] for e in events]
    assert actions[:2] == ["association-open", "bind"] and actions[-1] == "association-close"
    ids = [e["dcerpc"]["call_id"] for e in by_action(events, "call")]
    assert len(ids) == calls and ids == sorted(ids) and len(set(ids)) == len(ids)
    assert audit.dropped == 0 and writer.written == len(events)


def test_sighup_and_reopen_move_to_a_new_file(tmp_path: Path) -> None:
    path, rotated, again = tmp_path / "audit.json", tmp_path / "audit.json.1", tmp_path / "audit.json.2"
    audit = Audit([FileSink(path)])
    audit.refused(PEER, LOCAL, "ncacn_ip_tcp", "source_limit")
    assert audit.flush()
    path.rename(rotated)  # logrotate
    os.kill(_pid(audit), signal.SIGHUP)  # sent to the writer process itself (a kill of the group)
    wait_until(path.exists)  # it opened the path anew
    audit.refused(PEER, LOCAL, "ncacn_ip_tcp", "connection_limit")
    assert audit.flush()
    path.rename(again)
    audit.reopen()  # the server's SIGHUP handler: in order with the events
    audit.refused(PEER, LOCAL, "ncacn_ip_tcp", "source_limit")
    audit.close()
    kinds = [[e["dcerpc"]["refusal"] for e in read_events(p)] for p in (rotated, again, path)]
    assert kinds == [["source_limit"], ["connection_limit"], ["source_limit"]]


def test_a_killed_writer_is_counted_and_the_server_serves_on(tmp_path: Path) -> None:
    path = tmp_path / "audit.json"
    audit = Audit([FileSink(path)])
    writer = _writer(audit)
    with ServerThread(EchoServer(), audit=audit) as srv:
        with dcerpc.connect_sync(f"ncacn_ip_tcp:127.0.0.1[{srv.port}]") as conn:
            echo = conn.bind(Echo)
            for i in range(50):
                assert echo.AddOne(i) == i + 1
            assert audit.flush()
            before = writer.written
            proc = writer._proc
            assert proc is not None
            proc.send_signal(signal.SIGSTOP)  # 30 calls' events in its pipe, unread, when it dies
            for i in range(30):
                assert echo.AddOne(i) == i + 1
            wait_until(lambda: not writer._queue and not writer._frames)
            proc.kill()
            proc.wait()
            calls, deadline = 80, time.monotonic() + 10
            while writer.restarts == 0:  # noticed at the next write (or report), then started again
                assert echo.AddOne(calls) == calls + 1  # the server does not notice, but for the count
                calls += 1
                assert time.monotonic() < deadline
            assert audit.dropped >= 30  # lost in the pipe, and counted
            for i in range(50):
                assert echo.AddOne(i) == i + 1
            calls += 50
        wait_until(lambda: srv.server.open_connections == 0)
    audit.close()
    events = read_events(path)
    assert writer.restarts == 1 and writer.written == len(events) > before
    # every event is in the file or counted: the open, the bind, the calls, the close
    assert len(events) + audit.dropped == calls + 3
    assert by_action(events, "association-close")  # written by the second process


def test_a_writer_that_does_not_read_drops_and_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process, "_PIPE_SIZE", 1 << 16)  # a pipe of 64 KiB, not 1 MiB: fewer to write after
    path = tmp_path / "audit.json"
    audit = Audit([FileSink(path)], capacity=1000)
    writer = _writer(audit)
    audit.refused(PEER, LOCAL, "ncacn_ip_tcp", "source_limit")
    assert audit.flush()  # started and reading
    pid = _pid(audit)

    async def flood() -> float:  # on a loop, as a server's events are: in batches of 256
        started = time.perf_counter()
        for _ in range(10_000):  # the pipe takes about 2,800 of these
            audit.refused(PEER, LOCAL, "ncacn_ip_tcp", "source_limit")
        return time.perf_counter() - started

    os.kill(pid, signal.SIGSTOP)  # a disk that hangs: the pipe fills, then our queue
    try:
        elapsed = asyncio.run(flood())
    finally:
        os.kill(pid, signal.SIGCONT)
    assert elapsed < 5  # never waited on the writer (a blocking write would have hung here)
    assert audit.dropped > 0
    assert writer._waiting + len(writer._queue) <= 1000  # bounded: what waits here
    audit.close()
    assert len(read_events(path)) + audit.dropped == 10_001 == writer.written + audit.dropped


def test_the_writer_ends_with_its_server(tmp_path: Path) -> None:
    code = (
        "import sys, time\n"
        "from dcerpc.audit import Audit, FileSink\n"
        f"a = Audit([FileSink({str(tmp_path / 'audit.json')!r})])\n"
        "a.refused(('127.0.0.1', 1), ('127.0.0.1', 2), 'ncacn_ip_tcp', 'source_limit')\n"
        "assert a.flush()\n"
        "print(a.writer._proc.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    server = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        pid = int(server.stdout.readline())
    finally:
        server.kill()  # no close(), no atexit: the pipe's end is what the writer sees
        server.wait()

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a zombie until init reaps it: ended all the same
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")

    wait_until(gone)
    assert len(read_events(tmp_path / "audit.json")) == 1


def test_a_forked_child_gets_a_writer_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "audit.json"
    audit = Audit([FileSink(path)])
    audit.refused(PEER, LOCAL, "ncacn_ip_tcp", "source_limit")
    parent_writer = _pid(audit)
    child = os.fork()
    if child == 0:  # pragma: no cover (the child's)
        try:
            audit.refused(PEER, LOCAL, "ncacn_ip_tcp", "connection_limit")
            ok = audit.flush() and _pid(audit) != parent_writer
            audit.close()
            os._exit(0 if ok else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    audit.refused(PEER, LOCAL, "ncacn_ip_tcp", "source_limit")
    audit.close()
    kinds = sorted(e["dcerpc"]["refusal"] for e in read_events(path))
    assert kinds == ["connection_limit", "source_limit", "source_limit"]


def _frame(message: object) -> bytes:
    data = process._dumps(message)
    return process._LEN.pack(len(data)) + data


def _chunk(first_call: int, calls: int, second: int = 1_764_000_000) -> tuple[object, ...]:
    """A shipped chunk of ``calls`` calls of one site (calls.py's layout), call ids from ``first_call``."""
    form = call_template(1, PEER, SyntaxId(uuid.UUID(int=7), (1, 0)), "x", "op", 0, None, 0, 1, None, 0)
    numbers = (
        calls,
        0,
        5000,
        first_call,
        4,
        8,
        123_456,
        *range(first_call + 1, first_call + calls),
    )  # one run
    return (None, second, [form], struct.pack(f"<{len(numbers)}q", *numbers), calls)


def test_frames_read_in_one_go_are_written_in_one_write(tmp_path: Path) -> None:
    """Twenty frames waiting in the pipe before the process reads: one write to the file for all,
    in order, and the flush after them answered with all of them written (the writes counted by
    the kernel, /proc/PID/io)."""
    path = tmp_path / "audit.json"
    events_r, events_w = os.pipe()
    back_r, back_w = os.pipe()
    spec = pickle.dumps([FileSink(path)], 5)
    frames = [_frame([_chunk(10 * i, 10)]) for i in range(20)]
    os.write(events_w, process._LEN.pack(len(spec)) + spec + b"".join(frames) + _frame(("flush", 1)))
    env = dict(os.environ, PYTHONPATH=str(Path(process.__file__).parents[2]))
    proc = subprocess.Popen(
        [sys.executable, "-c", "from dcerpc.audit.process import main; main()", str(back_w)],
        stdin=events_r, pass_fds=(back_w,), env=env,
    )  # fmt: skip
    os.close(events_r)
    os.close(back_w)
    try:
        report = (0, 0, 0)
        status = b""
        while report[0] != 1:  # the flush answered
            data = os.read(back_r, 4096)  # (blocks until the process reports)
            assert data, f"the writer process ended: {proc.wait(10)}"
            status += data
            whole = len(status) // process._STATUS.size * process._STATUS.size
            if whole:
                report = process._STATUS.unpack_from(status, whole - process._STATUS.size)
        assert report == (1, 200, 0)  # acked, written, errors
        writes = int(next(line for line in Path(f"/proc/{proc.pid}/io").read_text().splitlines()
                          if line.startswith("syscw:")).split()[1])  # fmt: skip
        # the lines once, a report after the write, the flush's answer (and start-up's own, a few)
        assert writes < 20, writes
    finally:
        os.close(events_w)
        proc.wait(10)
        os.close(back_r)
    assert [e["dcerpc"]["call_id"] for e in read_events(path)] == list(range(200))


def _other_event() -> dict[str, object]:
    return {"event": {"kind": "event", "action": "test"}}


def test_a_frame_yields_the_cpu_between_its_chunks_unless_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """Between two chunks of calls of a frame the process gives up the CPU once it has had _HOLD
    of it; not after the last, not after other events, not before the hold is over, and not while
    frames of _BEHIND octets or more wait to be taken."""
    yields: list[int] = []
    monkeypatch.setattr(process, "_yield", lambda: yields.append(1))
    monkeypatch.setattr(process, "_BEHIND", 4096)  # (a pipe of 64 KiB takes it without a reader)
    monkeypatch.setattr(process, "_HOLD", 0.0)  # every chunk is past it
    r, w = os.pipe()
    try:
        reader = process._Frames(r, os.getppid())
        records = [_chunk(0, 3), _chunk(3, 3), (_other_event, time.time_ns()), _chunk(6, 3)]
        lines, events = process._formatted(records, reader)
        assert events == 10 and b"".join(lines).count(b"\n") == 10
        assert len(yields) == 2  # after the first two chunks: not after the event, nor the last
        monkeypatch.setattr(process, "_HOLD", 3600.0)
        process._formatted(records, reader)
        assert len(yields) == 2  # the hold not over
        monkeypatch.setattr(process, "_HOLD", 0.0)
        os.write(w, bytes(process._BEHIND))  # behind: frames of that many octets wait in the pipe
        assert reader.waiting() == process._BEHIND
        process._formatted(records, reader)
        assert len(yields) == 2
    finally:
        os.close(r)
        os.close(w)


def test_the_reader_knows_a_whole_frame_is_waiting() -> None:
    r, w = os.pipe()
    try:
        reader = process._Frames(r, os.getppid())
        frame = _frame([_chunk(0, 1)])
        os.write(w, frame[:-1])
        assert not reader.ready() and reader.waiting() == len(frame) - 1
        os.write(w, frame[-1:] + frame)
        assert reader.next() == frame[4:]  # read both, took one
        assert reader.ready() and reader.waiting() == len(frame)
        assert reader.next() == frame[4:]
        assert not reader.ready() and reader.waiting() == 0
    finally:
        os.close(r)
        os.close(w)
