"""The sinks and the writer: syslog over a real Unix datagram socket and over UDP, RFC 5424
framing; standard output and a text stream; a full queue drops and counts without blocking the
caller."""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import dcerpc
from dcerpc.audit import Audit, FileSink, StdoutSink, SyslogSink, Writer
from dcerpc.rpcecho import Echo
from dcerpc.rpcecho.server import EchoServer
from dcerpc.testing import ServerThread

from .helpers import valid, wait_until

# RFC 5424 6: <PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD SP BOM MSG
_HEADER = re.compile(rb"^<(\d{1,3})>1 (\S+) (\S+) dcerpc (\d+) audit - \xef\xbb\xbf")


def _events(sock: socket.socket, until: str) -> list[tuple[int, dict]]:  # type: ignore[type-arg]
    out = []
    sock.settimeout(5)
    while True:
        data = sock.recv(65536)
        m = _HEADER.match(data)
        assert m, data[:80]
        event = valid(json.loads(data[m.end() :]))
        out.append((int(m.group(1)), event))
        if event["event"]["action"] == until:
            return out


def test_syslog_to_a_unix_datagram_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "log.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    audit = Audit([SyslogSink(path)])
    with ServerThread(EchoServer(), audit=audit) as srv:
        with dcerpc.connect_sync(f"ncacn_ip_tcp:127.0.0.1[{srv.port}]") as conn:
            conn.bind(Echo).AddOne(1)
        wait_until(lambda: srv.server.open_connections == 0)
        got = _events(receiver, until="association-close")
    audit.close()
    receiver.close()
    actions = [e["event"]["action"] for _, e in got]
    assert actions == ["association-open", "bind", "call", "association-close"]
    assert {pri for pri, _ in got} == {10 * 8 + 6}  # authpriv.info


def test_syslog_over_udp_failure_is_a_warning() -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    host, port = receiver.getsockname()
    audit = Audit([SyslogSink(f"{host}:{port}", facility="local3")])
    audit.refused(("127.0.0.1", 40000), ("127.0.0.1", 135), "ncacn_ip_tcp", "connection_limit")
    ((pri, event),) = _events(receiver, until="connection-refused")
    audit.close()
    receiver.close()
    assert pri == 19 * 8 + 4  # local3.warning: the outcome is a failure
    assert event["dcerpc"]["refusal"] == "connection_limit"


class _StuckSink:
    """A sink whose disk hangs until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lines: list[str] = []

    def write(self, lines: bytes) -> None:
        self.release.wait(10)
        self.lines += lines.decode().splitlines()

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_full_queue_drops_and_counts_never_blocks() -> None:
    sink = _StuckSink()
    audit = Audit([sink], capacity=8)
    writer = audit.writer
    assert isinstance(writer, Writer)
    peer, local = ("127.0.0.1", 1), ("127.0.0.1", 2)
    audit.refused(peer, local, "ncacn_ip_tcp", "source_limit")  # the writer takes it, then hangs
    wait_until(lambda: not writer._queue)
    started = time.perf_counter()
    for _ in range(1000):
        audit.refused(peer, local, "ncacn_ip_tcp", "source_limit")
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5  # a thousand events against a stuck sink: the caller never waited on it
    assert audit.dropped == 1000 - 8
    sink.release.set()
    assert audit.flush()
    assert len(sink.lines) == 9 and writer.written == 9
    audit.close()


def test_stdout_sink_writes_a_served_call_to_standard_output_and_to_a_text_stream(tmp_path: Path) -> None:
    """StdoutSink takes the writer's octets: on standard output (the writer process's, inherited
    from a real `python` server here) as they are, into a text stream given it (a thread writes
    that) as text. Every line is one schema-valid event, the call's among them."""
    script = tmp_path / "serve.py"
    script.write_text(
        "import dcerpc\n"
        "from dcerpc.audit import Audit, StdoutSink\n"
        "from dcerpc.rpcecho import Echo\n"
        "from dcerpc.rpcecho.server import EchoServer\n"
        "from dcerpc.testing import ServerThread\n"
        "audit = Audit([StdoutSink()])\n"
        "with ServerThread(EchoServer(), audit=audit) as srv:\n"
        "    with dcerpc.connect_sync(f'ncacn_ip_tcp:127.0.0.1[{srv.port}]') as conn:\n"
        "        assert conn.bind(Echo).AddOne(1) == 2\n"
        "audit.close()\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=120, check=True).stdout
    events = [valid(json.loads(line)) for line in out.splitlines()]
    assert "call" in [e["event"]["action"] for e in events]

    stream = io.StringIO()
    audit = Audit([StdoutSink(stream)])
    assert isinstance(audit.writer, Writer)  # a stream object: written by the thread
    audit.refused(("127.0.0.1", 40000), ("127.0.0.1", 135), "ncacn_ip_tcp", "connection_limit")
    assert audit.flush(10)
    audit.close()
    (event,) = [valid(json.loads(line)) for line in stream.getvalue().splitlines()]
    assert event["event"]["action"] == "connection-refused"


def _cached(path: Path) -> int:
    """Octets of ``path`` in the page cache, as the kernel counts them (mincore(2), util-linux fincore)."""
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return int(out.split()[0])


def _drops_behind(directory: Path) -> bool:
    """Whether this file system's page cache can be written back and dropped (not tmpfs)."""
    probe = directory / "probe"
    probe.write_bytes(b"x" * 65536)
    with probe.open("rb+") as f:
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    dropped = _cached(probe) == 0
    probe.unlink()
    return dropped


def test_a_file_sink_drops_its_trail_behind_from_the_page_cache(tmp_path: Path) -> None:
    """Each 8 MiB written is handed to the disk; the step three before it is then dropped from the
    page cache: 48 MiB written leaves 24-32 MiB cached, where a sink told not to keeps it all. The
    trail is whole either way, and a trail truncated by another (logrotate's copytruncate) is
    followed from its new end."""
    if shutil.which("fincore") is None:
        pytest.skip("util-linux fincore not installed: the page cache cannot be read")
    if not _drops_behind(tmp_path):
        pytest.skip(f"{tmp_path} is on a file system whose page cache cannot be dropped (tmpfs)")
    line = b"x" * ((1 << 20) - 1) + b"\n"
    kept, dropped = tmp_path / "kept.json", tmp_path / "dropped.json"
    for path, drop in ((kept, False), (dropped, True)):
        sink = FileSink(path, drop_behind=drop)
        for _ in range(48):
            sink.write(line)
        assert path.stat().st_size == 48 << 20
        cached = _cached(path)
        if not drop:
            assert cached >= 47 << 20, cached
        else:
            assert 24 << 20 <= cached <= 32 << 20, cached
            os.truncate(path, 0)  # (copytruncate)
            for _ in range(48):
                sink.write(line)
            assert path.stat().st_size == 48 << 20
            assert _cached(path) <= 32 << 20
        sink.close()
    with dropped.open("rb") as f:
        assert all(chunk == line for chunk in iter(lambda: f.read(1 << 20), b""))


def test_a_file_sink_of_a_device_or_a_pipe_writes_without_dropping_behind(tmp_path: Path) -> None:
    """/dev/null and a FIFO are not regular files: written as before, no page cache to drop; the
    choice survives the pickling that hands a sink to the writer process."""
    sink = FileSink("/dev/null")
    for _ in range(20):
        sink.write(b"y" * (1 << 20))
    sink.close()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    sink = FileSink(fifo)
    sink.write(b'{"a":1}\n')
    assert os.read(reader, 100) == b'{"a":1}\n'
    sink.close()
    os.close(reader)
    again = pickle.loads(pickle.dumps(FileSink(tmp_path / "t.json", drop_behind=False)))
    assert again.drop_behind is False and again.path == str(tmp_path / "t.json")


def test_a_file_sink_writes_parts_as_their_join(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FileSink.write_parts (the writer process's writes: one writev(2) of its chunks' lines) leaves
    the file as write() of the parts joined would: more parts than one writev takes, after a
    write(), and through a short write (a device's or a pipe's; here the kernel is told to take
    the first part alone), whose rest follows in order."""
    path = tmp_path / "audit.json"
    parts = [b'{"n":%d}\n' % n * (n % 7 + 1) for n in range(2500)]  # past IOV_MAX (1024 here)
    sink = FileSink(path)
    sink.write(b'{"first":1}\n')
    sink.write_parts(parts)
    assert path.read_bytes() == b'{"first":1}\n' + b"".join(parts)
    writev = os.writev
    monkeypatch.setattr(os, "writev", lambda fd, some: writev(fd, some[:1]))
    sink.write_parts(parts[:10])
    sink.close()
    assert path.read_bytes() == b'{"first":1}\n' + b"".join(parts) + b"".join(parts[:10])
