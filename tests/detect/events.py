"""Events as the monitor's records and the server's audit events spell them, made small for the
detectors' sans-IO tests (only the fields a detector reads; docs/detection.md lists them)."""

from __future__ import annotations

from typing import Any

EPM = "e1af8308-5d1f-11c9-91a4-08002b14a0fa"
ECHO = "60a15ec5-4de8-11d7-a637-005056a20182"
ATTACKER, SERVER = "203.0.113.9", "10.0.0.2"


def _ends(src: str, port: int) -> dict[str, Any]:
    return {"source": {"ip": src, "port": 40000}, "destination": {"ip": SERVER, "port": port}}


def call(
    iface: str = ECHO, opnum: int = 0, status: str | None = None, src: str = ATTACKER, port: int = 135,
    octets: int = 8, **dcerpc: Any,
) -> dict[str, Any]:  # fmt: skip
    d: dict[str, Any] = {"interface": {"uuid": iface, "version": "1.0"}, "opnum": opnum,
                         "octets": {"in": octets, "out": 0}, "fragments": {"in": 1, "out": 1}}  # fmt: skip
    if status is not None:
        d["fault"] = {"status": status}
    d.update(dcerpc)
    outcome = "failure" if status else "success"
    return {"event": {"kind": "event", "action": "call", "outcome": outcome}, **_ends(src, port), "dcerpc": d}


def bind(
    contexts: list[dict[str, Any]], src: str = ATTACKER, port: int = 135, uid: str = "C1",
    alter: bool = False, user: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    ev: dict[str, Any] = {
        "event": {"kind": "event", "action": "alter-context" if alter else "bind", "outcome": "success"},
        **_ends(src, port),
        "dcerpc": {"contexts": contexts, "connection": {"uid": uid}},
    }
    if user:
        ev["user"] = {"name": user, "domain": "DOM"}
    return ev


def context(uuid: str, version: str = "1.0", result: str = "accepted", reason: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": 0, "result": result, "uuid": uuid, "version": version}
    if reason is not None:
        out["reason"] = reason
    return out


def violation(kind: str, src: str = ATTACKER, sender: str = "client") -> dict[str, Any]:
    return {
        "event": {"kind": "alert", "action": "protocol-violation", "outcome": "failure"},
        **_ends(src, 135),
        "dcerpc": {"violation": kind, "sender": sender},
    }


def closed(src: str = ATTACKER, port: int = 135, bound: bool = False, rpc: bool = False) -> dict[str, Any]:
    return {
        "event": {"kind": "event", "action": "association-close", "outcome": "success"},
        **_ends(src, port),
        "network": {"transport": "tcp", "protocol": "dcerpc" if rpc else None},
        "dcerpc": {"association": {"bound": bound}},
    }


def auth_failed(user: str, src: str = ATTACKER) -> dict[str, Any]:
    return {
        "event": {
            "kind": "event",
            "action": "authentication",
            "outcome": "failure",
            "reason": "bad password",
        },
        **_ends(src, 135),
        "user": {"name": user, "domain": "DOM"},
        "dcerpc": {},
    }
