"""The stub inspector reads what impacket's encoders and ours write (independent NDR encoders of
the same operations), and never raises on anything else."""

from __future__ import annotations

import struct
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcerpc.detect.stubs import ACTIVATION, EPM, NETLOGON, REMOTE_ACTIVATION, SVCCTL, inspect
from dcerpc.epm.idl import Epm, MapResult, twr_t
from dcerpc.epm.towers import tcp_tower
from dcerpc.ndr.declarations import ContextHandle
from dcerpc.pdu import SyntaxId

ECHO = SyntaxId(uuid.UUID("60a15ec5-4de8-11d7-a637-005056a20182"), (1, 0))


def test_ept_lookup_as_our_client_sends_it() -> None:
    op = Epm.__operations__[2]
    stub = op.encode_request(0, None, None, 1, ContextHandle(), 500)
    assert inspect(EPM, 2, stub) == {"epm.inquiry_type": 0, "epm.handle": False, "epm.max_ents": 500}
    handle = ContextHandle(0, uuid.uuid4())
    stub = op.encode_request(1, uuid.uuid4(), None, 1, handle, 1)
    assert inspect(EPM, 2, stub) == {"epm.inquiry_type": 1, "epm.handle": True, "epm.max_ents": 1}


def test_ept_map_request_and_answer_towers() -> None:
    op = Epm.__operations__[3]
    request = op.encode_request(None, twr_t.of(tcp_tower(ECHO).encode()), ContextHandle(), 4)
    towers = [
        twr_t.of(tcp_tower(ECHO, 49701, "10.0.0.2").encode()),
        twr_t.of(tcp_tower(ECHO, 49702).encode()),
    ]
    answer = op.encode_response(MapResult(ContextHandle(), 2, towers, 0), (None, None, ContextHandle(), 4))
    assert inspect(EPM, 3, request, answer) == {
        "epm.map_interface": f"{ECHO.uuid} 1.0",
        "epm.ports": [("10.0.0.2", 49701), ("0.0.0.0", 49702)],
    }


def test_impacket_encodings() -> None:
    pytest.importorskip("impacket", reason="impacket is a dev dependency")
    from impacket.dcerpc.v5 import dcomrt, epm, nrpc, scmr
    from impacket.dcerpc.v5.dtypes import NULL
    from impacket.uuid import string_to_bin

    lookup = epm.ept_lookup()
    lookup["inquiry_type"], lookup["object"], lookup["Ifid"] = epm.RPC_C_EP_ALL_ELTS, NULL, NULL
    lookup["vers_option"], lookup["max_ents"] = epm.RPC_C_VERS_ALL, 500
    assert inspect(EPM, 2, lookup.getData())["epm.inquiry_type"] == 0

    auth = nrpc.NetrServerAuthenticate3()
    auth["PrimaryName"], auth["AccountName"] = "\\\\DC\x00", "DC$\x00"
    auth["SecureChannelType"] = nrpc.NETLOGON_SECURE_CHANNEL_TYPE.ServerSecureChannel
    auth["ComputerName"], auth["ClientCredential"], auth["NegotiateFlags"] = "DC\x00", bytes(8), 0x212FFFFF
    assert inspect(NETLOGON, 26, auth.getData()) == {
        "netlogon.computer": "DC",
        "netlogon.zero_credential": True,
    }
    auth["ClientCredential"] = b"\x01" * 8
    assert inspect(NETLOGON, 26, auth.getData())["netlogon.zero_credential"] is False
    challenge = nrpc.NetrServerReqChallenge()
    challenge["PrimaryName"], challenge["ComputerName"] = NULL, "WS1\x00"
    challenge["ClientChallenge"] = bytes(8)
    assert inspect(NETLOGON, 4, challenge.getData()) == {
        "netlogon.computer": "WS1", "netlogon.zero_credential": True
    }  # fmt: skip

    create = scmr.RCreateServiceW()
    create["hSCManager"], create["lpServiceName"], create["lpDisplayName"] = b"\1" * 20, "evil\x00", "e\x00"
    create["lpBinaryPathName"] = "cmd.exe\x00"
    for field in ("lpLoadOrderGroup", "lpdwTagId", "lpDependencies", "lpServiceStartName", "lpPassword"):
        create[field] = NULL
    assert inspect(SVCCTL, 12, create.getData()) == {"svcctl.service": "evil"}

    act = dcomrt.RemoteActivation()
    act["ORPCthis"] = dcomrt.ORPCTHIS()
    act["ORPCthis"]["cid"], act["ORPCthis"]["extensions"] = b"\x11" * 16, NULL
    act["Clsid"] = string_to_bin("e60c73e6-88f9-11cf-9af1-0020af6e72f4")
    act["pwszObjectName"] = "\\\\" + "A" * 300 + "\\c$\x00"
    act["pObjectStorage"] = NULL
    stub = act.getData()
    [(name, count)] = inspect(REMOTE_ACTIVATION, 0, stub)["activation.names"]
    assert name.startswith("\\\\AAAA") and count == 306
    assert inspect(ACTIVATION, 4, stub)["activation.names"][0][1] == 306  # found by the string scan


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.sampled_from([(EPM, 2), (EPM, 3), (REMOTE_ACTIVATION, 0), (ACTIVATION, 4),
                                                  (NETLOGON, 4), (NETLOGON, 26), (SVCCTL, 12)]))  # fmt: skip
def test_never_raises(stub: bytes, op: tuple[uuid.UUID, int]) -> None:
    out = inspect(op[0], op[1], stub, stub)
    assert isinstance(out, dict)


def test_dcom_string_bindings_name_ports() -> None:
    from dcerpc.detect.stubs import OXID_RESOLVER

    # a DUALSTRINGARRAY (MS-DCOM 2.2.19): wNumEntries, wSecurityOffset, then tower id + "host[port]"
    strings = (
        b"\x07\x00"
        + "10.0.0.2[49801]\0".encode("utf-16-le")
        + b"\x07\x00"
        + "WS1[49802]\0".encode("utf-16-le")
    )
    answer = b"\x00" * 3 + struct.pack("<HH", len(strings) // 2, 0) + strings  # misaligned on purpose
    assert inspect(OXID_RESOLVER, 5, b"", answer) == {"epm.ports": [("", 49801), ("", 49802)]}
    assert inspect(OXID_RESOLVER, 5, b"", b"\0" * 64) == {}
