"""Inline: a real server (``ServerThread``) over TCP with ``Audit.detect``, real clients (ours,
impacket): the alerts are audit events in the file, counted in ``Audit.alerts`` and by the
metrics collector; benign calls make none; a server without detection makes none."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import dcerpc
from dcerpc.audit import Audit, FileSink
from dcerpc.detect import Detectors, Inline, Rule, Settings
from dcerpc.metrics import DcerpcCollector
from dcerpc.rpcecho import Echo
from dcerpc.rpcecho.server import EchoServer
from dcerpc.testing import ServerThread
from tests.audit.helpers import by_action, read_events, wait_until

ECHO = ("60a15ec5-4de8-11d7-a637-005056a20182", "1.0")


def _impacket_attack(port: int) -> None:
    from impacket.dcerpc.v5 import mgmt, transport
    from impacket.dcerpc.v5.rpcrt import DCERPCException
    from impacket.uuid import uuidtup_to_bin

    def dce():  # type: ignore[no-untyped-def]
        d = transport.DCERPCTransportFactory(f"ncacn_ip_tcp:127.0.0.1[{port}]").get_dce_rpc()
        d.connect()
        return d

    for i in range(6):  # interfaces nobody serves
        d = dce()
        with pytest.raises(DCERPCException):
            d.bind(uuidtup_to_bin((str(uuid.UUID(int=0x2000 + i)), "1.0")))
        d.disconnect()
    d = dce()
    d.bind(uuidtup_to_bin(ECHO))
    for opnum in range(20, 26):  # opnums rpcecho does not have
        d.call(opnum, b"")
        with pytest.raises(DCERPCException, match="nca_s_op_rng_error"):
            d.recv()
    d.disconnect()
    d = dce()
    d.bind(mgmt.MSRPC_UUID_MGMT)
    mgmt.hinq_if_ids(d)  # the interfaces served, listed
    d.disconnect()


def test_inline_alerts(tmp_path: Path) -> None:
    pytest.importorskip("impacket", reason="impacket is a dev dependency")
    trail = tmp_path / "audit.json"
    audit = Audit([FileSink(str(trail))], metrics=True)
    rules = {"interface_brute_force": Rule(6, 60.0), "opnum_sweep": Rule(6, 60.0), "port_scan": Rule(5, 60.0)}
    audit.detect = Inline(Detectors(Settings.of(rules, local_networks=())))  # 127.0.0.1 is not local here
    with ServerThread(EchoServer(), audit=audit) as srv:

        async def benign() -> None:
            async with await dcerpc.connect(f"ncacn_ip_tcp:127.0.0.1[{srv.port}]") as conn:
                echo = await conn.bind(Echo)
                for i in range(20):
                    assert await echo.AddOne(i) == i + 1

        asyncio.run(benign())
        audit.flush()
        assert not by_action(read_events(trail), "detection") and not audit.alerts
        _impacket_attack(srv.port)
        for _ in range(5):  # connections that never bind
            socket.create_connection(("127.0.0.1", srv.port)).close()
        want = {"interface_brute_force", "opnum_sweep", "port_scan", "mgmt_probe"}
        wait_until(lambda: {d for (d,) in audit.alerts} >= want, timeout=10)
        audit.flush()
        alerts = by_action(read_events(trail), "detection")  # checked against the schema
        assert {a["rule"]["name"] for a in alerts} == want and len(alerts) == len(want)
        sweep = next(a for a in alerts if a["rule"]["name"] == "opnum_sweep")
        assert sweep["destination"]["port"] == srv.port and sweep["dcerpc"]["alert"]["count"] == 6
        assert any("opnum 20" in s for s in sweep["dcerpc"]["alert"]["samples"])
        families = {m.name: m for m in DcerpcCollector([srv.server]).collect()}
        samples = {s.labels["detector"]: s.value for s in families["dcerpc_alerts"].samples}
        assert samples == dict.fromkeys(want, 1.0)
    audit.close()


def test_without_detection_no_alert(tmp_path: Path) -> None:
    pytest.importorskip("impacket", reason="impacket is a dev dependency")
    trail = tmp_path / "audit.json"
    audit = Audit([FileSink(str(trail))])
    with ServerThread(EchoServer(), audit=audit) as srv:
        _impacket_attack(srv.port)
        audit.flush()
        assert by_action(read_events(trail), "call") and not by_action(read_events(trail), "detection")
    audit.close()


def test_inline_version_sweep_of_rpcmap(tmp_path: Path) -> None:
    """impacket's rpcmap -brute-versions proposes rpcecho at majors 0..16: the server rejects all but
    1.0, and the bind events name what each rejected context asked for, so the sweep is seen inline
    as the monitor sees it in a capture (distinct versions of one UUID)."""
    pytest.importorskip("impacket", reason="impacket is a dev dependency")
    trail = tmp_path / "audit.json"
    audit = Audit([FileSink(str(trail))])
    audit.detect = Inline(Detectors(Settings.of(local_networks=())))
    rpcmap = Path(sys.executable).parent / "rpcmap.py"
    with ServerThread(EchoServer(), audit=audit) as srv:
        binding = f"ncacn_ip_tcp:127.0.0.1[{srv.port}]"
        args = [sys.executable, str(rpcmap), binding, "-auth-level", "1", "-brute-versions",
                "-version-max", "16", "-uuid", ECHO[0]]  # fmt: skip
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        wait_until(lambda: ("version_sweep",) in audit.alerts, timeout=10)
        audit.flush()
    audit.close()
    events = read_events(trail)
    rejected = [
        c for e in by_action(events, "bind") for c in e["dcerpc"]["contexts"] if c["result"] == "rejected"
    ]
    assert {c["interface"]["version"] for c in rejected} >= {f"{v}.0" for v in (0, *range(2, 17))}
    (sweep,) = [a for a in by_action(events, "detection") if a["rule"]["name"] == "version_sweep"]
    assert sweep["dcerpc"]["alert"]["count"] == 5 and sweep["destination"]["port"] == srv.port
