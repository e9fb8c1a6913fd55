"""Helpers for tests that capture with dumpcap and read the file back: starting dumpcap in a
namespace, whether the last packet reached the file, and what `dcerpc monitor --json` makes of it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.interop.netns import NetNs


def start_dumpcap(ns: NetNs, pcap: Path, bpf: str) -> subprocess.Popen[str]:
    """dumpcap on the namespace's loopback writing ``pcap`` (capture filter ``bpf``), returned
    once it says it captures (it names the file then); stopped with SIGINT, it writes what it holds."""
    cap = ns.popen(["dumpcap", "-i", "lo", "-f", bpf, "-w", str(pcap)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)  # fmt: skip
    assert cap.stderr is not None
    for line in cap.stderr:
        if line.startswith("File:"):
            break
    return cap


def marker_written(pcap: Path, marker: int, transport: str = "tcp") -> bool:
    """Whether a packet from source port ``marker`` is in the file dumpcap is writing (tshark reads
    a file cut in the middle of a block as an error, exit status 2: not yet)."""
    seen = subprocess.run(
        ["tshark", "-r", str(pcap), "-Y", f"{transport}.srcport == {marker}", "-T", "fields",
         "-e", "frame.number"],
        capture_output=True, text=True, check=False, timeout=60,
    ).stdout  # fmt: skip
    return bool(seen.strip())


def wait_for_marker(pcap: Path, marker: int, transport: str = "tcp", seconds: float = 20.0) -> bool:
    """Wait until the marker packet is in the file (False: not within ``seconds``): everything sent
    before it is there too."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if marker_written(pcap, marker, transport):
            return True
        time.sleep(0.1)
    return False


def monitor_json(pcap: Path, *args: str) -> list[dict[str, Any]]:
    """``dcerpc monitor --json [ARGS] FILE``: one dict per line; the command must succeed."""
    proc = subprocess.run(
        [sys.executable, "-m", "dcerpc", "monitor", "--json", *args, str(pcap)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]
