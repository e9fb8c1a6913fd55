"""``dcerpc firewall`` applied for real: a server namespace joined by veth to two client namespaces,
the policy admitting one client network; the printed nftables rules are loaded with ``nft -f``.
The admitted client is served (the endpoint mapper and a dynamic-port service); the other's SYNs
are dropped by the filter (its connect times out, where the server alone would accept and close).
The iptables text is checked by ``iptables-restore --test`` in a namespace."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_peer
from tests.interop.netns import NetNs, netns_available

ROOT = Path(__file__).resolve().parents[2]
ECHO = "60a15ec5-4de8-11d7-a637-005056a20182"
POLICY = """
default = "deny"
[[rule]]
name = "the admitted network"
action = "allow"
source = "10.99.1.0/24"
"""
CONNECT = (
    "import socket, sys\n"
    "s = socket.socket(); s.settimeout(float(sys.argv[3]))\n"
    "try:\n"
    "    s.connect((sys.argv[1], int(sys.argv[2]))); print('connected')\n"
    "except socket.timeout:\n"
    "    print('timeout')\n"
    "except OSError as e:\n"
    "    print('error', e.errno)\n"
)


def _nft() -> str | None:
    return shutil.which("nft") or ("/usr/sbin/nft" if Path("/usr/sbin/nft").exists() else None)


@pytest.fixture
def lan() -> Iterator[tuple[NetNs, NetNs, NetNs]]:
    require_peer(
        netns_available(), "network namespaces need root and util-linux (unshare, nsenter) and iproute2"
    )
    require_peer(_nft() is not None, "nft is not installed (Debian package nftables)")
    spaces = [NetNs() for _ in range(3)]
    server, admitted, other = spaces
    try:
        for i, client in ((1, admitted), (2, other)):
            assert (
                server.run(["ip", "link", "add", f"s{i}", "type", "veth", "peer", "name", f"c{i}"]).returncode
                == 0
            )
            assert server.run(["ip", "link", "set", f"c{i}", "netns", str(client.pid)]).returncode == 0
            server.run(["ip", "addr", "add", f"10.99.{i}.1/24", "dev", f"s{i}"])
            server.run(["ip", "link", "set", f"s{i}", "up"])
            client.run(["ip", "addr", "add", f"10.99.{i}.2/24", "dev", f"c{i}"])
            client.run(["ip", "link", "set", f"c{i}", "up"])
        yield server, admitted, other
    finally:
        for ns in spaces:
            ns.close()


def _document(proc: subprocess.Popen[str]) -> dict[str, object]:
    """The JSON document a ``--json`` command prints first (indented: several lines)."""
    assert proc.stdout is not None
    text = ""
    while True:
        line = proc.stdout.readline()
        assert line, f"no ready document: {text!r}"
        text += line
        try:
            return json.loads(text)  # type: ignore[no-any-return]
        except json.JSONDecodeError:
            continue


def _connect(ns: NetNs, host: str, port: int, timeout: float = 1.5) -> str:
    return ns.python("-c", CONNECT, host, str(port), str(timeout)).stdout.strip()


@pytest.mark.interop
def test_the_printed_rules_admit_one_network_and_drop_the_other(
    lan: tuple[NetNs, NetNs, NetNs], tmp_path: Path
) -> None:
    server, admitted, other = lan
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    args = [
        "--host",
        "0.0.0.0",
        "--epm-port",
        "135",
        "--ports",
        "50000-50010",
        "--socket",
        str(tmp_path / "epm.sock"),
    ]
    rules = subprocess.run(
        [sys.executable, "-m", "dcerpc", "firewall", "--policy", str(policy), *args],
        capture_output=True, text=True, cwd=ROOT, check=True,
    ).stdout  # fmt: skip
    assert "ip saddr { 10.99.1.0/24 } accept" in rules
    loaded = server.run([_nft() or "nft", "-f", "-"], input=rules)
    assert loaded.returncode == 0, loaded.stderr
    host = server.popen(
        [sys.executable, "-m", "dcerpc", "run", "--policy", str(policy), *args, "--json"],
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    ready = _document(host)
    echo = next(
        e["binding"] for e in ready["endpoints"] if e["interface"] == ECHO and "ip_tcp" in e["binding"]
    )
    echo_port = int(echo.split("[")[1].rstrip("]"))
    # the admitted network: the mapper and the service on its dynamic port
    ping = admitted.python("-m", "dcerpc", "ping", "10.99.1.1", "--json", cwd=ROOT)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert _connect(admitted, "10.99.1.1", echo_port) == "connected"
    # the other: dropped by the filter (no answer at all), on the mapper and the service alike
    assert _connect(other, "10.99.2.1", 135) == "timeout"
    assert _connect(other, "10.99.2.1", echo_port) == "timeout"
    # without the filter the server itself refuses it, but only after accepting (a different sound)
    server.run([_nft() or "nft", "delete", "table", "inet", "dcerpc"])
    assert _connect(other, "10.99.2.1", 135) == "connected"


@pytest.mark.interop
def test_the_iptables_text_is_what_iptables_restore_takes(tmp_path: Path) -> None:
    require_peer(
        netns_available(), "network namespaces need root and util-linux (unshare, nsenter) and iproute2"
    )
    restore = shutil.which("iptables-restore") or "/usr/sbin/iptables-restore"
    require_peer(Path(restore).exists(), "iptables is not installed (Debian package iptables)")
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY + '[[rule]]\naction = "deny"\nsource = "fd00:99::/64"\n')
    ns = NetNs()
    try:
        for fmt, tool in (("iptables", restore), ("ip6tables", restore.replace("iptables", "ip6tables"))):
            text = subprocess.run(
                [sys.executable, "-m", "dcerpc", "firewall", "--format", fmt, "--policy", str(policy)],
                capture_output=True, text=True, cwd=ROOT, check=True,
            ).stdout  # fmt: skip
            applied = ns.run([tool, "--noflush"], input=text)
            assert applied.returncode == 0, (fmt, applied.stderr, text)
            listed = ns.run([tool.replace("-restore", "-save")]).stdout
            assert "-A DCERPC" in listed, listed
    finally:
        ns.close()
