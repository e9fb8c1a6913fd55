"""``dcerpc monitor`` on real captures: dumpcap records loopback in a private network namespace
while real clients (ours, impacket with NTLM, Samba's smbtorture rpc.echo) talk to our server on a
port no RPC service uses (443); the monitor's records are checked against what the clients did, and
its call count against tshark's dissection of the same file."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.captures import monitor_json, start_dumpcap, wait_for_marker
from tests.conftest import have, require_peer
from tests.interop.netns import NetNs, netns  # noqa: F401  (the fixture)
from tests.interop.test_smbtorture_echo import ECHO_TESTS

DOMAIN, USER, PASSWORD = "SAMBADOM", "alice", "Secret-1"
PORT = 443  # recognised by content: nothing about this port says DCE/RPC

SERVER = """
import sys
from pathlib import Path
from dcerpc.auth import NegotiateProvider, NtlmProvider
from dcerpc.rpcecho.server import EchoServer
from dcerpc.testing import ServerThread
users = Path(sys.argv[1])
security = [NtlmProvider(users), NegotiateProvider(users)]
with ServerThread(EchoServer(), port=int(sys.argv[2]), security=security):
    print("ready", flush=True)
    sys.stdin.read()
"""

OUR_CLIENT = """
import asyncio, contextlib, sys
import dcerpc
from dcerpc.rpcecho import Echo
async def main():
    async with await dcerpc.connect(f"ncacn_ip_tcp:127.0.0.1[{sys.argv[1]}]") as conn:
        echo = await conn.bind(Echo)
        assert await echo.AddOne(1) == 2
        data = bytes(range(256)) * 400
        assert await echo.EchoData(len(data), data) == data   # 102400 octets: fragmented both ways
        with contextlib.suppress(dcerpc.FaultError):
            await echo.TestCall2(99)
asyncio.run(main())
"""

IMPACKET = """
import struct, sys
from impacket.dcerpc.v5 import transport
from impacket.uuid import uuidtup_to_bin
rpc = transport.DCERPCTransportFactory(f"ncacn_ip_tcp:127.0.0.1[{sys.argv[1]}]")
rpc.set_credentials(sys.argv[2], sys.argv[3], sys.argv[4])
dce = rpc.get_dce_rpc()
dce.set_auth_level(5)
dce.connect()
dce.bind(uuidtup_to_bin(("60a15ec5-4de8-11d7-a637-005056a20182", "1.0")))
dce.call(0, struct.pack("<I", 41))
assert dce.recv() == struct.pack("<I", 42)
dce.call(0, struct.pack("<I", 6))
assert dce.recv() == struct.pack("<I", 7)
dce.disconnect()
"""


MARKER = PORT + 1  # the source port of one last connection attempt: when it is in the file, all is


def _captured_to_the_end(ns: NetNs, pcap: Path, seconds: float = 20.0) -> None:
    """Wait until dumpcap has written everything before now to the file: a last SYN to the
    (closed) port from a known source port, then poll the file until tshark reads it there.
    Interrupted earlier, dumpcap may drop what its ring buffer still holds (seen: the smbtorture
    connection cut after its fourth call, one run in four)."""
    probe = (
        "import socket\n"
        f"s = socket.socket(); s.bind(('127.0.0.1', {MARKER})); s.settimeout(2)\n"
        f"try: s.connect(('127.0.0.1', {PORT}))\n"
        "except OSError: pass\n"
    )
    ns.python("-c", probe)
    assert wait_for_marker(pcap, MARKER, seconds=seconds), "dumpcap did not write the last packet"


@pytest.fixture(scope="module")
def capture(netns: NetNs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:  # noqa: F811
    require_peer(have("dumpcap") and have("tshark"), "dumpcap / tshark are not installed (Debian tshark)")
    require_peer(have("smbtorture"), "smbtorture is not installed (Debian package samba-testsuite)")
    pytest.importorskip("impacket", reason="impacket is a dev dependency")
    tmp = tmp_path_factory.mktemp("monitor")
    users = tmp / "users"
    users.write_text(f"{DOMAIN}:{USER}:{PASSWORD}\n")
    pcap = tmp / "session.pcapng"
    cap = start_dumpcap(netns, pcap, f"tcp port {PORT}")
    server = netns.popen([sys.executable, "-c", SERVER, str(users), str(PORT)], stdin=subprocess.PIPE)
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    ours = netns.python("-c", OUR_CLIENT, str(PORT))
    assert ours.returncode == 0, ours.stderr
    imp = netns.python("-c", IMPACKET, str(PORT), USER, PASSWORD, DOMAIN)
    assert imp.returncode == 0, imp.stderr
    torture = netns.run(
        ["smbtorture", f"ncacn_ip_tcp:127.0.0.1[{PORT}]", "rpc.echo", "-U%", "--option=torture:quick=yes"]
    )
    assert "success: echo.echodata" in torture.stdout, torture.stdout
    assert server.stdin is not None
    server.stdin.close()
    server.wait(20)
    _captured_to_the_end(netns, pcap)
    cap.send_signal(signal.SIGINT)  # dumpcap writes what it holds and closes the file
    cap.wait(20)
    yield pcap


@pytest.mark.interop
def test_monitor_names_every_call_of_every_client(capture: Path) -> None:
    events = monitor_json(capture)
    calls = [e for e in events if e["event"]["action"] == "call"]
    by_conn: dict[str, list[dict[str, Any]]] = {}
    for c in calls:
        by_conn.setdefault(c["dcerpc"]["connection"]["uid"], []).append(c)
    assert all(c["destination"]["port"] == PORT for c in calls)
    assert all(c["dcerpc"]["interface"]["name"] == "rpcecho" for c in calls)
    ops = [[c["dcerpc"].get("operation") for c in conn] for conn in by_conn.values()]
    # our client: AddOne, the fragmented EchoData, a TestCall2 that faults
    ours = next(
        conn
        for conn in by_conn.values()
        if [c["dcerpc"].get("operation") for c in conn][:2] == ["AddOne", "EchoData"]
    )
    assert [c["event"]["outcome"] for c in ours] == ["success", "success", "failure"]
    echo = ours[1]["dcerpc"]
    assert (
        echo["fragments"]["in"] > 1
        and echo["fragments"]["out"] > 1
        and echo["octets"]["in"] == 4 + 4 + 102400
    )  # len, the array's size, the data
    assert ours[2]["dcerpc"]["fault"]["status"] == "rpc_x_bad_stub_data"  # TestCall2's level 99
    # impacket: two AddOne calls under NTLM at integrity, by alice of SAMBADOM
    ntlm = [conn for conn in by_conn.values() if conn[0]["dcerpc"]["auth"]["type"] == "ntlm"]
    assert len(ntlm) == 1 and [c["dcerpc"]["operation"] for c in ntlm[0]] == ["AddOne", "AddOne"]
    assert all(c["user"] == {"name": USER, "domain": DOMAIN} for c in ntlm[0])
    assert all(c["dcerpc"]["auth"]["level"] == "integrity" for c in ntlm[0])
    # smbtorture: every rpc.echo test's operation (quick mode skips TestSleep)
    names = {"AddOne", "EchoData", "SinkData", "SourceData", "TestCall", "TestCall2", "TestEnum",
             "TestSurrounding", "TestDoublePointer"}  # fmt: skip
    assert len(ECHO_TESTS) == len(names) + 1
    assert any(names <= set(o) for o in ops), [sorted(set(o)) for o in ops]
    assert all(c["event"]["outcome"] in ("success", "failure") for c in calls)  # every call answered
    assert not [e for e in events if e["event"]["action"] == "protocol-violation"]
    assert not [e for e in events if e["event"]["action"] == "detection"]  # benign: no alert


@pytest.mark.interop
def test_monitor_agrees_with_tshark(capture: Path) -> None:
    """Same calls, in the same connections, with the same opnums as Wireshark's dissector sees."""
    fields = subprocess.run(
        ["tshark", "-r", str(capture), "-d", f"tcp.port=={PORT},dcerpc", "-Y", "dcerpc.pkt_type == 0",
         "-T", "fields", "-e", "tcp.stream", "-e", "dcerpc.cn_call_id", "-e", "dcerpc.opnum",
         "-e", "dcerpc.cn_flags"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    theirs: Counter[tuple[str, int]] = Counter()
    for line in fields.splitlines():
        _, call_ids, opnums, flags = line.split("\t")
        for call_id, opnum, flag in zip(
            call_ids.split(","), opnums.split(","), flags.split(","), strict=True
        ):
            if int(flag, 16) & 1:  # the first fragment: one call
                theirs[(call_id, int(opnum))] += 1
    ours: Counter[tuple[str, int]] = Counter(
        (str(e["dcerpc"]["call_id"]), e["dcerpc"]["opnum"])
        for e in monitor_json(capture)
        if e["event"]["action"] == "call"
    )
    assert ours == theirs and sum(ours.values()) > 20


@pytest.mark.interop
def test_summary_table(capture: Path) -> None:
    command = [sys.executable, "-m", "dcerpc", "monitor", str(capture)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    for words in ("Talkers", "rpcecho", "EchoData", "SAMBADOM\\alice", "rpc_x_bad_stub_data", "violations"):
        assert words in proc.stdout, proc.stdout
