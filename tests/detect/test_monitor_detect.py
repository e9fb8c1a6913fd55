"""The detectors in the monitor's pipeline: PDUs as a client and server put them on the wire (our
PDU encoder; stubs from impacket's NDR encoders, an independent implementation), cut into TCP
segments, through ``Monitor(detectors=...)``: each stub-borne attack makes its alert record, after
the records that completed it; the same traffic with benign stubs makes none."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from dcerpc.detect import Detectors
from dcerpc.detect.stubs import ACTIVATION, NETLOGON, REMOTE_ACTIVATION, SVCCTL
from dcerpc.epm.idl import Epm, MapResult, twr_t
from dcerpc.epm.towers import tcp_tower
from dcerpc.monitor import Monitor
from dcerpc.monitor.records import AlertRecord, CallRecord
from dcerpc.monitor.tcp import Endpoint, Segment
from dcerpc.ndr.declarations import ContextHandle
from dcerpc.pdu import NDR20, PFC, Bind, BindAck, ContextElement, Request, Response, SyntaxId
from dcerpc.pdu.co import ContextResultItem
from tests.monitor.streams import CLIENT, SERVER, Exchange, segments

EPM = SyntaxId(uuid.UUID("e1af8308-5d1f-11c9-91a4-08002b14a0fa"), (3, 0))
ECHO = SyntaxId(uuid.UUID("60a15ec5-4de8-11d7-a637-005056a20182"), (1, 0))


def exchange(iface: SyntaxId, calls: list[tuple[int, bytes]], answers: list[bytes] | None = None) -> Exchange:
    """A bind of ``iface`` accepted, then each (opnum, stub) as one request answered (``answers``:
    the response stubs, else empty)."""
    ctx = ContextElement(0, iface, (NDR20,))
    out: Exchange = [(True, Bind(call_id=1, contexts=(ctx,)).encode())]
    out.append((False, BindAck(call_id=1, results=(ContextResultItem(0, 0, NDR20),)).encode()))
    for i, (opnum, stub) in enumerate(calls, start=2):
        out.append((True, Request(call_id=i, opnum=opnum, alloc_hint=len(stub), stub=stub).encode()))
        answer = answers[i - 2] if answers else b"\0" * 4
        out.append((False, Response(call_id=i, alloc_hint=len(answer), stub=answer).encode()))
    return out


def alerts(ex: Exchange) -> list[str]:
    """The detectors named by the alert records the monitor made of ``ex``."""
    mon = Monitor(detectors=Detectors())
    recs = [r for seg in segments(ex) for r in mon.feed(seg)] + mon.finish()
    return [r.alert.detector for r in recs if isinstance(r, AlertRecord)]


def moved(seg: Segment, port: Endpoint, dt: float) -> Segment:
    """The segment as if the server were at ``port``, ``dt`` seconds later."""
    src = port if seg.src == SERVER else seg.src
    dst = port if seg.dst == SERVER else seg.dst
    return replace(seg, ts=seg.ts + dt, src=src, dst=dst)


def _impacket() -> None:
    pytest.importorskip("impacket", reason="impacket is a dev dependency")


def _netlogon(credential: bytes) -> list[tuple[int, bytes]]:
    from impacket.dcerpc.v5 import nrpc
    from impacket.dcerpc.v5.dtypes import NULL

    calls = []
    for _ in range(3):
        challenge = nrpc.NetrServerReqChallenge()
        challenge["PrimaryName"], challenge["ComputerName"] = NULL, "DC1\x00"
        challenge["ClientChallenge"] = credential
        auth = nrpc.NetrServerAuthenticate3()
        auth["PrimaryName"], auth["AccountName"] = "\\\\DC1\x00", "DC1$\x00"
        auth["SecureChannelType"] = nrpc.NETLOGON_SECURE_CHANNEL_TYPE.ServerSecureChannel
        auth["ComputerName"], auth["ClientCredential"], auth["NegotiateFlags"] = (
            "DC1\x00",
            credential,
            0x212FFFFF,
        )
        calls += [(4, challenge.getData()), (26, auth.getData())]
    return calls


def test_zerologon() -> None:
    _impacket()
    iface = SyntaxId(NETLOGON, (1, 0))
    assert alerts(exchange(iface, _netlogon(bytes(8)))) == ["zerologon"]
    assert alerts(exchange(iface, _netlogon(b"\x13\x37" * 4))) == []


def _activation(name: str) -> bytes:
    from impacket.dcerpc.v5 import dcomrt
    from impacket.dcerpc.v5.dtypes import NULL
    from impacket.uuid import string_to_bin

    act = dcomrt.RemoteActivation()
    act["ORPCthis"] = dcomrt.ORPCTHIS()
    act["ORPCthis"]["cid"], act["ORPCthis"]["extensions"] = b"\x11" * 16, NULL
    act["Clsid"] = string_to_bin("e60c73e6-88f9-11cf-9af1-0020af6e72f4")
    act["pwszObjectName"] = name + "\x00"
    act["pObjectStorage"] = NULL
    return bytes(act.getData())


def test_blaster_activation() -> None:
    _impacket()
    iface = SyntaxId(REMOTE_ACTIVATION, (0, 0))
    assert alerts(exchange(iface, [(0, _activation("\\\\" + "\x90" * 40 + "\\c$\\x"))])) == [
        "blaster_activation"
    ]
    assert alerts(exchange(iface, [(0, _activation("C:\\data\\report.doc"))])) == []
    scm = SyntaxId(ACTIVATION, (0, 0))  # the same string, found by the scan in RemoteCreateInstance's stub
    assert alerts(exchange(scm, [(4, _activation("x" * 400))])) == ["blaster_activation"]


def test_service_creation_and_task_registration() -> None:
    _impacket()
    from impacket.dcerpc.v5 import scmr
    from impacket.dcerpc.v5.dtypes import NULL

    create = scmr.RCreateServiceW()
    create["hSCManager"], create["lpServiceName"], create["lpDisplayName"] = b"\1" * 20, "BTOBTO\x00", "B\x00"
    create["lpBinaryPathName"] = "%COMSPEC% /Q /c echo\x00"
    for field in ("lpLoadOrderGroup", "lpdwTagId", "lpDependencies", "lpServiceStartName", "lpPassword"):
        create[field] = NULL
    svcctl = SyntaxId(SVCCTL, (2, 0))
    assert alerts(exchange(svcctl, [(15, b"\0" * 12), (12, create.getData()), (19, b"\1" * 28)])) == [
        "service_creation"
    ]
    atsvc = SyntaxId(uuid.UUID("1ff70682-0a51-30e8-076d-740be8cee98b"), (1, 0))
    assert alerts(exchange(atsvc, [(0, b"\0" * 64)])) == ["task_registration"]
    assert alerts(exchange(atsvc, [(2, b"\0" * 16)])) == []  # NetrJobEnum


def test_fragment_overflow() -> None:
    ctx = ContextElement(0, ECHO, (NDR20,))
    ex: Exchange = [(True, Bind(call_id=1, contexts=(ctx,)).encode())]
    ex.append((False, BindAck(call_id=1, results=(ContextResultItem(0, 0, NDR20),)).encode()))
    first = Request(call_id=2, flags=PFC.FIRST_FRAG, alloc_hint=0xFFFFFFF0, stub=b"A" * 16)
    ex.append((True, first.encode()))
    for _ in range(3):
        ex.append((True, Request(call_id=2, flags=0, alloc_hint=0xFFFFFFF0, stub=b"A" * 16).encode()))
    assert alerts(ex) == ["fragment_overflow"]
    assert alerts(exchange(ECHO, [(1, b"\0" * 2000)])) == []


def test_unmapped_dynamic_port() -> None:
    op = Epm.__operations__[3]
    request = op.encode_request(None, twr_t.of(tcp_tower(ECHO).encode()), ContextHandle(), 4)
    answer = op.encode_response(
        MapResult(ContextHandle(), 1, [twr_t.of(tcp_tower(ECHO, 49701, "10.0.0.2").encode())], 0),
        (None, None, ContextHandle(), 4),
    )
    mon = Monitor(detectors=Detectors())
    recs = []
    for seg in segments(exchange(EPM, [(3, request)], [answer])):  # ept_map on SERVER (port 4999)
        recs += mon.feed(seg)
    assert any(isinstance(r, CallRecord) and r.response_stub for r in recs + mon.finish())
    mapped, other = Endpoint(SERVER.ip, 49701), Endpoint(SERVER.ip, 49702)
    found = []
    for port in (mapped, other):
        for seg in segments(exchange(ECHO, [(0, b"\0" * 4)])):
            found += [r.alert for r in mon.feed(moved(seg, port, 1.0)) if isinstance(r, AlertRecord)]
    found += [r.alert for r in mon.finish() if isinstance(r, AlertRecord)]
    assert [(a.detector, a.destination) for a in found] == [("unmapped_dynamic_port", (SERVER.ip, 49702))]
    assert CLIENT.ip == found[0].source
