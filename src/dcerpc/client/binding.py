"""String bindings as Windows and Samba write them (C706 2.1, MS-RPCE 2.1, Samba's dcerpc_parse_binding).

[object-uuid@]protseq:[address][[endpoint][,option][,key=value]...]

ncacn_ip_tcp:127.0.0.1[49152]           ncacn_ip_tcp:host[49152,sign]
ncacn_ip_tcp:127.0.0.1                   (no endpoint: resolved through the endpoint mapper)
ncacn_ip_tcp:[::1][135]                  ncalrpc:[/run/dcerpc/epmapper]
ncacn_ip_tcp:127.0.0.1[endpoint=135,seal,bigendian]
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

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
        ValueError: with what is wrong.
    """
    m = _SHAPE.match(text.strip())
    if m is None:
        raise ValueError(f"not a string binding: {text!r} (expected protseq:address[endpoint,options])")
    protseq = m.group("protseq")
    if protseq not in PROTSEQS:
        raise ValueError(f"unknown protocol sequence {protseq!r}; known: {', '.join(sorted(PROTSEQS))}")
    rest = m.group("rest")
    host = ""
    if rest.startswith("[") and protseq in ("ncacn_ip_tcp", "ncadg_ip_udp", "ncacn_http") and "]" in rest:
        close = rest.index("]")
        candidate = rest[1:close]
        if ":" in candidate:  # a bracketed IPv6 address, options may follow in a second bracket
            host, rest = candidate, rest[close + 1 :]
    if not host:
        i = rest.find("[")
        host, rest = (rest, "") if i < 0 else (rest[:i], rest[i:])
    endpoint = ""
    flags: set[str] = set()
    options: dict[str, str] = {}
    if rest:
        if not (rest.startswith("[") and rest.endswith("]")):
            raise ValueError(f"options must be in one bracket at the end: {text!r}")
        for n, item in enumerate(p.strip() for p in rest[1:-1].split(",")):
            if not item:
                continue
            if "=" in item:
                key, value = item.split("=", 1)
                if key == "endpoint":
                    endpoint = value
                else:
                    options[key] = value
            elif item.lower() in FLAGS:
                flags.add(item.lower())
            elif n == 0:
                endpoint = item
            else:
                raise ValueError(f"unknown binding option {item!r} in {text!r}")
    obj = uuid.UUID(m.group("object")) if m.group("object") else None
    return Binding(protseq, host, endpoint, obj, frozenset(flags), MappingProxyType(options))
