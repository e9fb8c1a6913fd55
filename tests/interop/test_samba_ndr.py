"""Byte-for-byte agreement with Samba's C NDR (python3-samba), and decoding of Samba's bytes.

For every rpcecho operation (both directions, every TestCall2 level), an ept_lookup response with
hundreds of entries carrying real five-floor TCP towers and annotations, ept_map, and the mgmt calls:
Samba packs the values, we pack the same values, the octets must be equal; then our decoder reads
Samba's octets back to the same values. The reference octets are made at test time by
``samba_reference.py`` under /usr/bin/python3.
"""

from __future__ import annotations

import json
import struct
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dcerpc.epm.idl import Epm, LookupResult, MapResult, ept_entry_t, twr_t
from dcerpc.epm.towers import Tower
from dcerpc.interface import Interface
from dcerpc.mgmt.idl import (
    InqIfIdsResult,
    InqPrincNameResult,
    InqStatsResult,
    IsListeningResult,
    Mgmt,
    mgmt_statistics,
    rpc_if_id_vector_t,
)
from dcerpc.ndr import NTSTATUS, WERROR, ContextHandle
from dcerpc.pdu import NDR20, SyntaxId
from dcerpc.rpcecho import (
    Echo,
    echo_Enum1,
    echo_Enum2,
    echo_Enum3,
    echo_Info,
    echo_info1,
    echo_info2,
    echo_info3,
    echo_info4,
    echo_info5,
    echo_info6,
    echo_info7,
    echo_Surrounding,
)
from dcerpc.rpcecho import (
    TestEnumResult as EnumResult,
)
from dcerpc.rpcecho.idl import _TestCall2Result
from dcerpc.rpctypes import rpc_if_id_t

SCRIPT = Path(__file__).with_name("samba_reference.py")
NIL = "00000000-0000-0000-0000-000000000000"


@dataclass
class Case:
    name: str
    iface: type[Interface]
    op: str
    direction: str  # "in" or "out"
    ins: tuple[Any, ...]  # our [in] values (also the context of an [out] encoding)
    result: Any  # our [out] result (direction "out")
    samba: dict[str, Any]  # the same values, as samba_reference.py spells them


def hexs(b: bytes) -> dict[str, str]:
    return {"hex": b.hex()}


def tower(i: int, port: int | None = None, host: str | None = None) -> bytes:
    iface = SyntaxId(uuid.UUID(f"{i:08x}-4de8-11d7-a637-005056a20182"), (i % 4, i % 3))
    addr = host if host is not None else ("127.0.0.1" if i % 2 == 0 else f"10.0.{i // 256}.{i % 256}")
    return Tower(iface, NDR20, "ncacn_ip_tcp", str(49152 + i if port is None else port), addr).encode()


def entry(i: int) -> tuple[ept_entry_t, dict[str, Any]]:
    obj = NIL if i % 2 == 0 else f"{i:08x}-1111-2222-3333-444455556666"
    note = "" if i % 5 == 0 else f"dcerpc test service {i}"
    octets = tower(i)
    return ept_entry_t(uuid.UUID(obj), twr_t.of(octets), note), {"entry": [obj, octets.hex(), note]}


HANDLE = ("ffffffff-0000-0000-0000-000000000001", 0)


def cases() -> list[Case]:
    out: list[Case] = []
    add = out.append
    for v, r in [(41, 42), (0xFFFFFFFF, 0)]:
        add(Case(f"AddOne in {v}", Echo, "AddOne", "in", (v,), None, {"in_in_data": v}))
        add(Case(f"AddOne out {r}", Echo, "AddOne", "out", (v,), r, {"out_out_data": r}))
    for n in (0, 5, 1000):
        data = bytes(i & 0xFF for i in range(n))
        add(
            Case(
                f"EchoData in {n}",
                Echo,
                "EchoData",
                "in",
                (n, data),
                None,
                {"in_len": n, "in_in_data": hexs(data)},
            )
        )
        add(
            Case(
                f"EchoData out {n}",
                Echo,
                "EchoData",
                "out",
                (n, data),
                data,
                {"in_len": n, "out_out_data": hexs(data)},
            )
        )
    add(
        Case(
            "SinkData in",
            Echo,
            "SinkData",
            "in",
            (7, b"\x01" * 7),
            None,
            {"in_len": 7, "in_data": hexs(b"\x01" * 7)},
        )
    )
    src = bytes(i & 0xFF for i in range(300))
    add(Case("SourceData in", Echo, "SourceData", "in", (300,), None, {"in_len": 300}))
    add(
        Case("SourceData out", Echo, "SourceData", "out", (300,), src, {"in_len": 300, "out_data": hexs(src)})
    )
    for s in ("hello", "", "grüße €"):
        add(Case(f"TestCall in {s!r}", Echo, "TestCall", "in", (s,), None, {"in_s1": s}))
        add(Case(f"TestCall out {s!r}", Echo, "TestCall", "out", (s,), s, {"out_s2": s}))
    infos: dict[int, tuple[Any, dict[str, Any]]] = {
        1: (echo_info1(10), {"struct": "echo.info1", "fields": {"v": 10}}),
        2: (echo_info2(20), {"struct": "echo.info2", "fields": {"v": 20}}),
        3: (echo_info3(30), {"struct": "echo.info3", "fields": {"v": 30}}),
        4: (echo_info4(40), {"struct": "echo.info4", "fields": {"v": 40}}),
        5: (echo_info5(50, 60), {"struct": "echo.info5", "fields": {"v1": 50, "v2": 60}}),
        6: (
            echo_info6(70, echo_info1(80)),
            {
                "struct": "echo.info6",
                "fields": {"v1": 70, "info1": {"struct": "echo.info1", "fields": {"v": 80}}},
            },
        ),
        7: (
            echo_info7(80, echo_info4(90)),
            {
                "struct": "echo.info7",
                "fields": {"v1": 80, "info4": {"struct": "echo.info4", "fields": {"v": 90}}},
            },
        ),
    }
    for level, (ours, theirs) in infos.items():
        add(Case(f"TestCall2 in {level}", Echo, "TestCall2", "in", (level,), None, {"in_level": level}))
        add(
            Case(
                f"TestCall2 out {level}",
                Echo,
                "TestCall2",
                "out",
                (level,),
                _TestCall2Result(echo_Info(level, ours), NTSTATUS(0)),
                {"in_level": level, "out_info": theirs, "result": 0},
            )
        )
    add(Case("TestSleep in", Echo, "TestSleep", "in", (3,), None, {"in_seconds": 3}))
    add(Case("TestSleep out", Echo, "TestSleep", "out", (3,), 3, {"result": 3}))
    e2 = {"struct": "echo.Enum2", "fields": {"e1": 1, "e2": 1}}
    e2b = {"struct": "echo.Enum2", "fields": {"e1": 2, "e2": 2}}
    for foo1, ours3, theirs3 in [
        (1, echo_Enum3(1, echo_Enum1(1)), 1),
        (2, echo_Enum3(2, echo_Enum2(2, 2)), e2b),
    ]:
        ins = (echo_Enum1(foo1), echo_Enum2(1, 1), ours3)  # type: ignore[arg-type]
        add(
            Case(
                f"TestEnum in {foo1}",
                Echo,
                "TestEnum",
                "in",
                ins,
                None,
                {"in_foo1": foo1, "in_foo2": e2, "in_foo3": theirs3},
            )
        )
        add(
            Case(
                f"TestEnum out {foo1}",
                Echo,
                "TestEnum",
                "out",
                ins,
                EnumResult(*ins),
                {"out_foo1": foo1, "out_foo2": e2, "out_foo3": theirs3},
            )
        )
    add(
        Case(
            "TestSurrounding in",
            Echo,
            "TestSurrounding",
            "in",
            (echo_Surrounding(5, [0, 1, 2, 3, 4]),),
            None,
            {"in_data": {"struct": "echo.Surrounding", "fields": {"x": 5, "surrounding": [0, 1, 2, 3, 4]}}},
        )
    )
    add(
        Case(
            "TestSurrounding out",
            Echo,
            "TestSurrounding",
            "out",
            (echo_Surrounding(5, [0] * 5),),
            echo_Surrounding(10, [0] * 10),
            {"out_data": {"struct": "echo.Surrounding", "fields": {"x": 10, "surrounding": [0] * 10}}},
        )
    )
    add(Case("TestDoublePointer in", Echo, "TestDoublePointer", "in", (7,), None, {"in_data": {"ptr": 7}}))
    add(Case("TestDoublePointer out", Echo, "TestDoublePointer", "out", (7,), 7, {"result": 7}))

    # endpoint mapper
    lookup_in = (0, None, None, 1, ContextHandle(), 500)
    add(
        Case(
            "ept_lookup in",
            Epm,
            "ept_lookup",
            "in",
            lookup_in,
            None,
            {
                "in_inquiry_type": 0,
                "in_object": None,
                "in_interface_id": None,
                "in_vers_option": 1,
                "in_entry_handle": {"handle": [0, NIL]},
                "in_max_ents": 500,
            },
        )
    )
    for n in (3, 500):
        made = [entry(i) for i in range(n)]
        handle = ContextHandle(HANDLE[1], uuid.UUID(HANDLE[0]))
        add(
            Case(
                f"ept_lookup out {n}",
                Epm,
                "ept_lookup",
                "out",
                lookup_in,
                LookupResult(handle, n, [m[0] for m in made], 0),
                {
                    "in_max_ents": 500,
                    "out_entry_handle": {"handle": [HANDLE[1], HANDLE[0]]},
                    "out_num_ents": n,
                    "out_entries": {"list": [m[1] for m in made]},
                    "result": 0,
                },
            )
        )
    probe = tower(1, port=0, host="0.0.0.0")
    map_in = (None, twr_t.of(probe), ContextHandle(), 1)
    add(
        Case(
            "ept_map in",
            Epm,
            "ept_map",
            "in",
            map_in,
            None,
            {
                "in_object": None,
                "in_map_tower": {"tower": probe.hex()},
                "in_entry_handle": {"handle": [0, NIL]},
                "in_max_towers": 1,
            },
        )
    )
    add(
        Case(
            "ept_map out",
            Epm,
            "ept_map",
            "out",
            map_in,
            MapResult(ContextHandle(), 1, [twr_t.of(tower(1))], 0),
            {
                "in_max_towers": 1,
                "out_entry_handle": {"handle": [0, NIL]},
                "out_num_towers": 1,
                "out_towers": {"list": [{"towerp": tower(1).hex()}]},
                "result": 0,
            },
        )
    )

    # mgmt
    ids = [("e1af8308-5d1f-11c9-91a4-08002b14a0fa", 3, 0), ("60a15ec5-4de8-11d7-a637-005056a20182", 1, 0)]
    vector = rpc_if_id_vector_t(2, [rpc_if_id_t(uuid.UUID(u), a, b) for u, a, b in ids])
    add(
        Case(
            "inq_if_ids out",
            Mgmt,
            "inq_if_ids",
            "out",
            (),
            InqIfIdsResult(vector, 0),
            {
                "out_if_id_vector": {
                    "struct": "mgmt.rpc_if_id_vector_t",
                    "fields": {
                        "count": 2,
                        "if_id": {"list": [{"syntaxp": [u, a | b << 16]} for u, a, b in ids]},
                    },
                },
                "result": 0,
            },
        )
    )
    add(Case("inq_stats in", Mgmt, "inq_stats", "in", (4, 0), None, {"in_max_count": 4, "in_unknown": 0}))
    add(
        Case(
            "inq_stats out",
            Mgmt,
            "inq_stats",
            "out",
            (4, 0),
            InqStatsResult(mgmt_statistics(4, [1, 2, 3, 4]), 0),
            {
                "out_statistics": {
                    "struct": "mgmt.statistics",
                    "fields": {"count": 4, "statistics": [1, 2, 3, 4]},
                },
                "result": 0,
            },
        )
    )
    add(
        Case(
            "is_server_listening out",
            Mgmt,
            "is_server_listening",
            "out",
            (),
            IsListeningResult(0, True),
            {"out_status": 0, "result": 1},
        )
    )
    add(
        Case(
            "inq_princ_name in",
            Mgmt,
            "inq_princ_name",
            "in",
            (10, 256),
            None,
            {"in_authn_proto": 10, "in_princ_name_size": 256},
        )
    )
    add(
        Case(
            "inq_princ_name out",
            Mgmt,
            "inq_princ_name",
            "out",
            (10, 256),
            InqPrincNameResult("host/foo", WERROR(0)),
            {"in_princ_name_size": 256, "out_princ_name": "host/foo", "result": 0},
        )
    )
    return out


CASES = cases()


@pytest.fixture(scope="module")
def reference(samba_python: str) -> dict[str, bytes]:
    spec = [
        {
            "name": c.name,
            "iface": {"rpcecho": "echo"}.get(c.iface.__ifname__, c.iface.__ifname__),
            "call": _samba_call(c),
            "dir": c.direction,
            "set": c.samba,
        }
        for c in CASES
    ]
    proc = subprocess.run(
        [samba_python, str(SCRIPT)],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return {k: bytes.fromhex(v) for k, v in json.loads(proc.stdout).items()}


def _samba_call(c: Case) -> str:
    if c.iface is Epm:
        return {"ept_lookup": "epm_Lookup", "ept_map": "epm_Map"}[c.op]
    return c.op


def ours(c: Case) -> bytes:
    op = c.iface.operation_named(c.op)
    return op.encode_request(*c.ins) if c.direction == "in" else op.encode_response(c.result, c.ins)


@pytest.mark.interop
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_same_octets_as_samba(case: Case, reference: dict[str, bytes]) -> None:
    theirs = reference[case.name]
    mine = ours(case)
    if mine != theirs:
        at = next(
            (i for i, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b),
            min(len(mine), len(theirs)),
        )
        pytest.fail(
            f"differ at octet {at} (ours {len(mine)}, Samba {len(theirs)}):\n"
            f" ours  {mine[max(0, at - 8) : at + 16].hex()}\n samba {theirs[max(0, at - 8) : at + 16].hex()}"
        )


@pytest.mark.interop
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_we_decode_samba_octets(case: Case, reference: dict[str, bytes]) -> None:
    op = case.iface.operation_named(case.op)
    theirs = reference[case.name]
    if case.direction == "in":
        values, end = op.decode_request(theirs)
        assert values == case.ins
    else:
        values, end = op.decode_response(theirs)
        assert values == case.result
    assert end == len(theirs)


def test_the_500_entry_response_is_real() -> None:
    """The comparison above covers what the benchmark measures: 500 entries, 5-floor TCP towers."""
    case = next(c for c in CASES if c.name == "ept_lookup out 500")
    assert len(case.result.entries) == 500
    first = Tower.decode(case.result.entries[1].tower.tower_octet_string)
    assert struct.unpack_from("<H", case.result.entries[1].tower.tower_octet_string)[0] == 5
    assert (first.port, first.host) == (49153, "10.0.0.1")
