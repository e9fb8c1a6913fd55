"""The detectors end to end: ``dcerpc run`` with ``[detect] enabled`` in a private network
namespace, benign clients first (our client, impacket with NTLM at every auth level, smbtorture
rpc.echo, all finding the service through the endpoint mapper), then impacket attacks (an
rpcdump-style enumeration of the endpoint map, binds to a dozen interfaces nobody serves, an opnum
sweep of the endpoint mapper, connections that never bind, NTLM logons of six users with one
password, CVE-2022-26809-shaped fragment runs). The benign clients make no alert; each
attack makes its alert inline (the audit file, the metrics) and, from dumpcap's capture of the
same traffic, the same alert from ``dcerpc monitor --json``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.audit.helpers import valid
from tests.captures import start_dumpcap, wait_for_marker
from tests.conftest import have, require_peer
from tests.interop.netns import NetNs, netns  # noqa: F401  (the fixture)

DOMAIN, USER, PASSWORD = "SAMBADOM", "alice", "Secret-1"
METRICS = 9464
MARKER = 10136  # the source port of one last connection attempt: when it is in the file, all is
ATTACKS = {
    "epm_enumeration",
    "interface_brute_force",
    "opnum_sweep",
    "port_scan",
    "auth_spraying",
    "fragment_overflow",
}

OUR_CLIENT = """
import asyncio
import dcerpc
from dcerpc.rpcecho import Echo
async def main():
    async with await dcerpc.connect("ncacn_ip_tcp:127.0.0.1") as conn:   # ept_map on 135
        echo = await conn.bind(Echo)
        for i in range(5):
            assert await echo.AddOne(i) == i + 1
asyncio.run(main())
"""

IMPACKET_LEVELS = """
import struct, sys
from impacket.dcerpc.v5 import epm, transport
from impacket.dcerpc.v5.rpcrt import DCERPCException
from impacket.uuid import uuidtup_to_bin
ECHO = uuidtup_to_bin(("60a15ec5-4de8-11d7-a637-005056a20182", "1.0"))
binding = epm.hept_map("127.0.0.1", ECHO, protocol="ncacn_ip_tcp")
for level in range(1, 7):   # none, connect, call, packet, integrity, privacy
    rpc = transport.DCERPCTransportFactory(binding)
    if level > 1:
        rpc.set_credentials(sys.argv[1], sys.argv[2], sys.argv[3])
    dce = rpc.get_dce_rpc()
    dce.set_auth_level(level)
    dce.connect()
    try:
        dce.bind(ECHO)
    except DCERPCException:
        assert level == 3, level   # call level: not served (MS-RPCE 3.3.1.5.2), the bind refused
        continue
    dce.call(0, struct.pack("<I", 41))
    assert dce.recv() == struct.pack("<I", 42)
    dce.disconnect()
"""

ATTACK = """
import socket, uuid
from impacket.dcerpc.v5 import epm, transport
from impacket.dcerpc.v5.rpcrt import DCERPCException
from impacket.uuid import uuidtup_to_bin
host = "127.0.0.1"
print(len(epm.hept_lookup(host)), "entries")          # rpcdump: the whole endpoint map
for i in range(12):                                   # a dozen interfaces nobody serves
    dce = transport.DCERPCTransportFactory(f"ncacn_ip_tcp:{host}[135]").get_dce_rpc()
    dce.connect()
    try:
        dce.bind(uuidtup_to_bin((str(uuid.UUID(int=0x1000 + i)), "1.0")))
    except DCERPCException:
        pass
    dce.disconnect()
dce = transport.DCERPCTransportFactory(f"ncacn_ip_tcp:{host}[135]").get_dce_rpc()
dce.connect()
dce.bind(epm.MSRPC_UUID_PORTMAP)
for opnum in range(10, 25):                           # opnums the endpoint mapper does not have
    dce.call(opnum, b"")
    try:
        dce.recv()
    except DCERPCException:
        pass
dce.disconnect()
for _ in range(25):                                   # connections that never bind
    socket.create_connection((host, 135)).close()
ECHO = uuidtup_to_bin(("60a15ec5-4de8-11d7-a637-005056a20182", "1.0"))
binding = epm.hept_map(host, ECHO, protocol="ncacn_ip_tcp")
for i in range(6):                                    # six users, one wrong password each
    rpc = transport.DCERPCTransportFactory(binding)
    rpc.set_credentials(f"user{i}", "Summer2026!", "SAMBADOM")
    dce = rpc.get_dce_rpc()
    dce.set_auth_level(5)
    dce.connect()
    try:
        dce.bind(ECHO)
        dce.call(0, bytes(4))
        dce.recv()
    except DCERPCException:
        pass
    dce.disconnect()
from tests.evaluation.crafted import fragments        # CVE-2022-26809's shape, to rpcecho's port
fragments(host, int(binding.rsplit("[", 1)[1].rstrip("]")))
"""


@dataclass
class Run:
    trail: Path
    pcap: Path
    attacks_from: float  # time.time() when the attacks began
    metrics: str


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _alerts(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["event"]["action"] == "detection"]


def _captured_to_the_end(ns: NetNs, pcap: Path, seconds: float = 20.0) -> None:
    """A last SYN from a known source port, then wait until tshark reads it in the file."""
    probe = (
        "import socket\n"
        f"s = socket.socket(); s.bind(('127.0.0.1', {MARKER})); s.settimeout(2)\n"
        "try: s.connect(('127.0.0.1', 9))\n"
        "except OSError: pass\n"
    )
    ns.python("-c", probe)
    assert wait_for_marker(pcap, MARKER, seconds=seconds), "dumpcap did not write the last packet"


def _wait(predicate: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def run(netns: NetNs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:  # noqa: F811
    require_peer(have("dumpcap") and have("tshark"), "dumpcap / tshark are not installed (Debian tshark)")
    require_peer(have("smbtorture"), "smbtorture is not installed (Debian package samba-testsuite)")
    pytest.importorskip("impacket", reason="impacket is a dev dependency")
    tmp = tmp_path_factory.mktemp("detect")
    users, trail, pcap = tmp / "users", tmp / "audit.json", tmp / "session.pcapng"
    users.write_text(f"{DOMAIN}:{USER}:{PASSWORD}\n")
    config = tmp / "dcerpc.toml"
    config.write_text(
        f'metrics = "127.0.0.1:{METRICS}"\n[auth]\nntlm_users = "{users}"\n'
        f'[audit]\nfile = "{trail}"\n[detect]\nenabled = true\n'
    )
    cap = start_dumpcap(netns, pcap, "tcp")
    netns.popen(
        [sys.executable, "-m", "dcerpc", "run", "--config", str(config), "--ports", "49152-49200",
         "--socket", str(tmp / "epm.sock")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    netns.wait_port(135)
    ours = netns.python("-c", OUR_CLIENT)
    assert ours.returncode == 0, ours.stderr
    levels = netns.python("-c", IMPACKET_LEVELS, USER, PASSWORD, DOMAIN)
    assert levels.returncode == 0, levels.stderr
    torture = netns.run(
        ["smbtorture", "ncacn_ip_tcp:127.0.0.1", "rpc.echo", "-U%", "--option=torture:quick=yes"]
    )
    assert "success: echo.echodata" in torture.stdout, torture.stdout
    time.sleep(0.3)  # the writer's 50 ms poll, with room: what the benign clients made is written
    benign = _alerts(_events(trail))
    assert not benign, benign
    attacks_from = time.time()
    attack = netns.python("-c", ATTACK)
    assert attack.returncode == 0, attack.stderr
    _wait(lambda: {a["rule"]["name"] for a in _alerts(_events(trail))} >= ATTACKS)
    scrape = (
        f"import urllib.request as u; print(u.urlopen('http://127.0.0.1:{METRICS}/metrics').read().decode())"
    )
    scraped = netns.python("-c", scrape).stdout
    _captured_to_the_end(netns, pcap)
    cap.send_signal(signal.SIGINT)  # dumpcap writes what it holds and closes the file
    cap.wait(20)
    yield Run(trail, pcap, attacks_from, scraped)


@pytest.mark.interop
def test_inline_alerts_in_the_audit_file_and_metrics(run: Run) -> None:
    alerts = _alerts(_events(run.trail))
    by_rule = {a["rule"]["name"]: a for a in alerts}
    assert set(by_rule) == ATTACKS, sorted(by_rule)
    for a in alerts:
        valid(a)
        assert a["source"]["ip"] == "127.0.0.1" and a["event"]["kind"] == "alert"
        assert a["dcerpc"]["alert"]["count"] >= a["dcerpc"]["alert"]["threshold"]
    assert len(alerts) == len(by_rule)  # one alert per detector and source in the window, not a flood
    assert "ept_lookup RPC_C_EP_ALL_ELTS" in by_rule["epm_enumeration"]["dcerpc"]["alert"]["samples"]
    assert by_rule["opnum_sweep"]["destination"]["port"] == 135
    for rule in ATTACKS:
        assert f'dcerpc_alerts_total{{detector="{rule}"}} 1.0' in run.metrics


def _monitor(pcap: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dcerpc", "monitor", *args, str(pcap)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.interop
def test_the_capture_gives_the_same_alerts_offline(run: Run) -> None:
    proc = _monitor(run.pcap, "--json")
    assert proc.returncode == 0, proc.stderr
    offline = _alerts([json.loads(line) for line in proc.stdout.splitlines()])
    inline = _alerts(_events(run.trail))
    assert {(a["rule"]["name"], a["source"]["ip"]) for a in offline} == {
        (a["rule"]["name"], a["source"]["ip"]) for a in inline
    }, offline
    for a in offline:
        valid(a | {"ecs": {"version": "8.11.0"}})
    summary = _monitor(run.pcap).stdout
    assert "Alerts" in summary and "interface_brute_force" in summary


@pytest.mark.interop
def test_the_benign_part_of_the_capture_gives_no_alert(run: Run, tmp_path: Path) -> None:
    benign = tmp_path / "benign.pcapng"
    subprocess.run(
        ["tshark", "-r", str(run.pcap), "-Y", f"frame.time_epoch < {run.attacks_from}", "-w", str(benign)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    proc = _monitor(benign, "--json")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    calls = [e for e in events if e["event"]["action"] == "call"]
    assert len(calls) > 20  # our client's, impacket's at each level, smbtorture's
    assert not _alerts(events), _alerts(events)
