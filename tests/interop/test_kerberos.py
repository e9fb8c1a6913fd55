"""Kerberos against a real MIT KDC: smbtorture and our client authenticate to our server with tickets.

The suite makes a throwaway realm on loopback (krb5kdc, a user, host/localhost in a keytab the server
accepts with). Kerberos runs DCE style (bind AP-REQ, bind_ack AP-REP, auth3), and inside SPNEGO.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import dcerpc
from dcerpc import current_call
from dcerpc.auth import Kerberos, KerberosProvider, Negotiate, NegotiateProvider, SecurityContext
from dcerpc.pdu import AuthLevel, Fault
from dcerpc.pdu import constants as const
from dcerpc.protocol.limits import Limits
from dcerpc.rpcecho import Echo
from dcerpc.rpcecho.server import EchoServer
from dcerpc.testing import ServerThread
from tests.conftest import have, require_peer
from tests.interop.kdc import Kdc
from tests.interop.test_smbtorture_echo import ECHO_TESTS
from tests.server.test_security_seam import RawAuthClient


class WhoAmI(EchoServer):
    async def TestCall(self, s1: str) -> str | None:
        if s1 != "whoami":  # smbtorture wants its string back
            return s1
        call = current_call()
        return f"{call.principal}:{call.auth_type}:{call.auth_level}"


@pytest.fixture(scope="module")
def kdc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kdc]:
    saved = os.environ.get("KRB5_KTNAME")
    with Kdc(tmp_path_factory.mktemp("realm")) as realm:
        yield realm
    if saved is None:
        os.environ.pop("KRB5_KTNAME", None)
    else:
        os.environ["KRB5_KTNAME"] = saved


@pytest.fixture(scope="module")
def krb_server(kdc: Kdc) -> Iterator[ServerThread]:
    providers = [KerberosProvider(kdc.keytab), NegotiateProvider(keytab=str(kdc.keytab))]
    with ServerThread(WhoAmI(), security=providers) as srv:
        yield srv


@pytest.mark.interop
@pytest.mark.parametrize("options", ["krb5,seal", "krb5,sign", "spnego,seal"])
def test_smbtorture_rpc_echo_kerberos(kdc: Kdc, krb_server: ServerThread, options: str) -> None:
    require_peer(have("smbtorture"), "smbtorture is not installed (Debian package samba-testsuite)")
    # Samba will not ask for a ticket to an IP address: name the host the service principal names
    binding = f"ncacn_ip_tcp:127.0.0.1[{krb_server.port},{options},target_hostname=localhost]"
    proc = subprocess.run(
        [
            "smbtorture",
            binding,
            "rpc.echo",
            f"-U{kdc.user}%{kdc.password}",
            "--use-kerberos=required",
            "--option=torture:quick=yes",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=kdc.env(),
        check=False,
    )
    outcomes = {}
    for line in proc.stdout.splitlines():
        kind, _, rest = line.partition(": ")
        if kind in ("success", "failure", "error", "skip") and rest:
            outcomes[rest.split()[0].split(".")[-1]] = kind
    assert outcomes.pop("sleep", None) == "skip", proc.stdout[-3000:]
    assert set(outcomes) == ECHO_TESTS - {"sleep"}
    assert all(o == "success" for o in outcomes.values()), proc.stdout[-3000:]


@pytest.mark.interop
@pytest.mark.parametrize("level", ["connect", "packet", "integrity", "privacy"])
@pytest.mark.parametrize("mech", ["krb5", "spnego"])
def test_our_client_with_kerberos(kdc: Kdc, krb_server: ServerThread, level: str, mech: str) -> None:
    creds = (
        Kerberos(kdc.user, kdc.password)
        if mech == "krb5"
        else Negotiate(user=kdc.user, password=kdc.password)
    )

    async def main() -> None:
        url = f"ncacn_ip_tcp:localhost[{krb_server.port}]"
        async with await dcerpc.connect(
            url, auth=creds, level=level, limits=Limits(max_fragment=2048)
        ) as conn:
            echo = await conn.bind(Echo)
            who = await echo.TestCall("whoami")
            assert who == f"{kdc.user}:{16 if mech == 'krb5' else 9}:{int(AuthLevel[level.upper()])}"
            data = bytes(range(256)) * 200  # several fragments each way
            assert await echo.EchoData(len(data), data) == data
            assert await asyncio.gather(*(echo.AddOne(i) for i in range(20))) == list(range(1, 21))

    asyncio.run(main())


class _ToLocalhost(Kerberos):
    def client_context(self, target: str, auth_level: int = 6) -> SecurityContext:
        return super().client_context("localhost", auth_level)  # the service principal's host


class _KrbMech:
    name = "krb5"
    auth_type = 16

    def __init__(self, kdc: Kdc) -> None:
        self.kdc = kdc

    def creds(self, user: str, password: str) -> Kerberos:
        return _ToLocalhost(self.kdc.user, self.kdc.password)


@pytest.mark.interop
@pytest.mark.parametrize("level", [AuthLevel.INTEGRITY, AuthLevel.PRIVACY])
def test_tampered_kerberos_request_is_refused(kdc: Kdc, krb_server: ServerThread, level: int) -> None:
    c = RawAuthClient(krb_server.port, _KrbMech(kdc), level)  # type: ignore[arg-type]
    c.assoc.request(0, 0, Echo.operation_named("AddOne").encode_request(41))
    wire = bytearray(c.assoc.data_to_send())
    wire[30] ^= 0x01  # a stub (or sealed stub) bit
    answer = c.raw_reply(bytes(wire))
    # a signature that does not verify is the security package's error (observed Windows behaviour)
    assert isinstance(answer, Fault) and answer.status == const.RPC_S_SEC_PKG_ERROR


@pytest.mark.interop
def test_kerberos_with_a_wrong_password_gets_no_ticket(kdc: Kdc, krb_server: ServerThread) -> None:
    async def main() -> None:
        url = f"ncacn_ip_tcp:localhost[{krb_server.port}]"
        with pytest.raises(dcerpc.RpcError):
            async with await dcerpc.connect(url, auth=Kerberos(kdc.user, "wrong")) as conn:
                await conn.bind(Echo)

    asyncio.run(main())
    with dcerpc.connect_sync(f"ncacn_ip_tcp:127.0.0.1[{krb_server.port}]") as other:
        assert other.bind(Echo).AddOne(1) == 2


def test_kdc_fixture_files(kdc: Kdc) -> None:
    assert Path(kdc.keytab).stat().st_size > 0
