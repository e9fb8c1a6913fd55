"""A private network namespace (its own loopback) for tests that bind port 135 or run servers that do.

The namespace is held by a sleeping process made with ``unshare --net``; commands run inside it with
``nsenter``. Nothing inside can collide with anything on the machine, and nothing leaves it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from tests.conftest import require_peer


class NetNs:
    def __init__(self) -> None:
        self.holder = subprocess.Popen(
            ["unshare", "--net", "sh", "-c", "ip link set lo up && echo ready && exec sleep 100000"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.holder.stdout is not None
        line = self.holder.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError("could not bring up a network namespace")
        self.pid = self.holder.pid
        self.children: list[subprocess.Popen[str]] = []

    def _wrap(self, args: Sequence[str]) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "-n", "--", *args]

    def run(self, args: Sequence[str], timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run a command inside; capture its output."""
        return subprocess.run(
            self._wrap(args), capture_output=True, text=True, timeout=timeout, check=False, **kw
        )

    def popen(self, args: Sequence[str], **kw: Any) -> subprocess.Popen[str]:
        """Start a command inside (stopped at close)."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.STDOUT)
        proc = subprocess.Popen(self._wrap(args), text=True, **kw)
        self.children.append(proc)
        return proc

    def python(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run([sys.executable, *args], **kw)

    def wait_port(self, port: int, timeout: float = 20) -> None:
        probe = f"import socket,sys; socket.create_connection(('127.0.0.1', {port}), timeout=1).close()"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.python("-c", probe, timeout=5).returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError(f"nothing listens on 127.0.0.1:{port} in the namespace")

    def close(self) -> None:
        for proc in self.children:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.children:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.holder.kill()
        self.holder.wait()


def netns_available() -> bool:
    return os.geteuid() == 0 and all(shutil.which(c) for c in ("unshare", "nsenter", "ip"))


@pytest.fixture(scope="module")
def netns() -> Iterator[NetNs]:
    require_peer(
        netns_available(),
        "private network namespaces need root and unshare/nsenter/ip (util-linux, iproute2)",
    )
    ns = NetNs()
    try:
        yield ns
    finally:
        ns.close()
