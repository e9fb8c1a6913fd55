"""dcerpc.tuning: large freed buffers are reused instead of faulting fresh pages in (glibc)."""

from __future__ import annotations

import subprocess
import sys

import pytest

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
