"""Resolving a binding without an endpoint through the host's endpoint mapper (ept_map), with a cache:
the resolver ``dcerpc.connect`` gives its connections (see ``client.resolve.Resolver``).

``ncacn_ip_tcp:HOST`` names a host but not a port: the client asks HOST's endpoint mapper (TCP 135,
or the binding's ``epm_port`` option) for the tower of the interface it wants, as Windows and Samba
clients do (one tower, max_towers 1). Answers are cached per (host, mapper port, interface) for
five minutes; a cached port that refuses the connection is forgotten and resolved again once.

A mapper that knows no endpoint answers ``ept_s_not_registered`` (C706 Appendix O, ept_map): that is
:class:`EndpointNotRegisteredError`, naming the interface (the connection that asked puts its class name
in; here the well-known name or the UUID) and what to do.
"""

from __future__ import annotations

import time

from .._errors import EndpointNotRegisteredError, ResolveError, status_name
from ..client.binding import Binding
from ..client.connection import connect
from ..known import interface_name
from ..ndr import ContextHandle
from ..pdu.syntax import SyntaxId
from .idl import Epm, twr_t
from .towers import Tower, TowerError, tcp_tower

__all__ = ["CACHE_SECONDS", "EPM_PORT", "EpmResolver", "default_resolver"]

EPM_PORT = 135
EPT_S_NOT_REGISTERED = 0x16C9A0D6
CACHE_SECONDS = 300.0


class EpmResolver:
    """Asks a host's endpoint mapper where an interface listens (ncacn_ip_tcp), and remembers."""

    def __init__(self, cache_seconds: float = CACHE_SECONDS) -> None:
        self.cache_seconds = cache_seconds
        self._cache: dict[tuple[str, int, SyntaxId], tuple[str, float]] = {}

    @staticmethod
    def _key(binding: Binding, interface: SyntaxId) -> tuple[str, int, SyntaxId]:
        return binding.host or "127.0.0.1", int(binding.options.get("epm_port", EPM_PORT)), interface

    def forget(self, binding: Binding, interface: SyntaxId) -> None:
        """Drop a cached answer (its port refused a connection)."""
        self._cache.pop(self._key(binding, interface), None)

    async def resolve(self, binding: Binding, interface: SyntaxId, timeout: float | None) -> str:
        """The TCP port ``interface`` listens on at ``binding``'s host, from its endpoint mapper
        (cached). Raises ResolveError when the mapper knows none."""
        key = self._key(binding, interface)
        host, epm_port, _ = key
        hit = self._cache.get(key)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        async with await connect(
            f"ncacn_ip_tcp:{_host(host)}[{epm_port}]", timeout=timeout, call_timeout=timeout
        ) as conn:
            epm = await conn.bind(Epm)
            answer = await epm.ept_map(None, twr_t.of(tcp_tower(interface).encode()), ContextHandle(), 1)
        if answer.status in (0, EPT_S_NOT_REGISTERED) and (not answer.towers or answer.towers[0] is None):
            name = interface_name(interface.uuid) or str(interface.uuid)
            raise EndpointNotRegisteredError(
                host, name, str(interface), answer.status or EPT_S_NOT_REGISTERED
            )
        if answer.status != 0 or not answer.towers or answer.towers[0] is None:
            raise ResolveError(
                f"{host}'s endpoint mapper failed to look up {interface}: {status_name(answer.status)} "
                f"(0x{answer.status:08x})"
            )
        try:
            port = Tower.decode(answer.towers[0].tower_octet_string).port
        except TowerError as e:
            raise ResolveError(f"{host}'s endpoint mapper answered an unreadable tower: {e}") from None
        if port is None:
            raise ResolveError(f"{host}'s endpoint mapper answered a tower without a port")
        self._cache[key] = (str(port), time.monotonic() + self.cache_seconds)
        return str(port)


default_resolver = EpmResolver()
"""The resolver ``dcerpc.connect`` uses unless given another (one cache per process)."""


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
