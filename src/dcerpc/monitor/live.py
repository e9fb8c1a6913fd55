"""Live capture: dumpcap captures, the capture-file reader reads its pipe (docs/monitor.md).

We do not capture packets ourselves: `dumpcap <https://www.wireshark.org/docs/man-pages/dumpcap.html>`_
(Wireshark's capture engine, the one tshark runs) is started as ``dumpcap -i IF -q -n -w -``
and its standard output, a pcapng stream, is handed to :func:`~.run.monitor_file` as the path
``/dev/fd/N`` of the pipe: the same reader as for a file, on a stream that cannot seek (the reader
peeks at the magic number instead of reading and seeking back). Records come out as the calls they
close complete.

:meth:`LiveCapture.stop` (a signal handler calls it for Ctrl-C and SIGTERM) asks dumpcap to stop
(and kills it if it has not exited 5 s later); dumpcap writes what it holds and exits, the reader
sees the end of the stream, and the monitor finishes as at the end of a file (unanswered calls are
reported, then the summary). dumpcap's own refusals (no permission to capture, no such interface)
come back as :class:`LiveError` with dumpcap's words, instead of the reader's "not a capture" at an
empty stream.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from .capture import CaptureError
from .records import Record
from .run import Monitor, monitor_file

__all__ = ["LiveCapture", "LiveError", "monitor_live"]

_STDERR_KEPT = 4096  # the head of dumpcap's standard error kept for the error message
_GRACE = 5.0  # seconds dumpcap has to exit once asked to stop, before it is killed
_PERMISSION_HINT = (
    "capturing needs root, or dumpcap with CAP_NET_RAW and CAP_NET_ADMIN (Debian: "
    "dpkg-reconfigure wireshark-common, then join the wireshark group)"
)


class LiveError(Exception):
    """dumpcap is missing, or refused to capture (its words, and what to do)."""


class LiveCapture:
    """dumpcap running on ``interface``; :attr:`path` names its pcapng output for the reader."""

    def __init__(self, interface: str, capture_filter: str | None = None, dumpcap: str = "dumpcap") -> None:
        self.interface = interface
        self.capture_filter = capture_filter
        self.dumpcap = dumpcap
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopped = False
        self._stderr = bytearray()
        self._drain: threading.Thread | None = None

    def __enter__(self) -> LiveCapture:
        exe = shutil.which(self.dumpcap)
        if exe is None:
            raise LiveError(f"{self.dumpcap} is not installed (Debian package tshark or wireshark-common)")
        args = [exe, "-i", self.interface, "-q", "-n", "-w", "-"]
        if self.capture_filter:
            args += ["-f", self.capture_filter]
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self._drain = threading.Thread(target=self._read_stderr, name="dumpcap-stderr", daemon=True)
        self._drain.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            assert self.proc.stdout is not None
            self.proc.stdout.close()

    @property
    def path(self) -> Path:
        """The pipe dumpcap writes, as a path the file reader opens (Linux's /dev/fd)."""
        assert self.proc is not None and self.proc.stdout is not None
        return Path(f"/dev/fd/{self.proc.stdout.fileno()}")

    def stop(self) -> None:
        """Ask dumpcap to finish (it flushes and exits); a second call kills it, and so does
        ``_GRACE`` seconds passing without it having exited (a dumpcap that does not heed the
        request would keep the monitor reading its pipe, and running, for good)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL if self.stopped else signal.SIGTERM)
        if not self.stopped:
            timer = threading.Timer(_GRACE, self.stop)  # (its second call: the kill)
            timer.daemon = True
            timer.start()
        self.stopped = True

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        stream = self.proc.stderr
        while chunk := os.read(stream.fileno(), 1024):
            if len(self._stderr) < _STDERR_KEPT:
                self._stderr += chunk[: _STDERR_KEPT - len(self._stderr)]

    def failure(self) -> str | None:
        """dumpcap's complaint when it exited on its own with an error, else None."""
        if self.proc is None:
            return None
        try:
            code = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            return None
        if self._drain is not None:
            self._drain.join(5)
        if code == 0 or (self.stopped and code in (-signal.SIGTERM, -signal.SIGKILL)):
            return None
        words = " ".join(
            line.strip() for line in self._stderr.decode(errors="replace").splitlines() if line.strip()
        )
        text = f"dumpcap -i {self.interface} failed (exit status {code}): {words or 'no message'}"
        if ("permission" in words.lower() or "not permitted" in words.lower()) and "dpkg" not in words:
            text += f"; {_PERMISSION_HINT}"
        return text


def monitor_live(
    capture: LiveCapture, stats: Counter[str], monitor: Monitor | None = None
) -> Iterator[Record]:
    """Every record of the live capture, as its call completes, until dumpcap stops.

    Raises:
        LiveError: dumpcap refused to capture (or wrote something we cannot read).
    """
    try:
        yield from monitor_file(capture.path, stats, None, monitor)
    except CaptureError as e:
        raise LiveError(capture.failure() or f"dumpcap's output: {e}") from None
    problem = capture.failure()
    if problem is not None and not stats["packets"]:
        raise LiveError(problem)
