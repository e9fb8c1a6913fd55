"""The labelled evaluation corpus: real tools, real servers, real captures (docs/monitor.md).

Two private network namespaces: one runs our server (``dcerpc run``: the endpoint mapper on 135 and
rpcecho on a dynamic port, NTLM users from a file), the other Samba's samba-dcerpcd
(tests/interop/sambad.py). For each :class:`Scenario` dumpcap records the namespace's loopback into
its own pcapng file while the scenario's commands run there, benign sessions (our client, Samba's
Python client, impacket at every NTLM level, smbtorture rpc.echo) and attacks (impacket's rpcdump
and rpcmap with its brute-force options, nmap, crafted Blaster- and CVE-2022-26809-shaped PDUs,
an NTLM password spray, svcctl / atsvc / Zerologon-shaped calls). Each file carries labels:
``expect``, the detectors (``rule.name`` of ``dcerpc monitor --json``'s alerts) that must fire on
it, empty for benign sessions (``benign``: no detector may fire; nmap -sV is an attack tool whose
probes carry no DCE/RPC, so it expects nothing without being benign); ``allow``, detectors that may
also fire on it without counting as a false positive (an rpcmap run also asks mgmt, for example).
``labels.json`` beside the files lists them all.

dumpcap is stopped only once it has written a marker packet sent after the scenario (a SYN from a
known source port), polled with tshark: stopped earlier, it may lose what it still buffers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tests.captures import wait_for_marker
from tests.interop.netns import NetNs
from tests.interop.sambad import SambaDcerpcd

REPO = Path(__file__).resolve().parents[2]
DOMAIN, USER, PASSWORD = "SAMBADOM", "alice", "Secret-1"
SPRAYED = [f"user{n:02d}" for n in range(12)]
MARKER = 19  # the marker SYN's source port (to the closed discard port, 9)
RPCECHO = "60a15ec5-4de8-11d7-a637-005056a20182"
LSARPC = "12345778-1234-abcd-ef00-0123456789ab"

DETECTORS = (
    "epm_enumeration", "mgmt_probe", "interface_brute_force", "opnum_sweep", "version_sweep",
    "unmapped_dynamic_port", "port_scan", "auth_spraying", "malformed_pdus", "blaster_activation",
    "fragment_overflow", "service_creation", "task_registration", "zerologon",
)  # fmt: skip


class Place(Protocol):
    """Somewhere to run commands: a :class:`NetNs` or a :class:`SambaDcerpcd`."""

    def run(
        self, args: Sequence[str], timeout: float = 120, **kw: Any
    ) -> subprocess.CompletedProcess[str]: ...

    def _wrap(self, args: Sequence[str]) -> list[str]: ...


@dataclass(frozen=True)
class Capture:
    """One labelled file of the corpus."""

    name: str
    path: str
    server: str  # "ours" or "samba"
    what: str
    expect: list[str] = field(default_factory=list)
    allow: list[str] = field(default_factory=list)
    benign: bool = True  # a benign session: no detector may fire on it
    seconds: float = 0.0  # time taken to make it


@dataclass(frozen=True)
class Env:
    """What a scenario's commands need: where to run, and the ports there."""

    place: Place
    server: str
    epm: int = 135
    dynamic: int = 0  # rpcecho's port (ours) or lsarpc's (Samba's)


@dataclass(frozen=True)
class Scenario:
    name: str
    server: str
    what: str
    commands: Callable[[Env], list[list[str]]]
    expect: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    must_succeed: bool = True
    attack: bool = False  # an attack tool's session even when nothing is expected of the detectors

    @property
    def benign(self) -> bool:
        return not self.expect and not self.attack


PY = sys.executable
BIN = Path(sys.executable).parent
SAMBA_PY = "/usr/bin/python3"
UNC = f"{DOMAIN}/{USER}%{PASSWORD}"

SAMBA_ECHO = """
import sys
from samba import param, credentials
from samba.dcerpc import echo
lp = param.LoadParm(); lp.load_default()
creds = credentials.Credentials(); creds.guess(lp); creds.set_anonymous()
e = echo.rpcecho("ncacn_ip_tcp:127.0.0.1", lp, creds)
assert e.AddOne(41) == 42
assert bytes(e.EchoData(list(b"corpus" * 100))) == b"corpus" * 100
"""

SAMBA_SRVSVC = """
import sys
from samba import param, credentials
from samba.dcerpc import srvsvc, wkssvc
lp = param.LoadParm(); lp.load_default()
creds = credentials.Credentials(); creds.guess(lp); creds.set_anonymous()
s = srvsvc.srvsvc("ncacn_ip_tcp:127.0.0.1", lp, creds)
s.NetSrvGetInfo("127.0.0.1", 101)
w = wkssvc.wkssvc("ncacn_ip_tcp:127.0.0.1", lp, creds)
w.NetWkstaGetInfo("127.0.0.1", 100)
"""


def _m(module: str, *args: str | int) -> list[str]:
    return [PY, "-m", f"tests.evaluation.{module}", *map(str, args)]


def _rpcmap(env: Env, *args: str) -> list[str]:
    return [PY, str(BIN / "rpcmap.py"), f"ncacn_ip_tcp:127.0.0.1[{env.dynamic}]", "-auth-level", "1", *args]


SCENARIOS: tuple[Scenario, ...] = (
    # benign, against our server
    # `dcerpc dump` lists the whole map as rpcdump does: the same ept_lookup loop on the wire, so the
    # same alert (an operator's own enumeration is still one); not a benign session
    Scenario("ours-dcerpc-dump", "ours", "our client: dcerpc dump (the whole endpoint map)",
             lambda e: [[PY, "-m", "dcerpc", "dump", "127.0.0.1"]], expect=("epm_enumeration",)),
    Scenario("ours-dcerpc-ping", "ours", "our client: dcerpc ping (mgmt) of the host",
             lambda e: [[PY, "-m", "dcerpc", "ping", "127.0.0.1"]]),
    Scenario("ours-dcerpc-call", "ours", "our client: rpcecho calls (mapped), NTLM privacy too",
             lambda e: [[PY, "-m", "dcerpc", "call", "127.0.0.1", "rpcecho.AddOne", "1"],
                        [PY, "-m", "dcerpc", "call", "127.0.0.1", "rpcecho.AddOne", "2", "-U", UNC]]),
    Scenario("ours-impacket-levels", "ours", "impacket: rpcecho at every auth level, none to privacy",
             lambda e: [_m("impacket_runs", "levels", "127.0.0.1", e.epm, DOMAIN, USER, PASSWORD)]),
    Scenario("ours-samba-python-echo", "ours", "Samba's Python client: rpcecho AddOne, EchoData (mapped)",
             lambda e: [[SAMBA_PY, "-c", SAMBA_ECHO]]),
    Scenario("ours-smbtorture-echo", "ours", "smbtorture rpc.echo over ncacn_ip_tcp (mapped)",
             lambda e: [["smbtorture", "ncacn_ip_tcp:127.0.0.1", "rpc.echo", "-U%",
                         "--option=torture:quick=yes"]],
             must_succeed=False),
    # attacks, against our server
    Scenario("ours-rpcdump", "ours", "impacket rpcdump",
             lambda e: [[PY, str(BIN / "rpcdump.py"), "127.0.0.1"]], expect=("epm_enumeration",)),
    Scenario("ours-rpcmap-mgmt", "ours", "impacket rpcmap (mgmt inq_if_ids) at the mapper and rpcecho's port",
             lambda e: [[PY, str(BIN / "rpcmap.py"), "ncacn_ip_tcp:127.0.0.1[135]", "-auth-level", "1"],
                        _rpcmap(e)],
             expect=("mgmt_probe",), allow=("unmapped_dynamic_port",)),
    Scenario("ours-rpcmap-uuids", "ours", "impacket rpcmap -brute-uuids at rpcecho's port",
             lambda e: [_rpcmap(e, "-brute-uuids")],
             expect=("interface_brute_force", "unmapped_dynamic_port"), allow=("mgmt_probe",)),
    Scenario("ours-rpcmap-opnums", "ours", "impacket rpcmap -brute-opnums on rpcecho",
             lambda e: [_rpcmap(e, "-brute-opnums", "-uuid", RPCECHO)],
             expect=("opnum_sweep", "unmapped_dynamic_port"),
             allow=("mgmt_probe", "interface_brute_force")),
    Scenario("ours-rpcmap-versions", "ours", "impacket rpcmap -brute-versions on rpcecho (0..16)",
             lambda e: [_rpcmap(e, "-brute-versions", "-version-max", "16", "-uuid", RPCECHO)],
             expect=("version_sweep", "unmapped_dynamic_port"),
             allow=("mgmt_probe", "interface_brute_force")),
    Scenario("ours-nmap-sv", "ours", "nmap -sV on 135 and rpcecho's port",
             lambda e: [["nmap", "-Pn", "-n", "-sV", "-p", f"135,{e.dynamic}", "127.0.0.1"]],
             attack=True, allow=("mgmt_probe", "epm_enumeration", "malformed_pdus", "unmapped_dynamic_port",
                                 "interface_brute_force", "port_scan")),
    Scenario("ours-nmap-scan", "ours", "nmap -sT of ports 1-1024 and rpcecho's",
             lambda e: [["nmap", "-Pn", "-n", "-sT", "-T4", "-p", f"1-1024,{e.dynamic}", "127.0.0.1"]],
             expect=("port_scan",), allow=("unmapped_dynamic_port",)),
    Scenario("ours-blaster", "ours", "crafted activation requests with an overlong UNC name",
             lambda e: [_m("crafted", "blaster", "127.0.0.1", e.epm)],
             expect=("blaster_activation",), allow=("malformed_pdus",)),
    Scenario("ours-fragments", "ours", "crafted CVE-2022-26809-shaped fragment runs (alloc_hint ~2^32)",
             lambda e: [_m("crafted", "fragments", "127.0.0.1", e.dynamic)],
             expect=("fragment_overflow",), allow=("malformed_pdus", "unmapped_dynamic_port")),
    Scenario("ours-malformed", "ours", "crafted malformed PDUs: bad version, short, cut bind, unknown type",
             lambda e: [_m("crafted", "malformed", "127.0.0.1", e.dynamic)],
             expect=("malformed_pdus",), allow=("unmapped_dynamic_port",)),
    Scenario("ours-spray", "ours", "impacket NTLM password spray: 12 users, one password",
             lambda e: [_m("impacket_runs", "spray", "127.0.0.1", e.dynamic, DOMAIN, "Winter2026!", RPCECHO,
                           *SPRAYED)],
             expect=("auth_spraying",), allow=("unmapped_dynamic_port",)),
    Scenario("ours-svcctl", "ours", "impacket svcctl RCreateServiceW (refused bind, sent anyway)",
             lambda e: [_m("impacket_runs", "svcctl", "127.0.0.1", e.epm)],
             expect=("service_creation",), allow=("malformed_pdus",)),
    Scenario("ours-atsvc", "ours", "impacket atsvc NetrJobAdd (refused bind, sent anyway)",
             lambda e: [_m("impacket_runs", "atsvc", "127.0.0.1", e.epm)],
             expect=("task_registration",), allow=("malformed_pdus",)),
    Scenario("ours-zerologon", "ours", "impacket NetrServerAuthenticate3 with zero credentials x16",
             lambda e: [_m("impacket_runs", "zerologon", "127.0.0.1", e.epm)],
             expect=("zerologon",), allow=("malformed_pdus",)),
    # against Samba's samba-dcerpcd
    Scenario("samba-dcerpc-dump", "samba", "our client: dcerpc dump of Samba's map",
             lambda e: [[PY, "-m", "dcerpc", "dump", "127.0.0.1"]], expect=("epm_enumeration",)),
    Scenario("samba-python-srvsvc", "samba", "Samba's Python client: srvsvc, wkssvc GetInfo (anonymous)",
             lambda e: [[SAMBA_PY, "-c", SAMBA_SRVSVC]]),
    Scenario("samba-rpcdump", "samba", "impacket rpcdump of Samba", lambda e: [[PY, str(BIN / "rpcdump.py"),
                                                                               "127.0.0.1"]],
             expect=("epm_enumeration",)),
    Scenario("samba-rpcmap-uuids", "samba", "impacket rpcmap -brute-uuids at Samba's lsarpc port",
             lambda e: [_rpcmap(e, "-brute-uuids")],
             expect=("interface_brute_force", "unmapped_dynamic_port"), allow=("mgmt_probe",)),
    # rpc.scanner (source4/torture/rpc/scanner.c): for every interface of Samba's IDL, ept_map it;
    # where mapped, bind mgmt there and inq_if_ids; for each interface listed, call opnums 0, 1, ...
    # with one 1000-octet 0xFF stub until nca_s_op_rng_error (Samba: rpc_x_bad_stub_data for each
    # opnum served). Every binding it makes is mapped and accepted: no rejected syntax, no version
    # proposed but the IDL's. Not run against ours: rpcecho's TestSleep reads 0xFFFFFFFF seconds
    # from that stub and smbtorture waits its 60 s request timeout.
    Scenario("samba-smbtorture-scanner", "samba", "smbtorture rpc.scanner of Samba over ncacn_ip_tcp",
             lambda e: [["smbtorture", "ncacn_ip_tcp:127.0.0.1", "rpc.scanner", "-U%"]],
             expect=("epm_enumeration", "mgmt_probe", "opnum_sweep"), must_succeed=False),
    Scenario("samba-spray", "samba", "impacket NTLM password spray of Samba's lsarpc: 12 users",
             lambda e: [_m("impacket_runs", "spray", "127.0.0.1", e.dynamic, DOMAIN, "Winter2026!", LSARPC,
                           *SPRAYED)],
             expect=("auth_spraying",), allow=("unmapped_dynamic_port",)),
    Scenario("samba-zerologon", "samba", "impacket Zerologon-shaped calls at Samba's lsarpc port",
             lambda e: [_m("impacket_runs", "zerologon", "127.0.0.1", e.dynamic)],
             expect=("zerologon",), allow=("malformed_pdus", "unmapped_dynamic_port")),
)  # fmt: skip


_ENV = {**os.environ, "PYTHONPATH": str(REPO)}  # a mount namespace's nsenter starts in /


def _popen(place: Place, args: Sequence[str], **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(place._wrap(args), text=True, **kw)


def _captured_to_the_end(place: Place, pcap: Path, seconds: float = 20.0) -> None:
    probe = (
        "import socket\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('127.0.0.1', {MARKER})); s.settimeout(2)\n"
        "try: s.connect(('127.0.0.1', 9))\n"
        "except OSError: pass\n"
    )
    place.run([PY, "-c", probe], timeout=30)
    if not wait_for_marker(pcap, MARKER, seconds=seconds):
        raise RuntimeError(f"dumpcap did not write the marker packet to {pcap}")


def record(env: Env, scenario: Scenario, out: Path) -> Capture:
    """Run one scenario under dumpcap; the file and its labels."""
    started = time.monotonic()
    pcap = out / f"{scenario.name}.pcapng"
    cap = _popen(env.place, ["dumpcap", "-i", "lo", "-q", "-w", str(pcap)],
                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    assert cap.stderr is not None
    for line in cap.stderr:  # dumpcap names the file once it captures
        if line.startswith("File:"):
            break
    try:
        for args in scenario.commands(env):
            done = env.place.run(args, timeout=180, cwd=str(REPO), env=_ENV)
            if scenario.must_succeed and done.returncode != 0:
                raise RuntimeError(
                    f"{scenario.name}: {args[:4]} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}"
                )
        _captured_to_the_end(env.place, pcap)
    finally:
        cap.send_signal(signal.SIGINT)  # dumpcap writes what it holds and closes the file
        cap.wait(20)
    return Capture(scenario.name, str(pcap), scenario.server, scenario.what, sorted(scenario.expect),
                   sorted(scenario.allow), scenario.benign, round(time.monotonic() - started, 2))  # fmt: skip


def _rpcecho_port(place: Place) -> int:
    out = place.run([PY, "-m", "dcerpc", "dump", "127.0.0.1", "--json"], timeout=60)
    for e in json.loads(out.stdout):
        if e["interface"] == RPCECHO and e.get("binding", "").startswith("ncacn_ip_tcp:"):
            return int(e["binding"].split("[")[1].rstrip("]"))
    raise RuntimeError(f"rpcecho is not in our server's map: {out.stdout} {out.stderr}")


def _samba_lsarpc_port(place: Place) -> int:
    out = place.run([PY, "-m", "dcerpc", "dump", "127.0.0.1", "--json"], timeout=60, cwd="/")
    for e in json.loads(out.stdout):
        if e["interface"] == LSARPC and e.get("binding", "").startswith("ncacn_ip_tcp:"):
            return int(e["binding"].split("[")[1].rstrip("]"))
    raise RuntimeError(f"lsarpc is not in Samba's map: {out.stdout} {out.stderr}")


def build_ours(out: Path, scenarios: Sequence[Scenario]) -> list[Capture]:
    users = out / "ntlm-users"
    users.write_text(f"{DOMAIN}:{USER}:{PASSWORD}\n")
    ns = NetNs()
    try:
        run = [PY, "-m", "dcerpc", "run", "--ntlm-users", str(users), "--socket", str(out / "epm.sock")]
        server = ns.popen(run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ns.wait_port(135)
        env = Env(ns, "ours", 135, _rpcecho_port(ns))
        caps = [record(env, s, out) for s in scenarios if s.server == "ours"]
        server.terminate()
        return caps
    finally:
        ns.close()


def build_samba(out: Path, scenarios: Sequence[Scenario]) -> list[Capture]:
    root = out / "samba"
    root.mkdir(exist_ok=True)
    with SambaDcerpcd(root, users={USER: PASSWORD}) as samba:
        env = Env(samba, "samba", 135, _samba_lsarpc_port(samba))
        return [record(env, s, out) for s in scenarios if s.server == "samba"]


def build(out: Path, only: Sequence[str] = ()) -> list[Capture]:
    """Make the corpus in ``out``; writes ``labels.json`` and returns the captures."""
    out.mkdir(parents=True, exist_ok=True)
    chosen = [s for s in SCENARIOS if not only or s.name in only]
    caps = build_ours(out, chosen) if any(s.server == "ours" for s in chosen) else []
    if any(s.server == "samba" for s in chosen):
        caps += build_samba(out, chosen)
    (out / "labels.json").write_text(json.dumps([asdict(c) for c in caps], indent=2) + "\n")
    return caps


def load(out: Path) -> list[Capture]:
    return [Capture(**c) for c in json.loads((out / "labels.json").read_text())]


if __name__ == "__main__":
    target = Path(sys.argv[1])
    t0 = time.monotonic()
    made = build(target, sys.argv[2:])
    for c in made:
        print(f"{c.seconds:7.2f}s  {c.name:28} expect={','.join(c.expect) or '-'}")
    print(f"{len(made)} captures in {time.monotonic() - t0:.1f} s")
