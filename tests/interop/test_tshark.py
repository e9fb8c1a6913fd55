"""Wireshark's DCE/RPC dissector reads a capture of our sessions with no malformed packet."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from pathlib import Path

import pytest

import dcerpc
from dcerpc.rpcecho import Echo
from dcerpc.testing import ServerThread
from tests.conftest import have, require_peer


@pytest.mark.interop
def test_capture_dissects_cleanly(echo_server: ServerThread, tmp_path: Path) -> None:
    require_peer(have("tshark"), "tshark is not installed (Debian package tshark)")
    require_peer(os.geteuid() == 0, "capturing on the loopback interface needs root")
    pcap = tmp_path / "echo.pcap"
    port = echo_server.port
    cap = subprocess.Popen(
        ["tshark", "-i", "lo", "-f", f"tcp port {port}", "-w", str(pcap), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 15
        while not pcap.exists() and time.monotonic() < deadline:  # tshark creates the file when ready
            time.sleep(0.1)
        time.sleep(0.5)

        async def session() -> None:
            async with await dcerpc.connect(f"ncacn_ip_tcp:127.0.0.1[{port}]") as conn:
                echo = await conn.bind(Echo)
                await echo.AddOne(1)
                await echo.EchoData(20000, bytes(range(256)) * 78 + bytes(32))  # fragmented both ways
                await echo.TestCall("wireshark")
                for level in range(1, 8):
                    await echo.TestCall2(level)
                with contextlib.suppress(dcerpc.FaultError):
                    await echo.TestCall2(99)

        asyncio.run(session())
        subprocess.run(
            [
                "smbtorture",
                f"ncacn_ip_tcp:127.0.0.1[{port}]",
                "rpc.echo",
                "-U%",
                "--option=torture:quick=yes",
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )
        time.sleep(1)
    finally:
        cap.terminate()
        cap.wait(10)
    decode = ["-d", f"tcp.port=={port},dcerpc"]
    listing = subprocess.run(
        ["tshark", "-r", str(pcap), *decode, "-Y", "dcerpc", "-T", "fields", "-e", "dcerpc.pkt_type"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    kinds = {int(k) for line in listing for k in line.split(",")}
    assert {0, 2, 3, 11, 12} <= kinds  # request, response, fault, bind, bind_ack were all seen
    malformed = subprocess.run(
        ["tshark", "-r", str(pcap), *decode, "-Y", "_ws.malformed || _ws.expert.severity >= 8388608"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert malformed.strip() == "", malformed
