"""Running the ``dcerpc`` command for real: a subprocess whose first JSON document says it is ready."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COMMAND = [sys.executable, "-m", "dcerpc"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_range() -> str:
    lo = 20000 + free_port() % 20000
    return f"{lo}-{lo + 40}"


def dcerpc(
    *args: str, cwd: str | Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def first_document(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The JSON document a ``--json`` serving command prints once it listens (and, ``serve``,
    registered): its first lines that parse as one. RuntimeError when it exits first (with what it
    printed, and its standard error when that is a pipe)."""
    assert proc.stdout is not None
    text = ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            err = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"{proc.args} exited ({proc.wait()}): {text}{err}")
        text += line
        try:
            return dict(json.loads(text))
        except ValueError:
            continue
    raise RuntimeError(f"{proc.args}: no JSON document within 30 s: {text}")


class Running:
    """A ``dcerpc run/epm/serve --json`` process; ``ready`` is the JSON document it printed first."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        cwd: str | Path | None = None,
        command: Sequence[str] = COMMAND,
        **popen: Any,
    ) -> None:
        self.proc = subprocess.Popen(
            [*command, *args, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=cwd, **popen,
        )  # fmt: skip
        self.ready = self._document()

    def _document(self) -> dict[str, Any]:
        return first_document(self.proc)

    def wait_for_log(self, needle: str, timeout: float = 20) -> str:
        """Read stderr until a line holds ``needle``; returns what was read."""
        assert self.proc.stderr is not None
        seen = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            seen += line
            if needle in line:
                return seen
        raise AssertionError(f"no log line with {needle!r}; got:\n{seen}")

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()


def host_args(tmp: Path, *extra: str) -> tuple[list[str], int, str]:
    """Arguments for a private host (its own port, range and socket): (args, epm port, socket)."""
    port = free_port()
    sock = str(tmp / "epm.sock")
    return ["--epm-port", str(port), "--ports", port_range(), "--socket", sock, *extra], port, sock


def echo_binding(ready: dict[str, Any]) -> str:
    echo = "60a15ec5-4de8-11d7-a637-005056a20182"
    return next(
        e["binding"]
        for e in ready["endpoints"]
        if e["interface"] == echo and e["binding"].startswith("ncacn_ip_tcp")
    )
