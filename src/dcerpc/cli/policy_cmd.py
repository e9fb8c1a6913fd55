"""``dcerpc policy check FILE``: read a policy file as the server would and print its rules in
order (with the line each starts on), or the first thing wrong with it: its line, key and reason
(exit status 1). docs/policy.md describes the file."""

from __future__ import annotations

from typing import Any

import click

from ..known import interface_name
from ..policy import Policy, PolicyError, Rule, load
from ..policy.load import AUTH_LEVELS, AUTH_TYPES
from .options import json_option
from .output import Failure, console, emit_json, table

__all__ = ["policy"]


@click.group()
def policy() -> None:
    """Policy files: who may call what (docs/policy.md)."""


@policy.command()
@click.argument("file", type=click.Path(dir_okay=False))
@json_option()
def check(file: str, as_json: bool) -> None:
    """Check FILE and print its rules, first to last, and the default."""
    try:
        p = load(file)
    except PolicyError as e:
        raise Failure(str(e), "policy", file=e.where, line=e.line, key=e.key, reason=e.reason) from None
    rows = [_row(i, r) for i, r in enumerate(p.rules)]
    if as_json:
        emit_json({"ok": True, "file": file, "default": p.default.value, "rules": rows})
        return
    out = console()
    out.print(
        table(
            f"{file}: {len(p.rules)} rules, default {p.default.value}",
            ["#", "Line", "Name", "Action", "Matches"],
            [
                [r["index"], r["line"], r["name"], r["action"], "; ".join(r["matches"]) or "everything"]
                for r in rows
            ],
        )
    )
    _groups(p)


def _groups(p: Policy) -> None:
    if p.groups:
        rows = [[name, ", ".join(_principal(m) for m in members)] for name, members in p.groups.items()]
        console().print(table("groups", ["Group", "Members"], rows))


def _principal(p: Any) -> str:
    if p.anonymous:
        return "anonymous"
    return f"{p.domain}\\{p.user}" if p.domain else p.user


def _row(index: int, r: Rule) -> dict[str, Any]:
    """A rule as ``policy check`` prints it: each condition in words."""
    matches: list[str] = []

    def ifaces(key: str, values: Any) -> None:
        if values is not None:
            named = sorted(f"{interface_name(u).split(' ')[0] or u}" for u in values)
            matches.append(f"{key} {', '.join(named)}")

    ifaces("interface", r.interfaces)
    if r.versions is not None:
        (a, b), (c, d) = r.versions
        matches.append(f"version {a}.{b}-{c}.{d}")
    if r.opnums is not None:
        matches.append("opnum " + ", ".join(str(x) if x == y else f"{x}-{y}" for x, y in r.opnums))
    if r.sources is not None:
        matches.append("source " + ", ".join(map(str, r.sources)))
    if r.transports is not None:
        matches.append("transport " + ", ".join(sorted(r.transports)))
    if r.auth_types is not None:
        names = {v: k for k, v in reversed(AUTH_TYPES.items())}
        matches.append("auth type " + ", ".join(sorted(names[t] for t in r.auth_types)))
    if r.auth_levels is not None:
        names = {v: k for k, v in AUTH_LEVELS.items()}
        matches.append("auth level " + ", ".join(names[n] for n in sorted(r.auth_levels)))
    if r.principals is not None:
        matches.append("principal " + ", ".join(_principal(p) for p in r.principals))
    ifaces("visibility of", r.epm_interfaces)
    return {"index": index + 1, "line": r.line, "name": r.name, "action": r.action.value, "matches": matches}
