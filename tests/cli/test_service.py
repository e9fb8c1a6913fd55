"""Running as a service, for real: the registration socket, pinned ports, SIGTERM, SIGHUP, and
sockets handed over by systemd socket activation (no systemd needed: the test hands them over)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import dcerpc
from dcerpc.rpcecho.idl import Echo

from .procs import COMMAND, Running, echo_binding, free_port, host_args, port_range
from .procs import dcerpc as run_dcerpc

SLOW = textwrap.dedent("""
    import asyncio, os
    from dcerpc.rpcecho.server import EchoServer

    class Slow(EchoServer):
        async def TestSleep(self, seconds):
            open(os.environ["CALL_STARTED"], "w").close()
            await asyncio.sleep(seconds)
            return seconds
""")
SCRIPT = str(Path(sys.executable).with_name("dcerpc"))  # the installed command, not python -m


def _wait_for(predicate: Any, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _mapped(port: int) -> set[str]:
    done = run_dcerpc("dump", "127.0.0.1", "--epm-port", str(port), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return {r["binding"] for r in json.loads(done.stdout)}


def test_a_second_mapper_refuses_a_live_socket_and_takes_a_stale_one(tmp_path: Path) -> None:
    args, port, sock = host_args(tmp_path)
    first = Running(["epm", *args])
    try:
        second = subprocess.run([*COMMAND, "epm", "--epm-port", str(free_port()), "--socket", sock, "--json"],
                                capture_output=True, text=True, timeout=20, check=False)  # fmt: skip
        assert second.returncode == 1
        doc = json.loads(second.stdout)
        assert doc["kind"] == "socket_in_use" and sock in doc["error"]
        assert os.path.exists(sock)
        assert f"ncalrpc:[{sock}]" in _mapped(port)  # the first one still serves on its socket
    finally:
        first.stop()
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(stale))  # a socket file nobody listens on: what a killed mapper leaves
    args, port, _ = host_args(tmp_path)
    third = Running(["epm", *args[:-2], "--socket", str(stale)])
    try:
        assert third.ready["socket"] == str(stale)
    finally:
        third.stop()


def test_who_may_register_is_a_setting_and_a_refusal_says_why(tmp_path: Path) -> None:
    args, _, sock = host_args(tmp_path, "--register-user", "nobody")
    mapper = Running(["epm", *args])
    try:
        served = run_dcerpc("serve", "dcerpc.rpcecho.server:EchoServer", "--socket", sock,
                            "--ports", port_range(), "--json")  # fmt: skip
        assert served.returncode == 1
        doc = json.loads(served.stdout)
        assert doc["kind"] == "registration_refused" and doc["status"] == 5
        assert f"uid {os.getuid()} is not among the users the mapper lets register" in doc["error"]
        assert "start one" not in doc["error"].lower()
        mapper.wait_for_log(f"ept_insert refused for uid {os.getuid()}")
    finally:
        mapper.stop()


def test_serve_pins_the_configured_port_and_finds_modules_in_the_current_directory(tmp_path: Path) -> None:
    args, port, sock = host_args(tmp_path)
    mapper = Running(["epm", *args])
    pinned = free_port()
    conf = tmp_path / "dcerpc.toml"
    conf.write_text(f'socket = "{sock}"\nports = "{port_range()}"\n[services.rpcecho]\nport = {pinned}\n')
    (tmp_path / "slow_echo.py").write_text(SLOW)
    try:
        serving = Running(["serve", "slow_echo:Slow", "--config", str(conf)], cwd=tmp_path, command=[SCRIPT])
        try:
            assert serving.ready["address"] == f"127.0.0.1:{pinned}"
            assert f"ncacn_ip_tcp:127.0.0.1[{pinned}]" in _mapped(port)
        finally:
            serving.stop()
    finally:
        mapper.stop()


def _slow_service(tmp_path: Path, drain: str) -> tuple[Running, Running, int, int, Path]:
    args, port, sock = host_args(tmp_path)
    mapper = Running(["epm", *args])
    (tmp_path / "slow_echo.py").write_text(SLOW)
    started = tmp_path / "started"
    service = Running(
        ["serve", "slow_echo:Slow", "--socket", sock, "--ports", port_range(), "--drain-seconds", drain],
        cwd=tmp_path, env={**os.environ, "CALL_STARTED": str(started)},
    )  # fmt: skip
    service_port = int(str(service.ready["address"]).rsplit(":", 1)[1])
    return mapper, service, port, service_port, started


def _call_in_thread(port: int, seconds: int) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def go() -> None:
        try:
            with dcerpc.connect_sync(f"ncacn_ip_tcp:127.0.0.1[{port}]", call_timeout=120) as conn:
                outcome["result"] = conn.bind(Echo).TestSleep(seconds)
        except Exception as e:  # the outcome is what the test looks at
            outcome["error"] = e

    thread = threading.Thread(target=go)
    thread.start()
    return thread, outcome


def test_sigterm_deregisters_then_lets_running_calls_finish(tmp_path: Path) -> None:
    mapper, service, port, service_port, started = _slow_service(tmp_path, "30")
    try:
        assert f"ncacn_ip_tcp:127.0.0.1[{service_port}]" in _mapped(port)
        thread, outcome = _call_in_thread(service_port, 2)
        _wait_for(started.exists, "the call to start")
        service.signal(signal.SIGTERM)
        service.wait_for_log("deregistered")
        assert f"ncacn_ip_tcp:127.0.0.1[{service_port}]" not in _mapped(port)  # gone while it drains
        with pytest.raises(ConnectionRefusedError):  # no new connections
            socket.create_connection(("127.0.0.1", service_port), timeout=5).close()
        thread.join(30)
        assert outcome == {"result": 2}  # the call in progress finished
        assert service.proc.wait(15) == 0
    finally:
        service.stop()
        mapper.stop()


def test_sigterm_drain_has_a_deadline(tmp_path: Path) -> None:
    mapper, service, _, service_port, started = _slow_service(tmp_path, "0.5")
    try:
        thread, outcome = _call_in_thread(service_port, 60)
        _wait_for(started.exists, "the call to start")
        t0 = time.monotonic()
        service.signal(signal.SIGTERM)
        assert service.proc.wait(15) == 0
        assert time.monotonic() - t0 < 10  # not the call's 60 s
        thread.join(30)
        assert isinstance(outcome.get("error"), dcerpc.RpcError), outcome
    finally:
        service.stop()
        mapper.stop()


def test_sighup_reloads_credentials_levels_and_log_level(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text("SAMBADOM:alice:Secret-1\n")
    conf = tmp_path / "dcerpc.toml"
    conf.write_text('log_level = "info"\n')
    args, _, _ = host_args(tmp_path)
    host = Running(["run", *args, "--config", str(conf)])
    try:
        echo = echo_binding(host.ready)
        assert run_dcerpc("ping", echo, "--json").returncode == 0
        conf.write_text(f'log_level = "debug"\n[auth]\nntlm_users = "{users}"\nmin_auth_level = "privacy"\n')
        host.signal(signal.SIGHUP)
        host.wait_for_log("settings reloaded")
        anonymous = run_dcerpc("ping", echo, "--json")
        assert anonymous.returncode == 1 and "access_denied" in anonymous.stdout
        alice = run_dcerpc("ping", echo, "-U", "SAMBADOM/alice%Secret-1", "--json")
        assert alice.returncode == 0, alice.stdout
        host.wait_for_log("DEBUG")  # the new log level is in force
        conf.write_text('epm_port = "one"\n')  # a broken file keeps what is in force, and says why
        host.signal(signal.SIGHUP)
        host.wait_for_log("epm_port: expected int, got str")
        assert run_dcerpc("ping", echo, "-U", "SAMBADOM/alice%Secret-1", "--json").returncode == 0
        assert host.proc.poll() is None
    finally:
        host.stop()


def test_socket_activation(tmp_path: Path) -> None:
    """systemd's protocol: listening sockets at fds 3 and 4, LISTEN_FDS=2, LISTEN_PID = the service."""
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    port = tcp.getsockname()[1]
    path = str(tmp_path / "activated.sock")
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(path)
    unix.listen()
    os.chmod(path, 0o666)
    # what the service manager does between fork and exec: the sockets at 3 and 4, the variables set
    launcher = (
        "import os, sys\n"
        f"os.dup2({tcp.fileno()}, 3); os.dup2({unix.fileno()}, 4)\n"
        "os.environ.update(LISTEN_FDS='2', LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES='epm:register')\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'dcerpc', *sys.argv[1:]])\n"
    )
    mapper = subprocess.Popen(
        [sys.executable, "-c", launcher, "run", "--ports", port_range(), "--socket", str(tmp_path / "unused"),
         "--json"],
        pass_fds=(tcp.fileno(), unix.fileno()), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    tcp.close()
    unix.close()
    try:
        assert mapper.stdout is not None
        text = ""
        while True:
            line = mapper.stdout.readline()
            assert line, mapper.stderr.read() if mapper.stderr else ""
            text += line
            try:
                ready = json.loads(text)
                break
            except ValueError:
                continue
        assert ready["epm"] == f"127.0.0.1:{port}" and ready["socket"] == path
        assert not (tmp_path / "unused").exists()
        ping = run_dcerpc("ping", "127.0.0.1", "--epm-port", str(port), "--json")
        assert ping.returncode == 0, ping.stdout
        served = Running(
            ["serve", "dcerpc.rpcecho.server:EchoServer", "--socket", path, "--ports", port_range()]
        )
        try:
            assert f"ncacn_ip_tcp:{served.ready['address'].rsplit(':')[0]}" in str(_mapped(port))
        finally:
            served.stop()
    finally:
        mapper.terminate()
        mapper.communicate(timeout=15)
    assert os.path.exists(path)  # systemd's socket: not ours to remove


def test_readiness_reload_and_stop_are_told_to_the_service_manager(tmp_path: Path) -> None:
    """Type=notify: READY=1 once listening, RELOADING=1 / READY=1 around SIGHUP, STOPPING=1 at SIGTERM."""
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(str(tmp_path / "notify"))
    manager.settimeout(20)
    conf = tmp_path / "dcerpc.toml"
    conf.write_text('log_level = "info"\n')
    args, _, _ = host_args(tmp_path)
    mapper = Running(["epm", *args, "--config", str(conf)],
                     env={**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify")})  # fmt: skip
    try:
        ready = manager.recv(4096).decode().split("\n")
        assert "READY=1" in ready and f"MAINPID={mapper.proc.pid}" in ready
        mapper.signal(signal.SIGHUP)
        assert manager.recv(4096) == b"RELOADING=1"
        assert manager.recv(4096) == b"READY=1"
        mapper.signal(signal.SIGTERM)
        assert manager.recv(4096) == b"STOPPING=1"
        assert mapper.proc.wait(15) == 0
    finally:
        mapper.stop()
        manager.close()
