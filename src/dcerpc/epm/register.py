"""Registering a server's endpoints with the local endpoint mapper, over its ncalrpc socket.

The registration lives as long as its connection: when the server process exits (or crashes) the
socket closes, the mapper's association group dies and its entries go with it.

Two failures are told apart, since they call for different remedies: no mapper answers on the socket
(:class:`ConnectError` from the connection: start one), and a mapper that answers but refuses
(:class:`RegistrationRefusedError`: access denied when this process's user is not among the mapper's
``register_users``; the mapper logs the uid it saw).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable

from .._errors import RpcError, status_name
from ..client.connection import Connection, connect
from ..pdu.constants import NDR20
from ..pdu.syntax import SyntaxId
from .idl import Epm, ept_entry_t, twr_t
from .towers import Tower

__all__ = ["Registration", "RegistrationRefusedError", "register", "towers_for"]

DEFAULT_SOCKET = "/run/dcerpc/epmapper"
RPC_S_ACCESS_DENIED = 5


class RegistrationRefusedError(RpcError):
    """The endpoint mapper answered and refused to insert the entries (``status`` says why)."""

    def __init__(self, socket_path: str, status: int) -> None:
        self.socket_path, self.status = socket_path, status
        if status == RPC_S_ACCESS_DENIED:
            why = (
                f"access denied: uid {os.getuid()} is not among the users the mapper lets register "
                "(its register_users setting; by default root and the mapper's own user)"
            )
        else:
            why = f"{status_name(status)} (0x{status:08x})"
        super().__init__(f"the endpoint mapper on {socket_path} refused the registration: {why}")


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
        RegistrationRefusedError: the mapper answered and refused (why, in the message).
        RpcError: the mapper cannot be reached (ConnectError: nobody listens on the socket).
    """
    conn = await connect(f"ncalrpc:[{socket_path}]")
    try:
        epm = await conn.bind(Epm)
        entries = [
            ept_entry_t(object or uuid.UUID(int=0), twr_t.of(t.encode()), annotation[:63]) for t in towers
        ]
        status = await epm.ept_insert(len(entries), entries, False)
        if status != 0:
            raise RegistrationRefusedError(socket_path, status)
    except BaseException:
        await conn.close()
        raise
    return Registration(conn, entries)
