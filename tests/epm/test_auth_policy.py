"""Required authentication levels on a host: services refuse calls below them, the endpoint mapper
stays reachable anonymously (its own setting), and the settings come from flags and the config file."""

from __future__ import annotations

from pathlib import Path

import pytest

import dcerpc
from dcerpc import FaultError
from dcerpc.auth import NTLM
from dcerpc.auth.config import AuthConfig, parse_level
from dcerpc.cli.config import load
from dcerpc.epm.host import EpmHost
from dcerpc.epm.idl import Epm
from dcerpc.ndr import ContextHandle
from dcerpc.pdu import constants as const
from dcerpc.rpcecho import Echo
from dcerpc.rpcecho.server import EchoServer
from tests.epm.test_service import epm_binding, hosted

ALICE = NTLM("TESTDOM", "alice", "wonderland")


@pytest.fixture
def users(tmp_path: Path) -> str:
    path = tmp_path / "ntlm-users"
    path.write_text("TESTDOM:alice:wonderland\n")
    return str(path)


def test_min_level_refuses_anonymous_calls_but_not_the_endpoint_mapper(users: str) -> None:
    @hosted(auth=AuthConfig(ntlm_users=users, min_auth_level=6))
    async def run(host: EpmHost) -> None:
        await host.add_service(EchoServer())
        async with await dcerpc.connect(epm_binding(host)) as conn:  # anonymous lookup: allowed
            epm = await conn.bind(Epm)
            found = await epm.ept_lookup(0, None, None, 0, ContextHandle(), 10)
            assert found.num_ents >= 2
        service = host.services[0].addresses[0][1][1]
        url = f"ncacn_ip_tcp:127.0.0.1[{service}]"
        async with await dcerpc.connect(url) as conn:  # anonymous call: access denied
            echo = await conn.bind(Echo)
            with pytest.raises(FaultError) as e:
                await echo.AddOne(1)
            assert e.value.status == const.RPC_S_ACCESS_DENIED
        async with await dcerpc.connect(url, auth=ALICE, level="integrity") as conn:  # below: denied
            with pytest.raises(FaultError):
                await (await conn.bind(Echo)).AddOne(1)
        async with await dcerpc.connect(url, auth=ALICE, level="privacy") as conn:  # enough
            assert await (await conn.bind(Echo)).AddOne(1) == 2

    run  # noqa: B018  (the decorator ran it)


def test_per_interface_level_and_epm_setting(users: str) -> None:
    @hosted(auth=AuthConfig(ntlm_users=users, interfaces={"rpcecho": 5}, epm_min_auth_level=2))
    async def run(host: EpmHost) -> None:
        await host.add_service(EchoServer())
        async with await dcerpc.connect(epm_binding(host)) as conn:  # the mapper wants connect now
            with pytest.raises(FaultError):
                await (await conn.bind(Epm)).ept_lookup(0, None, None, 0, ContextHandle(), 1)
        service = host.services[0].addresses[0][1][1]
        url = f"ncacn_ip_tcp:127.0.0.1[{service}]"
        async with await dcerpc.connect(url, auth=ALICE, level="integrity") as conn:
            assert await (await conn.bind(Echo)).AddOne(1) == 2
        async with await dcerpc.connect(url, auth=ALICE, level="connect") as conn:
            with pytest.raises(FaultError):
                await (await conn.bind(Echo)).AddOne(1)

    run  # noqa: B018


def test_config_file_and_flags(tmp_path: Path, users: str) -> None:
    conf = tmp_path / "dcerpc.toml"
    conf.write_text(
        f'[auth]\nntlm_users = "{users}"\nmin_auth_level = "packet"\n[auth.interfaces]\nrpcecho = "privacy"\n'
    )
    settings = load(str(conf))
    assert settings.host.auth.min_auth_level == 4
    assert settings.host.auth.interfaces == {"rpcecho": 6}
    assert settings.host.auth.ntlm_users == users
    flagged = load(str(conf), min_auth_level="integrity")  # flags override the file
    assert flagged.host.auth.min_auth_level == 5
    with pytest.raises(ValueError, match=r"auth\.ntlm_user: unknown key"):
        conf.write_text("[auth]\nntlm_user = 'x'\n")
        load(str(conf))
    assert parse_level("privacy") == 6 and parse_level(3) == 3
    with pytest.raises(ValueError):
        parse_level("secret")
