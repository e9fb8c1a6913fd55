"""Our client against a foreign server: Samba's samba-dcerpcd (endpoint mapper, mgmt, lsarpc...).

Samba runs inside private namespaces with a throwaway smb.conf (tests/interop/sambad.py); our code
runs inside them too, as a subprocess, and reports JSON.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_peer, samba_python_available
from tests.interop.sambad import WORKGROUP, SambaDcerpcd

USER, PASSWORD = "alice", "Secret-1"


@pytest.fixture(scope="module")
def samba(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SambaDcerpcd]:
    with SambaDcerpcd(tmp_path_factory.mktemp("samba"), users={USER: PASSWORD}) as server:
        yield server


def run_json(samba: SambaDcerpcd, script: str, *args: str) -> object:
    proc = samba.python("-c", textwrap.dedent(script), *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


SAMBA_LISTING = """
import json
from samba import credentials, param
from samba.dcerpc import epmapper, misc
from samba.ndr import ndr_pack
lp = param.LoadParm()
lp.load_default()
creds = credentials.Credentials()
creds.guess(lp)
creds.set_anonymous()
epm = epmapper.epmapper("ncacn_ip_tcp:127.0.0.1[135]", lp, creds)
handle, towers = misc.policy_handle(), []
while True:
    handle, entries, status = epm.epm_Lookup(0, None, None, 0, handle, 10)
    for e in entries:
        raw = ndr_pack(e.tower)  # twr_t: length, conformant count, tower octets
        towers.append(raw[8 : 8 + e.tower.tower_length].hex())
    if status != 0 or handle.uuid == misc.GUID():
        break
print(json.dumps(towers))
"""

DECODE = """
import json, sys
from dcerpc.epm.towers import Tower
rows = []
for t in json.loads(sys.stdin.read()):
    tower = Tower.decode(bytes.fromhex(t))
    v = tower.interface.version
    rows.append([str(tower.interface.uuid), f"{v[0]}.{v[1]}", tower.binding])
print(json.dumps(rows))
"""


@pytest.mark.interop
def test_dcerpc_dump_lists_what_samba_lists(samba: SambaDcerpcd) -> None:
    """`dcerpc dump` against Samba's endpoint mapper: the same endpoints Samba's own client pages
    through (impacket's rpcdump prints nothing there: Samba ends its single page with
    ept_s_not_registered, which impacket treats as an error)."""
    require_peer(samba_python_available(), "python3-samba is not installed for /usr/bin/python3")
    ours = samba.python("-m", "dcerpc", "dump", "127.0.0.1", "--json")
    assert ours.returncode == 0, ours.stderr[-3000:]
    dumped = {(r["interface"], r["version"], r["binding"]) for r in json.loads(ours.stdout)}
    theirs = samba.samba_python("-c", SAMBA_LISTING)
    assert theirs.returncode == 0, theirs.stderr[-3000:]
    decoded = samba.python("-c", DECODE, input=theirs.stdout)
    assert decoded.returncode == 0, decoded.stderr
    listed = {tuple(r) for r in json.loads(decoded.stdout)}
    assert listed and dumped == listed
    assert ("12345778-1234-abcd-ef00-0123456789ab", "0.0") in {(u, v) for u, v, _ in dumped}  # lsarpc


OUR_CLIENT = """
import asyncio, json, sys
import dcerpc
from dcerpc.auth import NTLM, Negotiate
from dcerpc.epm.idl import Epm, twr_t
from dcerpc.epm.towers import Tower, tcp_tower
from dcerpc.mgmt.idl import Mgmt
from dcerpc.ndr import ContextHandle
from dcerpc.pdu.syntax import SyntaxId
import uuid

LSARPC = SyntaxId(uuid.UUID("12345778-1234-abcd-ef00-0123456789ab"), (0, 0))
domain, user, password = sys.argv[1:4]

async def main():
    out = {}
    async with await dcerpc.connect("ncacn_ip_tcp:127.0.0.1[135]") as conn:
        epm = await conn.bind(Epm)
        probe = twr_t.of(tcp_tower(LSARPC).encode())
        mapped = await epm.ept_map(None, probe, ContextHandle(), 4)
        out["map_status"] = mapped.status
        port = Tower.decode(mapped.towers[0].tower_octet_string).port
        out["port"] = port
        mgmt = await conn.bind(Mgmt)
        out["epm_listening"] = (await mgmt.is_server_listening()).status
    url = f"ncacn_ip_tcp:127.0.0.1[{port}]"
    async with await dcerpc.connect(url) as conn:
        mgmt = await conn.bind(Mgmt)
        ids = await mgmt.inq_if_ids()
        out["anonymous_if_ids"] = sorted(str(i.uuid) for i in ids.if_id_vector.if_id)
    for name, creds in (("ntlm", NTLM(domain, user, password)),
                        ("spnego", Negotiate(domain, user, password, kerberos=False))):
        for level in ("integrity", "privacy"):
            async with await dcerpc.connect(url, auth=creds, level=level) as conn:
                mgmt = await conn.bind(Mgmt)
                ids = await mgmt.inq_if_ids()
                out[f"{name}_{level}"] = sorted(str(i.uuid) for i in ids.if_id_vector.if_id)
    try:
        async with await dcerpc.connect(url, auth=NTLM(domain, user, "wrong"), level="privacy") as conn:
            await (await conn.bind(Mgmt)).inq_if_ids()
        out["wrong_password"] = "accepted"
    except dcerpc.RpcError as e:
        out["wrong_password"] = type(e).__name__ + ": " + str(e)
    print(json.dumps(out))

asyncio.run(main())
"""


@pytest.mark.interop
def test_our_client_calls_samba(samba: SambaDcerpcd) -> None:
    """Resolve lsarpc through Samba's endpoint mapper, then call mgmt on that endpoint anonymously
    and with NTLM and SPNEGO at integrity and privacy; a wrong password is refused."""
    out = run_json(samba, OUR_CLIENT, WORKGROUP, USER, PASSWORD)
    assert isinstance(out, dict)
    assert out["map_status"] == 0 and out["port"] >= 1024
    assert out["epm_listening"] == 0
    lsarpc = "12345778-1234-abcd-ef00-0123456789ab"
    assert lsarpc in out["anonymous_if_ids"]
    for key in ("ntlm_integrity", "ntlm_privacy", "spnego_integrity", "spnego_privacy"):
        assert out[key] == out["anonymous_if_ids"], key
    assert out["wrong_password"] != "accepted"


def test_harness_cleans_up(tmp_path: Path) -> None:
    """Stopping the harness leaves no Samba process behind (its workers included)."""
    with SambaDcerpcd(tmp_path) as server:
        assert server._members()
        holder = server.holder
        assert holder is not None
    assert holder.poll() is not None
    assert sys.platform != "win32"
