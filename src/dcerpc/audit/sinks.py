"""Where audit events go: a file (reopened on SIGHUP for logrotate), standard output, syslog.

Each sink is written by the writer process only (process.py), a batch of JSON lines at a time: the
server pickles a sink as its settings (``__reduce__``), and the process makes it again. A sink of
another kind (or a StdoutSink given a stream object) is written by a thread instead (writer.py).

Syslog messages are RFC 5424 (``<PRI>1 TIMESTAMP HOST APP PROCID MSGID - MSG``), one datagram per
event, to a Unix datagram socket (``/dev/log``, the default) or to UDP ``host:port`` (RFC 5426).
The facility is ``authpriv`` (10) unless told otherwise, the severity ``info`` (6), ``warning`` (4)
for an event whose outcome is a failure.
"""

from __future__ import annotations

import ctypes
import os
import socket
import stat
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import IO, Final

__all__ = ["FACILITIES", "FileSink", "StdoutSink", "SyslogSink"]

FACILITIES: Final = {
    "kern": 0, "user": 1, "daemon": 3, "auth": 4, "syslog": 5, "authpriv": 10,
    "local0": 16, "local1": 17, "local2": 18, "local3": 19,
    "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}  # fmt: skip
_INFO: Final = 6
_WARNING: Final = 4
_MAX_DATAGRAM: Final = 8192  # RFC 5426 asks receivers for at least 2048; rsyslog takes 8 KiB


_STEP: Final = 8 << 20
"""Drop-behind: a file's trail is written back and dropped from the page cache this many octets at
a time (see :class:`FileSink`)."""
_LAG: Final = 3
"""... this many steps before the one just handed to the disk: the last 24-32 MiB stay cached (a
shipper tailing the trail reads it there)."""


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """Linux's sync_file_range(2) (not in :mod:`os`), or None where libc has none."""
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (AttributeError, OSError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return call


_SYNC: Final = _sync_file_range()
_IOV_MAX: Final = os.sysconf("SC_IOV_MAX") if "SC_IOV_MAX" in os.sysconf_names else 16
_WAIT_ALL: Final = 1 | 2 | 4  # SYNC_FILE_RANGE_WAIT_BEFORE | _WRITE | _WAIT_AFTER
_START: Final = 2  # SYNC_FILE_RANGE_WRITE: start the range's writeback, not waiting for it


class FileSink:
    """Appends JSON lines to ``path``; :meth:`reopen` opens the path anew (after logrotate).

    A regular file's trail is **dropped behind** (``drop_behind``, on unless told otherwise): each
    8 MiB written is handed to the disk at once (sync_file_range(2), not waiting), and the 8 MiB
    three steps before it is waited for and dropped from the page cache (posix_fadvise DONTNEED). A
    trail is written once and read, if at all, near its end (a shipper tailing it); left cached,
    it grows the page cache by the event rate (50 MiB/s at 100,000 calls/s), evicting what the host
    reads, and each of its pages is fresh memory. On a virtual machine whose free memory is given
    back to the hypervisor (free page reporting, ballooning: Firecracker, many clouds) fresh memory
    is a fault in the host: writing a 450-octet line measured 1,300 ns of the writer's CPU there,
    against 140 ns with the trail dropped behind, whose pages the kernel reuses (this project's
    test machine; ``benchmarks/policy.py`` at 64 in flight went from 0.74x to 0.79x in whole runs,
    0.80-0.82x to 0.83-0.84x interleaved). The wait is the writer's (a process or thread, never the
    loop's) and only when the disk is slower than the trail over 24 MiB: the writer then goes at
    the disk's pace, as it would once the kernel's dirty limit was reached.
    """

    portable = True  # made again from its path in the writer process

    def __init__(self, path: str | os.PathLike[str], drop_behind: bool = True) -> None:
        self.path = os.fspath(path)
        self.drop_behind = drop_behind
        self._file: IO[bytes] = self._open()  # here too: a path we cannot open fails at configuration

    def __reduce__(self) -> tuple[type[FileSink], tuple[str, bool]]:
        return FileSink, (self.path, self.drop_behind)

    def _open(self) -> IO[bytes]:
        # 0o640: the trail names users and addresses
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        status = os.fstat(fd)
        self._behind = self.drop_behind and _SYNC is not None and stat.S_ISREG(status.st_mode)
        # the trail's octets whose writeback was started (a multiple of _STEP; what came before
        # this open is not ours)
        self._started = status.st_size - status.st_size % _STEP
        return open(fd, "ab")

    def write(self, lines: bytes) -> None:
        self.write_parts((lines,))

    def write_parts(self, parts: Sequence[bytes]) -> None:
        """:meth:`write` of ``parts`` joined, without joining them: one writev(2) (of ``_IOV_MAX``
        parts at most). The writer process's lines of a write are a chunk's each (1 MiB in all at
        most): joined, they were one more copy of every line (30-60 ns a 460-octet line here)."""
        fd = self._file.fileno()  # (nothing waits in the file's buffer: only a short write uses it)
        for first in range(0, len(parts), _IOV_MAX):
            some = parts[first : first + _IOV_MAX]
            done = os.writev(fd, some)
            if done < sum(map(len, some)):  # a device's or a pipe's short write (a file's is whole)
                self._file.write(b"".join(some)[done:])
                self._file.flush()
        if self._behind:
            self._drop(fd)

    def _drop(self, fd: int) -> None:
        """Start the writeback of each whole step written since, and drop the step _LAG before."""
        end = os.lseek(fd, 0, os.SEEK_CUR)  # (O_APPEND: the file's end, after our write)
        if end < self._started:  # truncated by another (or replaced in place): start from there
            self._started = end - end % _STEP
        assert _SYNC is not None
        while end - self._started >= _STEP:
            start = self._started
            self._started += _STEP
            if _SYNC(fd, start, _STEP, _START) != 0:
                self._behind = False  # (a file system that cannot: left to the kernel as before)
                return
            old = start - _LAG * _STEP
            if old >= 0:
                _SYNC(fd, old, _STEP, _WAIT_ALL)
                os.posix_fadvise(fd, old, _STEP, os.POSIX_FADV_DONTNEED)

    def reopen(self) -> None:
        new = self._open()
        old, self._file = self._file, new
        old.close()

    def close(self) -> None:
        self._file.close()

    def __repr__(self) -> str:
        return f"FileSink({self.path!r})"


class StdoutSink:
    """JSON lines on standard output (a container's log collector reads them there)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream

    @property
    def portable(self) -> bool:  # the process inherits our standard output, not a stream object
        return self._stream is None

    def __reduce__(self) -> tuple[type[StdoutSink], tuple[()]]:
        return StdoutSink, ()

    def write(self, lines: bytes) -> None:
        stream = self._stream or sys.stdout
        octets = getattr(stream, "buffer", None)  # a text stream's own binary one (standard output)
        if octets is not None:
            stream.flush()  # (what was written as text goes first)
            octets.write(lines)
            octets.flush()
        else:
            stream.write(lines.decode())
            stream.flush()

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return "StdoutSink()"


class SyslogSink:
    """RFC 5424 messages over a datagram socket.

    Args:
        address: a Unix socket path (``/dev/log``) or ``host:port`` (UDP; ``[v6]:port`` for IPv6).
        facility: a name of :data:`FACILITIES`.
        app: the APP-NAME field.
    """

    def __init__(self, address: str = "/dev/log", facility: str = "authpriv", app: str = "dcerpc") -> None:
        if facility not in FACILITIES:
            raise ValueError(f"unknown syslog facility {facility!r}; one of {', '.join(FACILITIES)}")
        self.address = address
        self.facility = facility
        self._facility = FACILITIES[facility]
        self._app = app
        self._host = socket.gethostname() or "-"
        self._target: str | tuple[str, int]
        if address.startswith("/"):
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._target = address
        else:
            host, sep, port = address.rpartition(":")
            if not sep or not port.isdigit():
                raise ValueError(f"syslog address {address!r}: a path (/dev/log) or HOST:PORT")
            host = host.strip("[]")
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self._sock = socket.socket(family, socket.SOCK_DGRAM)
            self._target = (host, int(port))

    portable = True

    def __reduce__(self) -> tuple[type[SyslogSink], tuple[str, str, str]]:
        return SyslogSink, (self.address, self.facility, self._app)

    def write(self, lines: bytes) -> None:
        for line in lines.splitlines():
            self._sock.sendto(self._message(line), self._target)

    def _message(self, line: bytes) -> bytes:
        severity = _WARNING if b'"outcome":"failure"' in line else _INFO
        stamp = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        head = f"<{self._facility * 8 + severity}>1 {stamp} {self._host} {self._app} {os.getpid()} audit - "
        data = head.encode() + b"\xef\xbb\xbf" + line  # RFC 5424 6.4: BOM, then UTF-8
        return data[:_MAX_DATAGRAM]

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        self._sock.close()

    def __repr__(self) -> str:
        return f"SyslogSink({self.address!r})"
