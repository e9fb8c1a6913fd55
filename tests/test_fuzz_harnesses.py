"""The atheris harnesses (fuzz/) cover what they should and find nothing in a short run over the
committed corpus: each target runs in a subprocess for a few seconds (libFuzzer exits non-zero and
writes the input on any finding); docs/fuzzing.md has the long runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dcerpc.epm.idl import Epm
from dcerpc.mgmt.idl import Mgmt
from dcerpc.rpcecho import Echo

FUZZ = Path(__file__).resolve().parents[1] / "fuzz"
TARGETS = ("pdu", "server", "client", "ndr", "towers", "verification", "monitor", "smb2", "cl")
SECONDS = 3  # per target: about 35 s for all six, instrumentation and the corpus's first pass included

pytest.importorskip("atheris", reason="atheris is a dev dependency (pip install -e '.[dev]')")
sys.path.insert(0, str(FUZZ))


def test_ndr_harness_covers_every_operation() -> None:
    import fuzz_ndr

    names = {name for name, _, _, _ in fuzz_ndr.TARGETS}
    for iface in (Echo, Epm, Mgmt):
        for op in iface.__operations__.values():
            assert f"{iface.__ifname__}.{op.name}.request" in names
            assert f"{iface.__ifname__}.{op.name}.response" in names


def test_records_read_back() -> None:
    import records

    script = [(0, b"abc"), (3, b""), (255, bytes(70000))]
    assert list(records.decode(records.encode(script))) == [
        (0, b"abc"),
        (3, b""),
        (255, bytes(records.MAX_PAYLOAD)),
        (255, bytes(70000 - records.MAX_PAYLOAD)),
    ]
    assert list(records.decode(b"\x01\x05\x00ab")) == [(1, b"ab")]  # cut short: what there is


@pytest.mark.parametrize("target", TARGETS)
def test_short_fuzz_run_finds_nothing(target: str, tmp_path: Path) -> None:
    corpus = FUZZ / "corpus" / target
    assert len(list(corpus.iterdir())) >= 3, "the committed seeds (make_corpus.py) are missing"
    new = tmp_path / "new"
    new.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            str(FUZZ / f"fuzz_{target}.py"),
            f"-max_total_time={SECONDS}",
            f"-artifact_prefix={tmp_path}/",
            "-print_final_stats=1",
            str(new),
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    tail = proc.stderr[-4000:]
    assert proc.returncode == 0, tail
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("timeout-*")), tail
    assert "stat::number_of_executed_units" in proc.stderr, tail
