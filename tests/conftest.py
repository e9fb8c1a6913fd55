"""Shared test helpers: real peers are required in CI and skipped (with the reason) elsewhere."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
SYSTEM_PYTHON = "/usr/bin/python3"


def require_peer(available: bool, reason: str) -> None:
    """Skip when a peer is missing, except under CI=true where a missing peer is a failure."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"peer missing in CI: {reason}")
    pytest.skip(reason)


def samba_python_available() -> bool:
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import samba.ndr, samba.dcerpc.echo"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


@pytest.fixture(scope="session")
def samba_python() -> str:
    """Path of the interpreter that has python3-samba (Samba's C NDR and client bindings)."""
    require_peer(
        samba_python_available(),
        "python3-samba is not installed for /usr/bin/python3 (run `make test` as root to install it)",
    )
    return SYSTEM_PYTHON


def have(command: str) -> bool:
    return shutil.which(command) is not None
