"""Benchmarks end to end, briefly: benchmarks/monitor.py on a tiny capture (about 1 MB of our client
and server, made in a namespace): both readers run over it, the figures are there, and the profile
names the monitor's modules; benchmarks/calls.py --secured (policy.py). The figures themselves are
not asserted (a loaded machine)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import have, require_peer
from tests.interop.netns import netns_available

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "monitor.py"


@pytest.mark.interop
def test_monitor_benchmark_smoke(tmp_path: Path) -> None:
    require_peer(netns_available(), "private network namespaces need root and unshare/nsenter/ip")
    require_peer(have("dumpcap") and have("tshark") and have("capinfos"), "tshark is not installed")
    require_peer(have("ethtool"), "ethtool (the capture's offloads off) is not installed")
    pcap = tmp_path / "small.pcapng"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--size-mb", "1", "--connections", "2", "--capture", str(pcap),
         "--profile", "--top", "5", "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["megabytes"] >= 1 and out["packets"] > 100 and out["made"]["calls"] > 100
    for name in ("monitor", "tshark"):
        assert out[name]["wall_s"] > 0 and out[name]["packets_per_s"] > 0
    assert out["ratio_wall"] > 0
    assert any(m.startswith("dcerpc/monitor/") for m in out["profile"]["by_module"])
    assert len(out["profile"]["top"]) == 5


def test_policy_benchmark_smoke() -> None:
    """benchmarks/calls.py --secured (policy.py) end to end, briefly: a plain and a secured server
    each measured at both depths, the secured one's audit writer process found and measured, the
    ratios there (not asserted: a loaded machine)."""
    calls = BENCH.parent / "calls.py"
    proc = subprocess.run(
        [sys.executable, str(calls), "--secured", "--seconds", "0.3", "--rounds", "1", "--json"],
        capture_output=True, text=True, timeout=300, check=False, cwd=BENCH.parent,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["seconds"], out["rounds"]) == (0.3, 1)  # calls.py's own --seconds, passed on
    plain, secured = out["runs"]["plain"][0], out["runs"]["secured"][0]
    for run in (plain, secured):
        assert run["one"] > 0 and run["many"] > 0 and run["many_server_us"] > 0
    assert plain["many_writer_us"] == 0 < secured["many_writer_us"]  # the writer process, measured
    # the wait for the trail (its timer, reading it) measured apart; the server's work in it, too
    assert plain["many_tail_ms"] == plain["many_deferred_ms"] == 0
    assert secured["many_tail_ms"] > 0 and secured["many_deferred_ms"] >= 0
    assert set(out["ratios"]) == {"one", "many"} and all(r > 0 for r in out["ratios"].values())
    # each slice's share of the CPUs the hypervisor took (0 off a virtual machine), and the rounds
    # measured again for it (at most --retries each)
    assert all(0 <= run[f"{k}_steal"] <= 100 for run in (plain, secured) for k in ("one", "many"))
    assert out["steal"]["limit"] == 5.0 and 0 <= out["steal"]["again"] <= 2 and out["steal"]["kept"] <= 1


def test_policy_benchmark_interleaved_smoke() -> None:
    """benchmarks/policy.py --interleave, briefly: both servers up at once, each measured in every
    round at both depths, the secured one's writer measured and its trail caught up each slice."""
    proc = subprocess.run(
        [sys.executable, str(BENCH.parent / "policy.py"), "--interleave", "--seconds", "0.2", "--rounds", "2",
         "--json"],
        capture_output=True, text=True, timeout=300, check=False, cwd=BENCH.parent,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["interleaved"] is True
    for name in ("plain", "secured"):
        assert len(out["runs"][name]) == 2
        for run in out["runs"][name]:
            assert run["one"] > 0 and run["many"] > 0 and run["many_server_us"] > 0
            assert run["one_behind"] == run["many_behind"] == 0
    assert all(r["many_writer_us"] == 0 for r in out["runs"]["plain"])
    assert all(r["many_writer_us"] > 0 for r in out["runs"]["secured"])


@pytest.mark.parametrize("run", [1, 3, 25])
def test_audit_writer_benchmark_smoke(run: int) -> None:
    """benchmarks/audit_writer.py end to end, briefly: the writer process fed frames of call events
    in runs of one call, of a few, and of 25, every event in its file (the script checks the count),
    the CPU an event printed (not asserted: a loaded machine)."""
    proc = subprocess.run(
        [sys.executable, str(BENCH.parent / "audit_writer.py"), "--run", str(run), "--frames", "2"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"an event (runs of {run} calls)" in proc.stdout
