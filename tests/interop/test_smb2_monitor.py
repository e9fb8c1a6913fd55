"""``dcerpc monitor`` on DCE/RPC in SMB2 named pipes: Samba's smbd (and samba-dcerpcd behind it) in a
private namespace, real clients (impacket's SMBTransport at SMB 2.1 and at SMB 3.1.1, Samba's
rpcclient and smbtorture rpc.srvsvc), dumpcap on the namespace's loopback. The monitor's records are
checked against what the clients did, and call by call against tshark's own dissection of the same
file (call_id, opnum, pipe name)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.captures import monitor_json, wait_for_marker
from tests.conftest import have, require_peer
from tests.interop.smbd import SambaSmbd

DOMAIN, USER, PASSWORD = "SAMBADOM", "alice", "Secret-1"
MARKER = 44445  # the source port of one last connection: when tshark sees it in the file, all is there

# impacket over SMB 2.1 (no SMB3 encryption): srvsvc without DCE/RPC auth, lsarpc at integrity,
# samr at privacy, winreg; then one srvsvc call over SMB 3.1.1, which impacket encrypts.
IMPACKET = """
import sys
from impacket.smbconnection import SMBConnection
from impacket.smb3structs import SMB2_DIALECT_21
from impacket.dcerpc.v5 import transport, srvs, lsad, samr, rrp
from impacket.dcerpc.v5.rpcrt import RPC_C_AUTHN_LEVEL_PKT_INTEGRITY, RPC_C_AUTHN_LEVEL_PKT_PRIVACY
user, password, domain, dialect = sys.argv[1:5]
def bind(pipe, uuid, level):
    preferred = SMB2_DIALECT_21 if dialect == "2.1" else None
    smb = SMBConnection("127.0.0.1", "127.0.0.1", preferredDialect=preferred)
    smb.login(user, password, domain)
    rpc = transport.SMBTransport("127.0.0.1", 445, pipe, smb_connection=smb)
    dce = rpc.get_dce_rpc()
    if level:  # NTLM in the bind too; else the SMB2 session's logon is all there is
        rpc.set_credentials(user, password, domain)
        dce = rpc.get_dce_rpc()
        dce.set_auth_level(level)
    dce.connect()
    dce.bind(uuid)
    return dce
dce = bind(r"\\srvsvc", srvs.MSRPC_UUID_SRVS, 0)
shares = srvs.hNetrShareEnum(dce, 1)["InfoStruct"]["ShareInfo"]["Level1"]["Buffer"]
assert "IPC$" in [s["shi1_netname"][:-1] for s in shares]
dce.disconnect()
if dialect == "2.1":
    dce = bind(r"\\lsarpc", lsad.MSRPC_UUID_LSAD, RPC_C_AUTHN_LEVEL_PKT_INTEGRITY)
    lsad.hLsarClose(dce, lsad.hLsarOpenPolicy2(dce)["PolicyHandle"])
    dce.disconnect()
    dce = bind(r"\\samr", samr.MSRPC_UUID_SAMR, RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
    samr.hSamrCloseHandle(dce, samr.hSamrConnect(dce)["ServerHandle"])
    dce.disconnect()
    dce = bind(r"\\winreg", rrp.MSRPC_UUID_RRP, 0)
    try:  # Samba answers OpenHKLM with a fault for a user who is not an administrator
        rrp.hBaseRegCloseKey(dce, rrp.hOpenLocalMachine(dce)["phKey"])
    except Exception as e:
        print("winreg:", e)
    dce.disconnect()
print("ok")
"""


def _tshark(pcap: Path, *args: str) -> list[list[str]]:
    out = subprocess.run(
        ["tshark", "-r", str(pcap), *args], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    return [line.split("\t") for line in out.splitlines()]


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_peer(have("dumpcap") and have("tshark"), "dumpcap / tshark are not installed (Debian tshark)")
    require_peer(have("rpcclient"), "rpcclient is not installed (Debian package smbclient)")
    require_peer(have("smbtorture"), "smbtorture is not installed (Debian package samba-testsuite)")
    pytest.importorskip("impacket", reason="impacket is a dev dependency")
    tmp = tmp_path_factory.mktemp("smb2")
    pcap = tmp / "smb2.pcapng"
    with SambaSmbd(tmp / "samba", users={USER: PASSWORD}) as samba:
        cap = subprocess.Popen(
            samba._wrap(["dumpcap", "-i", "lo", "-f", "tcp port 445", "-w", str(pcap)]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert cap.stderr is not None
            for line in cap.stderr:  # dumpcap names the file once it captures
                if line.startswith("File:"):
                    break
            for dialect in ("2.1", "3.1.1"):
                imp = samba.python("-c", IMPACKET, USER, PASSWORD, DOMAIN, dialect)
                assert imp.returncode == 0 and "ok" in imp.stdout, imp.stderr
            rpc = samba.run(
                [
                    "rpcclient",
                    "-U",
                    f"{DOMAIN}/{USER}%{PASSWORD}",
                    "127.0.0.1",
                    "-c",
                    "srvinfo; netshareenum; enumdomusers",
                ]
            )
            assert rpc.returncode == 0 and f"user:[{USER}]" in rpc.stdout, rpc.stdout + rpc.stderr
            torture = samba.run(
                [
                    "smbtorture",
                    r"ncacn_np:127.0.0.1[\pipe\srvsvc]",
                    "rpc.srvsvc",
                    f"-U{DOMAIN}/{USER}%{PASSWORD}",
                ]
            )
            assert "success: srvsvc (admin access).NetSrvGetInfo" in torture.stdout, torture.stdout
            probe = (
                "import socket\n"
                f"s = socket.socket(); s.bind(('127.0.0.1', {MARKER})); s.settimeout(2)\n"
                "s.connect(('127.0.0.1', 445)); s.close()\n"
            )
            samba.python("-c", probe)
            assert wait_for_marker(pcap, MARKER), "dumpcap did not write the last packet"
        finally:
            cap.send_signal(signal.SIGINT)  # dumpcap writes what it holds and closes the file
            cap.wait(20)
    yield pcap


def _calls(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["event"]["action"] == "call"]


@pytest.mark.interop
def test_monitor_names_pipe_calls_of_every_client(capture: Path) -> None:
    calls = _calls(monitor_json(capture))
    assert calls and all(c["dcerpc"]["transport"] == "ncacn_np" for c in calls)
    assert all(c["destination"]["port"] == 445 for c in calls)
    seen = Counter(
        (c["dcerpc"]["named_pipe"], c["dcerpc"]["interface"]["name"], c["dcerpc"].get("operation"))
        for c in calls
    )
    # impacket over SMB 2.1 (the 3.1.1 session is encrypted: counted, unreadable)
    for pipe, iface, op in [
        ("\\pipe\\srvsvc", "srvsvc", "NetrShareEnum"),
        ("\\pipe\\lsarpc", "lsarpc", "LsarOpenPolicy2"),
        ("\\pipe\\lsarpc", "lsarpc", "LsarClose"),
        ("\\pipe\\samr", "samr", "SamrConnect"),
        ("\\pipe\\samr", "samr", "SamrCloseHandle"),
        ("\\pipe\\winreg", "winreg", "OpenLocalMachine"),
        # rpcclient srvinfo, netshareenum, enumdomusers
        ("\\pipe\\srvsvc", "srvsvc", "NetrServerGetInfo"),
        ("\\pipe\\srvsvc", "srvsvc", "NetrShareEnumSticky"),
        ("\\pipe\\samr", "samr", "SamrEnumerateUsersInDomain"),
        # smbtorture rpc.srvsvc
        ("\\pipe\\srvsvc", "srvsvc", "NetprNameValidate"),
        ("\\pipe\\srvsvc", "srvsvc", "NetrRemoteTOD"),
    ]:
        assert seen[(pipe, iface, op)] >= 1, ((pipe, iface, op), sorted(seen))
    lsa = [c for c in calls if c["dcerpc"]["named_pipe"] == "\\pipe\\lsarpc"]
    assert {c["dcerpc"]["auth"]["level"] for c in lsa} == {"integrity"}
    samr_priv = [c for c in calls if c["dcerpc"]["auth"]["level"] == "privacy"]
    assert {c["dcerpc"]["named_pipe"] for c in samr_priv} == {"\\pipe\\samr"}
    named = [
        c
        for c in calls
        if c["dcerpc"]["interface"]["name"] != "srvsvc" or c["dcerpc"].get("operation") != "NetprNameValidate"
    ]
    # every call but smbtorture's anonymous ones is alice's: the SMB2 session's or the bind's NTLM user
    users = Counter(json.dumps(c.get("user"), sort_keys=True) for c in named)
    assert users.most_common(1)[0][0] == json.dumps({"domain": DOMAIN, "name": USER}, sort_keys=True)
    assert all(c["event"]["outcome"] in ("success", "failure") for c in calls)  # every call answered
    faults = Counter(
        c["dcerpc"]["fault"]["status"]
        for c in calls
        if "fault" in c["dcerpc"] and c["dcerpc"]["named_pipe"] != "\\pipe\\winreg"
    )
    assert set(faults) <= {"nca_s_op_rng_error"}, faults  # smbtorture's calls Samba does not serve


@pytest.mark.interop
def test_encrypted_smb3_is_counted_not_read(capture: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dcerpc", "monitor", str(capture)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "SMB2" in proc.stdout and "encrypted" in proc.stdout, proc.stdout
    encrypted = _tshark(capture, "-Y", "smb2.protocol_id == 0xfd534d42", "-T", "fields", "-e", "frame.number")
    assert encrypted  # impacket's 3.1.1 session
    assert not [e for e in monitor_json(capture) if e["event"]["action"] == "protocol-violation"]


@pytest.mark.interop
def test_monitor_agrees_with_tshark_call_by_call(capture: Path) -> None:
    """Every request tshark dissects inside an SMB2 pipe is one of our calls: the same client port,
    pipe, call_id, opnum and interface (the names: CREATE requests paired with their responses by
    MessageId; the interface: the bind's context, in the same pipe, that the request names)."""
    names: dict[tuple[str, str], str] = {}
    fields = ("-T", "fields", "-e", "tcp.stream", "-e", "smb2.msg_id")
    for stream, mid, name in _tshark(
        capture, "-Y", "smb2.cmd == 5 && smb2.flags.response == 0", *fields, "-e", "smb2.filename"
    ):
        names[(stream, mid)] = name
    pipes: dict[tuple[str, str], str] = {}
    answered = "smb2.cmd == 5 && smb2.flags.response == 1 && smb2.nt_status == 0"
    for stream, mid, fid in _tshark(capture, "-Y", answered, *fields, "-e", "smb2.fid"):
        pipes[(stream, fid)] = names[(stream, mid)]
    # the interface of each presentation context, from the binds and alter_contexts tshark read
    bound: dict[tuple[str, str, str], str] = {}
    for stream, fids, ctx_ids, uuids in _tshark(
        capture, "-Y", "dcerpc.pkt_type == 11 || dcerpc.pkt_type == 14", "-T", "fields",
        "-e", "tcp.stream", "-e", "smb2.fid", "-e", "dcerpc.cn_ctx_id", "-e", "dcerpc.cn_bind_to_uuid",
    ):  # fmt: skip
        for ctx, uuid in zip(ctx_ids.split(","), uuids.split(","), strict=False):
            bound[(stream, fids.split(",")[-1], ctx)] = uuid
    theirs: Counter[tuple[int, str, int, int, str]] = Counter()
    wanted = ("tcp.stream", "tcp.srcport", "smb2.fid", "dcerpc.cn_call_id", "dcerpc.opnum",
              "dcerpc.cn_flags", "dcerpc.cn_ctx_id")  # fmt: skip
    rows = _tshark(
        capture, "-Y", "dcerpc.pkt_type == 0", "-T", "fields", *(x for w in wanted for x in ("-e", w))
    )
    for stream, port, fids, call_ids, opnums, flags, ctx_ids in rows:
        fid = fids.split(",")[-1]
        each = zip(call_ids.split(","), opnums.split(","), flags.split(","), ctx_ids.split(","), strict=True)
        for call_id, opnum, flag, ctx in each:
            if int(flag, 16) & 1:  # the first fragment: one call
                pipe = "\\pipe\\" + pipes[(stream, fid)]
                theirs[(int(port), pipe, int(call_id), int(opnum), bound[(stream, fid, ctx)])] += 1
    ours: Counter[tuple[int, str, int, int, str]] = Counter(
        (c["source"]["port"], c["dcerpc"]["named_pipe"], c["dcerpc"]["call_id"], c["dcerpc"]["opnum"],
         c["dcerpc"]["interface"]["uuid"])
        for c in _calls(monitor_json(capture))
    )  # fmt: skip
    assert sum(theirs.values()) > 100
    assert ours == theirs, (ours - theirs, theirs - ours)
