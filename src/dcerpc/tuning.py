"""Process-wide tuning: keep freed large buffers for the next call, copy large buffers with
streaming stores, and freeze what start-up made out of the garbage collector's walks.

A 16 MiB call makes a few 16 MiB buffers on each side (the call's receive buffer, the decoded
``bytes``, the encoded answer). glibc's malloc serves blocks that large with fresh ``mmap`` pages and
returns them at ``free``, so every call pays a page fault per 4 KiB on each of them: measured on a
2-core machine, that is more than half of a 16 MiB echo's time (310 MiB/s; 700 MiB/s when the
blocks are kept). :func:`keep_large_buffers` asks malloc to serve blocks up to ``largest`` from its
heap and to keep up to ``retain`` octets of freed heap instead of returning them at once.

It changes the whole process's allocator, so a library does not call it on its own: the ``dcerpc``
command's servers do, and an application that moves large calls may.

Copies: decoding a long byte array copies it once out of the call's buffer (the ``bytes`` it
becomes). glibc's ``memcpy`` switches to non-temporal (streaming) stores above a threshold derived
from the shared cache per CPU; below it, each destination line is first read into the cache, a
third pass over memory. On hardware with a few MiB of cache per CPU that threshold is around a MiB.
A virtual machine can report far more: this project's 2-core build machine reports a 504 MiB L3,
which puts the threshold at 190 MiB, so a 16 MiB copy never streams (measured: a 16 MiB echo at
1,250 MiB/s, and 1,600 MiB/s with streaming above 4 MiB). The threshold is read once at program
start from the environment (``GLIBC_TUNABLES``), so it can only be set for processes yet to start:
:func:`streaming_copies_environ` gives the environment to start them with.
"""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import sys
from collections.abc import Mapping

__all__ = ["NON_TEMPORAL_THRESHOLD", "keep_large_buffers", "settle_heap", "streaming_copies_environ"]

NON_TEMPORAL_THRESHOLD = 4 << 20
"""Copies at least this long stream past the cache: the L2 of one core on current x86 servers (a
copy larger than that does not stay in cache anyway)."""

_TUNABLE = "glibc.cpu.x86_non_temporal_threshold"

_M_TRIM_THRESHOLD = -1  # <malloc.h> mallopt parameters
_M_MMAP_THRESHOLD = -3


def keep_large_buffers(largest: int = 64 << 20, retain: int = 256 << 20) -> bool:
    """Serve blocks up to ``largest`` octets from the heap and keep up to ``retain`` octets freed
    there for reuse. False where the C library has no such tuning (not glibc): nothing changed."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt answers 1 when it took the value (musl's stub answers 0)
    return bool(mallopt(_M_MMAP_THRESHOLD, largest) == 1 and mallopt(_M_TRIM_THRESHOLD, retain) == 1)


def streaming_copies_environ(environ: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """``environ`` (default: this process's) with glibc told to stream copies of
    :data:`NON_TEMPORAL_THRESHOLD` octets or more, for starting a process with. None when there is
    nothing to change: not glibc on x86-64 Linux, or ``GLIBC_TUNABLES`` already sets it."""
    env = dict(os.environ if environ is None else environ)
    if not sys.platform.startswith("linux") or platform.machine() not in ("x86_64", "AMD64"):
        return None
    if platform.libc_ver()[0] != "glibc":
        return None
    current = env.get("GLIBC_TUNABLES", "")
    if _TUNABLE in current:
        return None
    setting = f"{_TUNABLE}={NON_TEMPORAL_THRESHOLD:#x}"
    env["GLIBC_TUNABLES"] = f"{current}:{setting}" if current else setting
    return env


def settle_heap() -> bool:
    """Once per process, when its start-up is over (a server's first listener opens; the audit
    writer process has made its sinks): collect, then move every object alive to the collector's
    permanent generation (``gc.freeze``), so that a full collection looks only at what came after
    (connections, calls, events), not at everything the process imported and compiled. True the
    first time.

    Stops a peer from stalling the loop through the collector: each full collection walked the
    ~40,000 objects of start-up (modules, classes, compiled codecs; 22 ms of CPU here, 60-150 ms
    of wall time on a loaded core), and a peer decides how often one runs: a 61 KB alter_context
    of random syntaxes makes ~10,000 objects while it is parsed, enough to set one off. Measured
    in issue 14's 10-minute hostile run: 46 full collections, the longest 1.85 s, an honest call
    waiting 3.1 s behind it; frozen, the walk is what the connections hold. What is frozen is never
    collected, so only what start-up made is: objects made later are collected as before. The
    audit writer process, on a CPU it may share with the loop, walked its own 40,000 now and then
    (20 ms each; about a tenth of its time in one 20 s profile)."""
    if _SETTLED:
        return False
    _SETTLED.append(True)
    gc.collect()  # garbage of start-up goes first: frozen, it would stay for good
    gc.freeze()
    return True


_SETTLED: list[bool] = []  # settle_heap ran (a list: no global statement)
