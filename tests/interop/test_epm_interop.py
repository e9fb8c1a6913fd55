"""Our endpoint mapper on port 135 (in a private network namespace) against real peers.

The host runs ``dcerpc run`` (mapper + rpcecho) and one ``dcerpc serve`` process serving twelve more
interfaces on one dynamic port, as a Windows service host would: fifteen entries in the map.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SYSTEM_PYTHON, have, require_peer, samba_python_available
from tests.interop.netns import NetNs, netns  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
ECHO_UUID = "60a15ec5-4de8-11d7-a637-005056a20182"
EPM_UUID = "e1af8308-5d1f-11c9-91a4-08002b14a0fa"
SERVICES = [f"tests.epm.services:Svc{i}" for i in range(12)]


class Host:
    def __init__(self, ns: NetNs, tmp: Path) -> None:
        self.ns = ns
        self.socket = str(tmp / "epm.sock")
        self.env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
        import sys

        self.python = sys.executable
        self.run = ns.popen(
            [
                self.python,
                "-m",
                "dcerpc",
                "run",
                "--epm-allow-insert",
                "127.0.0.0/8",
                "--socket",
                self.socket,
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=self.env,
        )
        ns.wait_port(135)
        self.serve = ns.popen(
            [self.python, "-m", "dcerpc", "serve", *SERVICES, "--socket", self.socket], cwd=ROOT, env=self.env
        )
        self.wait_for(lambda rows: sum(r["annotation"].startswith("svc") for r in rows) == 12)

    def dump(self) -> list[dict[str, str]]:
        out = self.ns.run(
            [self.python, "-m", "dcerpc", "dump", "127.0.0.1", "--json"], cwd=ROOT, env=self.env
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)  # type: ignore[no-any-return]

    def wait_for(self, check, timeout: float = 20) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while True:
            rows = self.dump()
            if check(rows) or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)

    def port_of(self, uuid: str) -> int:
        row = next(
            r for r in self.dump() if r["interface"] == uuid and r["binding"].startswith("ncacn_ip_tcp")
        )
        return int(re.search(r"\[(\d+)\]", row["binding"]).group(1))  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def host(netns: NetNs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:  # noqa: F811
    yield Host(netns, tmp_path_factory.mktemp("epm"))


def smbtorture(host: Host, suite: str) -> str:
    require_peer(have("smbtorture"), "smbtorture is not installed (Debian package samba-testsuite)")
    out = host.ns.run(["smbtorture", "ncacn_ip_tcp:127.0.0.1", suite, "-U%"], timeout=300)
    return out.stdout + out.stderr


@pytest.mark.interop
def test_the_map_has_what_was_registered(host: Host) -> None:
    rows = host.dump()
    assert len(rows) == 15
    assert {r["interface"] for r in rows} >= {EPM_UUID, ECHO_UUID}
    served = [r for r in rows if r["annotation"].startswith("svc")]
    assert len({r["interface"] for r in served}) == 12  # twelve interfaces ...
    assert len({r["binding"] for r in served}) == 1  # ... on one dynamic port, as a service host does


@pytest.mark.interop
def test_smbtorture_epmapper_all_pass(host: Host) -> None:
    out = smbtorture(host, "rpc.epmapper")
    found = re.findall(r"^(success|failure|error|skip): (\S+)", out, re.MULTILINE)
    tests = {name.split(".")[-1]: outcome for outcome, name in found if name.startswith("epmapper.")}
    assert set(tests) == {
        "Map_simple",
        "Map_full",
        "Lookup_simple",
        "Lookup_terminate_search",
        "Insert_noreplace",
    }, out
    assert all(v == "success" for v in tests.values()), out


@pytest.mark.interop
def test_smbtorture_mgmt_passes(host: Host) -> None:
    out = smbtorture(host, "rpc.mgmt")
    assert re.search(r"^success: mgmt", out, re.MULTILINE), out
    assert "server refused to stop listening" in out
    assert "Testing pipe 'rpcecho'" in out


@pytest.mark.interop
def test_impacket_rpcdump_lists_the_endpoints(host: Host) -> None:
    out = host.ns.run(
        [host.python, str(Path(host.python).parent / "rpcdump.py"), "-port", "135", "127.0.0.1"]
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Received 15 endpoints" in out.stdout, out.stdout
    assert ECHO_UUID.upper() in out.stdout and EPM_UUID.upper() in out.stdout


@pytest.mark.interop
def test_impacket_hept_map_and_rpcmap(host: Host) -> None:
    script = (
        "from impacket.dcerpc.v5 import epm\nfrom impacket.uuid import uuidtup_to_bin\n"
        f"print(epm.hept_map('127.0.0.1', uuidtup_to_bin(('{ECHO_UUID}', '1.0')), protocol='ncacn_ip_tcp'))"
    )
    out = host.ns.run([host.python, "-c", script])
    assert out.stdout.strip() == f"ncacn_ip_tcp:127.0.0.1[{host.port_of(ECHO_UUID)}]", out.stderr
    rpcmap = str(Path(host.python).parent / "rpcmap.py")
    out = host.ns.run(
        [host.python, rpcmap, "-auth-level", "1", f"ncacn_ip_tcp:127.0.0.1[{host.port_of(ECHO_UUID)}]"]
    )
    assert ECHO_UUID.upper() in out.stdout.upper(), out.stdout + out.stderr
    assert "afa8bd80-7d8a-11c9-bef4-08002b102989".upper() in out.stdout.upper()


@pytest.mark.interop
def test_portless_bindings_resolve_through_the_mapper(host: Host) -> None:
    ours = (
        "import asyncio, dcerpc\nfrom dcerpc.rpcecho import Echo\n"
        "async def main():\n"
        "    async with await dcerpc.connect('ncacn_ip_tcp:127.0.0.1') as c:\n"
        "        print(await (await c.bind(Echo)).AddOne(41), c.binding.port)\n"
        "asyncio.run(main())"
    )
    out = host.ns.run([host.python, "-c", ours], cwd=ROOT, env=host.env)
    assert out.stdout.split() == ["42", str(host.port_of(ECHO_UUID))], out.stderr
    require_peer(samba_python_available(), "python3-samba is not installed for /usr/bin/python3")
    samba = (
        "from samba.dcerpc import echo\nfrom samba.param import LoadParm\n"
        "from samba.credentials import Credentials\n"
        "lp = LoadParm(); creds = Credentials(); creds.guess(lp); creds.set_anonymous()\n"
        "print(echo.rpcecho('ncacn_ip_tcp:127.0.0.1', lp, creds).AddOne(41))"
    )
    out = host.ns.run([SYSTEM_PYTHON, "-c", samba])
    assert out.stdout.strip() == "42", out.stderr


@pytest.mark.interop
def test_a_killed_server_leaves_the_map_within_a_second(host: Host) -> None:
    victim = host.ns.popen(
        [host.python, "-m", "dcerpc", "serve", "tests.epm.services:Svc40", "--socket", host.socket],
        cwd=ROOT,
        env=host.env,
    )
    rows = host.wait_for(lambda rows: any(r["annotation"] == "svc40" for r in rows))
    assert any(r["annotation"] == "svc40" for r in rows)
    # nsenter execs the command, so the Popen pid is the server itself
    victim.send_signal(signal.SIGKILL)
    victim.wait(5)
    killed = time.monotonic()
    # Each dump is a fresh interpreter (half a second or more on a loaded machine), so the time is
    # taken when the dump that first saw the map without svc40 *started*: the map changed before it.
    while True:
        asked = time.monotonic()
        rows = host.dump()
        if not any(r["annotation"] == "svc40" for r in rows) or asked - killed > 5:
            break
        time.sleep(0.05)
    gone_after = asked - killed
    assert not any(r["annotation"] == "svc40" for r in rows)
    assert gone_after < 1.0, f"entries lingered {gone_after:.2f} s"


@pytest.mark.interop
def test_ping(host: Host) -> None:
    out = host.ns.run(
        [host.python, "-m", "dcerpc", "ping", "ncacn_ip_tcp:127.0.0.1[135]", "--json"], cwd=ROOT, env=host.env
    )
    answer = json.loads(out.stdout)
    assert out.returncode == 0 and answer["listening"] is True and answer["rtt_ms"] > 0
