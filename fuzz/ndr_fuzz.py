"""Fuzz harness for the NDR decoders of every declared operation (rpcecho, epm, mgmt).

Seeds are valid request and response stubs; mutations flip and overwrite octets, plant boundary
integers (0, 1, 0x7fffffff, 0xffffffff) at aligned offsets where counts and referent ids live,
truncate and extend. Every decoder must either decode or raise ``NdrError``; anything else is a
crash, written to ``fuzz/crashes/`` with the target's name.

    python fuzz/ndr_fuzz.py --seconds 60            # built-in mutator, no extra packages
    python fuzz/ndr_fuzz.py --atheris -- -max_total_time=600   # coverage-guided, if atheris is installed
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

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

Decoder = Callable[[bytes, bool], Any]
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


def targets() -> list[tuple[str, bytes, Decoder]]:
    """(name, seed, decode(data, big_endian)) for both directions of every sample operation."""
    out: list[tuple[str, bytes, Decoder]] = []
    for iface, name, ins, result in SAMPLES:
        op: Operation = iface.operation_named(name)
        out.append((f"{iface.__ifname__}.{name}.request", op.encode_request(*ins), _req(op)))
        out.append((f"{iface.__ifname__}.{name}.response", op.encode_response(result, ins), _resp(op)))
    return out


def _req(op: Operation) -> Decoder:
    return lambda data, be: op.decode_request(data, big_endian=be)


def _resp(op: Operation) -> Decoder:
    return lambda data, be: op.decode_response(data, big_endian=be)


BOUNDARY = (0, 1, 2, 0x7F, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x00020000)


def mutate(rng: random.Random, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(1, 6)):
        choice = rng.random()
        if choice < 0.35 and len(data) >= 4:
            at = rng.randrange(0, len(data) - 3) & ~3
            data[at : at + 4] = struct.pack("<I", rng.choice(BOUNDARY))
        elif choice < 0.6 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif choice < 0.75:
            del data[rng.randrange(len(data) + 1) :]
        elif choice < 0.9:
            at = rng.randrange(len(data) + 1)
            data[at:at] = rng.randbytes(rng.randint(1, 8))
        elif data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


def check(name: str, decode: Decoder, data: bytes, be: bool) -> str | None:
    """None when the decoder behaves; the traceback when it crashes."""
    try:
        decode(data, be)
    except NdrError:
        return None
    except Exception:
        return traceback.format_exc()
    return None


def run(seconds: float, seed: int, crash_dir: Path) -> int:
    rng = random.Random(seed)
    tlist = targets()
    deadline = time.monotonic() + seconds
    runs = crashes = 0
    while time.monotonic() < deadline:
        name, seed_bytes, decode = rng.choice(tlist)
        data = mutate(rng, seed_bytes)
        be = rng.random() < 0.25
        failure = check(name, decode, data, be)
        runs += 1
        if failure is not None:
            crashes += 1
            crash_dir.mkdir(parents=True, exist_ok=True)
            path = crash_dir / f"{name}-{'be' if be else 'le'}-{crashes}.bin"
            path.write_bytes(data)
            print(f"CRASH {name} ({'big' if be else 'little'}-endian) -> {path}\n{failure}", file=sys.stderr)
    print(f"{runs} inputs over {len(tlist)} targets, {crashes} crashes")
    return 1 if crashes else 0


def run_atheris(argv: list[str]) -> None:  # pragma: no cover - optional engine
    import atheris  # type: ignore[import-not-found]  # noqa: PLC0415  (optional engine)

    tlist = targets()

    def one(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        name, _, decode = tlist[fdp.ConsumeIntInRange(0, len(tlist) - 1)]
        be = fdp.ConsumeBool()
        failure = check(name, decode, fdp.ConsumeBytes(fdp.remaining_bytes()), be)
        if failure is not None:
            raise RuntimeError(f"{name}: {failure}")

    atheris.Setup([sys.argv[0], *argv], one)
    atheris.Fuzz()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crash-dir", type=Path, default=Path(__file__).parent / "crashes")
    parser.add_argument("--atheris", action="store_true", help="use atheris (coverage-guided)")
    args, rest = parser.parse_known_args()
    if args.atheris:
        run_atheris([a for a in rest if a != "--"])
        return 0
    return run(args.seconds, args.seed, args.crash_dir)


if __name__ == "__main__":
    sys.exit(main())
