"""``dcerpc monitor --interface``: a live capture through dumpcap in a private network namespace,
with real calls made while it runs; records come out as the calls complete (before the monitor is
stopped), SIGTERM and Ctrl-C (SIGINT) end it cleanly with the summary, and a user who may not
capture gets dumpcap's reason, not a traceback."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import IO

import pytest

from tests.conftest import have, require_peer
from tests.interop.netns import NetNs, netns  # noqa: F401  (the fixture)

SERVER = """
from dcerpc.rpcecho.server import EchoServer
from dcerpc.testing import ServerThread
import sys
with ServerThread(EchoServer(), port=4444):
    print("ready", flush=True)
    sys.stdin.read()
"""

CALL = """
import asyncio, sys, dcerpc
from dcerpc.rpcecho import Echo
async def main():
    async with await dcerpc.connect("ncacn_ip_tcp:127.0.0.1[4444]") as conn:
        echo = await conn.bind(Echo)
        assert await echo.AddOne(int(sys.argv[1])) == int(sys.argv[1]) + 1
asyncio.run(main())
"""


def _lines(stream: IO[str], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)
    into.put("")  # the end


def _until(lines: queue.Queue[str], want: str, ns: NetNs, seconds: float = 20) -> list[str]:
    """Make calls (new connections) until a line with ``want`` comes out: dumpcap takes a moment to
    start capturing, and nothing says when it has."""
    seen: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert ns.python("-c", CALL, "1").returncode == 0
        try:
            while True:
                line = lines.get(timeout=0.5)
                seen.append(line)
                if want in line:
                    return seen
        except queue.Empty:
            continue
    raise AssertionError(f"no live record with {want!r}: {seen}")


@pytest.fixture(scope="module")
def live_ns(netns: NetNs) -> NetNs:  # noqa: F811
    require_peer(have("dumpcap"), "dumpcap is not installed (Debian package tshark)")
    server = netns.popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE)
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    return netns


def _start(ns: NetNs, *args: str) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    mon = ns.popen([sys.executable, "-m", "dcerpc", "monitor", "--interface", "lo", *args],
                   stderr=subprocess.PIPE, env={**os.environ, "PYTHONFAULTHANDLER": "1"})  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    assert mon.stdout is not None
    threading.Thread(target=_lines, args=(mon.stdout, lines), daemon=True).start()
    return mon, lines


def _exited(mon: subprocess.Popen[str], seconds: float = 20) -> int:
    """The monitor's exit status once stopped; one that has not exited in ``seconds`` is made to
    print where each of its threads is (faulthandler, on SIGABRT) and the test fails with that."""
    try:
        return mon.wait(seconds)
    except subprocess.TimeoutExpired:
        mon.send_signal(signal.SIGABRT)
        mon.wait(10)
        where = mon.stderr.read() if mon.stderr else ""
        raise AssertionError(f"the monitor did not exit {seconds} s after it was stopped:\n{where}") from None


@pytest.mark.interop
def test_live_json_records_as_they_come_and_sigterm(live_ns: NetNs) -> None:
    mon, lines = _start(live_ns, "--json", "--filter", "tcp port 4444")
    _until(lines, '"operation":"AddOne"', live_ns)
    # one more call: its record comes out while the monitor still runs
    assert live_ns.python("-c", CALL, "41").returncode == 0
    seen = []
    while not any('"action":"call"' in s for s in seen):
        seen.append(lines.get(timeout=20))
    assert mon.poll() is None
    mon.send_signal(signal.SIGTERM)
    assert _exited(mon) == 0, mon.stderr.read() if mon.stderr else ""
    rest = []
    while (line := lines.get(timeout=20)) != "":
        rest.append(line)
    records = [json.loads(x) for x in seen + rest]
    assert all(r["destination"]["port"] == 4444 for r in records)
    assert any(r["event"]["action"] == "call" and r["event"]["outcome"] == "success" for r in records)


@pytest.mark.interop
def test_live_summary_on_ctrl_c(live_ns: NetNs) -> None:
    mon, lines = _start(live_ns)
    # the table comes only at the end, on Ctrl-C (calls made before dumpcap runs are not in it)
    for n in range(3):
        assert live_ns.python("-c", CALL, str(n)).returncode == 0
    mon.send_signal(signal.SIGINT)
    assert _exited(mon) == 0, mon.stderr.read() if mon.stderr else ""
    out = ""
    while (line := lines.get(timeout=20)) != "":
        out += line
    assert "Talkers" in out and "packets" in out, out


@pytest.mark.interop
def test_live_without_permission_is_a_clear_error(live_ns: NetNs) -> None:
    require_peer(have("setpriv"), "setpriv is not installed (util-linux)")
    nobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    proc = live_ns.run([*nobody, sys.executable, "-m", "dcerpc", "monitor", "--interface", "lo"], timeout=60)
    assert proc.returncode == 1
    assert "permission" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.interop
def test_live_unknown_interface(live_ns: NetNs) -> None:
    proc = live_ns.run([sys.executable, "-m", "dcerpc", "monitor", "--interface", "nosuch0", "--json"])
    assert proc.returncode == 1 and "nosuch0" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
