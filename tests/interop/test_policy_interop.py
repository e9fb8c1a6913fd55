"""Real clients under policies: impacket, Samba's Python client and smbtorture, allowed and denied by
each kind of key, see the answers Windows gives (rpc_s_access_denied for a call, the context
rejected as abstract_syntax_not_supported for an interface, a closed connection for a source)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dcerpc.auth import NtlmProvider
from dcerpc.policy import parse
from dcerpc.rpcecho import Echo
from dcerpc.rpcecho.server import EchoServer
from dcerpc.testing import ServerThread
from tests.interop.test_smbtorture_echo import ECHO_TESTS, smbtorture

pytest.importorskip("impacket", reason="impacket is a dev dependency (pip install -e '.[dev]')")

from impacket.dcerpc.v5 import transport
from impacket.dcerpc.v5.rpcrt import (
    RPC_C_AUTHN_LEVEL_PKT_INTEGRITY,
    RPC_C_AUTHN_LEVEL_PKT_PRIVACY,
    DCERPCException,
)
from impacket.uuid import uuidtup_to_bin

ECHO_ID = ("60a15ec5-4de8-11d7-a637-005056a20182", "1.0")
NT_STATUS_ACCESS_DENIED = 0xC0000022


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    users = tmp_path / "users"
    users.write_text("TESTDOM:alice:wonderland\nTESTDOM:bob:builder\n")
    with ServerThread(EchoServer(), security=[NtlmProvider(users)]) as srv:
        yield srv


def use(srv: ServerThread, text: str) -> None:
    srv.server.policy = parse(text)


def impacket_bound(port: int, user: str | None = None, password: str = "", level: int = 0):  # type: ignore[no-untyped-def]
    rpc = transport.DCERPCTransportFactory(f"ncacn_ip_tcp:127.0.0.1[{port}]")
    if user is not None:
        rpc.set_credentials(user, password, "TESTDOM")
    dce = rpc.get_dce_rpc()
    if user is not None:
        dce.set_auth_level(level)
    dce.connect()
    dce.bind(uuidtup_to_bin(ECHO_ID))
    return dce


def add_one(dce, n: int) -> int:  # type: ignore[no-untyped-def]
    op = Echo.operation_named("AddOne")
    dce.call(op.opnum, op.encode_request(n))
    return int(op.decode_response(dce.recv())[0])


@pytest.mark.interop
def test_impacket_under_opnum_interface_and_source_rules(server: ServerThread) -> None:
    use(server, '[[rule]]\naction = "deny"\ninterface = "rpcecho"\nopnum = 0\n')
    dce = impacket_bound(server.port)
    try:
        with pytest.raises(DCERPCException) as caught:
            add_one(dce, 1)
        assert "rpc_s_access_denied" in str(caught.value)  # the status as Windows sends it (0x5)
        op = Echo.operation_named("TestCall")  # another operation of the same interface: served
        dce.call(op.opnum, op.encode_request("still here"))
        assert op.decode_response(dce.recv())[0] == "still here"
    finally:
        dce.disconnect()
    use(server, '[[rule]]\naction = "deny"\ninterface = "rpcecho"\n')
    with pytest.raises(DCERPCException) as caught:
        impacket_bound(server.port)
    assert "abstract_syntax_not_supported" in str(caught.value)  # as an interface not served
    use(server, '[[rule]]\naction = "deny"\nsource = "127.0.0.0/8"\n')
    with pytest.raises(Exception):  # noqa: B017 - closed at accept: impacket fails as it can
        impacket_bound(server.port)
    assert server.server.refusals["policy"] >= 1


@pytest.mark.interop
def test_impacket_under_principal_and_level_rules(server: ServerThread) -> None:
    use(
        server,
        r"""
default = "deny"
[[rule]]
action = "allow"
interface = "rpcecho"
principal = 'TESTDOM\alice'
auth_type = "ntlm"
auth_level = "privacy"
""",
    )
    dce = impacket_bound(server.port, "alice", "wonderland", RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
    try:
        assert add_one(dce, 41) == 42
    finally:
        dce.disconnect()
    for user, password, level in (
        ("alice", "wonderland", RPC_C_AUTHN_LEVEL_PKT_INTEGRITY),  # below the rule's level
        ("bob", "builder", RPC_C_AUTHN_LEVEL_PKT_PRIVACY),  # another principal
    ):
        dce = impacket_bound(server.port, user, password, level)
        try:
            with pytest.raises(DCERPCException) as caught:
                add_one(dce, 1)
            assert "rpc_s_access_denied" in str(caught.value), (user, level)
        finally:
            dce.disconnect()
    assert server.server.enforcer.decisions["call:deny"] == 2


SAMBA_CLIENT = r"""
import json, sys
from samba.dcerpc import echo
from samba.param import LoadParm
from samba.credentials import Credentials
lp = LoadParm()
creds = Credentials(); creds.guess(lp); creds.set_anonymous()
out = {}
try:
    conn = echo.rpcecho(sys.argv[1], lp, creds)
except Exception as e:
    print(json.dumps({"connect": [str(a) for a in e.args]})); sys.exit(0)
for name, call in (("AddOne", lambda: conn.AddOne(1)), ("TestCall", lambda: conn.TestCall("x"))):
    try:
        out[name] = call()
    except Exception as e:
        out[name] = {"error": e.args[0] if e.args else None}
print(json.dumps(out))
"""


def samba_calls(samba_python: str, port: int) -> dict[str, object]:
    proc = subprocess.run(
        [samba_python, "-c", SAMBA_CLIENT, f"ncacn_ip_tcp:127.0.0.1[{port}]"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


@pytest.mark.interop
def test_samba_client_under_a_policy(samba_python: str, server: ServerThread) -> None:
    use(server, '[[rule]]\naction = "deny"\ninterface = "rpcecho"\nopnum = 0\nauth_type = "none"\n')
    out = samba_calls(samba_python, server.port)
    # Samba's client maps the fault's rpc_s_access_denied (0x5) to NT_STATUS_ACCESS_DENIED
    # (dcerpc_fault_to_nt_status); another status would map to another NTSTATUS
    assert out == {"AddOne": {"error": NT_STATUS_ACCESS_DENIED}, "TestCall": "x"}
    use(server, '[[rule]]\naction = "deny"\ninterface = "rpcecho"\n')
    out = samba_calls(samba_python, server.port)
    assert "connect" in out  # the bind's only context is rejected: the client cannot go on


@pytest.mark.interop
def test_smbtorture_rpc_echo_under_a_policy(server: ServerThread) -> None:
    """SourceData (opnum 3) denied: smbtorture's sourcedata test fails on the access-denied fault,
    every other rpc.echo test passes; with the source denied, none can run."""
    use(server, '[[rule]]\nname = "no SourceData"\naction = "deny"\ninterface = "rpcecho"\nopnum = 3\n')
    outcomes = smbtorture(f"ncacn_ip_tcp:127.0.0.1[{server.port}]", "rpc.echo")
    assert set(outcomes) == ECHO_TESTS
    assert outcomes.pop("sourcedata") in ("failure", "error")
    assert set(outcomes.values()) == {"success"}, outcomes
    use(server, '[[rule]]\naction = "deny"\nsource = "127.0.0.1"\n')
    outcomes = smbtorture(f"ncacn_ip_tcp:127.0.0.1[{server.port}]", "rpc.echo")
    assert "success" not in outcomes.values(), outcomes
