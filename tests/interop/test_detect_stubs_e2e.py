"""Inline equals offline for the detectors that read stubs: ``zerologon``, ``service_creation``,
``task_registration``, ``blaster_activation``.

Our ``dcerpc run`` serves none of the interfaces these attacks use, so the bind is refused and no
request stub reaches the server's inline hook. Here ``dcerpc serve`` serves minimal
implementations of the operations involved (tests/detect/attacked.py: Netlogon's challenge and
authentication, svcctl's OpenSCManager / CreateService, atsvc's NetrJobAdd, ITaskSchedulerService's
SchRpcRegisterTask, the two DCOM activators), each refusing as a hardened server does, with
``[detect] enabled = true``, in a private network namespace beside ``dcerpc epm``. impacket makes
the calls it has (nrpc, scmr, atsvc, tsch); the activations are crafted PDUs with an overlong UNC
name (tests/evaluation/crafted.py: impacket's dcomrt activates through the OXID resolver and an
object exporter first). dumpcap records the loopback; the server's alerts (its audit file) equal
``dcerpc monitor --json``'s on the recording, detector and source, with the same counts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.audit.helpers import valid
from tests.captures import start_dumpcap, wait_for_marker
from tests.cli.procs import first_document
from tests.conftest import have, require_peer
from tests.interop.netns import NetNs, netns  # noqa: F401  (the fixture)

REPO = Path(__file__).resolve().parents[2]
PORT = 4444  # pinned, outside the dynamic range: no unmapped_dynamic_port offline (none inline)
MARKER = 10137
DETECTORS = {"zerologon", "service_creation", "task_registration", "blaster_activation"}
SERVED = ["Netlogon", "Svcctl", "Atsvc", "TaskScheduler", "RemoteActivator", "SystemActivator"]

ACTIVATIONS = f"""
import asyncio, uuid
import dcerpc
from dcerpc._errors import FaultError
from dcerpc.ndr import Struct, Unique, WString, encode
from tests.detect import attacked as a

UNC = chr(92) * 2 + "A" * 2000 + chr(92) + "c$" + chr(92) + "x.doc"  # a UNC path, an overlong server name

class Named(Struct):  # where an activation properties blob holds a name (InstanceInfoData.fileName)
    fileName: Unique[WString]

async def activations():
    this = a.ORPCTHIS(a.COMVERSION(5, 7), 0, 0, uuid.uuid4(), None)
    async with await dcerpc.connect("ncacn_ip_tcp:127.0.0.1[{PORT}]") as conn:
        remote = await conn.bind(a.RemoteActivator)
        try:
            await remote.RemoteActivation(this, uuid.uuid4(), UNC, None, 2, 0, 1, [uuid.uuid4()], 1, [7])
            raise SystemExit("activated")
        except FaultError as e:
            assert e.status == a.RPC_S_ACCESS_DENIED, e
        system = await conn.bind(a.SystemActivator)
        blob = encode(Named, Named(UNC))
        try:
            await system.RemoteCreateInstance(this, None, a.MInterfacePointer(len(blob), blob))
            raise SystemExit("activated")
        except FaultError as e:
            assert e.status == a.RPC_S_ACCESS_DENIED, e
"""

ATTACK = (
    ACTIVATIONS
    + f"""
from impacket.dcerpc.v5 import atsvc, nrpc, scmr, transport, tsch
from impacket.dcerpc.v5.dtypes import NULL
from impacket.dcerpc.v5.rpcrt import DCERPCException
from tests.evaluation import crafted

def dce(iface):
    d = transport.DCERPCTransportFactory("ncacn_ip_tcp:127.0.0.1[{PORT}]").get_dce_rpc()
    d.connect()
    d.bind(iface)
    return d

d = dce(nrpc.MSRPC_UUID_NRPC)                          # Zerologon: the zero credential, again and again
for _ in range(8):
    nrpc.hNetrServerReqChallenge(d, "\\\\\\\\DC\\x00", "DC\\x00", b"\\0" * 8)
    try:
        nrpc.hNetrServerAuthenticate3(d, "\\\\\\\\DC\\x00", "DC$\\x00",
            nrpc.NETLOGON_SECURE_CHANNEL_TYPE.ServerSecureChannel, "DC\\x00", b"\\0" * 8, 0x212FFFFF)
        raise SystemExit("the zero credential was accepted")
    except nrpc.DCERPCSessionError as e:
        assert e.get_error_code() == 0xC0000022, e
d.disconnect()
d = dce(scmr.MSRPC_UUID_SCMR)                          # a service created remotely (psexec's way)
scm = scmr.hROpenSCManagerW(d)["lpScHandle"]
try:
    scmr.hRCreateServiceW(d, scm, "evil\\x00", "evil\\x00", lpBinaryPathName="%COMSPEC% /c whoami\\x00")
    raise SystemExit("the service was created")
except DCERPCException as e:  # 5 is also rpc_s_access_denied to impacket
    assert e.get_error_code() == 5, e
d.disconnect()
d = dce(atsvc.MSRPC_UUID_ATSVC)                        # a job added (at.exe's way)
info = atsvc.AT_INFO()
info["JobTime"] = 0; info["DaysOfMonth"] = 0; info["DaysOfWeek"] = 0; info["Flags"] = 0
info["Command"] = "cmd.exe /c whoami\\x00"
try:
    atsvc.hNetrJobAdd(d, NULL, info)
    raise SystemExit("the job was added")
except DCERPCException as e:
    assert e.get_error_code() == 5, e
d.disconnect()
d = dce(tsch.MSRPC_UUID_TSCHS)                         # a task registered (atexec's way)
try:
    tsch.hSchRpcRegisterTask(d, "\\\\evil\\x00", "<Task/>\\x00", tsch.TASK_CREATE, NULL, tsch.TASK_LOGON_NONE)
    raise SystemExit("the task was registered")
except DCERPCException as e:
    assert e.get_error_code() == 0x80070005, e
d.disconnect()
crafted.blaster("127.0.0.1", {PORT})                    # MS03-026's shape, crafted (does not decode)
asyncio.run(activations())                             # and well formed, by our client
"""
)


@dataclass
class Run:
    trail: Path
    pcap: Path


def _alerts(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["event"]["action"] == "detection"]


def _trail(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def run(netns: NetNs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:  # noqa: F811
    require_peer(have("dumpcap") and have("tshark"), "dumpcap / tshark are not installed (Debian tshark)")
    pytest.importorskip("impacket", reason="impacket is a dev dependency")
    tmp = tmp_path_factory.mktemp("detect-stubs")
    trail, pcap, sock = tmp / "audit.json", tmp / "session.pcapng", tmp / "epm.sock"
    config = tmp / "dcerpc.toml"
    config.write_text(f'[audit]\nfile = "{trail}"\n[detect]\nenabled = true\n')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cap = start_dumpcap(netns, pcap, "tcp")
    first_document(netns.popen([sys.executable, "-m", "dcerpc", "epm", "--socket", str(sock), "--json"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))  # fmt: skip
    served = [f"tests.detect.attacked:{name}" for name in SERVED]
    serving = netns.popen(
        [sys.executable, "-m", "dcerpc", "serve", *served, "--port", str(PORT), "--config", str(config),
         "--socket", str(sock), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=str(REPO), env=env,
    )  # fmt: skip
    assert first_document(serving)["registered"]
    attack = netns.python("-c", ATTACK, cwd=str(REPO), env=env)
    assert attack.returncode == 0, attack.stdout + attack.stderr
    deadline = time.monotonic() + 20
    while {a["rule"]["name"] for a in _alerts(_trail(trail))} < DETECTORS:
        assert time.monotonic() < deadline, _alerts(_trail(trail))
        time.sleep(0.1)
    probe = (
        "import socket\n"
        f"s = socket.socket(); s.bind(('127.0.0.1', {MARKER})); s.settimeout(2)\n"
        "try: s.connect(('127.0.0.1', 9))\n"
        "except OSError: pass\n"
    )
    netns.python("-c", probe)
    assert wait_for_marker(pcap, MARKER, seconds=20), "dumpcap did not write the last packet"
    cap.send_signal(signal.SIGINT)  # dumpcap writes what it holds and closes the file
    cap.wait(20)
    yield Run(trail, pcap)


def _summary(alerts: list[dict[str, Any]]) -> set[tuple[str, str, int]]:
    return {(a["rule"]["name"], a["source"]["ip"], a["dcerpc"]["alert"]["count"]) for a in alerts}


@pytest.mark.interop
def test_the_server_alerts_as_the_monitor_does_on_its_capture(run: Run) -> None:
    inline = _alerts(_trail(run.trail))
    assert {a["rule"]["name"] for a in inline} == DETECTORS, inline
    for a in inline:
        valid(a)
    proc = subprocess.run(
        [sys.executable, "-m", "dcerpc", "monitor", "--json", str(run.pcap)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    offline = _alerts([json.loads(line) for line in proc.stdout.splitlines()])
    assert _summary(offline) == _summary(inline), (offline, inline)
    samples = {a["rule"]["name"]: a["dcerpc"]["alert"]["samples"] for a in inline}
    assert samples == {a["rule"]["name"]: a["dcerpc"]["alert"]["samples"] for a in offline}
    assert "RCreateServiceW evil" in samples["service_creation"]
    # every attack call was served (decoded, run, answered), not refused at the bind: the audit
    # trail has each operation by name (task_registration's one alert names the first, NetrJobAdd)
    calls = [e for e in _trail(run.trail) if e["event"]["action"] == "call"]
    ops = {e["dcerpc"].get("operation") for e in calls}
    assert {
        "NetrServerReqChallenge",
        "NetrServerAuthenticate3",
        "ROpenSCManagerW",
        "RCreateServiceW",
        "NetrJobAdd",
        "SchRpcRegisterTask",
        "RemoteActivation",
        "RemoteCreateInstance",
    } <= ops, ops
    activations = Counter(
        e["dcerpc"]["fault"]["status"] for e in calls if "Remote" in e["dcerpc"]["operation"]
    )
    assert activations == {"rpc_x_bad_stub_data": 2, "rpc_s_access_denied": 2}  # crafted, then decoded
