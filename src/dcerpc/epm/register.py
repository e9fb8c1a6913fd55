"""Registering a server's endpoints with the local endpoint mapper, over its ncalrpc socket.

The registration lives as long as its connection: when the server process exits (or crashes) the
socket closes, the mapper's association group dies and its entries go with it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from .._errors import RpcError
from ..client.connection import Connection, connect
from ..pdu.constants import NDR20
from ..pdu.syntax import SyntaxId
from .idl import Epm, ept_entry_t, twr_t
from .towers import Tower

__all__ = ["Registration", "register", "towers_for"]

DEFAULT_SOCKET = "/run/dcerpc/epmapper"


def towers_for(interfaces: Iterable[SyntaxId], addresses: Iterable[tuple[str, object]]) -> list[Tower]:
    """One tower per interface per listening address (("ncacn_ip_tcp", (host, port)) / ("ncalrpc", path))."""
    out = []
    addresses = list(addresses)
    for iface in interfaces:
        for protseq, addr in addresses:
            if protseq == "ncacn_ip_tcp" and isinstance(addr, tuple):
                out.append(Tower(iface, NDR20, "ncacn_ip_tcp", str(addr[1]), str(addr[0])))
            elif protseq == "ncalrpc":
                out.append(Tower(iface, NDR20, "ncalrpc", str(addr)))
    return out


class Registration:
    """Entries held in the endpoint map for as long as this object's connection is open."""

    def __init__(self, conn: Connection, entries: list[ept_entry_t]) -> None:
        self.conn = conn
        self.entries = entries

    async def close(self) -> None:
        """Withdraw the entries now (closing the connection would too)."""
        try:
            epm = await self.conn.bind(Epm)
            await epm.ept_delete(len(self.entries), self.entries)
        finally:
            await self.conn.close()


async def register(
    towers: Iterable[Tower],
    annotation: str = "",
    *,
    socket_path: str = DEFAULT_SOCKET,
    object: uuid.UUID | None = None,
) -> Registration:
    """Insert entries for ``towers`` into the local endpoint mapper; keep them while registered.

    Raises:
        RpcError: the mapper refused (status in the message) or cannot be reached.
    """
    conn = await connect(f"ncalrpc:[{socket_path}]")
    try:
        epm = await conn.bind(Epm)
        entries = [
            ept_entry_t(object or uuid.UUID(int=0), twr_t.of(t.encode()), annotation[:63]) for t in towers
        ]
        status = await epm.ept_insert(len(entries), entries, False)
        if status != 0:
            raise RpcError(f"the endpoint mapper refused the registration: status 0x{status:08x}")
    except BaseException:
        await conn.close()
        raise
    return Registration(conn, entries)
