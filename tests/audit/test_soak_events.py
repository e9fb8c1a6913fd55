"""A short soak of audit events in the unit suite (benchmarks/audit_soak.py runs a million): real
calls through a real server (in memory), each a call event written to a file; every event reaches
the file, none is dropped, and what Python holds stays flat once warm."""

from __future__ import annotations

import asyncio
import sys
import tracemalloc
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_twenty_thousand_audited_calls_keep_memory_flat(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import audit_soak
    finally:
        sys.path.remove(str(BENCHMARKS))
    tracemalloc.start()
    try:
        r = asyncio.run(audit_soak.soak(20_000, tmp_path))
    finally:
        tracemalloc.stop()
    assert r["call_events_in_file"] == 20_000 and r["dropped"] == 0
    assert abs(r["python_drift_pct"]) < 5.0, r["readings"]
