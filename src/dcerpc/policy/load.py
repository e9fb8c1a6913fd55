"""A policy file (TOML) read into a :class:`~.rules.Policy`, or refused with its line, key and reason.

    default = "deny"                      # allow (the default) | deny | audit

    [groups]
    admins = ['EXAMPLE\\alice', "bob"]

    [[rule]]
    name = "the mapper for everyone"
    action = "allow"
    interface = ["epmapper", "mgmt"]      # names (well-known or served) or UUIDs
    version = ">=1.0"                     # "3.0", ">=1.0", "<=2.1", "1.0-2.5"
    opnum = [0, "2-5"]
    source = ["10.0.0.0/8", "fd00::/8"]   # CIDR, IPv4 and IPv6; an address is a /32 or /128
    transport = "ncacn_ip_tcp"            # ncacn_ip_tcp (tcp), ncalrpc (local), ncadg_ip_udp (udp)
    auth_type = ["ntlm", "spnego"]        # none, ntlm, spnego, kerberos, netlogon
    auth_level = ">=integrity"            # a name is "at least"; "=connect" exactly; or a list
    principal = ["@admins", "anonymous"]  # user, DOMAIN\\user, @group, anonymous

    [[rule]]                              # a visibility rule: the mapper and mgmt hide it
    action = "deny"
    epm_interface = "srvsvc"
    auth_type = "none"

    [rate_limit]                          # per source address (rate.py)
    connections = "20/s"                  # N/s, N/m or N/h; "N/m burst B" saves up at most B
    contexts = "200/m"
    calls = "2000/s burst 5000"
    auth_failures = "5/m"
    action = "refuse"                     # or "tarpit"
    tarpit_seconds = 2.0
    exempt = ["127.0.0.0/8"]

Every key of a rule takes one value or a list. What each means: ``rules.py``; docs/policy.md.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .._errors import RpcError
from ..known import KNOWN_INTERFACES
from ..pdu.constants import AuthLevel, AuthType
from .rate import KINDS, Bucket, RateLimits
from .rules import Action, Network, Policy, Principal, Rule

__all__ = ["AUTH_LEVELS", "AUTH_TYPES", "TRANSPORTS", "PolicyError", "load", "parse"]

AUTH_TYPES: dict[str, int] = {
    "none": AuthType.NONE,
    "ntlm": AuthType.WINNT,
    "spnego": AuthType.GSS_NEGOTIATE,
    "negotiate": AuthType.GSS_NEGOTIATE,
    "kerberos": AuthType.GSS_KERBEROS,
    "netlogon": AuthType.NETLOGON,
}
AUTH_LEVELS: dict[str, int] = {
    "none": AuthLevel.NONE,
    "connect": AuthLevel.CONNECT,
    "call": AuthLevel.CALL,
    "packet": AuthLevel.PACKET,
    "integrity": AuthLevel.INTEGRITY,
    "privacy": AuthLevel.PRIVACY,
}
TRANSPORTS: dict[str, str] = {
    "ncacn_ip_tcp": "ncacn_ip_tcp",
    "tcp": "ncacn_ip_tcp",
    "ncalrpc": "ncalrpc",
    "local": "ncalrpc",
    "ncadg_ip_udp": "ncadg_ip_udp",
    "udp": "ncadg_ip_udp",
}
_RULE_KEYS = (
    "name",
    "action",
    "interface",
    "version",
    "opnum",
    "source",
    "transport",
    "auth_type",
    "auth_level",
    "principal",
    "epm_interface",
)


class PolicyError(RpcError, ValueError):
    """A policy file that cannot be used: where (file and line), which key, and why."""

    def __init__(self, where: str, line: int, key: str, reason: str) -> None:
        self.where, self.line, self.key, self.reason = where, line, key, reason
        place = f"{where}:{line}" if line else where
        super().__init__(f"{place}: {key}: {reason}" if key else f"{place}: {reason}")


def _well_known() -> dict[str, uuid.UUID]:
    """Interface names a policy may use: each well-known one's first word ("epmapper", "srvsvc")."""
    return {name.split()[0].lower(): u for u, name in KNOWN_INTERFACES.items()}


class _Lines:
    """Where keys are in the text (tomllib gives values, not positions): the line of each
    ``[[rule]]`` header, and of a key within a section."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.rule_starts = [
            i + 1 for i, line in enumerate(self.lines) if re.match(r"\s*\[\[\s*rule\s*\]\]", line)
        ]
        tables = [i + 1 for i, line in enumerate(self.lines) if re.match(r"\s*\[", line)]
        self.tables = tables
        groups = [i + 1 for i, line in enumerate(self.lines) if re.match(r"\s*\[\s*groups\s*\]", line)]
        self.groups = groups[0] if groups else 0

    def _end(self, start: int) -> int:
        later = [t for t in self.tables if t > start]
        return later[0] if later else len(self.lines) + 1

    def key(self, start: int, key: str) -> int:
        """The line of ``key = ...`` in the section starting at line ``start`` (0: top level)."""
        end = self._end(start) if start else (self.tables[0] if self.tables else len(self.lines) + 1)
        pattern = re.compile(rf"\s*[\"']?{re.escape(key)}[\"']?\s*=")
        for n in range(start + 1 if start else 1, end):
            if pattern.match(self.lines[n - 1]):
                return n
        return start

    def rule(self, index: int) -> int:
        return self.rule_starts[index] if index < len(self.rule_starts) else 0


def parse(text: str, where: str = "<policy>", names: Mapping[str, uuid.UUID] | None = None) -> Policy:
    """A policy from TOML text. ``names``: interface names besides the well-known ones (a server
    passes the names of what it serves).

    Raises:
        PolicyError: the text is not TOML, or a key is unknown, misspelt or of the wrong kind.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise PolicyError(where, int(m.group(1)) if m else 0, "", f"not TOML: {e}") from None
    lines = _Lines(text)
    known = _well_known() | {k.lower(): v for k, v in (names or {}).items()}
    for key in data:
        if key not in ("default", "groups", "rule", "rate_limit"):
            raise PolicyError(
                where, lines.key(0, key), key, "unknown key (default, [groups], [[rule]], [rate_limit])"
            )
    default = _action(
        data.get("default", "allow"), lambda r: PolicyError(where, lines.key(0, "default"), "default", r)
    )
    groups_raw = data.get("groups", {})
    if not isinstance(groups_raw, dict):
        raise PolicyError(where, lines.key(0, "groups"), "groups", "expected a table of name = [principals]")
    groups: dict[str, tuple[Principal, ...]] = {}
    for name, members in groups_raw.items():

        def gerr(reason: str, name: str = name) -> PolicyError:
            return PolicyError(where, lines.key(lines.groups, name), f"groups.{name}", reason)

        groups[name] = tuple(_principal(m, {}, gerr) for m in _strings(members, gerr))
    raw_rules = data.get("rule", [])
    if not isinstance(raw_rules, list):
        raise PolicyError(where, lines.key(0, "rule"), "rule", "expected [[rule]] tables")
    rules = tuple(_rule(r, i, where, lines, known, groups) for i, r in enumerate(raw_rules))
    rate = _rate(data["rate_limit"], where, lines) if "rate_limit" in data else None
    return Policy(rules, default, groups, where, rate)


def load(path: str | Path, names: Mapping[str, uuid.UUID] | None = None) -> Policy:
    """The policy in file ``path`` (see :func:`parse`)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PolicyError(str(p), 0, "", f"cannot be read: {e}") from None
    return parse(text, str(p), names)


Err = Callable[[str], PolicyError]


def _rule(
    raw: Any,
    index: int,
    where: str,
    lines: _Lines,
    known: Mapping[str, uuid.UUID],
    groups: Mapping[str, tuple[Principal, ...]],
) -> Rule:
    start = lines.rule(index)
    label = f"rule {index + 1}"
    if not isinstance(raw, dict):
        raise PolicyError(where, start, label, "expected a table")
    if isinstance(raw.get("name"), str):
        label += f" ({raw['name']})"

    def err(key: str) -> Err:
        return lambda reason: PolicyError(where, lines.key(start, key), f"{label}: {key}", reason)

    for key in raw:
        if key not in _RULE_KEYS:
            raise err(key)(f"unknown key (one of {', '.join(_RULE_KEYS)})")
    if "action" not in raw:
        raise PolicyError(where, start, f"{label}: action", "missing (allow, deny or audit)")
    if "epm_interface" in raw and ("interface" in raw or "version" in raw or "opnum" in raw):
        raise err("epm_interface")("a visibility rule names no interface, version or opnum of its own")
    name = raw.get("name", "")
    if not isinstance(name, str):
        raise err("name")("expected a string")
    return Rule(
        action=_action(raw["action"], err("action")),
        name=name,
        line=start,
        interfaces=_interfaces(raw["interface"], known, err("interface")) if "interface" in raw else None,
        versions=_versions(raw["version"], err("version")) if "version" in raw else None,
        opnums=_opnums(raw["opnum"], err("opnum")) if "opnum" in raw else None,
        sources=_sources(raw["source"], err("source")) if "source" in raw else None,
        transports=_names(raw["transport"], TRANSPORTS, err("transport")) if "transport" in raw else None,
        auth_types=_names(raw["auth_type"], AUTH_TYPES, err("auth_type")) if "auth_type" in raw else None,
        auth_levels=_levels(raw["auth_level"], err("auth_level")) if "auth_level" in raw else None,
        principals=(
            tuple(
                p
                for v in _strings(raw["principal"], err("principal"))
                for p in _expand(v, groups, err("principal"))
            )
            if "principal" in raw
            else None
        ),
        epm_interfaces=(
            _interfaces(raw["epm_interface"], known, err("epm_interface")) if "epm_interface" in raw else None
        ),
    )


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|m|h)\s*(?:burst\s+(\d+))?\s*$")
_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}


def _rate(raw: Any, where: str, lines: _Lines) -> RateLimits:
    start = next(
        (i + 1 for i, line in enumerate(lines.lines) if re.match(r"\s*\[\s*rate_limit\s*\]", line)), 0
    )

    def err(key: str) -> Err:
        return lambda reason: PolicyError(where, lines.key(start, key), f"rate_limit.{key}", reason)

    if not isinstance(raw, dict):
        raise PolicyError(where, start, "rate_limit", "expected a table")
    known = (*KINDS, "action", "tarpit_seconds", "exempt", "max_sources")
    for key in raw:
        if key not in known:
            raise err(key)(f"unknown key (one of {', '.join(known)})")
    buckets: dict[str, Bucket] = {}
    for kind in KINDS:
        if kind not in raw:
            continue
        value = raw[kind]
        m = _RATE.match(value) if isinstance(value, str) else None
        if m is None:
            raise err(kind)(f'{value!r} is not a rate ("10/s", "100/m", "5/h burst 20")')
        count = float(m.group(1))
        burst = float(m.group(3)) if m.group(3) else max(1.0, count)
        if count <= 0 or burst < 1:
            raise err(kind)(f"{value!r}: a rate is positive, a burst at least 1")
        buckets[kind] = Bucket(count / _PER[m.group(2)], burst)
    action = raw.get("action", "refuse")
    if action not in ("refuse", "tarpit"):
        raise err("action")(f"{action!r} is not refuse or tarpit")
    tarpit = raw.get("tarpit_seconds", 2.0)
    if isinstance(tarpit, bool) or not isinstance(tarpit, int | float) or not 0 < tarpit <= 60:
        raise err("tarpit_seconds")(f"{tarpit!r}: seconds, more than 0 and at most 60")
    most = raw.get("max_sources", 65536)
    if isinstance(most, bool) or not isinstance(most, int) or most < 1:
        raise err("max_sources")(f"{most!r}: a positive integer")
    exempt = _sources(raw["exempt"], err("exempt")) if "exempt" in raw else ()
    return RateLimits(**buckets, action=action, tarpit_seconds=float(tarpit), exempt=exempt, max_sources=most)


def _action(value: Any, err: Err) -> Action:
    try:
        return Action(value)
    except ValueError:
        raise err(f"{value!r} is not an action (allow, deny or audit)") from None


def _many(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _strings(value: Any, err: Err) -> list[str]:
    values = _many(value)
    for v in values:
        if not isinstance(v, str):
            raise err(f"expected a string or a list of strings, got {v!r}")
    if not values:
        raise err("an empty list matches nothing: leave the key out to match everything")
    return values


def _interfaces(value: Any, known: Mapping[str, uuid.UUID], err: Err) -> frozenset[uuid.UUID]:
    out = set()
    for v in _strings(value, err):
        found = known.get(v.lower())
        if found is None:
            try:
                found = uuid.UUID(v)
            except ValueError:
                raise err(f"{v!r} is neither a UUID nor an interface name this server knows") from None
        out.add(found)
    return frozenset(out)


_VERSION = re.compile(r"^\s*(\d+)(?:\.(\d+))?\s*$")


def _version(text: str, err: Err) -> tuple[int, int]:
    m = _VERSION.match(text)
    if m is None:
        raise err(f"{text!r} is not a version (MAJOR or MAJOR.MINOR)")
    major, minor = int(m.group(1)), int(m.group(2) or 0)
    if major > 0xFFFF or minor > 0xFFFF:
        raise err(f"{text!r}: a version's parts are 16-bit")
    return major, minor


def _versions(value: Any, err: Err) -> tuple[tuple[int, int], tuple[int, int]]:
    if not isinstance(value, str):
        raise err(f'expected a string ("3.0", ">=1.0", "<=2.1", "1.0-2.5"), got {value!r}')
    top = (0xFFFF, 0xFFFF)
    if value.startswith(">="):
        return _version(value[2:], err), top
    if value.startswith("<="):
        return (0, 0), _version(value[2:], err)
    if "-" in value:
        a, _, b = value.partition("-")
        low, high = _version(a, err), _version(b, err)
        if low > high:
            raise err(f"{value!r}: the range is empty")
        return low, high
    exact = _version(value, err)
    if "." not in value:  # "3": any 3.x
        return (exact[0], 0), (exact[0], 0xFFFF)
    return exact, exact


def _opnums(value: Any, err: Err) -> tuple[tuple[int, int], ...]:
    out = []
    values = _many(value)
    if not values:
        raise err("an empty list matches nothing: leave the key out to match everything")
    for v in values:
        if isinstance(v, bool):
            raise err(f"{v!r} is not an opnum")
        if isinstance(v, int):
            a = b = v
        elif isinstance(v, str) and re.fullmatch(r"\s*\d+\s*-\s*\d+\s*", v):
            a, b = (int(x) for x in v.split("-"))
        elif isinstance(v, str) and v.strip().isdigit():
            a = b = int(v)
        else:
            raise err(f'{v!r} is not an opnum or a range ("2-5")')
        if not 0 <= a <= b <= 0xFFFF:
            raise err(f"{v!r}: opnums are 0..65535, the low end first")
        out.append((a, b))
    return tuple(out)


def _sources(value: Any, err: Err) -> tuple[Network, ...]:
    out: list[Network] = []
    for v in _strings(value, err):
        try:
            net = ipaddress.ip_network(v.strip(), strict=False)
        except ValueError:
            raise err(f"{v!r} is not an address or a network (CIDR: 10.0.0.0/8, fd00::/8)") from None
        out.append(net)
    return tuple(out)


def _names(value: Any, table: Mapping[str, Any], err: Err) -> frozenset[Any]:
    out = set()
    for v in _strings(value, err):
        found = table.get(v.lower())
        if found is None:
            raise err(f"{v!r} is not one of {', '.join(table)}")
        out.add(found)
    return frozenset(out)


def _levels(value: Any, err: Err) -> frozenset[int]:
    out: set[int] = set()
    for v in _strings(value, err):
        text = v.strip().lower()
        exact = text.startswith("=")
        text = text.lstrip(">=").strip()
        level = AUTH_LEVELS.get(text)
        if level is None:
            raise err(f'{v!r} is not an auth level ({", ".join(AUTH_LEVELS)}; "=name" for exactly)')
        out |= {level} if exact else {n for n in AUTH_LEVELS.values() if n >= level}
    return frozenset(out)


def _principal(text: str, groups: Mapping[str, tuple[Principal, ...]], err: Err) -> Principal:
    t = text.strip()
    if t.lower() == "anonymous":
        return Principal("", None, anonymous=True)
    if not t or t.startswith("@"):
        raise err(f"{text!r} is not a principal (user, DOMAIN\\user, anonymous)")
    if "\\" in t:
        domain, _, user = t.partition("\\")
        if not domain or not user:
            raise err(f"{text!r} is not a principal (user, DOMAIN\\user, anonymous)")
        return Principal(user.lower(), domain.lower())
    return Principal(t.lower())


def _expand(text: str, groups: Mapping[str, tuple[Principal, ...]], err: Err) -> Iterable[Principal]:
    if text.startswith("@"):
        members = groups.get(text[1:])
        if members is None:
            raise err(f"{text!r}: no such group in [groups]")
        return members
    return (_principal(text, groups, err),)
