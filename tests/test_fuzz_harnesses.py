"""The fuzz harnesses run, cover what they should, and find no crash in a short run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from dcerpc.epm.idl import Epm
from dcerpc.mgmt.idl import Mgmt
from dcerpc.rpcecho import Echo

FUZZ = Path(__file__).resolve().parents[1] / "fuzz"


def load_harness(name: str = "ndr_fuzz"):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, FUZZ / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_harness_covers_every_operation() -> None:
    harness = load_harness()
    names = {name for name, _, _ in harness.targets()}
    for iface in (Echo, Epm, Mgmt):
        for op in iface.__operations__.values():
            assert f"{iface.__ifname__}.{op.name}.request" in names
            assert f"{iface.__ifname__}.{op.name}.response" in names


def test_short_fuzz_run_finds_no_crash(tmp_path: Path) -> None:
    harness = load_harness()
    assert harness.run(seconds=3.0, seed=1234, crash_dir=tmp_path) == 0
    assert not list(tmp_path.iterdir())


def test_short_pdu_fuzz_run_finds_no_crash(tmp_path: Path) -> None:
    """PDU parser and both associations: mutated streams never raise out of the sans-IO core."""
    harness = load_harness("pdu_fuzz")
    assert harness.run(seconds=3.0, seed=99, crash_dir=tmp_path) == 0
    assert not list(tmp_path.iterdir())
