"""The audit trail's writer process: the event loop pickles batches of events into a pipe, a process
of its own makes the JSON and owns the sinks.

Why a process: formatting an event costs several times what queueing it does, and a thread that
formats shares the interpreter (the GIL) with the loop: at 64 calls in flight it took the loop's
time and held it in batches. Here the loop's share of an event is the tuple it appends
(:meth:`ProcessWriter.put`) and its part of one ``pickle.dumps`` per batch (C; objects the batch
names twice, a connection's peer tuple or an interface's SyntaxId, are pickled once).

The loop's side. Events wait in a deque until ``_BATCH`` of them do, or ``_POLL`` seconds after
the first (a timer on the running loop; outside a loop an event is sent at once). A batch is one
frame (a 4-octet length and the pickle) written to a non-blocking pipe (enlarged to 1 MiB): when
the pipe is full the rest waits in memory, retried on the timer. Events waiting here, queued or in
frames not yet in the pipe, never exceed ``capacity``: beyond it they are dropped and counted
(:attr:`ProcessWriter.dropped`), never waited for: a slow disk costs events, not a call's time.

The process (``python -c ...``, started with :mod:`subprocess`: no fork of a threaded server,
whatever multiprocessing's start method; at niceness ``_NICE``; its start-up heap frozen, as the
server's is) reads frames in order, formats each event (writer.format_record), giving up the CPU
between a frame's chunks of calls while it keeps up (:func:`_formatted`), and writes the lines to
every sink at once: a frame's, or those of the frames it has read already (up to ``_COALESCE``; a
file's sink writes them with one writev, unjoined: :func:`_write`); after each write it reports
(events written, sink failures) on a pipe of its own back. Control frames ride the same pipe, so
they keep their place among the events: ``reopen`` (SIGHUP after logrotate; the process also reopens
on a SIGHUP of its own), ``flush`` (answered once everything before it is written) and ``close``. It
ignores SIGINT and SIGTERM, so that a Ctrl-C or a stop sent to the process group leaves it to write
the server's last events, and ends at ``close`` or at the end of the pipe: when the server is gone,
however it went (its parent's death is also checked each second), so it is never left behind.

A writer process that dies is noticed at the next write to its pipe: the events it had not
written are counted as dropped, the server goes on, and a new process is started (at most one a
second; :attr:`ProcessWriter.restarts`). A server process that forks gets, in the child, a writer
that starts a process of its own when first used (the parent's queue stays the parent's).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import fcntl
import io
import logging
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Final

from ..pdu.syntax import SyntaxId
from ..tuning import settle_heap
from .calls import CallChunks
from .writer import Record, Sink, events_in, format_lines

__all__ = ["ProcessWriter", "portable"]

log = logging.getLogger("dcerpc.audit")

_POLL: Final = 0.05  # the longest an event waits in the loop's deque (the thread writer's too)
_BATCH: Final = 4096
"""Events per frame at most: 16 chunks of calls (calls.CHUNK_CALLS), a frame every 40 ms at
100,000 calls a second (``_POLL`` sends one sooner when fewer come). Each frame wakes the process;
at 256 events a frame, on a CPU it shared with the loop, it woke 400 times a second and spent
1.0-1.5 µs an event (``/proc/PID/schedstat``), against 0.7-0.85 µs at 4,096: every wake starts on
caches the loop has filled since (and it costs 0.7 µs with no loop beside it, reading a file)."""
_PIPE_SIZE: Final = 1 << 20  # F_SETPIPE_SZ: about 20,000 call events in flight to the process
_RESPAWN: Final = 1.0  # seconds between starts of a writer process
_LEN: Final = struct.Struct("<I")
_COUNT: Final = struct.Struct("i")  # FIONREAD's answer
_STATUS: Final = struct.Struct("<QQQ")  # flush acknowledged, events written, sink failures
_F_SETPIPE_SZ: Final = 1031
_BEHIND: Final = 256 << 10
"""Octets of frames waiting (a quarter of the pipe, some 5,000 call events) from which the writer
process formats a frame without yielding the CPU between its chunks (:func:`_formatted`)."""
_COALESCE: Final = 1 << 20
"""Octets of lines the writer process gathers into one write, at most, from frames it has read
already (a read of the pipe brings up to 1 MiB: frames the loop sent while the process was busy).
The kernel's part of writing a line falls by a third from 110 KiB writes (a chunk of calls) to
1 MiB ones on ext4 (300 MiB of 450-octet lines written by ``os.write``: 170 to 110 ns a line); a
frame is never held back waiting for another."""
_NICE: Final = 10
"""The writer process's niceness: on a CPU it shares with the server's loop or with the server's
clients, it writes when they wait rather than taking turns with them (a call never waits on the
trail). Contended, it still gets about a tenth of the CPU (CFS weight 110 against 1024), a hundred
thousand call events a second at this machine's 1-2 µs each: the trail falls behind, and drops
what ``capacity`` cannot hold (counted), only under more than that."""

_writers: weakref.WeakSet[ProcessWriter] = weakref.WeakSet()


def _syntax(interface_int: int, version: tuple[int, int]) -> SyntaxId:
    """A SyntaxId again, in the writer process (made once each)."""
    found = _syntaxes.get((interface_int, version))
    if found is None:
        if len(_syntaxes) >= 1024:
            _syntaxes.clear()
        found = _syntaxes[interface_int, version] = SyntaxId(uuid.UUID(int=interface_int), version)
    return found


_syntaxes: dict[tuple[int, tuple[int, int]], SyntaxId] = {}
_REDUCE: Final[dict[type, Any]] = {
    # as their numbers: the default path (a dataclass's and UUID's __getstate__, copyreg) is Python
    # code, run for each object a batch names (every call names its interface)
    SyntaxId: lambda s: (_syntax, (s.uuid.int, s.version)),
    uuid.UUID: lambda u: (uuid.UUID, (None, None, None, None, u.int)),
}


def _dumps(obj: Any) -> bytes:
    out = io.BytesIO()
    pickler = pickle.Pickler(out, 5)
    pickler.dispatch_table = _REDUCE
    pickler.dump(obj)
    return out.getvalue()


def portable(sinks: Sequence[Sink]) -> bool:
    """The sinks can be made again in a writer process (ours, each made from its settings)."""
    return all(getattr(s, "portable", False) for s in sinks)


class ProcessWriter(CallChunks):
    """Sends queued events to a writer process (see the module docstring); :class:`writer.Writer`'s
    interface, for sinks that :func:`portable` accepts.

    Args:
        sinks: where every event goes; made again in the process (the ones given are closed here).
        capacity: events that may wait on this side; more are dropped and counted.
    """

    def __init__(self, sinks: Sequence[Sink], capacity: int = 65536) -> None:
        self.sinks = list(sinks)
        self.capacity = capacity
        self.dropped = 0  # events not written: the queue was full, or the writer process died
        self.restarts = 0  # writer processes started again after one died
        self._spec = pickle.dumps(self.sinks, 5)  # FileSink and the rest pickle as their settings
        for sink in self.sinks:
            sink.close()  # the process opens its own
        self._queue: collections.deque[Record] = collections.deque()
        self._queued = 0  # events queued so far (the loop counts these)
        self._framed = 0  # of them, taken into frames (under the lock: a flush may do it)
        self._init_chunks()
        self._frames: collections.deque[list[Any]] = collections.deque()  # [memoryview, events]
        self._waiting = 0  # events in _frames
        self._lock = threading.RLock()  # the loop's timer and a caller of flush() in another thread
        self._timer: asyncio.TimerHandle | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._fd = -1  # our end of the events pipe
        self._back = -1  # our end of the status pipe
        self._status = bytearray()
        self._sent = 0  # events this process's writer was given (whole frames in the pipe)
        self._done = 0  # of them, written (its last report)
        self._base_written = 0  # written by writer processes before this one
        self._errors = 0
        self._base_errors = 0
        self._acked = 0
        self._flushes = 0
        self._started = 0.0
        self._closed = False
        self._spawn()
        _writers.add(self)

    # the loop's calls -----------------------------------------------------------------------------

    def _enqueue(self, record: Record, events: int) -> None:
        """Queue an event, or a shipped chunk of ``events`` calls (calls.CallChunks)."""
        n = self._queued - self._framed
        if n + self._waiting + events > self.capacity or self._closed:
            self.dropped += events
            return
        self._queue.append(record)
        self._queued += events
        if n + events >= _BATCH:
            self._send()
        elif self._timer is None:
            self._arm()

    def reopen(self) -> None:
        """Reopen the sinks' files, after the events queued before this (logrotate moved them)."""
        self.ship_open(time.monotonic() + 5.0)
        with self._lock:
            self._frame_events()
            self._control(("reopen",))
            self._pump(None)
        self._arm()

    @property
    def written(self) -> int:
        """Events the writer processes have written (to every sink that took them)."""
        with self._lock:
            self._poll()
            return self._base_written + self._done

    @property
    def errors(self) -> int:
        """Batches a sink failed to write."""
        with self._lock:
            self._poll()
            return self._base_errors + self._errors

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event queued so far is written (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        if not self.ship_open(deadline):  # (not under the lock: the loop may need it to ship)
            return False
        with self._lock:
            if self._proc is None and not self._respawn(force=True):
                return False
            self._frame_events()
            self._flushes += 1
            token = self._flushes
            self._control(("flush", token))
            if not self._pump(deadline):
                return False
            while self._acked < token:
                left = deadline - time.monotonic()
                if left <= 0 or self._back < 0:
                    return False
                select.select([self._back], [], [], left)
                if not self._poll():  # the process is gone
                    return False
            return True

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, stop the writer process."""
        self.flush(timeout)
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._proc is not None:
                self._control(("close",))
                self._pump(time.monotonic() + timeout)
                self._stop(timeout)

    # sending --------------------------------------------------------------------------------------

    def _arm(self) -> bool:
        """The timer that sends what waits (and ships the open chunk of calls); False when not on
        a loop (a test, a thread): what waits is sent now."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._send()
            return False
        if self._timer is None:
            self._timer = loop.call_later(_POLL, self._tick)
        return True

    def _tick(self) -> None:
        self.ship()  # (the timer still set: the chunk queued does not arm another)
        self._timer = None
        self._send()
        if self._queue or self._frames:
            self._arm()

    def _send(self) -> None:
        with self._lock:
            if self._proc is None and not self._respawn():
                return  # waits for the next start (bounded by capacity)
            self._frame_events()
            self._pump(None)

    def _frame_events(self) -> None:
        queue = self._queue
        popleft = queue.popleft  # not list(queue) and clear(): put() may append in between (threads)
        while queue:
            batch = []
            events = 0
            while queue and events < _BATCH:  # _BATCH events, a chunk of calls counting its calls
                record = popleft()
                batch.append(record)
                events += events_in(record)
            self._framed += events
            try:
                data = _dumps(batch)
            except Exception:  # an event that does not pickle loses itself, not its batch
                batch = [r for r in batch if self._pickles(r)]
                events = sum(map(events_in, batch))
                data = _dumps(batch)
            self._frames.append([memoryview(_LEN.pack(len(data)) + data), events])
            self._waiting += events

    def _pickles(self, record: Record) -> bool:
        try:
            _dumps(record)
        except Exception:
            self.dropped += events_in(record)
            log.exception("audit event %r does not pickle", record[0])
            return False
        return True

    def _control(self, message: tuple[Any, ...]) -> None:
        data = pickle.dumps(message, 5)
        self._frames.append([memoryview(_LEN.pack(len(data)) + data), 0])

    def _pump(self, deadline: float | None) -> bool:
        """Write waiting frames; without a deadline only what the pipe takes now. True when all are."""
        frames = self._frames
        while frames:
            if self._fd < 0:
                return False
            frame = frames[0]
            try:
                n = os.write(self._fd, frame[0])
            except BlockingIOError:
                left = 0.0 if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    return False
                select.select([], [self._fd], [], left)
                continue
            except OSError:  # EPIPE: the process is gone
                self._died()
                return False
            if n == len(frame[0]):
                frames.popleft()
                self._waiting -= frame[1]
                self._sent += frame[1]
            else:
                frame[0] = frame[0][n:]
        return True  # (the reports are read when asked for: written, flush; a death shows at a write)

    def _poll(self) -> bool:
        """Read the process's reports; False when it has gone."""
        if self._back < 0:
            return False
        if not self._reports():
            self._died()
            return False
        return True

    def _reports(self) -> bool:
        """Take in the reports waiting; False at the pipe's end (the process has gone)."""
        alive = True
        try:
            while True:
                data = os.read(self._back, 65536)
                if not data:
                    alive = False
                    break
                self._status += data
        except BlockingIOError:
            pass
        except OSError:
            alive = False
        whole = len(self._status) - len(self._status) % _STATUS.size
        if whole:
            acked, self._done, self._errors = _STATUS.unpack_from(self._status, whole - _STATUS.size)
            self._acked = max(self._acked, acked)
            del self._status[:whole]
        return alive

    # the process ------------------------------------------------------------------------------------

    def _spawn(self) -> None:
        events_r, events_w = os.pipe()
        back_r, back_w = os.pipe()
        with contextlib.suppress(OSError):  # Linux; elsewhere the default size
            fcntl.fcntl(events_w, _F_SETPIPE_SZ, _PIPE_SIZE)
        env = dict(os.environ)
        here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", "from dcerpc.audit.process import main; main()", str(back_w)],
                stdin=events_r, pass_fds=(back_w,), env=env,
            )  # fmt: skip
        finally:
            os.close(events_r)
            os.close(back_w)
        os.set_blocking(events_w, False)
        os.set_blocking(back_r, False)
        self._fd, self._back = events_w, back_r
        self._status.clear()
        self._sent = self._done = self._errors = self._acked = 0
        self._started = time.monotonic()
        spec = _LEN.pack(len(self._spec)) + self._spec
        self._frames.appendleft([memoryview(spec), 0])

    def _respawn(self, force: bool = False) -> bool:
        if self._closed or (not force and time.monotonic() - self._started < _RESPAWN):
            return False
        self.restarts += 1
        self._spawn()
        return True

    def _died(self) -> None:
        """The writer process is gone: what it had not written is lost, and counted."""
        if self._proc is None:
            return
        if self._back >= 0:
            self._reports()  # what it wrote before it went
        lost = self._sent - self._done + self._waiting
        self.dropped += lost
        log.error("the audit writer process ended (%s); %d events lost", self._proc.poll(), lost)
        self._base_written += self._done
        self._base_errors += self._errors
        self._frames.clear()
        self._waiting = 0
        self._close_fds()
        self._proc.poll()
        self._proc = None

    def _stop(self, timeout: float) -> None:
        self._close_fds()  # its pipe ends: it writes what the pipe holds, then exits
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:  # still writing (a slow disk): left to finish, not killed
                log.warning("the audit writer process is still writing at close; left to finish")
            self._base_written += self._done
            self._base_errors += self._errors
            self._sent = self._done = self._errors = 0
            self._proc = None

    def _close_fds(self) -> None:
        for fd in (self._fd, self._back):
            if fd >= 0:
                os.close(fd)
        self._fd = self._back = -1

    def __del__(self) -> None:
        # dropped without close(): the process sees the pipe's end, writes what it has, and ends
        with contextlib.suppress(Exception):
            self._close_fds()

    def _forked(self) -> None:
        """In a forked child: the pipes and the queue are the parent's; start afresh when used."""
        self._lock = threading.RLock()
        self._timer = None
        self._queue.clear()
        self._queued = self._framed = 0
        self._init_chunks()
        self._frames.clear()
        self._waiting = 0
        self._close_fds()
        self._proc = None
        self._started = 0.0


def _after_fork() -> None:
    for w in list(_writers):
        w._forked()


def _at_exit() -> None:
    for w in list(_writers):
        if not w._closed:
            w.close(2.0)


os.register_at_fork(after_in_child=_after_fork)
atexit.register(_at_exit)


# the writer process --------------------------------------------------------------------------------


def main() -> None:
    """The writer process: ``argv[1]`` the status pipe's descriptor, the events on standard input."""
    back = int(sys.argv[1])
    parent = os.getppid()
    with contextlib.suppress(OSError):
        os.nice(_NICE)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    hangup = [False]
    signal.signal(signal.SIGHUP, lambda *_: hangup.__setitem__(0, True))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    reader = _Frames(0, parent)
    spec = reader.next()
    if spec is None:
        return
    try:
        sinks: list[Sink] = pickle.loads(spec)
    except OSError as e:  # the file's directory is gone, say (the server tells of its own death)
        log.error("audit writer: cannot open the sinks: %s", e)
        sys.exit(1)
    settle_heap()  # (start-up is over: the package's modules, ~40,000 objects, out of the walks)
    written = errors = acked = 0
    pending: list[bytes] = []  # lines formatted, not written yet: those of the frames read in one go
    size = 0
    while True:
        frame = reader.next(hangup)
        message = pickle.loads(frame) if frame else None
        if isinstance(message, list):  # a batch of events (a control frame is a tuple)
            lines, events = _formatted(message, reader)
            pending += lines
            size += sum(map(len, lines))
            written += events
            if size < _COALESCE and reader.ready() and not hangup[0]:
                continue  # the next frame is read already: its lines go in the same write
        if pending:  # (before a control frame, a reopen or the end: each comes after these lines)
            errors += _write(sinks, pending)
            pending.clear()
            size = 0
            with contextlib.suppress(OSError):  # a report not read yet: the next says it (or gone)
                os.set_blocking(back, False)
                os.write(back, _STATUS.pack(acked, written, errors))
        if hangup[0]:
            hangup[0] = False
            errors += _each(sinks, "reopen")
        if frame is None:
            break
        if not isinstance(message, tuple):
            continue
        if message[0] == "flush":
            acked = message[1]
            os.set_blocking(back, True)
            with contextlib.suppress(OSError):
                os.write(back, _STATUS.pack(acked, written, errors))
        elif message[0] == "reopen":
            errors += _each(sinks, "reopen")
        elif message[0] == "close":
            break
    _each(sinks, "close")


def _formatted(records: list[Record], reader: _Frames) -> tuple[list[bytes], int]:
    """A frame's lines and the events they are (writer.format_lines), the CPU given up between its
    chunks of calls once the process has had ``_HOLD`` of it since it last gave it up (its CPU
    time: a wait for the CPU holds nobody), while it keeps up (``sched_yield``: to the loop when it
    is waiting for the CPU, else straight back). A frame is up to 16 chunks, 3 ms of formatting
    once: taken in one run on a CPU the loop shares, they held its calls that long, long enough
    for a client with 64 calls in flight to run out of answers and for the calls to move in one
    convoy after; in turns of one chunk (0.2 ms then) they did not. A chunk of runs of calls
    (calls.py) formats in a fraction of that, and a yield after each cost the process CPU in
    context switches (at 64 in flight, its CPU an event 0.67-0.74 us yielding after every chunk,
    0.60-0.70 after every fourth, 0.51-0.58 never; with this hold, 2.2-2.3 switches per 1,000
    calls instead of 3.8-4.1). Behind (``_BEHIND`` octets of frames waiting), the process formats
    without yielding, as its niceness lets it: a trail that yields to a saturated loop falls
    behind for good, and drops."""
    lines: list[bytes] = []
    events = 0
    last = len(records) - 1
    held = time.thread_time()
    for i, record in enumerate(records):
        got, n = format_lines((record,))
        lines += got
        events += n
        if record[0] is None and i < last and time.thread_time() - held >= _HOLD:
            if reader.waiting() < _BEHIND:
                _yield()
            held = time.thread_time()
    return lines, events


_HOLD: Final = 0.2e-3
"""Seconds of CPU the writer process formats for before it yields (:func:`_formatted`)."""
_yield: Final = getattr(os, "sched_yield", lambda: None)


def _write(sinks: list[Sink], parts: list[bytes]) -> int:
    """Write the lines ``parts`` hold to every sink: as they are to one that takes them so
    (FileSink.write_parts: one writev), joined once for the others; the sinks that failed."""
    joined: list[bytes] = []

    def write(sink: Sink) -> None:
        write_parts = getattr(sink, "write_parts", None)
        if write_parts is not None:
            write_parts(parts)
            return
        if not joined:
            joined.append(b"".join(parts))
        sink.write(joined[0])

    return _guarded(sinks, "write", write)


def _each(sinks: list[Sink], what: str, *args: Any) -> int:
    return _guarded(sinks, what, lambda sink: getattr(sink, what)(*args))


def _guarded(sinks: list[Sink], what: str, act: Callable[[Sink], object]) -> int:
    """``act`` on every sink; one that fails is logged and counted, the others go on."""
    failed = 0
    for sink in sinks:
        try:
            act(sink)
        except Exception:
            failed += 1
            log.exception("audit sink %r failed to %s", sink, what)
    return failed


class _Frames:
    """Length-prefixed frames from a pipe; None at its end (or when the parent has gone)."""

    def __init__(self, fd: int, parent: int) -> None:
        self.fd = fd
        self.parent = parent
        self.buf = bytearray()
        self.pos = 0  # where the next frame starts: the frames before are dropped once per read

    def waiting(self) -> int:
        """Octets of frames not taken yet: read already, and in the pipe still."""
        in_pipe = 0
        with contextlib.suppress(OSError):
            (in_pipe,) = _COUNT.unpack(fcntl.ioctl(self.fd, termios.FIONREAD, bytes(_COUNT.size)))
        return len(self.buf) - self.pos + int(in_pipe)

    def ready(self) -> bool:
        """A whole frame is read already (:meth:`next` returns it without waiting)."""
        return self._whole() >= 0

    def _whole(self) -> int:
        """The length of the next frame when all of it is read already, else -1."""
        left = len(self.buf) - self.pos
        if left < 4:
            return -1
        (n,) = _LEN.unpack_from(self.buf, self.pos)
        return n if left >= 4 + n else -1

    def next(self, hangup: list[bool] | None = None) -> bytes | None:
        while True:
            n = self._whole()
            if n >= 0:
                pos = self.pos
                with memoryview(self.buf) as view:
                    frame = bytes(view[pos + 4 : pos + 4 + n])  # (one copy)
                self.pos = pos + 4 + n
                return frame
            if self.pos:  # (a read brings up to 1 MiB, some hundred frames: moved down once, not each)
                del self.buf[: self.pos]
                self.pos = 0
            try:
                ready, _, _ = select.select([self.fd], [], [], 1.0)
            except InterruptedError:
                ready = []
            if hangup is not None and hangup[0]:
                return b""  # a SIGHUP: the caller reopens, then reads on
            if not ready:
                if os.getppid() != self.parent:
                    return None
                continue
            data = os.read(self.fd, 1 << 20)
            if not data:
                return None
            self.buf += data
