"""The units in contrib/systemd/ as systemd reads them (``systemd-analyze verify``, and its offline
security review); the socket-activation protocol itself is tested in test_service.py."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_peer

CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "systemd"
INSTALLED = "/opt/dcerpc/bin/dcerpc"


def _units(tmp_path: Path) -> list[Path]:
    """The units, with ExecStart= pointing at this checkout's command (verify wants it to exist)."""
    here = str(Path(sys.executable).with_name("dcerpc"))
    out = []
    for unit in ("dcerpc-epm.socket", "dcerpc-epm.service"):
        copy = tmp_path / unit
        copy.write_text((CONTRIB / unit).read_text().replace(INSTALLED, here))
        out.append(copy)
    return out


def test_units_verify_cleanly(tmp_path: Path) -> None:
    require_peer(
        shutil.which("systemd-analyze") is not None, "systemd-analyze is not installed (apt install systemd)"
    )
    service = (CONTRIB / "dcerpc-epm.service").read_text()
    for line in ("AmbientCapabilities=CAP_NET_BIND_SERVICE", "User=dcerpc", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "ExecReload=/bin/kill -HUP $MAINPID"):  # fmt: skip
        assert line in service
    assert f"ExecStart={INSTALLED} epm" in service
    units = _units(tmp_path)
    done = subprocess.run(["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True,
                          check=False, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr  # warnings are failures too


def test_service_unit_is_hardened(tmp_path: Path) -> None:
    require_peer(
        shutil.which("systemd-analyze") is not None, "systemd-analyze is not installed (apt install systemd)"
    )
    service = _units(tmp_path)[1]
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=20", str(service)],
                          capture_output=True, text=True, check=False, cwd=tmp_path)  # fmt: skip
    if "Unknown option" in done.stderr or "unrecognized option" in done.stderr:
        pytest.skip(f"this systemd-analyze has no offline security review: {done.stderr.strip()}")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr  # exposure 2.0 or less ("OK")
