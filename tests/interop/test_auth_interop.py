"""NTLM and SPNEGO against real peers: smbtorture, Samba's Python client, impacket, tshark.

Our rpcecho server accepts the users of a throwaway NTLM users file; each peer authenticates with
its own NTLM implementation (Samba's C, impacket's Python) and signs or seals every PDU.
"""

from __future__ import annotations

import asyncio
import os
import struct
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import dcerpc
from dcerpc.auth import NTLM, NegotiateProvider, NtlmProvider
from dcerpc.rpcecho import Echo
from dcerpc.rpcecho.server import EchoServer
from dcerpc.testing import ServerThread
from tests.conftest import have, require_peer
from tests.interop.test_smbtorture_echo import ECHO_TESTS

DOMAIN, USER, PASSWORD = "SAMBADOM", "alice", "Secret-1"


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "ntlm-users"
    path.write_text(f"{DOMAIN}:{USER}:{PASSWORD}\n")
    return path


@pytest.fixture
def auth_server(users_file: Path) -> Iterator[ServerThread]:
    with ServerThread(
        EchoServer(), security=[NtlmProvider(users_file), NegotiateProvider(users_file)]
    ) as srv:
        yield srv


def torture(port: int, options: str, user: str = f"{DOMAIN}/{USER}%{PASSWORD}") -> dict[str, str]:
    require_peer(have("smbtorture"), "smbtorture is not installed (Debian package samba-testsuite)")
    proc = subprocess.run(
        [
            "smbtorture",
            f"ncacn_ip_tcp:127.0.0.1[{port},{options}]",
            "rpc.echo",
            f"-U{user}",
            "--use-kerberos=off",
            "--option=torture:quick=yes",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    outcomes: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        kind, _, rest = line.partition(": ")
        if kind in ("success", "failure", "error", "skip") and rest:
            outcomes[rest.split()[0].split(".")[-1]] = kind
    assert outcomes, f"smbtorture ran nothing:\n{proc.stdout}\n{proc.stderr}"
    return outcomes


@pytest.mark.interop
@pytest.mark.parametrize("options", ["ntlm,sign", "ntlm,seal", "spnego,seal", "spnego,sign", "ntlm,connect"])
def test_smbtorture_rpc_echo_authenticated(auth_server: ServerThread, options: str) -> None:
    outcomes = torture(auth_server.port, options)
    assert outcomes.pop("sleep") == "skip"  # quick mode; NTLM without ESS would serialise it
    assert set(outcomes) == ECHO_TESTS - {"sleep"}
    failed = {t: o for t, o in outcomes.items() if o != "success"}
    assert not failed, failed
    if "connect" not in options:  # Samba's client vouches for its bind with a verification trailer
        assert auth_server.server.stats["verification_trailers"] >= 1


@pytest.mark.interop
@pytest.mark.parametrize("user", [f"{DOMAIN}/{USER}%wrong", f"{DOMAIN}/mallory%{PASSWORD}"])
def test_smbtorture_with_bad_credentials_is_refused(auth_server: ServerThread, user: str) -> None:
    outcomes = torture(auth_server.port, "ntlm,seal", user=user)
    assert outcomes and all(o in ("failure", "error", "skip") for o in outcomes.values()), outcomes
    with dcerpc.connect_sync(f"ncacn_ip_tcp:127.0.0.1[{auth_server.port}]") as other:  # still serving
        assert other.bind(Echo).AddOne(1) == 2


@pytest.mark.interop
def test_required_level_refuses_smbtorture_at_sign(users_file: Path) -> None:
    providers = [NtlmProvider(users_file), NegotiateProvider(users_file)]
    with ServerThread(EchoServer(), security=providers) as srv:
        srv.server.require_auth(Echo, 6)  # privacy for rpcecho
        assert all(o == "success" for t, o in torture(srv.port, "ntlm,seal").items() if t != "sleep")
        outcomes = torture(srv.port, "ntlm,sign")
        assert outcomes["addone"] == "failure"
        assert srv.server.stats["faults"] > 0


SAMBA_CLIENT = textwrap.dedent(
    """
    import json, sys
    from samba import credentials, param
    from samba.dcerpc import echo
    lp = param.LoadParm()
    lp.load_default()
    creds = credentials.Credentials()
    creds.guess(lp)
    creds.set_domain(sys.argv[2]); creds.set_username(sys.argv[3]); creds.set_password(sys.argv[4])
    creds.set_kerberos_state(credentials.DONT_USE_KERBEROS)
    conn = echo.rpcecho(sys.argv[1], lp, creds)
    data = bytes(range(256)) * 64
    print(json.dumps({
        "addone": conn.AddOne(41),
        "echodata": list(conn.EchoData(list(data))) == list(data),
        "testcall": conn.TestCall("samba"),
    }))
    """
)


@pytest.mark.interop
@pytest.mark.parametrize("options", ["sign", "seal", "spnego,seal"])
def test_samba_python_client(auth_server: ServerThread, samba_python: str, options: str) -> None:
    proc = subprocess.run(
        [
            samba_python,
            "-c",
            SAMBA_CLIENT,
            f"ncacn_ip_tcp:127.0.0.1[{auth_server.port},{options}]",
            DOMAIN,
            USER,
            PASSWORD,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert '"addone": 42' in proc.stdout and '"echodata": true' in proc.stdout, proc.stdout
    assert '"testcall": "samba"' in proc.stdout


@pytest.mark.interop
@pytest.mark.parametrize("level", [5, 6])  # RPC_C_AUTHN_LEVEL_PKT_INTEGRITY, _PKT_PRIVACY
def test_impacket_ntlm(auth_server: ServerThread, level: int) -> None:
    pytest.importorskip("impacket", reason="impacket is a dev dependency")
    from impacket.dcerpc.v5 import transport
    from impacket.dcerpc.v5.rpcrt import DCERPCException
    from impacket.uuid import uuidtup_to_bin

    def attempt(password: str) -> bytes:
        rpc = transport.DCERPCTransportFactory(f"ncacn_ip_tcp:127.0.0.1[{auth_server.port}]")
        rpc.set_credentials(USER, password, DOMAIN)
        dce = rpc.get_dce_rpc()
        dce.set_auth_level(level)
        dce.connect()
        try:
            dce.bind(uuidtup_to_bin(("60a15ec5-4de8-11d7-a637-005056a20182", "1.0")))
            op = Echo.operation_named("EchoData")
            data = bytes(range(256)) * 40  # several fragments each way, each signed or sealed
            dce.call(op.opnum, op.encode_request(len(data), data))
            reply = dce.recv()
            assert op.decode_response(reply)[0] == data
            dce.call(0, struct.pack("<I", 41))
            return dce.recv()  # type: ignore[no-any-return]
        finally:
            dce.disconnect()

    assert attempt(PASSWORD) == struct.pack("<I", 42)
    with pytest.raises(DCERPCException, match=r"access_denied|rpc_s_access_denied|0x5"):
        attempt("wrong")


@pytest.mark.interop
def test_our_client_verification_trailer_is_checked(auth_server: ServerThread) -> None:
    async def main() -> None:
        url = f"ncacn_ip_tcp:127.0.0.1[{auth_server.port}]"
        async with await dcerpc.connect(url, auth=NTLM(DOMAIN, USER, PASSWORD), level="privacy") as conn:
            echo = await conn.bind(Echo)
            assert await echo.AddOne(1) == 2

    asyncio.run(main())
    assert auth_server.server.stats["verification_trailers"] == 1


@pytest.mark.interop
def test_tshark_decrypts_a_sealed_session(auth_server: ServerThread, tmp_path: Path) -> None:
    """Given the password, Wireshark's NTLMSSP dissector decrypts our sealed stubs to the right bytes."""
    require_peer(have("tshark"), "tshark is not installed (Debian package tshark)")
    require_peer(os.geteuid() == 0, "capturing on the loopback interface needs root")
    port = auth_server.port
    pcap = tmp_path / "sealed.pcap"
    cap = subprocess.Popen(
        ["tshark", "-i", "lo", "-f", f"tcp port {port}", "-w", str(pcap), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    marker = "sealed-stub-marker-0123456789"
    try:
        deadline = time.monotonic() + 15
        while not pcap.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)

        async def session() -> None:
            creds = NTLM(DOMAIN, USER, PASSWORD)
            url = f"ncacn_ip_tcp:127.0.0.1[{port}]"
            async with await dcerpc.connect(url, auth=creds, level="privacy") as conn:
                echo = await conn.bind(Echo)
                assert await echo.TestCall(marker) == marker

        asyncio.run(session())
        time.sleep(1)
    finally:
        cap.terminate()
        cap.wait(10)
    raw = pcap.read_bytes()
    assert marker.encode("utf-16-le") not in raw and marker.encode() not in raw  # sealed on the wire
    decode = ["-d", f"tcp.port=={port},dcerpc", "-o", f"ntlmssp.nt_password:{PASSWORD}"]
    out = subprocess.run(
        ["tshark", "-r", str(pcap), *decode, "-Y", "dcerpc.pkt_type == 0", "-x"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Decrypted stub data" in out, out[:2000]
    dump = "".join(
        line[6:54].replace(" ", "") for line in out.splitlines() if len(line) > 6 and line[4:6] == "  "
    )
    assert marker.encode("utf-16-le").hex() in dump, out[:3000]  # TestCall's [string] wchar_t


@pytest.mark.interop
@pytest.mark.parametrize(
    ("level", "refusal"),
    [(2, None), (5, "00000721"), (6, "rpc_s_access_denied")],  # connect, integrity (sec_pkg_error), privacy
)
def test_impacket_anonymous_ntlm(auth_server: ServerThread, level: int, refusal: str | None) -> None:
    """impacket's anonymous NTLM (rpcmap's default, at privacy): the logon completes for nobody and
    serves auth level connect; its signatures do not verify (there is no key), and at privacy the
    auth3 is refused, so the first request is access denied (as Samba's server answers it)."""
    pytest.importorskip("impacket", reason="impacket is a dev dependency")
    from impacket.dcerpc.v5 import rpcrt, transport
    from impacket.dcerpc.v5.rpcrt import DCERPCException
    from impacket.uuid import uuidtup_to_bin

    rpc = transport.DCERPCTransportFactory(f"ncacn_ip_tcp:127.0.0.1[{auth_server.port}]")
    rpc.set_credentials("", "", "")
    dce = rpc.get_dce_rpc()
    dce.set_auth_type(rpcrt.RPC_C_AUTHN_WINNT)
    dce.set_auth_level(level)
    dce.connect()
    try:
        dce.bind(uuidtup_to_bin(("60a15ec5-4de8-11d7-a637-005056a20182", "1.0")))
        if refusal is None:
            dce.call(0, struct.pack("<I", 41))
            assert dce.recv() == struct.pack("<I", 42)
        else:
            with pytest.raises(DCERPCException, match=refusal):
                dce.call(0, struct.pack("<I", 41))
                dce.recv()
    finally:
        dce.disconnect()


def test_anonymous_ntlm_does_not_meet_a_required_level(users_file: Path) -> None:
    """A required level (here connect) requires somebody: impacket's anonymous NTLM completes its
    logon but its call is access denied, while alice at the same level is served."""
    pytest.importorskip("impacket", reason="impacket is a dev dependency")
    from impacket.dcerpc.v5 import rpcrt, transport
    from impacket.dcerpc.v5.rpcrt import DCERPCException
    from impacket.uuid import uuidtup_to_bin

    with ServerThread(EchoServer(), security=[NtlmProvider(users_file)]) as srv:
        srv.server.require_auth(Echo, 2)  # connect

        def add_one(user: str, password: str, domain: str) -> bytes:
            rpc = transport.DCERPCTransportFactory(f"ncacn_ip_tcp:127.0.0.1[{srv.port}]")
            rpc.set_credentials(user, password, domain)
            dce = rpc.get_dce_rpc()
            dce.set_auth_type(rpcrt.RPC_C_AUTHN_WINNT)
            dce.set_auth_level(rpcrt.RPC_C_AUTHN_LEVEL_CONNECT)
            dce.connect()
            try:
                dce.bind(uuidtup_to_bin(("60a15ec5-4de8-11d7-a637-005056a20182", "1.0")))
                dce.call(0, struct.pack("<I", 41))
                return dce.recv()  # type: ignore[no-any-return]
            finally:
                dce.disconnect()

        assert add_one(USER, PASSWORD, DOMAIN) == struct.pack("<I", 42)
        with pytest.raises(DCERPCException, match="access_denied"):
            add_one("", "", "")
