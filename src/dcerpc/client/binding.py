"""String bindings as Windows and Samba write them (C706 2.1, MS-RPCE 2.1, Samba's dcerpc_parse_binding).

[object-uuid@]protseq:[address][[endpoint][,option][,key=value]...]

ncacn_ip_tcp:127.0.0.1[49152]           ncacn_ip_tcp:host[49152,sign]
ncacn_ip_tcp:127.0.0.1                   (no endpoint: resolved through the endpoint mapper)
ncacn_ip_tcp:[::1][135]                  ncalrpc:[/run/dcerpc/epmapper]
ncacn_ip_tcp:127.0.0.1[endpoint=135,seal,bigendian]
ncacn_ip_tcp:127.0.0.1[epm_port=1135]    (no endpoint: asks the endpoint mapper listening on 1135)

``epm_port`` is ours: where the host's endpoint mapper listens when it is not on 135 (the port a
server took with ``dcerpc epm --epm-port``); the ``dcerpc`` client commands add it from their own
``--epm-port`` option, ``DCERPC_EPM_PORT`` or the config file's ``epm_port``.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .._errors import BindingError

__all__ = ["FLAGS", "Binding", "parse_binding"]

# Options Samba understands as bare words in the bracket (the ones we act on are marked later).
FLAGS = frozenset(
    {
        "sign",
        "seal",
        "connect",
        "ntlm",
        "spnego",
        "krb5",
        "schannel",
        "bigendian",
        "ndr64",
        "print",
        "validate",
        "padcheck",
        "smb1",
        "smb2",
        "noauth",
    }
)
PROTSEQS = frozenset({"ncacn_ip_tcp", "ncalrpc", "ncacn_np", "ncadg_ip_udp", "ncacn_http"})
_PORTED = frozenset({"ncacn_ip_tcp", "ncadg_ip_udp", "ncacn_http"})  # endpoints that are port numbers
_FORM = "[object-uuid@]protseq:[address][[endpoint][,option][,key=value]...]"
_BAD_HOST = re.compile(r"[\s\[\],@]")

_SHAPE = re.compile(r"^(?:(?P<object>[0-9a-fA-F-]{36})@)?(?P<protseq>[a-z_]+):(?P<rest>.*)$")


@dataclass(frozen=True, slots=True)
class Binding:
    """A parsed string binding."""

    protseq: str
    host: str = ""
    endpoint: str = ""
    object: uuid.UUID | None = None
    flags: frozenset[str] = frozenset()
    options: Mapping[str, str] = field(default_factory=dict)  # read-only once parsed

    @property
    def port(self) -> int | None:
        """The TCP/UDP port the endpoint names (None when there is none)."""
        return int(self.endpoint) if self.endpoint.isascii() and self.endpoint.isdigit() else None

    def with_endpoint(self, endpoint: str) -> Binding:
        """The same binding with its endpoint set (after an endpoint-mapper lookup)."""
        return Binding(self.protseq, self.host, endpoint, self.object, self.flags, dict(self.options))

    def __str__(self) -> str:
        inside = [self.endpoint] if self.endpoint else []
        inside += sorted(self.flags) + [f"{k}={v}" for k, v in self.options.items()]
        host = f"[{self.host}]" if ":" in self.host else self.host
        obj = f"{self.object}@" if self.object else ""
        return f"{obj}{self.protseq}:{host}" + (f"[{','.join(inside)}]" if inside else "")


@functools.lru_cache(maxsize=256)  # clients connect to the same few bindings again and again
def parse_binding(text: str) -> Binding:
    """Parse a string binding (the result is shared: it is immutable).

    Raises:
        BindingError: (a ValueError) naming the part that is wrong, where, and what is expected.
    """
    stripped = text.strip()
    m = _SHAPE.match(stripped)
    if m is None:
        colon = stripped.find(":")
        if colon < 0:
            raise BindingError(text, "protocol sequence", "no ':' after it", _FORM)
        raise BindingError(
            text, "object UUID or protocol sequence", f"{stripped[:colon]!r} is neither", _FORM, 0
        )
    protseq = m.group("protseq")
    if protseq not in PROTSEQS:
        known = ", ".join(sorted(PROTSEQS))
        raise BindingError(
            text, "protocol sequence", f"{protseq!r} is unknown", f"one of {known}", m.start("protseq")
        )
    rest = m.group("rest")
    base = m.start("rest")
    host = ""
    if rest.startswith("[") and protseq in _PORTED and "]" in rest:
        close = rest.index("]")
        candidate = rest[1:close]
        if ":" in candidate:  # a bracketed IPv6 address, options may follow in a second bracket
            host, rest, base = candidate, rest[close + 1 :], base + close + 1
    if not host:
        i = rest.find("[")
        host, rest, base = (rest, "", base + len(rest)) if i < 0 else (rest[:i], rest[i:], base + i)
        bad = _BAD_HOST.search(host) if protseq in _PORTED else None
        if bad is not None:
            raise BindingError(
                text,
                "address",
                f"{bad.group()!r} is not allowed in a host name",
                "a host name or address",
                m.start("rest") + bad.start(),
            )
    endpoint = ""
    flags: set[str] = set()
    options: dict[str, str] = {}
    if rest:
        if not (rest.startswith("[") and rest.endswith("]")) or "]" in rest[:-1]:
            raise BindingError(
                text,
                "options",
                f"{rest!r} is not one bracket",
                "[endpoint,option,...] once, at the end",
                base,
            )
        offset = base + 1
        for n, raw in enumerate(rest[1:-1].split(",")):
            item, at = raw.strip(), offset + len(raw) - len(raw.lstrip())
            offset += len(raw) + 1
            if not item:
                continue
            if "=" in item:
                key, value = item.split("=", 1)
                if key == "endpoint":
                    endpoint = _endpoint(text, protseq, value, at)
                else:
                    if key == "epm_port":
                        _port(text, "epm_port option", value, at)
                    options[key] = value
            elif item.lower() in FLAGS:
                flags.add(item.lower())
            elif n == 0:
                endpoint = _endpoint(text, protseq, item, at)
            else:
                raise BindingError(
                    text,
                    "option",
                    f"{item!r} is unknown",
                    f"key=value or one of {', '.join(sorted(FLAGS))}",
                    at,
                )
    try:
        obj = uuid.UUID(m.group("object")) if m.group("object") else None
    except ValueError:
        raise BindingError(text, "object UUID", f"{m.group('object')!r} is not a UUID", _FORM, 0) from None
    return Binding(protseq, host, endpoint, obj, frozenset(flags), MappingProxyType(options))


def _endpoint(text: str, protseq: str, value: str, at: int) -> str:
    if protseq in _PORTED:
        _port(text, "endpoint", value, at)
    return value


def _port(text: str, part: str, value: str, at: int) -> None:
    if not (value.isascii() and value.isdigit() and 0 < int(value) <= 0xFFFF):
        raise BindingError(text, part, f"{value!r} is not a port number", "a port, 1 to 65535", at)
