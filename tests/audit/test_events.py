"""Audit events from a real server, over real sockets, with our client: one event per association,
bind, authentication, call, violation, refusal and deadline, each valid against
docs/audit-event.schema.json; the file sink reopens after logrotate; no stub octets or secrets."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest

import dcerpc
from dcerpc import FaultError, Interface, operation
from dcerpc.audit import Audit, FileSink
from dcerpc.auth import NTLM, NtlmProvider
from dcerpc.ndr import uint32
from dcerpc.policy import parse
from dcerpc.protocol.limits import Limits
from dcerpc.rpcecho import Echo
from dcerpc.rpcecho.server import EchoServer
from dcerpc.testing import ServerThread

from .helpers import by_action, read_events, valid, wait_until

SECRET = b"stub-contents-never-logged"
PASSWORD = "wonderland-password"


class Unserved(Interface, uuid="0b8c1d2e-3f40-4a5b-8c6d-7e8f9a0b1c2d", version=(1, 0)):
    @operation(0)
    async def Nothing(self, x: uint32) -> uint32: ...


class Failing(EchoServer):
    async def AddOne(self, in_data: int) -> int:
        if in_data == 13:
            raise FaultError(0x1C010002)  # nca_s_op_rng_error, by status
        return in_data + 1


@pytest.fixture
def users(tmp_path: Path) -> Path:
    path = tmp_path / "ntlm-users"
    path.write_text(f"TESTDOM:alice:{PASSWORD}\n")
    return path


def test_every_event_of_a_session(tmp_path: Path, users: Path) -> None:
    log_path = tmp_path / "audit.json"
    audit = Audit([FileSink(log_path)])
    with ServerThread(Failing(), security=[NtlmProvider(users)], audit=audit) as srv:
        binding = f"ncacn_ip_tcp:127.0.0.1[{srv.port}]"

        async def session() -> None:
            creds = NTLM("TESTDOM", "alice", PASSWORD)
            async with await dcerpc.connect(binding, auth=creds, level="privacy") as conn:
                echo = await conn.bind(Echo)
                assert await echo.AddOne(1) == 2
                assert await echo.EchoData(len(SECRET), SECRET) == SECRET
                with pytest.raises(FaultError):
                    await echo.AddOne(13)
                with pytest.raises(dcerpc.RpcError):
                    await conn.bind(Unserved)  # alter_context: the context rejected
            try:
                async with await dcerpc.connect(binding, auth=NTLM("OTHERDOM", "mallory", "guess")) as conn:
                    await (await conn.bind(Echo)).AddOne(1)
            except dcerpc.RpcError:
                pass

        asyncio.run(session())
        wait_until(lambda: srv.server.open_connections == 0)
    assert audit.flush()
    text = log_path.read_text()
    assert SECRET.decode() not in text and PASSWORD not in text and "guess" not in text
    events = read_events(log_path)  # every one valid against the schema

    opened = by_action(events, "association-open")
    assert len(opened) == 2
    first = opened[0]
    assert first["source"]["ip"] == "127.0.0.1" and first["destination"]["port"] == srv.port
    assert first["network"]["transport"] == "tcp" and first["dcerpc"]["transport"] == "ncacn_ip_tcp"
    number = first["dcerpc"]["association"]["id"]

    closed = [e for e in by_action(events, "association-close") if e["dcerpc"]["association"]["id"] == number]
    assert len(closed) == 1
    assert closed[0]["dcerpc"]["association"]["calls"] == 3
    assert closed[0]["source"]["bytes"] > 2 * len(SECRET) and closed[0]["destination"]["bytes"] > len(SECRET)
    assert closed[0]["event"]["duration"] > 0

    binds = [e for e in by_action(events, "bind") if e["dcerpc"]["association"]["id"] == number]
    assert len(binds) == 1 and binds[0]["event"]["outcome"] == "success"
    assert binds[0]["dcerpc"]["auth"] == {"type": "ntlm", "level": "privacy"}
    (context,) = binds[0]["dcerpc"]["contexts"]
    assert context["result"] == "accepted" and context["interface"]["uuid"] == str(Echo.__syntax__.uuid)
    (alter,) = by_action(events, "alter-context")
    assert alter["event"]["outcome"] == "failure"
    assert alter["dcerpc"]["contexts"][0] == {
        "id": 1,
        "result": "rejected",
        "reason": "abstract_syntax_not_supported",
        "interface": {"uuid": "0b8c1d2e-3f40-4a5b-8c6d-7e8f9a0b1c2d", "version": "1.0"},  # what was asked
    }

    auths = by_action(events, "authentication")
    ok = [a for a in auths if a["event"]["outcome"] == "success"]
    refused = [a for a in auths if a["event"]["outcome"] == "failure"]
    assert ok[0]["user"] == {"name": "alice", "domain": "TESTDOM"}
    assert ok[0]["dcerpc"]["auth"]["principal"] == "TESTDOM\\alice"
    assert refused[0]["user"] == {"name": "mallory", "domain": "OTHERDOM"}  # the name attempted
    assert refused[0]["event"]["reason"]

    calls = by_action(events, "call")
    assert [c["dcerpc"]["operation"] for c in calls] == ["AddOne", "EchoData", "AddOne"]
    good, data, fault = calls
    assert good["dcerpc"]["interface"]["name"] == "rpcecho" and good["dcerpc"]["opnum"] == 0
    assert good["event"]["outcome"] == "success" and good["event"]["duration"] > 0
    assert good["dcerpc"]["auth"] == {"type": "ntlm", "level": "privacy", "principal": "TESTDOM\\alice"}
    assert data["dcerpc"]["octets"]["in"] >= len(SECRET) and data["dcerpc"]["octets"]["out"] >= len(SECRET)
    assert fault["event"]["outcome"] == "failure"
    assert fault["dcerpc"]["fault"] == {"status": "nca_s_op_rng_error", "code": 0x1C010002}

    violations = by_action(events, "protocol-violation")
    assert {v["dcerpc"]["violation"] for v in violations} >= {"auth3_refused"}


def test_unknown_opnum_and_level_refusal_are_call_events(tmp_path: Path) -> None:
    log_path = tmp_path / "audit.json"
    audit = Audit([FileSink(log_path)])
    with ServerThread(EchoServer(), audit=audit) as srv:
        srv.server.require_auth(Echo, 5)
        with dcerpc.connect_sync(f"ncacn_ip_tcp:127.0.0.1[{srv.port}]") as conn, pytest.raises(FaultError):
            conn.bind(Echo).AddOne(1)
        wait_until(lambda: srv.server.open_connections == 0)
    audit.flush()
    (call,) = by_action(read_events(log_path), "call")
    assert call["dcerpc"]["fault"]["status"] == "rpc_s_access_denied"
    assert call["dcerpc"]["operation"] == "AddOne"  # resolved before the level was checked


def test_refusal_and_deadline_events(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log_path = tmp_path / "audit.json"
    audit = Audit([FileSink(log_path)])
    limits = Limits(max_connections_per_source=1, bind_timeout=0.3)
    with ServerThread(EchoServer(), audit=audit, limits=limits) as srv, caplog.at_level(logging.INFO):
        first = socket.create_connection(("127.0.0.1", srv.port))  # never binds: the bind deadline
        wait_until(lambda: srv.server.open_connections == 1)
        second = socket.create_connection(("127.0.0.1", srv.port))  # over the per-source limit
        wait_until(lambda: srv.server.refusals["source_limit"] == 1)
        wait_until(lambda: srv.server.refusals["bind_timeout"] == 1)
        first.close()
        second.close()
    audit.flush()
    events = read_events(log_path)
    (refused,) = by_action(events, "connection-refused")
    assert refused["dcerpc"]["refusal"] == "source_limit" and refused["source"]["ip"] == "127.0.0.1"
    (expired,) = by_action(events, "deadline-expired")
    assert expired["dcerpc"]["refusal"] == "bind_timeout"
    # the log lines print peers as ip:port, not as Python tuples
    lines = [r.getMessage() for r in caplog.records if r.name == "dcerpc.server"]
    assert any("refusing 127.0.0.1:" in m for m in lines)
    assert not any("('127.0.0.1'" in m for m in lines)


def test_debug_lines_per_connection_bind_and_call(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="dcerpc.server"), ServerThread(EchoServer()) as srv:
        with dcerpc.connect_sync(f"ncacn_ip_tcp:127.0.0.1[{srv.port}]") as conn:
            assert conn.bind(Echo).AddOne(41) == 42
        wait_until(lambda: srv.server.open_connections == 0)
    lines = [
        r.getMessage() for r in caplog.records if r.name == "dcerpc.server" and r.levelno == logging.DEBUG
    ]
    assert any(m.startswith("connection ") and "from 127.0.0.1:" in m for m in lines)
    assert any(m.startswith("bind from 127.0.0.1:") and "rpcecho" in m for m in lines)
    assert any("rpcecho.AddOne (opnum 0) ok" in m for m in lines)
    assert any(" closed: 1 calls" in m for m in lines)


def test_file_sink_reopens_after_logrotate(tmp_path: Path) -> None:
    log_path = tmp_path / "audit.json"
    rotated = tmp_path / "audit.json.1"
    audit = Audit([FileSink(log_path)])
    with ServerThread(EchoServer(), audit=audit) as srv:
        binding = f"ncacn_ip_tcp:127.0.0.1[{srv.port}]"
        with dcerpc.connect_sync(binding) as conn:
            conn.bind(Echo).AddOne(1)
        wait_until(lambda: srv.server.open_connections == 0)
        assert audit.flush()
        log_path.rename(rotated)  # what logrotate does, then it sends SIGHUP
        audit.reopen()
        with dcerpc.connect_sync(binding) as conn:
            conn.bind(Echo).AddOne(2)
        wait_until(lambda: srv.server.open_connections == 0)
    assert audit.flush()
    audit.close()
    old, new = read_events(rotated), read_events(log_path)
    assert old[0]["event"]["action"] == "association-open" and len(by_action(old, "call")) == 1
    assert len(by_action(new, "call")) == 1 and by_action(new, "association-close")


def test_policy_events_through_the_api(tmp_path: Path) -> None:
    log_path = tmp_path / "audit.json"
    audit = Audit([FileSink(log_path)], metrics=True)
    audit.emit_policy("deny", "call", ("10.1.2.3", 4567), rule="no-lsa", reason="rule 3 matched",
                      interface=Echo.__syntax__, opnum=4, principal="TESTDOM\\bob")  # fmt: skip
    audit.emit_policy("allow", "accept", ("::ffff:10.1.2.4", 4568))
    audit.emit("policy", "unknown", None, {"dcerpc.policy.decision": "audit", "dcerpc.policy.stage": "bind"})
    audit.flush()
    deny, allow, other = read_events(log_path)
    assert deny["event"]["outcome"] == "failure" and deny["event"]["type"] == ["denied"]
    assert deny["dcerpc"]["policy"] == {"decision": "deny", "stage": "call", "rule": "no-lsa"}
    assert deny["source"] == {"ip": "10.1.2.3", "port": 4567}
    assert deny["dcerpc"]["interface"]["uuid"] == str(Echo.__syntax__.uuid) and deny["dcerpc"]["opnum"] == 4
    assert allow["source"]["ip"] == "10.1.2.4"  # mapped IPv4 as itself
    assert other["dcerpc"]["policy"]["decision"] == "audit"
    assert audit.policy == {("deny", "call"): 1, ("allow", "accept"): 1}
    valid(deny)


def test_bind_refused_and_ncalrpc_events(tmp_path: Path) -> None:
    log_path = tmp_path / "audit.json"
    path = str(tmp_path / "rpc.sock")
    audit = Audit([FileSink(log_path)])
    with ServerThread(EchoServer(), audit=audit, unix_path=path) as srv:  # no security providers
        with dcerpc.connect_sync(f"ncalrpc:[{path}]") as conn:
            assert conn.bind(Echo).AddOne(1) == 2
        with (
            pytest.raises(dcerpc.RpcError),
            dcerpc.connect_sync(f"ncacn_ip_tcp:127.0.0.1[{srv.port}]", auth=NTLM("D", "u", "p")) as conn,
        ):
            conn.bind(Echo)  # NTLM is not configured here: bind_nak
        wait_until(lambda: srv.server.open_connections == 0)
    audit.flush()
    events = read_events(log_path)
    local = [e for e in events if e.get("dcerpc", {}).get("transport") == "ncalrpc"]
    opened = by_action(local, "association-open")[0]
    assert opened["destination"]["address"] == path and "source" not in opened
    assert opened["network"]["transport"] == "unix"
    assert opened["process"]["pid"] > 0 and "id" in opened["user"]  # SO_PEERCRED
    (refused,) = [b for b in by_action(events, "bind") if b["event"]["outcome"] == "failure"]
    assert refused["dcerpc"]["violation"] == "auth_type_unavailable" and refused["event"]["reason"]


def test_policy_decisions_of_a_real_policy_are_events(tmp_path: Path) -> None:
    """A policy that audits AddOne and denies SourceData: each such call is a policy event naming
    the rule, the stage and the operation (valid against the schema), and the denied call's own
    call event says access denied."""
    log_path = tmp_path / "audit.json"
    audit = Audit([FileSink(log_path)])
    with ServerThread(EchoServer(), audit=audit) as srv:
        srv.server.policy = parse(
            '[[rule]]\nname = "watch AddOne"\naction = "audit"\ninterface = "rpcecho"\nopnum = 0\n'
            '[[rule]]\nname = "no SourceData"\naction = "deny"\ninterface = "rpcecho"\nopnum = 3\n'
        )
        with dcerpc.connect_sync(f"ncacn_ip_tcp:127.0.0.1[{srv.port}]") as conn:
            echo = conn.bind(Echo)
            assert echo.AddOne(1) == 2
            with pytest.raises(FaultError):
                echo.SourceData(4)
        wait_until(lambda: srv.server.open_connections == 0)
    assert audit.flush()
    events = read_events(log_path)
    decided = by_action(events, "policy")
    rules = sorted((e["dcerpc"]["policy"]["rule"], e["dcerpc"]["policy"]["decision"]) for e in decided)
    assert rules == [("no SourceData", "deny"), ("watch AddOne", "audit")]
    assert {e["dcerpc"]["policy"]["stage"] for e in decided} == {"call"}
    assert all(e["dcerpc"]["opnum"] in (0, 3) for e in decided)
    denied = [e for e in by_action(events, "call") if e["dcerpc"]["opnum"] == 3]
    assert len(denied) == 1 and denied[0]["event"]["outcome"] == "failure"
    assert "access_denied" in str(denied[0]["dcerpc"]["fault"])
