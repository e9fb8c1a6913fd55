"""Helpers for tests that capture with dumpcap and read the file back: whether the last packet
reached the file, and what `dcerpc monitor --json` makes of it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


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
