"""`dcerpc run` with NTLM users and a required level, seen through `dcerpc dump` and `dcerpc ping`."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dcerpc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dcerpc", *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def host(tmp_path: Path) -> Iterator[int]:
    users = tmp_path / "users"
    users.write_text("SAMBADOM:alice:Secret-1\n")
    port = _free_port()
    lo = 20000 + port % 20000
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "dcerpc", "run",
            "--epm-port", str(port), "--ports", f"{lo}-{lo + 50}",
            "--socket", str(tmp_path / "epm.sock"),
            "--ntlm-users", str(users), "--min-auth-level", "privacy",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                why = proc.stderr.read() if proc.stderr else ""
                raise RuntimeError(f"dcerpc run did not start: {why}") from None
            time.sleep(0.1)
    yield port
    proc.terminate()
    proc.wait(10)


def test_endpoint_mapper_anonymous_services_authenticated(host: int) -> None:
    dumped = dcerpc("dump", "127.0.0.1", "--port", str(host), "--json")  # anonymous: allowed
    assert dumped.returncode == 0, dumped.stderr
    rows = json.loads(dumped.stdout)
    echo = next(r["binding"] for r in rows if r["interface"] == "60a15ec5-4de8-11d7-a637-005056a20182")
    anonymous = dcerpc("ping", echo, "--json")
    assert anonymous.returncode == 1 and "access_denied" in anonymous.stdout
    low = dcerpc("ping", echo, "-U", "SAMBADOM/alice%Secret-1", "--level", "integrity", "--json")
    assert low.returncode == 1 and "access_denied" in low.stdout
    for mech in ("ntlm", "spnego"):
        ok = dcerpc("ping", echo, "-U", "SAMBADOM/alice%Secret-1", "--mech", mech, "--json")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert json.loads(ok.stdout)["listening"] is True
    wrong = dcerpc("ping", echo, "-U", "SAMBADOM/alice%nope", "--json")
    assert wrong.returncode == 1
