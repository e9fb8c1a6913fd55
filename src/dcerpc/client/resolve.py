"""Resolving a binding without an endpoint through the endpoint mapper (ept_map), with a cache.

``ncacn_ip_tcp:HOST`` names a host but not a port: the client asks HOST's endpoint mapper (TCP 135)
for the tower of the interface it wants, as Windows and Samba clients do (one tower, max_towers 1).
Answers are cached per (host, interface); a cached port that refuses the connection is resolved
again once.
"""

from __future__ import annotations

import time

from .._errors import RpcError
from ..ndr import ContextHandle
from ..pdu.syntax import SyntaxId

__all__ = ["EPM_PORT", "ResolveError", "forget", "resolve_tcp_port"]

EPM_PORT = 135
CACHE_SECONDS = 300.0
_cache: dict[tuple[str, int, SyntaxId], tuple[int, float]] = {}


class ResolveError(RpcError):
    """The endpoint mapper does not know where the interface listens."""


def forget(host: str, interface: SyntaxId, epm_port: int = EPM_PORT) -> None:
    """Drop a cached answer (its port refused a connection)."""
    _cache.pop((host, epm_port, interface), None)


async def resolve_tcp_port(
    host: str, interface: SyntaxId, *, epm_port: int = EPM_PORT, timeout: float | None = 30.0
) -> int:
    """The TCP port ``interface`` listens on at ``host``, from its endpoint mapper (cached)."""
    from ..epm.idl import Epm, twr_t  # noqa: PLC0415  (the contract sits above the client)
    from ..epm.towers import Tower, TowerError, tcp_tower  # noqa: PLC0415
    from .connection import connect  # noqa: PLC0415

    key = (host, epm_port, interface)
    hit = _cache.get(key)
    if hit is not None and hit[1] > time.monotonic():
        return hit[0]
    async with await connect(
        f"ncacn_ip_tcp:{_host(host)}[{epm_port}]", timeout=timeout, call_timeout=timeout
    ) as conn:
        epm = await conn.bind(Epm)
        answer = await epm.ept_map(None, twr_t.of(tcp_tower(interface).encode()), ContextHandle(), 1)
    if answer.status != 0 or not answer.towers or answer.towers[0] is None:
        raise ResolveError(
            f"{host}'s endpoint mapper has no TCP endpoint for {interface} (status 0x{answer.status:08x})"
        )
    try:
        port = Tower.decode(answer.towers[0].tower_octet_string).port
    except TowerError as e:
        raise ResolveError(f"{host}'s endpoint mapper answered an unreadable tower: {e}") from None
    if port is None:
        raise ResolveError(f"{host}'s endpoint mapper answered a tower without a port")
    _cache[key] = (port, time.monotonic() + CACHE_SECONDS)
    return port


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
