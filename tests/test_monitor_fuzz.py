"""The monitor's fuzz harness runs and finds no crash in a short run."""

from __future__ import annotations

from pathlib import Path

from tests.test_fuzz_harnesses import load_harness


def test_short_monitor_fuzz_run_finds_no_crash(tmp_path: Path) -> None:
    """Mutated, resegmented, reordered, overlapped sessions never raise out of the monitor."""
    harness = load_harness("monitor_fuzz")
    assert harness.run(seconds=3.0, seed=2024, crash_dir=tmp_path) == 0
    assert not list(tmp_path.iterdir())
