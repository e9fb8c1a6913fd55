"""Samba's conformance suite (smbtorture rpc.echo) against our rpcecho server."""

from __future__ import annotations

import re
import subprocess

import pytest

from dcerpc.testing import ServerThread
from tests.conftest import have, require_peer

ECHO_TESTS = {
    "addone",
    "sinkdata",
    "echodata",
    "sourcedata",
    "testcall",
    "testcall2",
    "enum",
    "surrounding",
    "doublepointer",
    "sleep",
}


def smbtorture(binding: str, suite: str, *extra: str, timeout: float = 120) -> dict[str, str]:
    """Run smbtorture; returns test name -> outcome (success / failure / error / skip)."""
    require_peer(have("smbtorture"), "smbtorture is not installed (Debian package samba-testsuite)")
    proc = subprocess.run(
        ["smbtorture", binding, suite, "-U%", *extra],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    outcomes = {}
    for m in re.finditer(r"^(success|failure|error|skip): (\S+)", proc.stdout, re.MULTILINE):
        outcomes[m.group(2).split(".")[-1]] = m.group(1)
    assert outcomes, f"smbtorture ran nothing:\n{proc.stdout}\n{proc.stderr}"
    return outcomes


@pytest.mark.interop
def test_rpc_echo_all_tests_pass(echo_server: ServerThread) -> None:
    outcomes = smbtorture(f"ncacn_ip_tcp:127.0.0.1[{echo_server.port}]", "rpc.echo")
    assert set(outcomes) == ECHO_TESTS
    failed = {t: o for t, o in outcomes.items() if o != "success"}
    assert not failed, failed


@pytest.mark.interop
def test_rpc_echo_big_endian_client(echo_server: ServerThread) -> None:
    outcomes = smbtorture(
        f"ncacn_ip_tcp:127.0.0.1[{echo_server.port},bigendian]", "rpc.echo", "--option=torture:quick=yes"
    )
    assert outcomes.pop("sleep") == "skip"  # quick mode skips it; covered little-endian above
    failed = {t: o for t, o in outcomes.items() if o != "success"}
    assert not failed, failed
    assert set(outcomes) == ECHO_TESTS - {"sleep"}
