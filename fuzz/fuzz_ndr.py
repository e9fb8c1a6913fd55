"""Fuzz target ``ndr``: the NDR decoders of every operation of the built-in interfaces.

Every request and response of Echo (rpcecho), Epm and Mgmt is a sub-target; the input's first
octet chooses one, the second's low bit the byte order (NDR's big-endian drep), the rest is the
stub. A decoder must decode or raise ``NdrError``; anything else escaping it is a finding. What it
decodes from a request must encode again (or be refused as ``NdrError``: the encoder writes only
canonical NDR) and decode to the same values; a response's sizes may refer to [in] values the
harness does not have, so responses are only decoded.

    python fuzz/fuzz_ndr.py -max_total_time=300
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from typing import Any

import engine

with engine.instrumented():
    from dcerpc import NdrError
    from dcerpc.epm.idl import Epm, LookupResult, MapResult, ept_entry_t, twr_t
    from dcerpc.interface import Interface, Operation
    from dcerpc.mgmt.idl import (
        InqIfIdsResult,
        InqPrincNameResult,
        InqStatsResult,
        Mgmt,
        mgmt_statistics,
        rpc_if_id_vector_t,
    )
    from dcerpc.ndr import NTSTATUS, ContextHandle
    from dcerpc.rpcecho import (
        Echo,
        TestEnumResult,
        echo_Enum2,
        echo_Enum3,
        echo_Info,
        echo_info5,
        echo_Surrounding,
    )
    from dcerpc.rpctypes import rpc_if_id_t

NAME = "ndr"
INTERFACES: tuple[type[Interface], ...] = (Echo, Epm, Mgmt)

Decoder = Callable[[bytes, bool], tuple[Any, int]]
Encoder = Callable[[Any], bytes] | None
TOWER = bytes.fromhex("05001300") + bytes(21)  # shape only; NDR treats tower octets as opaque
HANDLE = ContextHandle(0, uuid.UUID(int=7))


def _entries(n: int) -> list[ept_entry_t]:
    return [ept_entry_t(uuid.UUID(int=i), twr_t.of(TOWER) if i % 3 else None, f"svc {i}") for i in range(n)]


# (interface, operation name, [in] values, result) for every operation we declare.
SAMPLES: list[tuple[type[Interface], str, tuple[Any, ...], Any]] = [
    (Echo, "AddOne", (41,), 42),
    (Echo, "EchoData", (3, b"abc"), b"abc"),
    (Echo, "SinkData", (2, b"xy"), None),
    (Echo, "SourceData", (4,), b"\0\1\2\3"),
    (Echo, "TestCall", ("hello",), "hello"),
    (Echo, "TestCall2", (5,), (echo_Info(5, echo_info5(50, 60)), NTSTATUS(0))),
    (Echo, "TestSleep", (1,), 1),
    (
        Echo,
        "TestEnum",
        (2, echo_Enum2(2, 2), echo_Enum3(2, echo_Enum2(1, 1))),
        TestEnumResult(2, echo_Enum2(2, 2), echo_Enum3(2, echo_Enum2(1, 1))),  # type: ignore[arg-type]
    ),
    (Echo, "TestSurrounding", (echo_Surrounding(2, [1, 2]),), echo_Surrounding(4, [0, 0, 0, 0])),
    (Echo, "TestDoublePointer", (7,), 7),
    (Epm, "ept_insert", (2, _entries(2), 0), 0),
    (Epm, "ept_delete", (1, _entries(1)), 0),
    (
        Epm,
        "ept_lookup",
        (0, uuid.UUID(int=1), rpc_if_id_t(uuid.UUID(int=2), 1, 0), 1, HANDLE, 4),
        LookupResult(HANDLE, 3, _entries(3), 0),
    ),
    (
        Epm,
        "ept_map",
        (None, twr_t.of(TOWER), HANDLE, 2),
        MapResult(HANDLE, 2, [twr_t.of(TOWER), None], 0),
    ),
    (Epm, "ept_lookup_handle_free", (HANDLE,), (HANDLE, 0)),
    (Epm, "ept_inq_object", (), (uuid.UUID(int=3), 0)),
    (Epm, "ept_mgmt_delete", (True, None, twr_t.of(TOWER)), 0),
    (
        Mgmt,
        "inq_if_ids",
        (),
        InqIfIdsResult(rpc_if_id_vector_t(2, [rpc_if_id_t(uuid.UUID(int=5), 3, 0), None]), 0),
    ),
    (Mgmt, "inq_stats", (4, 0), InqStatsResult(mgmt_statistics(4, [1, 2, 3, 4]), 0)),
    (Mgmt, "is_server_listening", (), (0, True)),
    (Mgmt, "stop_server_listening", (), 5),
    (Mgmt, "inq_princ_name", (10, 64), InqPrincNameResult("host/example", 0)),
]


def targets() -> list[tuple[str, bytes, Decoder, Encoder]]:
    """(name, a valid stub, decode(stub, big_endian), encode(decoded)) for both directions of
    every sample operation; the sub-target an input's first octet chooses is ``targets()[n % len]``."""
    out: list[tuple[str, bytes, Decoder, Encoder]] = []
    for iface, name, ins, result in SAMPLES:
        op: Operation = iface.operation_named(name)
        out.append((f"{iface.__ifname__}.{name}.request", op.encode_request(*ins), _req(op), _enc_req(op)))
        out.append(
            (
                f"{iface.__ifname__}.{name}.response",
                op.encode_response(result, ins),
                _resp(op),
                None,
            )
        )
    return out


def _req(op: Operation) -> Decoder:
    return lambda data, be: op.decode_request(data, big_endian=be)


def _resp(op: Operation) -> Decoder:
    return lambda data, be: op.decode_response(data, big_endian=be)


def _enc_req(op: Operation) -> Encoder:
    return lambda values: op.encode_request(*values)


TARGETS = targets()
for _name, _seed, _decode, _encode in TARGETS:  # compile every codec (both byte orders) before instrumenting
    for _be in (False, True):
        with contextlib.suppress(NdrError):
            _decode(_seed, _be)
engine.instrument_generated()


def test_one(data: bytes) -> None:
    if len(data) < 2:
        return
    name, _, decode, encode = TARGETS[data[0] % len(TARGETS)]
    big_endian = bool(data[1] & 1)
    try:
        value, _ = decode(data[2:], big_endian)
    except NdrError:
        return
    if encode is None:
        return
    try:
        octets = encode(value)
    except NdrError:
        # The encoder is stricter than the decoder, which takes what peers send (a [string] at its
        # bound without its NUL, say): a service must not hand such a value back unchecked (the
        # endpoint mapper's annotations, docs/fuzzing.md). Anything but NdrError is a finding.
        return
    try:
        again, _ = decode(octets, False)
    except NdrError as e:
        raise engine.Finding(f"{name}: {value!r} encodes to a stub that does not decode: {e}") from e
    if again != value:
        raise engine.Finding(f"{name}: {value!r} decoded, encoded and decoded as {again!r}")


if __name__ == "__main__":
    engine.main(test_one, NAME)
