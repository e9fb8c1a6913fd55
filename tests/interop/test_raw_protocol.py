"""Samba's raw-PDU conformance suite (samba.tests.dcerpc.raw_protocol) against our endpoint mapper.

The suite was written from Windows Server's behaviour: it sends hand-built PDUs to the mgmt and
epmapper interfaces on TCP 135 and checks every field of each answer. We run its core set (the tests
that need only TCP 135 and NTLMSSP/SPNEGO with one user account: tests/interop/raw_protocol_runner.py
lists what is left out and why) against ``dcerpc run`` in a private network namespace, in parallel
processes, and print one line per test so that a regression is named.

Every test must pass except those in KNOWN_FAILURES, each with its reason; one of those that passes
is reported (to be removed from the list), not failed.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import SYSTEM_PYTHON
from tests.interop.netns import NetNs, netns  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
RUNNER = str(Path(__file__).with_name("raw_protocol_runner.py"))
USER, PASSWORD, DOMAIN = "alice", "Secret123!", "DOMAIN"
PROCESSES = 4  # the suite's tests are independent; each process runs a quarter of them

# Each needs what we do not have yet; docs/protocol-behaviours.md explains the behaviour.
KNOWN_FAILURES = {
    # NDR64: Windows prefers NDR64 when offered, so re-proposing a context with NDR64 beside NDR32
    # is a protocol error there; we negotiate NDR32 only
    "test_no_auth_presentation_ctx_invalid4": "NDR64 not negotiated",
    "test_spnego_change_transfer": "NDR64 not negotiated",
    "test_spnego_change_auth_type2": "NDR64 not negotiated",
}


def _smb_conf(tmp: Path) -> Path:
    state = tmp / "samba-state"
    state.mkdir()
    conf = tmp / "smb.conf"
    dirs = "\n".join(
        f"  {key} = {state}"
        for key in ("private dir", "lock dir", "state directory", "cache directory", "pid directory")
    )
    conf.write_text(
        f"[global]\n  client use kerberos = off\n  workgroup = {DOMAIN}\n{dirs}\n  log file = {state}/log\n"
    )
    return conf


@pytest.mark.timeout(600)
def test_raw_protocol_core_set(
    netns: NetNs,  # noqa: F811
    samba_python: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    users = tmp_path / "ntlm-users"
    users.write_text(f"{DOMAIN}:{USER}:{PASSWORD}\n")
    conf = _smb_conf(tmp_path)
    env = {
        "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
        "SMB_CONF_PATH": str(conf),
        "SERVER": "127.0.0.1",
        "USERNAME": USER,
        "PASSWORD": PASSWORD,
        "DOMAIN": DOMAIN,
        "REALM": DOMAIN,
    }
    listed = netns.run([SYSTEM_PYTHON, RUNNER, "--list"], env=env, timeout=60)
    assert listed.returncode == 0, listed.stderr
    names = listed.stdout.split()
    assert len(names) == 156, f"the core set should have 156 tests, found {len(names)}"

    server_env = {"PYTHONPATH": str(ROOT), "PATH": env["PATH"]}
    netns.popen(
        [
            sys.executable,
            "-m",
            "dcerpc",
            "run",
            "--ntlm-users",
            str(users),
            "--socket",
            str(tmp_path / "epm.sock"),
            "--log-level",
            "error",
        ],
        cwd=ROOT,
        env=server_env,
    )
    netns.wait_port(135)

    def run(part: list[str]) -> str:
        done = netns.run([SYSTEM_PYTHON, RUNNER, *part], env=env, timeout=480)
        return done.stdout + done.stderr

    parts = [names[k::PROCESSES] for k in range(PROCESSES)]
    with ThreadPoolExecutor(PROCESSES) as pool:
        output = "".join(pool.map(run, parts))

    outcome: dict[str, str] = {}
    detail: dict[str, list[str]] = {}
    last = ""
    for line in output.splitlines():
        word, _, rest = line.partition(" ")
        if word in ("PASS", "FAIL", "ERROR") and rest:
            last = rest.strip()
            outcome[last] = word
        elif line.startswith("    ") and last:
            detail.setdefault(last, []).append(line.strip())
    passed = sorted(n for n, o in outcome.items() if o == "PASS")
    regressions = sorted(n for n in names if outcome.get(n) != "PASS" and n not in KNOWN_FAILURES)
    fixed = sorted(n for n in KNOWN_FAILURES if outcome.get(n) == "PASS")
    with capsys.disabled():
        print()
        for name in names:
            mark = outcome.get(name, "MISSING")
            note = f"  (known: {KNOWN_FAILURES[name]})" if name in KNOWN_FAILURES and mark != "PASS" else ""
            print(f"raw_protocol {mark:7} {name}{note}")
            if mark != "PASS" and name not in KNOWN_FAILURES:
                for extra in detail.get(name, [])[-2:]:
                    print(f"    {extra}")
        print(f"raw_protocol core set: {len(passed)} of {len(names)} passed")
        if fixed:
            print(f"raw_protocol: now passing, remove from KNOWN_FAILURES: {', '.join(fixed)}")
    assert not regressions, f"raw_protocol tests failing: {regressions}"
