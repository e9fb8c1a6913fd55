"""Regenerate the committed seed corpus (fuzz/corpus/<target>/) from real sessions on loopback.

Theory of operation. Starts ``dcerpc run`` (the endpoint mapper, rpcecho and mgmt, NTLM users of a
throwaway file) on loopback ports, captures its traffic with tshark, and points real peers at it:
impacket's DCERPC client (anonymous, NTLM at integrity and privacy; rpcecho, ept_map / ept_lookup,
mgmt) and Samba's ``smbtorture rpc.echo`` (anonymous, sign, seal), then our own ``dcerpc dump``.
The capture's TCP payloads, segment by segment, become the seeds:

- ``server``: each connection's client-side segments, in order, as feed records (mode 0), with the
  server's captured answer stubs as respond records; plus the captured Echo and Mgmt calls (and a
  script of calls, alter_contexts, cancels, orphans) made by our client in every paired mode
  (unauthenticated, NTLM, SPNEGO);
- ``client``: each connection's server-side PDUs, call_ids renumbered to the harness client's,
  each answer preceded by the call it answers;
- ``pdu``: every distinct PDU, both directions;
- ``ndr``: every plaintext request and response stub, tagged with its operation's sub-target;
- ``towers``: the towers of ept_map requests and answers and of ept_lookup answers;
- ``verification``: the stubs of signed (not sealed) requests (smbtorture ends its first request on
  a context with a real verification trailer, MS-RPCE 2.2.2.13); plus trailers our client builds.

Needs root (capture on lo), tshark, smbtorture (Debian samba-testsuite) and impacket (dev extras):

    sudo .venv/bin/python fuzz/make_corpus.py          # rewrites fuzz/corpus/*
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import records
from fuzz_ndr import TARGETS

from dcerpc.epm.idl import Epm
from dcerpc.interface import Interface
from dcerpc.mgmt.idl import Mgmt
from dcerpc.pdu import AlterContext, Bind, BindAck, BindNak, Fault, PduError, Request, Response, parse
from dcerpc.pdu.header import frame_length
from dcerpc.protocol import verification
from dcerpc.rpcecho import Echo

HERE = Path(__file__).resolve().parent
EPM_PORT = 42135
PORTS = (42136, 42159)
USER = ("FUZZ", "alice", "wonderland")
INTERFACES: dict[uuid.UUID, type[Interface]] = {i.__syntax__.uuid: i for i in (Echo, Epm, Mgmt)}
SERVED = (Echo.__syntax__, Epm.__syntax__, Mgmt.__syntax__)
NDR_INDEX = {name: i for i, (name, _, _, _) in enumerate(TARGETS)}
MAX_SEED = 65536

Segment = tuple[bool, bytes]  # (from the client, payload)


# --- the sessions ------------------------------------------------------------------------------


def wait_port(port: int, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def impacket_sessions() -> int:
    """impacket's sessions; returns the port ept_map named for rpcecho."""
    from impacket.dcerpc.v5 import epm, mgmt, rpcrt, transport  # noqa: PLC0415 (a dev peer)
    from impacket.uuid import uuidtup_to_bin  # noqa: PLC0415

    def bound(port: int, iface: type[Interface] | None, level: int = 0) -> rpcrt.DCERPC_v5:
        rpc = transport.DCERPCTransportFactory(f"ncacn_ip_tcp:127.0.0.1[{port}]")
        if level:
            rpc.set_credentials(USER[1], USER[2], USER[0])
        dce = rpc.get_dce_rpc()
        if level:
            dce.set_auth_level(level)
        dce.connect()
        if iface is not None:
            s = iface.__syntax__
            dce.bind(uuidtup_to_bin((str(s.uuid), f"{s.version[0]}.{s.version[1]}")))
        return dce

    def echo_calls(dce: rpcrt.DCERPC_v5) -> None:
        for name, args in (
            ("AddOne", (41,)),
            ("EchoData", (9000, bytes(range(250)) * 36)),  # fragmented both ways
            ("TestCall", ("impacket",)),
            ("SourceData", (300,)),
            ("SinkData", (5, b"hello")),
            *(("TestCall2", (level,)) for level in range(1, 8)),
        ):
            op = Echo.operation_named(name)
            with contextlib.suppress(Exception):
                dce.call(op.opnum, op.encode_request(*args))
                dce.recv()

    dce = bound(EPM_PORT, None)  # hept_map binds it
    echo = uuidtup_to_bin((str(Echo.__syntax__.uuid), "1.0"))
    found = epm.hept_map("127.0.0.1", echo, protocol="ncacn_ip_tcp", dce=dce)
    echo_port = int(found.rsplit("[", 1)[1].rstrip("]"))
    with contextlib.suppress(Exception):
        epm.hept_lookup("127.0.0.1", dce=dce)
    dce.disconnect()
    with contextlib.suppress(Exception):
        dce = bound(echo_port, Mgmt)
        for call in (mgmt.hinq_if_ids, mgmt.hinq_stats, mgmt.his_server_listening, mgmt.hinq_princ_name):
            with contextlib.suppress(Exception):
                call(dce)
        dce.disconnect()
    for level in (0, rpcrt.RPC_C_AUTHN_LEVEL_PKT_INTEGRITY, rpcrt.RPC_C_AUTHN_LEVEL_PKT_PRIVACY):
        with contextlib.suppress(Exception):
            dce = bound(echo_port, Echo, level)
            echo_calls(dce)
            dce.disconnect()
    return echo_port


def samba_sessions(echo_port: int) -> None:
    """smbtorture rpc.echo (quick), anonymous and as the NTLM user at sign and seal."""
    for options, user in (("", "-U%"), (",sign", "-U{0}/{1}%{2}"), (",seal", "-U{0}/{1}%{2}")):
        subprocess.run(
            [
                "smbtorture",
                f"ncacn_ip_tcp:127.0.0.1[{echo_port}{options}]",
                "rpc.echo",
                user.format(*USER),
                "--option=torture:quick=yes",
            ],
            capture_output=True,
            timeout=180,
            check=False,
        )


def capture(work: Path) -> list[list[Segment]]:
    """Run the server and the peers under tshark; each TCP connection's segments, in order."""
    users = work / "ntlm-users"
    users.write_text(":".join(USER) + "\n")
    pcap = work / "sessions.pcap"
    server = subprocess.Popen(
        [sys.executable, "-m", "dcerpc", "run", "--epm-port", str(EPM_PORT),
         "--ports", "-".join(map(str, PORTS)), "--socket", str(work / "epm.sock"),
         "--ntlm-users", str(users), "--log-level", "error"],
    )  # fmt: skip
    cap = subprocess.Popen(
        ["tshark", "-i", "lo", "-f", f"tcp portrange {EPM_PORT}-{PORTS[1]}", "-w", str(pcap), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(EPM_PORT)
        while not pcap.exists():
            time.sleep(0.1)
        time.sleep(1.0)  # tshark has the file open before it captures
        echo_port = impacket_sessions()
        samba_sessions(echo_port)
        subprocess.run([sys.executable, "-m", "dcerpc", "dump", "127.0.0.1", "--port", str(EPM_PORT)],
                       capture_output=True, timeout=60, check=False)  # fmt: skip
        time.sleep(1.0)
    finally:
        cap.terminate()
        cap.wait(30)
        server.terminate()
        server.wait(30)
    fields = subprocess.run(
        ["tshark", "-r", str(pcap), "-Y", "tcp.len > 0", "-T", "fields",
         "-e", "tcp.stream", "-e", "tcp.srcport", "-e", "tcp.payload"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    streams: dict[int, list[Segment]] = defaultdict(list)
    for line in fields.splitlines():
        stream, src, payload = line.split("\t")
        streams[int(stream)].append(
            (not EPM_PORT <= int(src) <= PORTS[1], bytes.fromhex(payload.replace(":", "")))
        )
    return [streams[k] for k in sorted(streams)]


# --- from segments to seeds ------------------------------------------------------------------


def pdus(octets: bytes) -> Iterator[bytes]:
    """The whole fragments of one direction's octets."""
    pos = 0
    while True:
        n = frame_length(octets, pos, len(octets))
        if n is None or n < 16 or pos + n > len(octets):
            return
        yield octets[pos : pos + n]
        pos += n


def parsed(fragment: bytes) -> object | None:
    try:
        return parse(fragment).pdu
    except PduError:
        return None


def plain_stub(pdu: object) -> bytes | None:
    """A request's or response's stub when it is readable (no verifier, or signed but not sealed)."""
    if isinstance(pdu, Request | Response) and (pdu.auth is None or pdu.auth.auth_level < 6):
        return pdu.stub
    return None


class Seeds:
    """The seeds of every target, deduplicated by content."""

    def __init__(self) -> None:
        self.by_target: dict[str, dict[str, bytes]] = defaultdict(dict)
        self.shapes: set[tuple[int, ...]] = set()
        # captured Echo / Mgmt calls, by (context in the harness's bind, opnum): request and answer
        self.calls: dict[tuple[int, int], tuple[bytes, bytes]] = {}

    def add(self, target: str, data: bytes) -> None:
        if 0 < len(data) <= MAX_SEED:
            self.by_target[target][hashlib.sha1(data).hexdigest()[:16]] = data

    def add_pdu(self, fragment: bytes) -> None:
        """One PDU of each shape (type, flags, auth type and level, size in KB): a long call's
        fragments are alike, and the parser's paths do not depend on the stub's octets."""
        key = (fragment[2], fragment[3], len(fragment) // 1024, parsed(fragment) is None)
        if fragment[10] or fragment[11]:  # auth_length: the sec_trailer's type and level
            at = len(fragment) - int.from_bytes(fragment[10:12], "little") - 8
            key += (fragment[at], fragment[at + 1])
        if key not in self.shapes:
            self.shapes.add(key)
            self.add("pdu", fragment)

    def write(self, root: Path) -> None:
        for target, seeds in sorted(self.by_target.items()):
            folder = root / target
            folder.mkdir(parents=True, exist_ok=True)
            for old in folder.iterdir():
                old.unlink()
            for name, data in seeds.items():
                (folder / name).write_bytes(data)
            print(f"{target}: {len(seeds)} seeds, {sum(map(len, seeds.values()))} octets")


def from_connection(segments: list[Segment], seeds: Seeds) -> None:
    client = b"".join(p for c, p in segments if c)
    server = b"".join(p for c, p in segments if not c)
    sent = [p for p in map(parsed, pdus(client)) if p is not None]
    answered = [p for p in map(parsed, pdus(server)) if p is not None]
    for fragment in [*pdus(client), *pdus(server)]:
        seeds.add_pdu(fragment)
    contexts: dict[int, type[Interface]] = {}
    requests: dict[int, Request] = {}
    for pdu in sent:
        if isinstance(pdu, Bind | AlterContext):
            for elem in pdu.contexts:
                iface = INTERFACES.get(elem.abstract_syntax.uuid)
                if iface is not None:
                    contexts[elem.context_id] = iface
        elif isinstance(pdu, Request) and pdu.flags & 1:
            requests[pdu.call_id] = pdu
    answers = {p.call_id: p for p in answered if isinstance(p, Response) and p.flags & 1}
    # server: the segments as the server read them; each call answered with the stub it was sent
    script: list[tuple[int, bytes]] = []
    for from_client, payload in segments:
        if from_client:
            script.append((0, payload))
            for pdu in map(parsed, pdus(payload)):
                if isinstance(pdu, Request) and pdu.call_id in answers:
                    script.append((3, answers[pdu.call_id].stub))
    seeds.add("server", b"\0" + records.encode(script))
    # ndr, towers, verification: what the stubs say
    for cid, req in requests.items():
        iface = contexts.get(req.context_id)
        op = iface.__operations__.get(req.opnum) if iface is not None else None
        for pdu, side in ((req, "request"), (answers.get(cid), "response")):
            stub = plain_stub(pdu)
            if op is None or stub is None:
                continue
            index = NDR_INDEX.get(f"{iface.__ifname__}.{op.name}.{side}")  # type: ignore[union-attr]
            if index is not None:
                seeds.add("ndr", bytes([index, 0]) + stub)
            towers(iface, op.name, side, stub, seeds)
            if side == "request" and pdu is not None and pdu.auth is not None and pdu.auth.auth_level == 5:
                seeds.add("verification", b"\0" + stub)
        answer = plain_stub(answers.get(cid))
        request = plain_stub(req)
        if iface in (Echo, Mgmt) and request is not None and answer is not None:
            seeds.calls.setdefault((0 if iface is Echo else 1, req.opnum), (request, answer))
    from_answers(sent, [(f, parsed(f)) for f in pdus(server)], requests, seeds)


def towers(iface: type[Interface] | None, name: str, side: str, stub: bytes, seeds: Seeds) -> None:
    if iface is not Epm or name not in ("ept_map", "ept_lookup"):
        return
    op = Epm.operation_named(name)
    with contextlib.suppress(Exception):
        if side == "request" and name == "ept_map":
            (_, tower, _, _), _ = op.decode_request(stub)
            seeds.add("towers", bytes(tower.tower_octet_string))
        elif side == "response" and name == "ept_map":
            result, _ = op.decode_response(stub)
            for t in result.towers:
                if t is not None:
                    seeds.add("towers", bytes(t.tower_octet_string))
        elif side == "response":
            result, _ = op.decode_response(stub)
            for entry in result.entries:
                if entry.tower is not None:
                    seeds.add("towers", bytes(entry.tower.tower_octet_string))


def from_answers(
    sent: list[object],
    answered: list[tuple[bytes, object | None]],
    requests: dict[int, Request],
    seeds: Seeds,
) -> None:
    """client: the server's PDUs, renumbered to the call_ids the harness's client gives (its bind
    is 1; each call and alter_context it is told to make takes the next)."""
    mode = 0
    bind = next((p for p in sent if isinstance(p, Bind)), None)
    if bind is not None and bind.auth is not None:
        mode = {10: 1, 9: 2}.get(bind.auth.auth_type, 0)
    ids: dict[int, int] = {}
    script: list[tuple[int, bytes]] = []
    for fragment, pdu in answered:
        if pdu is None:
            continue
        cid = pdu.call_id  # type: ignore[attr-defined]
        if cid not in ids:
            if isinstance(pdu, BindAck | BindNak) and not ids:
                ids[cid] = 1
            elif isinstance(pdu, Response | Fault) and cid in requests:
                req = requests[cid]
                stub = plain_stub(req) or b""
                script.append((1, bytes([req.context_id % 3, req.opnum & 0xFF]) + stub[:4096]))
                ids[cid] = len(ids) + 1
            else:
                script.append((2, b"\0\0"))  # an alter_context
                ids[cid] = len(ids) + 1
        order = "<I" if fragment[4] & 0x10 else ">I"
        script.append((0, fragment[:12] + struct.pack(order, ids[cid]) + fragment[16:]))
    seeds.add("client", bytes([mode]) + records.encode(script))


# --- seeds no real peer sends ------------------------------------------------------------------


def synthetic(seeds: Seeds) -> None:
    """The paired modes' scripts (calls, answers, alter_context, cancel, orphan, a corrupted call,
    partial writes), and PDUs real peers seldom send: co_cancel, orphaned, object UUIDs, fragments."""
    from dcerpc.auth import NTLM  # noqa: PLC0415
    from dcerpc.pdu import NDR20, PFC, AuthVerifier, CoCancel, ContextElement, Orphaned  # noqa: PLC0415

    echo = Echo.__syntax__
    calls = [("AddOne", (41,), 42), ("EchoData", (3000, bytes(range(250)) * 12), bytes(range(250)) * 12),
             ("TestCall", ("seed",), "seed")]  # fmt: skip
    captured = [(bytes(k) + q, a) for k, (q, a) in sorted(seeds.calls.items())]
    for mode in range(1, 6):
        replayed: list[tuple[int, bytes]] = []
        for request, answer in captured:  # the captured calls, made by our client
            replayed += [(1, request), (3, answer)]
        seeds.add("server", bytes([mode]) + records.encode([*replayed, (8, b"")]))
        script: list[tuple[int, bytes]] = []
        for name, ins, result in calls:
            op = Echo.operation_named(name)
            script += [
                (1, bytes([0, op.opnum]) + op.encode_request(*ins)),
                (3, op.encode_response(result, ins)),
            ]
        script += [
            (5, b"\1\2"),
            (1, b"\1\0" + bytes(4)),
            (6, b"\0"),
            (4, b"\x02\0\x01\x1c"),
            (1, b"\0\0" + bytes(4)),
        ]
        script += [(6, b"\1"), (2, b"\x30\0\x55\0\0" + bytes(4)), (7, b"\x10\0"), (3, bytes(9000)), (8, b"")]
        seeds.add("server", bytes([mode]) + records.encode(script))
    bind = Bind(call_id=1, contexts=(ContextElement(0, echo, (NDR20,)), ContextElement(1, echo, (NDR20,))))
    big = bytes(range(256)) * 30
    frags = [
        Request(call_id=3, flags=PFC.FIRST_FRAG, opnum=1, stub=big[:3000]),
        Request(call_id=3, flags=0, opnum=1, stub=big[3000:6000]),
        Request(call_id=3, flags=PFC.LAST_FRAG, opnum=1, stub=big[6000:]),
    ]
    alter = AlterContext(call_id=4, contexts=(ContextElement(2, echo, (NDR20,)),))
    with_object = Request(
        call_id=5, context_id=2, opnum=0, object=uuid.UUID(int=9),
        flags=PFC.FIRST_FRAG | PFC.LAST_FRAG | PFC.OBJECT_UUID, stub=struct.pack("<I", 41),
    )  # fmt: skip
    streams = [
        [bind.encode(), *(f.encode() for f in frags)],
        [
            bind.encode(),
            alter.encode(),
            with_object.encode(),
            CoCancel(call_id=5).encode(),
            Orphaned(call_id=5).encode(),
        ],
    ]
    # the caps: security contexts (each alter_context starts NTLM on a new auth_context_id) and
    # presentation contexts (an alter_context proposing more than max_contexts)
    negotiate = NTLM(*USER).client_context("fuzz", 6).step(None) or b""
    streams.append(
        [bind.encode()]
        + [
            AlterContext(
                call_id=10 + i,
                contexts=(ContextElement(0, echo, (NDR20,)),),
                auth=AuthVerifier(auth_type=10, auth_level=6, context_id=i, value=negotiate),
            ).encode()
            for i in range(6)
        ]
    )
    many = tuple(ContextElement(i, SERVED[i % 3], (NDR20,)) for i in range(2, 14))
    streams.append([bind.encode(), AlterContext(call_id=2, contexts=many).encode()])
    for stream in streams:
        seeds.add("server", b"\0" + records.encode((0, p) for p in stream))
        for p in stream:
            seeds.add_pdu(p)
    from dcerpc.epm.towers import Tower  # noqa: PLC0415

    for protseq, endpoint, host in (
        ("ncacn_ip_tcp", "135", "::1"),
        ("ncadg_ip_udp", "135", "127.0.0.1"),
        ("ncacn_http", "593", "127.0.0.1"),
        ("ncacn_np", r"\pipe\epmapper", "HOST"),
        ("ncalrpc", "epmapper", ""),
    ):
        seeds.add("towers", Tower(echo, NDR20, protseq, endpoint, host).encode())
    tcp = Tower(echo, NDR20, "ncacn_ip_tcp", "135", "127.0.0.1").encode()
    seeds.add("towers", tcp[: tcp.rindex(b"\x01\x00\x09")] + b"\x01\x00\x11\x02\x00\x02\x00")  # NetBIOS host
    for header_sign in (False, True):
        tail = verification.build(
            header_sign=header_sign, interface=echo, transfer=NDR20, ptype=0, drep=b"\x10\0\0\0",
            call_id=2, context_id=0, opnum=1, stub_length=5,
        )  # fmt: skip
        seeds.add("verification", b"\0" + b"hello" + tail)
        fields = bytes([header_sign]) + echo.pack() + NDR20.pack() + b"\0\x10\0\0\0" + bytes(8) + b"hello"
        seeds.add("verification", b"\1" + fields)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=HERE / "corpus")
    args = parser.parse_args()
    seeds = Seeds()
    with tempfile.TemporaryDirectory(prefix="dcerpc-corpus-") as tmp:
        connections = capture(Path(tmp))
    for segments in connections:
        from_connection(segments, seeds)
    synthetic(seeds)
    print(f"{len(connections)} connections captured")
    seeds.write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
