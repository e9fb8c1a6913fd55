"""The writer process (audit/process.py), a real process writing a real file: events complete and
in order after close; reopen on SIGHUP and on Audit.reopen; a writer killed costs counted events
and the server goes on serving; a writer that does not read drops and counts, never blocks; it
ends with its server; a forked server gets a writer of its own."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import dcerpc
from dcerpc.audit import Audit, FileSink, process
from dcerpc.audit.process import ProcessWriter
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
