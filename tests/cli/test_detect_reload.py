"""``[detect]`` read again on SIGHUP, for real: ``dcerpc run`` with inline detection, its config
file changed under it and a real SIGHUP sent. New settings take effect (a lower port_scan
threshold makes the alert the old one did not); a file that no longer reads keeps the detectors as
they were, and the log says why; ``enabled = false`` turns them off."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path
from typing import Any

from .procs import Running, echo_binding, host_args
from .procs import dcerpc as run_dcerpc

CONFIG = """[audit]
file = "{trail}"
[detect]
enabled = {enabled}
[detect.port_scan]
threshold = {threshold}
"""


def _events(trail: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in trail.read_text().splitlines()] if trail.exists() else []


def _scan(trail: Path, port: int, echo: str, source: str = "127.0.0.1") -> list[dict[str, Any]]:
    """5 connections to the mapper from ``source`` that never bind, then the detections in the
    trail once every close is written and a call made after them is too (an alert comes before)."""
    count = 5
    closes = sum(e["event"]["action"] == "association-close" for e in _events(trail))
    for _ in range(count):
        socket.create_connection(("127.0.0.1", port), source_address=(source, 0)).close()
    deadline = time.monotonic() + 20
    while sum(e["event"]["action"] == "association-close" for e in _events(trail)) < closes + count:
        assert time.monotonic() < deadline, "the closes were not audited"
        time.sleep(0.05)
    calls = sum(e["event"]["action"] == "call" for e in _events(trail))
    assert run_dcerpc("call", echo, "Echo.AddOne", "1").returncode == 0
    while sum(e["event"]["action"] == "call" for e in _events(trail)) <= calls:
        assert time.monotonic() < deadline, "the call was not audited"
        time.sleep(0.05)
    return [e for e in _events(trail) if e["event"]["action"] == "detection"]


def test_sighup_reads_detect_again(tmp_path: Path) -> None:
    trail, config = tmp_path / "audit.json", tmp_path / "dcerpc.toml"
    config.write_text(CONFIG.format(trail=trail, enabled="true", threshold=1000))
    args, port, _ = host_args(tmp_path)
    host = Running(["run", *args, "--config", str(config)])
    try:
        echo = echo_binding(host.ready)
        assert not _scan(trail, port, echo)  # 5 bindless connections: under 1000
        config.write_text(CONFIG.format(trail=trail, enabled="true", threshold='"three"'))
        host.signal(signal.SIGHUP)
        host.wait_for_log("settings not reloaded")  # the bad value, named
        assert not _scan(trail, port, echo)  # still 1000
        config.write_text(CONFIG.format(trail=trail, enabled="true", threshold=3))
        host.signal(signal.SIGHUP)
        assert "detector settings reloaded" in host.wait_for_log("settings reloaded from")
        (alert,) = _scan(trail, port, echo)
        assert alert["rule"]["name"] == "port_scan" and alert["dcerpc"]["alert"]["threshold"] == 3
        config.write_text(CONFIG.format(trail=trail, enabled="false", threshold=3))
        host.signal(signal.SIGHUP)
        assert "inline detection off" in host.wait_for_log("settings reloaded from")
        assert len(_scan(trail, port, echo, source="127.0.0.2")) == 1  # a new source: no new alert
    finally:
        host.stop()
