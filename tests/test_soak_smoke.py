"""A bounded run of every soak scenario (benchmarks/soak.py) at tiny scale: the same properties the
full runs report, asserted.

One real server process (benchmarks/soak_server.py: what ``dcerpc run`` starts) per scenario, real
sockets, client processes of their own; about 25 s in all. The full runs and their figures are in
the README ("Soak and load") and docs/testing.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SOAK = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"
SMALL = [
    "--load", "--clients", "20", "--calls", "20", "--warmup", "5",
    "--idle", "--associations", "200",
    "--handles", "--sessions", "200", "--rounds", "1",
    "--hostile", "--seconds", "5", "--honest-seconds", "2", "--sourcedata-mib", "16",
    "--timeout", "120", "--json",
]  # fmt: skip


@pytest.fixture(scope="module")
def soak() -> dict[str, Any]:
    run = subprocess.run(
        [sys.executable, str(SOAK), *SMALL], capture_output=True, text=True, timeout=240, check=False
    )
    assert run.stdout, run.stderr
    results: dict[str, Any] = json.loads(run.stdout)
    return results


def test_load_every_call_answered_and_memory_flat(soak: dict[str, Any]) -> None:
    r = soak["load"]
    assert r["errors"] == 0, r["first_errors"]
    assert r["calls"] == 20 * 20
    assert r["connections_held"] == 20
    assert r["connections_after"] == 0
    assert r["p50_ms"] > 0 and r["p99_ms"] >= r["p50_ms"]
    assert abs(r["drift_pct"]) < 5.0


def test_idle_associations_held_and_served_after(soak: dict[str, Any]) -> None:
    r = soak["idle"]
    assert r["errors"] == 0, r["first_errors"]  # each one answered again after the hold
    assert r["held"] == r["server_connections"] == r["groups"] == 200
    assert r["rss_held"] < 1 << 30
    assert r["connections_after"] == 0
    assert r["alive_after_gc"] == {}  # nothing a connection held survives it


def test_dropped_sessions_have_their_handles_run_down(soak: dict[str, Any]) -> None:
    r = soak["handles"]
    assert r["errors"] == 0, r["first_errors"]
    assert r["handles_left_open"] == 200  # every session really left a handle behind
    assert r["handles_run_down"] == 200
    assert r["rundown_errors"] == 0
    assert r["groups_after"] == r["handles_open_after"] == r["connections_after"] == 0
    assert r["objects_alive_after_gc"] == {}
    assert abs(r["malloc_drift_pct"]) < 10.0


def test_honest_client_served_under_attack(soak: dict[str, Any]) -> None:
    r = soak["hostile"]
    honest = r["honest_attacked"]
    assert honest["calls"] > 0
    assert honest["probes"].get("failed", 0) == 0, honest["first_errors"]  # new clients let in
    assert honest["probes"].get("call errors", 0) == 0, honest["first_errors"]
    assert set(r["classes"]) == {
        "sourcedata", "alter_contexts", "co_cancel", "ntlm_contexts", "connections",
        "trickle", "never_bind", "frag_flood", "malformed",
    }  # fmt: skip
    assert all(r["classes"].values()), r["classes"]  # every class got to attack
    assert r["connections_after"] == 0
    assert r["alive_after_gc"] == {}
    assert r["honest_after"]["calls"] > 0
