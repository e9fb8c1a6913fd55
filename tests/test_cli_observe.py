"""`dcerpc run` with the audit trail and metrics from the config file and flags: events written,
the file reopened on SIGHUP, the metrics listener scraped."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.audit.helpers import valid, wait_until
from tests.test_cli_auth import _free_port, dcerpc


def _events(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [valid(json.loads(line)) for line in path.read_text().splitlines()] if path.exists() else []


def test_run_with_audit_file_sighup_and_metrics(tmp_path: Path) -> None:
    port, metrics = _free_port(), _free_port()
    lo = 20000 + port % 20000
    trail = tmp_path / "audit.json"
    config = tmp_path / "dcerpc.toml"
    config.write_text(f'metrics = "127.0.0.1:{metrics}"\n[audit]\nfile = "{trail}"\n')
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "dcerpc", "run", "--config", str(config),
            "--epm-port", str(port), "--ports", f"{lo}-{lo + 50}", "--socket", str(tmp_path / "epm.sock"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:

        def scrape() -> str | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=2) as r:
                    return str(r.read().decode())
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                return None

        wait_until(lambda: scrape() is not None, timeout=20)
        dumped = dcerpc("dump", "127.0.0.1", "--port", str(port), "--json")
        assert dumped.returncode == 0, dumped.stderr
        wait_until(lambda: any(e["event"]["action"] == "association-close" for e in _events(trail)))
        calls = [e for e in _events(trail) if e["event"]["action"] == "call"]
        assert calls and calls[0]["dcerpc"]["interface"]["name"] == "epmapper"
        assert calls[0]["dcerpc"]["operation"] == "ept_lookup"
        text = scrape()
        assert text is not None
        assert 'dcerpc_calls_total{interface="epmapper",operation="ept_lookup",outcome="success"}' in text
        assert "dcerpc_endpoint_map_entries" in text

        trail.rename(tmp_path / "audit.json.1")  # logrotate, then SIGHUP
        proc.send_signal(signal.SIGHUP)
        wait_until(trail.exists)
        assert dcerpc("dump", "127.0.0.1", "--port", str(port), "--json").returncode == 0
        wait_until(lambda: any(e["event"]["action"] == "call" for e in _events(trail)))
        assert proc.poll() is None  # SIGHUP did not stop it
    finally:
        proc.terminate()
        proc.wait(10)
