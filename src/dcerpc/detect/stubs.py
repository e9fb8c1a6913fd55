"""What detectors read inside stubs: a few fields of a few operations, by walking their NDR.

One function, :func:`inspect`, is called by both sides: the monitor with the request and response
stubs it keeps per call (their first 4096 octets: ``monitor.passive.MAX_STUB_KEPT``), the server
with a call's stub when detection is on (``detect.inline``). It returns a small dict of *features*
(numbers and short strings, never stub octets) that detectors read beside the event; audit events
do not carry them. Nothing here raises on peer data: a stub too short or not shaped as the
operation's is no feature (a truncated stub gives what its first octets hold).

Layouts (NDR 2.0 little endian, C706 chapter 14; top-level [unique]/[ptr] referents follow their
pointer, conformant varying strings are max_count, offset, actual_count, then the characters):

- ``ept_lookup`` (C706 Appendix O, opnum 2): inquiry_type u32; object [ptr] GUID; interface_id
  [ptr] rpc_if_id_t (GUID, u16 major, u16 minor); vers_option u32; entry_handle (20 octets);
  max_ents u32.
- ``ept_map`` (opnum 3): object [ptr] GUID; map_tower [ptr] twr_t (conformance u32, tower_length
  u32, octets); entry_handle; max_towers u32. The answer: entry_handle; num_towers u32; towers, a
  conformant varying array of [ptr] twr_t (max, offset, actual, pointers, then each tower); status.
- ``RemoteActivation`` (MS-DCOM 3.1.2.5.1.1, IRemoteActivation opnum 0): ORPCTHIS (version 4,
  flags 4, reserved 4, cid 16, extensions [unique]); Clsid GUID; pwszObjectName [string, unique]
  wchar_t. ``RemoteCreateInstance`` / ``RemoteGetClassObject`` (ISystemActivator opnums 4 and 3,
  MS-DCOM 3.1.2.5.2.3) carry their names (InstanceInfoData.fileName, ServerLocationInfoData's
  machine name) deep in an activation properties blob: every NDR wide string of the stub is read.
- ``NetrServerReqChallenge`` (MS-NRPC 3.5.4.4.1, opnum 4): PrimaryName [unique, string];
  ComputerName [string]; ClientChallenge (8 octets). ``NetrServerAuthenticate2`` / ``3`` (opnums
  15 and 26): PrimaryName; AccountName [string]; SecureChannelType (enum: u16); ComputerName
  [string]; ClientCredential (8 octets).
- ``RCreateServiceW`` (MS-SCMR 3.1.4.12, opnum 12): hSCManager (20 octets); lpServiceName [string].
- The answers of DCOM's OXID resolution (IObjectExporter ResolveOxid, ResolveOxid2, ServerAlive2)
  and activations hold string bindings (``host[port]``, UTF-16: MS-DCOM 2.2.19): their ports, as
  ``ept_map``'s towers, are where a client may connect next.
"""

from __future__ import annotations

import contextlib
import re
import struct
import uuid
from typing import Any, Final

from ..epm.towers import Tower, TowerError

__all__ = [
    "ACTIVATION",
    "EPM",
    "NETLOGON",
    "REMOTE_ACTIVATION",
    "SVCCTL",
    "inspect",
    "wide_strings",
]

EPM: Final = uuid.UUID("e1af8308-5d1f-11c9-91a4-08002b14a0fa")
REMOTE_ACTIVATION: Final = uuid.UUID("4d9f4ab8-7d1c-11cf-861e-0020af6e7c57")  # IRemoteActivation
ACTIVATION: Final = uuid.UUID("000001a0-0000-0000-c000-000000000046")  # ISystemActivator
NETLOGON: Final = uuid.UUID("12345678-1234-abcd-ef00-01234567cffb")
SVCCTL: Final = uuid.UUID("367abb81-9844-35f1-ad32-98f038001003")
OXID_RESOLVER: Final = uuid.UUID("99fcfec4-5260-101b-bbcb-00aa0021347a")  # IObjectExporter
_BINDING_PORT = re.compile(r"\[(\d{1,5})\]")  # a DUALSTRINGARRAY string binding's "host[port]"

_U32 = struct.Struct("<I")
_MAX_STRING: Final = 32768  # characters: an NDR string longer than this is not read as one
_MAX_TOWERS: Final = 64  # towers read from one ept_map answer


class _ShortError(Exception):
    """The stub ends before the field."""


def _u32(b: bytes, at: int) -> int:
    if at + 4 > len(b):
        raise _ShortError
    return int(_U32.unpack_from(b, at)[0])


def _align(at: int, n: int = 4) -> int:
    return (at + n - 1) & ~(n - 1)


def _string(b: bytes, at: int) -> tuple[str, int, int]:
    """A conformant varying wide string at ``at`` (aligned): its text (what the stub holds of it),
    its actual_count, and where the next field starts."""
    at = _align(at)
    maximum, offset, actual = _u32(b, at), _u32(b, at + 4), _u32(b, at + 8)
    if offset != 0 or actual > maximum or actual > _MAX_STRING:
        raise _ShortError
    start = at + 12
    raw = b[start : start + 2 * actual]
    return raw.decode("utf-16-le", "replace").rstrip("\0"), actual, start + 2 * actual


def _unique_string(b: bytes, at: int) -> tuple[str | None, int, int]:
    at = _align(at)
    if _u32(b, at) == 0:
        return None, 0, at + 4
    return _string(b, at + 4)


def wide_strings(b: bytes, limit: int = 16) -> list[tuple[str, int]]:
    """Every NDR conformant varying wide string in ``b`` (at 4-aligned offsets: offset 0, actual
    count equal to the maximum, a NUL last where the stub holds it), as (text, actual count):
    ISystemActivator's names without walking its activation properties."""
    out: list[tuple[str, int]] = []
    at = 0
    end = len(b) - 12
    while at <= end and len(out) < limit:
        maximum, offset, actual = _U32.unpack_from(b, at)[0], _U32.unpack_from(b, at + 4)[0], 0
        if offset == 0 and 2 <= maximum <= _MAX_STRING:
            actual = _U32.unpack_from(b, at + 8)[0]
        if actual == maximum and actual >= 2:
            start = at + 12
            raw = b[start : start + 2 * actual]
            whole = len(raw) == 2 * actual
            if not whole or raw[-2:] == b"\0\0":
                out.append((raw.decode("utf-16-le", "replace").rstrip("\0"), actual))
                at = _align(start + len(raw))
                continue
        at += 4
    return out


def _lookup(b: bytes) -> dict[str, Any]:
    inquiry = _u32(b, 0)
    at = 8 + 16 if _u32(b, 4) else 8
    at = at + 4 + 20 if _u32(b, at) else at + 4
    at += 4  # vers_option
    handle = b[at : at + 20]
    if len(handle) < 20:
        return {"epm.inquiry_type": inquiry}
    return {
        "epm.inquiry_type": inquiry,
        "epm.handle": handle != bytes(20),
        "epm.max_ents": _u32(b, at + 20),
    }


def _tower(b: bytes, at: int) -> tuple[Tower | None, int]:
    """A twr_t (conformance, tower_length, octets) at ``at``; the tower if it decodes."""
    length = _u32(b, at + 4)
    octets = b[at + 8 : at + 8 + length]
    nxt = _align(at + 8 + length)
    try:
        return Tower.decode(octets), nxt
    except (TowerError, ValueError, IndexError, struct.error):
        return None, nxt


def _map_request(b: bytes) -> dict[str, Any]:
    at = 4 + 16 if _u32(b, 0) else 4
    if not _u32(b, at):
        return {}
    tower, _ = _tower(b, at + 4)
    if tower is None:
        return {}
    v = tower.interface.version
    return {"epm.map_interface": f"{tower.interface.uuid} {v[0]}.{v[1]}"}


def _map_response(b: bytes) -> dict[str, Any]:
    num = _u32(b, 20)
    actual = _u32(b, 32)
    if num > _MAX_TOWERS or actual > _MAX_TOWERS:
        num = actual = min(actual, _MAX_TOWERS)
    at = 36
    pointers = [_u32(b, at + 4 * i) for i in range(actual)]
    at += 4 * actual
    ports: list[tuple[str, int]] = []
    for p in pointers:
        if not p:
            continue
        tower, at = _tower(b, at)
        if tower is not None and tower.port is not None:
            ports.append((tower.host, tower.port))
    return {"epm.ports": ports} if ports else {}


def _remote_activation(b: bytes) -> dict[str, Any]:
    if _u32(b, 28):  # ORPCTHIS has extensions: walk no further, read the strings as ISystemActivator's
        return _activation(b)
    name, count, _ = _unique_string(b, 48)
    return {"activation.names": [(name, count)]} if name is not None else {}


def _activation(b: bytes) -> dict[str, Any]:
    names = wide_strings(b)
    return {"activation.names": names} if names else {}


def _binding_ports(response: bytes) -> dict[str, Any]:
    """The ports of the string bindings (``host[port]``, UTF-16) in a DCOM answer: OXID resolution
    and activation name where an object's exporter listens (MS-DCOM 2.2.19 DUALSTRINGARRAY), the
    way DCOM clients learn a dynamic port without the endpoint mapper."""
    ports: set[int] = set()
    for start in (0, 1):
        text = response[start : start + (len(response) - start) // 2 * 2].decode("utf-16-le", "replace")
        ports.update(int(p) for p in _BINDING_PORT.findall(text) if 0 < int(p) <= 65535)
    return {"epm.ports": [("", p) for p in sorted(ports)[:_MAX_TOWERS]]} if ports else {}


def _netlogon(b: bytes, opnum: int) -> dict[str, Any]:
    _, _, at = _unique_string(b, 0)
    if opnum == 4:
        computer, _, at = _string(b, at)
    else:
        _, _, at = _string(b, at)  # AccountName
        at = _align(at, 2) + 2  # SecureChannelType
        computer, _, at = _string(b, at)
    credential = b[at : at + 8]
    if len(credential) < 8:
        return {"netlogon.computer": computer}
    return {"netlogon.computer": computer, "netlogon.zero_credential": credential == bytes(8)}


def _create_service(b: bytes) -> dict[str, Any]:
    name, _, _ = _string(b, 20)
    return {"svcctl.service": name}


_INSPECTED = frozenset((EPM, REMOTE_ACTIVATION, ACTIVATION, OXID_RESOLVER, NETLOGON, SVCCTL))


def inspect(
    interface: uuid.UUID | None, opnum: int | None, stub: bytes, response: bytes = b""
) -> dict[str, Any]:
    """The features detectors read of one call (see the module): empty for other operations."""
    if interface is None or opnum is None or interface not in _INSPECTED:
        return {}  # most calls: one hash, not a comparison per interface below
    out: dict[str, Any] = {}
    try:
        if interface == EPM:
            if opnum == 2:
                out = _lookup(stub)
            elif opnum == 3:
                out = _map_request(stub)
                if response:
                    with contextlib.suppress(_ShortError):
                        out |= _map_response(response)
        elif interface == REMOTE_ACTIVATION and opnum == 0:
            out = _remote_activation(stub) | _binding_ports(response)
        elif interface == ACTIVATION and opnum in (3, 4):
            out = _activation(stub) | _binding_ports(response)
        elif interface == OXID_RESOLVER and opnum in (0, 4, 5):  # ResolveOxid, ResolveOxid2, ServerAlive2
            out = _binding_ports(response)
        elif interface == NETLOGON and opnum in (4, 15, 26):
            out = _netlogon(stub, opnum)
        elif interface == SVCCTL and opnum == 12:
            out = _create_service(stub)
    except _ShortError:
        pass
    return out
