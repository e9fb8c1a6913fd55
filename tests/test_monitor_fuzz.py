"""The monitor's mutation harness (fuzz/monitor_fuzz.py: real sessions mutated, resegmented,
reordered, overlapped) runs and finds no crash in a short run. Its coverage-guided target is
fuzz/fuzz_monitor.py, run by tests/test_fuzz_harnesses.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

FUZZ = Path(__file__).resolve().parents[1] / "fuzz"


def test_short_monitor_fuzz_run_finds_no_crash(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("monitor_fuzz", FUZZ / "monitor_fuzz.py")
    assert spec is not None and spec.loader is not None
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)
    assert harness.run(seconds=3.0, seed=2024, crash_dir=tmp_path) == 0
    assert not list(tmp_path.iterdir())
