"""Our client against a foreign server: Samba's samba-dcerpcd (endpoint mapper, mgmt, lsarpc...).

Samba runs inside private namespaces with a throwaway smb.conf (tests/interop/sambad.py); our code
runs inside them too, as a subprocess of our interpreter, and prints JSON for the test to check.
Samba's own Python client (python3-samba) is the reference listing of its endpoint map: impacket's
rpcdump prints nothing against Samba 4.17, which ends even a single page with ept_s_not_registered
(and impacket treats that as an error).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_peer, samba_python_available
from tests.interop.sambad import WORKGROUP, SambaDcerpcd

USER, PASSWORD = "alice", "Secret-1"
LSARPC = "12345778-1234-abcd-ef00-0123456789ab"
WINREG = "338cd001-2244-31f1-aaaa-900038001003"
RPCECHO = "60a15ec5-4de8-11d7-a637-005056a20182"  # not served by samba-dcerpcd
EPT_S_NOT_REGISTERED = 0x16C9A0D6
DUMP = ("-m", "dcerpc", "dump", "127.0.0.1", "--json")


@pytest.fixture(scope="module")
def samba(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SambaDcerpcd]:
    with SambaDcerpcd(tmp_path_factory.mktemp("samba"), users={USER: PASSWORD}) as server:
        yield server


def run_ours(samba: SambaDcerpcd, *args: str) -> Any:
    """Our interpreter (dcerpc importable) inside Samba's namespaces, with ``"-c", SCRIPT, ARG...``
    or ``*DUMP``; what it prints, as JSON."""
    out = samba.python(*args, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


LOOKUP = """
import asyncio, json
import dcerpc
from dcerpc.epm.idl import Epm
from dcerpc.epm.towers import Tower
from dcerpc.ndr import ContextHandle

def row(e):
    t = Tower.decode(e.tower.tower_octet_string)
    v = t.interface.version
    return [str(e.object), str(t.interface.uuid), f"{v[0]}.{v[1]}", t.binding, e.annotation]

async def main():
    out = {}
    async with await dcerpc.connect("ncacn_ip_tcp:127.0.0.1[135]") as conn:
        epm = await conn.bind(Epm)
        for size in (1, 7, 500):
            handle, pages, rows = ContextHandle(), [], []
            while True:
                r = await epm.ept_lookup(0, None, None, 1, handle, size)
                pages.append([r.num_ents, r.status, r.entry_handle.is_null])
                rows += [row(e) for e in r.entries]
                handle = r.entry_handle
                if r.status != 0 or handle.is_null:
                    break
            out[size] = {"pages": pages, "rows": rows}
        # a handle released half way through a walk is gone from the server's association
        r = await epm.ept_lookup(0, None, None, 1, ContextHandle(), 2)
        freed = await epm.ept_lookup_handle_free(r.entry_handle)
        out["free"] = [r.entry_handle.is_null, freed.status]
        try:
            await epm.ept_lookup(0, None, None, 1, r.entry_handle, 2)
            out["after_free"] = "answered"
        except dcerpc.FaultError as e:
            out["after_free"] = e.name
    print(json.dumps(out))

asyncio.run(main())
"""


@pytest.mark.interop
def test_ept_lookup_pages_through_the_whole_map(samba: SambaDcerpcd) -> None:
    out = run_ours(samba, "-c", LOOKUP)
    whole = out["500"]["rows"]
    assert len(whole) >= 20
    assert {r[4] for r in whole} >= {"epmapper", "lsarpc", "samr", "winreg", "srvsvc"}
    for size in ("1", "7"):
        pages = out[size]["pages"]
        assert out[size]["rows"] == whole, size  # same entries in the same order, page size aside
        # full pages say 0 and keep the handle; Samba ends the set with ept_s_not_registered and a
        # zero handle, its last entries in that same answer (PROTOCOL_NOTES, "Endpoint mapper")
        assert all(p == [int(size), 0, False] for p in pages[:-1]), pages
        assert pages[-1][1:] == [EPT_S_NOT_REGISTERED, True] and pages[-1][0] >= 1, pages
    assert out["500"]["pages"] == [[len(whole), EPT_S_NOT_REGISTERED, True]]
    # LookupHandleFree answers 0; the freed handle then belongs to nothing. (Samba echoes the
    # handle back instead of zeroing it, so a client must not rely on a zero handle out.)
    assert out["free"] == [False, 0]
    assert out["after_free"] == "nca_s_fault_context_mismatch"


# Samba's own client; floors read by Samba's NDR (not by our tower decoder).
SAMBA_LISTING = """
import json, struct, uuid
from samba import credentials, param
from samba.dcerpc import epmapper, misc
lp = param.LoadParm()
creds = credentials.Credentials()
creds.guess(lp)
creds.set_anonymous()
epm = epmapper.epmapper("ncacn_ip_tcp:127.0.0.1[135]", lp, creds)
PROTSEQ = {(11, 7): "ncacn_ip_tcp", (11, 15): "ncacn_np", (12, 16): "ncalrpc", (11, 31): "ncacn_http",
           (10, 8): "ncadg_ip_udp"}
def value(rhs):
    for name in ("port", "unc", "path", "ipaddr", "name"):
        if hasattr(rhs, name):
            return str(getattr(rhs, name))
    raise ValueError(type(rhs).__name__)
rows, handle = [], misc.policy_handle()
while True:
    handle, entries, status = epm.epm_Lookup(0, None, None, 0, handle, 10)
    for e in entries:
        f = e.tower.tower.floors
        iface = uuid.UUID(bytes_le=bytes(f[0].lhs.lhs_data[:16]))
        major = struct.unpack("<H", bytes(f[0].lhs.lhs_data[16:18]))[0]
        minor = struct.unpack("<H", bytes(f[0].rhs.unknown))[0]
        protseq = PROTSEQ[(f[2].lhs.protocol, f[3].lhs.protocol)]
        host = value(f[4].rhs) if len(f) > 4 else ""
        rows.append([str(e.object), str(iface), f"{major}.{minor}", f"{protseq}:{host}[{value(f[3].rhs)}]",
                     e.annotation])
    if status != 0 or handle.uuid == misc.GUID():
        break
print(json.dumps(rows))
"""


@pytest.mark.interop
def test_dcerpc_dump_lists_what_samba_lists(samba: SambaDcerpcd) -> None:
    """`dcerpc dump --json` and Samba's own client page through the same entries: object,
    interface, version, binding and annotation."""
    require_peer(samba_python_available(), "python3-samba is not installed for /usr/bin/python3")
    dumped = [
        (r["object"], r["interface"], r["version"], r["binding"], r["annotation"])
        for r in run_ours(samba, *DUMP)
    ]
    theirs = samba.samba_python("-c", SAMBA_LISTING, timeout=60)
    assert theirs.returncode == 0, theirs.stderr[-3000:]
    listed = [tuple(r) for r in json.loads(theirs.stdout)]
    assert len(dumped) == len(listed) and set(dumped) == set(listed)
    assert {(u, v) for _, u, v, _, _ in dumped} >= {(LSARPC, "0.0"), (WINREG, "1.0")}
    bindings = {b.split(":", 1)[0] for _, _, _, b, _ in dumped}
    assert bindings >= {"ncacn_ip_tcp", "ncacn_np", "ncalrpc"}


OUR_CLIENT = """
import asyncio, json, sys, uuid
import dcerpc
from dcerpc import Interface
from dcerpc.auth import NTLM, Negotiate
from dcerpc.epm.idl import Epm, twr_t
from dcerpc.epm.towers import Tower, tcp_tower
from dcerpc.mgmt.idl import Mgmt
from dcerpc.ndr import ContextHandle
from dcerpc.pdu.syntax import SyntaxId

domain, user, password, lsarpc, winreg, unknown = sys.argv[1:7]

class Lsa(Interface, uuid=lsarpc, version=(0, 0), name="lsarpc"):
    pass

def ids(res):
    return sorted(f"{i.uuid} {i.vers_major}.{i.vers_minor}" for i in res.if_id_vector.if_id)

async def if_ids(binding, auth, level):
    async with await dcerpc.connect(binding, auth=auth, level=level) as conn:
        return ids(await (await conn.bind(Mgmt)).inq_if_ids())

async def main():
    out = {"map": {}}
    async with await dcerpc.connect("ncacn_ip_tcp:127.0.0.1[135]") as conn:
        epm = await conn.bind(Epm)
        for name, version in (lsarpc, (0, 0)), (winreg, (1, 0)), (unknown, (1, 0)):
            probe = twr_t.of(tcp_tower(SyntaxId(uuid.UUID(name), version)).encode())
            r = await epm.ept_map(None, probe, ContextHandle(), 4)
            towers = [Tower.decode(t.tower_octet_string).binding for t in r.towers]
            out["map"][name] = [r.status, r.entry_handle.is_null, towers]
        mgmt = await conn.bind(Mgmt)  # a second context on the mapper's own association
        listening = await mgmt.is_server_listening()
        out["epm_listening"] = [listening.status, bool(listening.result)]
    binding = out["map"][lsarpc][2][0]
    async with await dcerpc.connect(binding) as conn:
        mgmt = await conn.bind(Mgmt)
        out["if_ids"] = ids(await mgmt.inq_if_ids())
        listening = await mgmt.is_server_listening()
        out["listening"] = [listening.status, bool(listening.result)]
    # a binding without a port resolves through Samba's mapper (ept_map on 135) at bind time
    async with await dcerpc.connect("ncacn_ip_tcp:127.0.0.1") as conn:
        await conn.bind(Lsa)
        out["resolved"] = conn.binding.port
        out["resolved_if_ids"] = ids(await (await conn.bind(Mgmt)).inq_if_ids())
    for name, creds in (("ntlm", NTLM(domain, user, password)),
                        ("spnego", Negotiate(domain, user, password, kerberos=False))):
        for level in ("integrity", "privacy"):
            out[f"{name}_{level}"] = await if_ids(binding, creds, level)
    try:
        await if_ids(binding, NTLM(domain, user, password + "x"), "privacy")
        out["wrong_password"] = "accepted"
    except dcerpc.RpcError as e:
        out["wrong_password"] = f"{type(e).__name__}: {e}"
    print(json.dumps(out))

asyncio.run(main())
"""


def call_samba(samba: SambaDcerpcd, user: str, password: str) -> Any:
    return run_ours(samba, "-c", OUR_CLIENT, WORKGROUP, user, password, LSARPC, WINREG, RPCECHO)


def assert_authenticated(out: Any) -> None:
    """NTLM and SPNEGO (NTLM inside) at integrity and privacy see what an anonymous caller sees;
    a wrong password is refused."""
    assert f"{LSARPC} 0.0" in out["if_ids"]
    for key in ("ntlm_integrity", "ntlm_privacy", "spnego_integrity", "spnego_privacy"):
        assert out[key] == out["if_ids"], key
    assert out["wrong_password"] != "accepted"


@pytest.mark.interop
def test_our_client_calls_samba(samba: SambaDcerpcd) -> None:
    """ept_map through Samba's endpoint mapper (lsarpc, winreg; an interface it does not serve),
    mgmt on the mapper and on the mapped endpoint, a binding without a port resolved at bind time,
    then mgmt there anonymously and with NTLM and SPNEGO at integrity and privacy."""
    out = call_samba(samba, USER, PASSWORD)
    status, handle_null, towers = out["map"][LSARPC]
    assert status == 0 and handle_null and len(towers) == 1, out["map"]
    assert towers[0].startswith("ncacn_ip_tcp:127.0.0.1[")
    port = int(towers[0].rsplit("[", 1)[1].rstrip("]"))
    assert port >= 1024
    assert out["map"][WINREG][0] == 0 and out["map"][WINREG][2][0].startswith("ncacn_ip_tcp:127.0.0.1[")
    assert out["map"][RPCECHO][0] == EPT_S_NOT_REGISTERED and out["map"][RPCECHO][2] == []
    assert out["epm_listening"] == [0, True]
    assert out["listening"] == [0, True]
    # mgmt there names what the map lists on that endpoint (lsarpc, samr, dssetup ...)
    there = {f"{r['interface']} {r['version']}" for r in run_ours(samba, *DUMP) if r["binding"] == towers[0]}
    assert f"{LSARPC} 0.0" in there
    assert there <= set(out["if_ids"]), (there, out["if_ids"])
    assert out["resolved"] == port and out["resolved_if_ids"] == out["if_ids"]
    assert_authenticated(out)


@pytest.mark.interop
def test_a_user_added_to_the_running_server_authenticates(samba: SambaDcerpcd) -> None:
    samba.add_user("bob", "Secret-2")
    samba.add_user("carol", "Secret-3")
    assert {USER, "bob", "carol"} <= set(samba.list_users())
    assert samba.run(["id", "-u", "bob"]).stdout.strip().isdigit()  # the namespace's passwd has it
    samba.add_user("bob", "Secret-4")  # again: a new password, no second Unix account
    assert (samba.root / "passwd").read_text().count("\nbob:") == 1
    assert_authenticated(call_samba(samba, "bob", "Secret-4"))


def test_harness_cleans_up(tmp_path: Path) -> None:
    """Stopping the harness leaves no Samba process behind (its workers included)."""
    with SambaDcerpcd(tmp_path) as server:
        assert server._members()
        holder = server.holder
        assert holder is not None
    assert holder.poll() is not None
    assert sys.platform != "win32"
