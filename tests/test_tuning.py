"""dcerpc.tuning: large freed buffers are reused instead of faulting fresh pages in, and large copies
stream (glibc)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from dcerpc.tuning import NON_TEMPORAL_THRESHOLD, streaming_copies_environ

PROBE = """
import resource, sys
from dcerpc.tuning import keep_large_buffers
took = keep_large_buffers() if sys.argv[1] == "keep" else None
faults = []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    # a 16 MiB call's buffers: received, decoded, encoded; zeroed, so every page is touched
    bufs = [bytearray(16 << 20) for _ in range(3)]
    del bufs
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(took, faults[-1])
"""


def _probe(mode: str) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt tuning is glibc's")
def test_kept_buffers_are_reused_without_page_faults() -> None:
    took, kept = _probe("keep")
    _, fresh = _probe("leave")
    pages = 3 * (16 << 20) // 4096
    assert took == "True"
    assert fresh >= pages // 2  # as malloc is: freed blocks go back to the system; new ones fault in
    assert kept < pages // 16  # kept: the blocks freed last time come back already mapped


_GLIBC_X86 = (
    sys.platform.startswith("linux") and platform.machine() == "x86_64" and platform.libc_ver()[0] == "glibc"
)
_LD_SO = "/lib64/ld-linux-x86-64.so.2"


@pytest.mark.skipif(not _GLIBC_X86 or not os.path.exists(_LD_SO), reason="glibc's x86-64 tunables only")
def test_streaming_copies_environ_is_what_glibc_takes() -> None:
    """The environment streaming_copies_environ gives starts a process whose glibc has the
    threshold set (ld.so lists the tunables in effect), and other tunables already set stay."""
    env = streaming_copies_environ({"PATH": "/usr/bin", "GLIBC_TUNABLES": "glibc.malloc.tcache_count=7"})
    assert env is not None and env["PATH"] == "/usr/bin"
    listed = subprocess.run([_LD_SO, "--list-tunables"], env=env, capture_output=True, text=True, check=True)
    tunables = dict(line.split(": ", 1) for line in listed.stdout.splitlines() if ": " in line)
    assert tunables["glibc.cpu.x86_non_temporal_threshold"].split()[0] == hex(NON_TEMPORAL_THRESHOLD)
    assert tunables["glibc.malloc.tcache_count"].split()[0] == "0x7"
    # already set: nothing to change
    assert streaming_copies_environ(env) is None
