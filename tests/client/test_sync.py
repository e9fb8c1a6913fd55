"""The sync client is a full client: connect_sync takes connect's authentication and options, and
its proxies are typed (``SyncProxy[Echo]``; ``proxy.call(Echo.AddOne, 41)`` is an ``int`` to mypy)."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from mypy import api as mypy_api

import dcerpc
from dcerpc.auth import NTLM, NtlmProvider
from dcerpc.rpcecho import Echo
from dcerpc.rpcecho.server import EchoServer
from dcerpc.testing import ServerThread

DOMAIN, USER, PASSWORD = "SAMBADOM", "alice", "Secret-1"
ROOT = Path(__file__).resolve().parents[2]


class WhoEcho(EchoServer):
    """EchoServer that remembers who called AddOne, at which level."""

    seen: list[tuple[str | None, int]]

    def __init__(self) -> None:
        super().__init__()
        self.seen = []

    async def AddOne(self, in_data: int) -> int:
        call = dcerpc.current_call()
        self.seen.append((call.principal, call.auth_level))
        return in_data + 1


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[tuple[ServerThread, WhoEcho]]:
    users = tmp_path / "ntlm-users"
    users.write_text(f"{DOMAIN}:{USER}:{PASSWORD}\n")
    impl = WhoEcho()
    with ServerThread(impl, security=[NtlmProvider(users)]) as srv:
        yield srv, impl


def test_an_authenticated_sealed_call_synchronously(auth_server: tuple[ServerThread, WhoEcho]) -> None:
    srv, impl = auth_server
    url = f"ncacn_ip_tcp:127.0.0.1[{srv.port}]"
    with dcerpc.connect_sync(url, auth=NTLM(DOMAIN, USER, PASSWORD), level="privacy") as conn:
        echo = conn.bind(Echo)
        answer: int = echo.call(Echo.AddOne, 41)  # typed from the declaration
        assert answer == 42
        assert echo.AddOne(1) == 2  # by name, as before
        assert echo.EchoData(3, b"abc") == b"abc"
    assert len(impl.seen) == 2 and all(p is not None and USER in p for p, _ in impl.seen), impl.seen
    assert {level for _, level in impl.seen} == {6}  # packet privacy
    assert srv.server.stats["verification_trailers"] == 1


def test_sync_bad_credentials_are_an_rpc_error(auth_server: tuple[ServerThread, WhoEcho]) -> None:
    srv, impl = auth_server
    url = f"ncacn_ip_tcp:127.0.0.1[{srv.port}]"
    wrong = NTLM(DOMAIN, USER, "wrong")
    with (
        pytest.raises(dcerpc.RpcError) as info,
        dcerpc.connect_sync(url, auth=wrong, level="integrity", call_timeout=5) as conn,
    ):
        conn.bind(Echo).AddOne(1)
    assert isinstance(info.value, dcerpc.FaultError) and info.value.name == "rpc_s_access_denied"
    assert impl.seen == []


def test_sync_proxies_are_typed_for_mypy(tmp_path: Path) -> None:
    sample = tmp_path / "typed_sync.py"
    sample.write_text(
        textwrap.dedent(
            """
            import dcerpc
            from dcerpc.rpcecho import Echo

            def use(conn: dcerpc.SyncConnection) -> None:
                echo = conn.bind(Echo)
                reveal_type(echo)
                reveal_type(echo.call(Echo.AddOne, 41))
                echo.call(Echo.AddOne, "forty-one")
            """
        )
    )
    out, err, status = mypy_api.run(
        ["--strict", "--no-error-summary", "--cache-dir", str(ROOT / ".mypy_cache"), str(sample)]
    )
    lines = out.splitlines()
    assert any('"dcerpc.client.sync.SyncProxy[dcerpc.rpcecho.idl.Echo]"' in ln for ln in lines), out + err
    assert any(re.search(r'Revealed type is "(builtins\.)?int"', ln) for ln in lines), out
    assert any("arg-type" in ln and ":9:" in ln for ln in lines), out
    assert status == 1
