"""The client commands that look at a host: ``dump`` (every endpoint its mapper knows, like rpcdump)
and ``ping`` (is a server there and listening: mgmt's rpc_mgmt_is_server_listening, with its round
trip). A bare HOST, or a TCP binding without an endpoint, means the host's endpoint mapper itself.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import click
from rich.text import Text

from .._errors import RpcError
from ..auth.base import ClientCredentials
from ..client.binding import Binding
from ..connecting import connect
from ..epm.idl import Epm
from ..epm.towers import Tower, TowerError
from ..known import interface_name
from ..mgmt.idl import Mgmt
from ..ndr import ContextHandle
from .options import client_auth_options, client_epm_port, credentials, epm_port_option, mapper_binding
from .output import Failure, console, emit_json, table

__all__ = ["dump", "ping"]

EPT_S_NOT_REGISTERED = 0x16C9A0D6


def _failure(where: Binding | str, e: Exception) -> Failure:
    return Failure(f"{where}: {e}", type(e).__name__)


async def _dump(
    binding: Binding, auth: ClientCredentials | None, level: str, timeout: float
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    async with await connect(
        str(binding), timeout=timeout, call_timeout=timeout, auth=auth, level=level
    ) as conn:
        epm = await conn.bind(Epm)
        handle = ContextHandle()
        while True:
            res = await epm.ept_lookup(0, None, None, 1, handle, 500)
            if res.status not in (0, EPT_S_NOT_REGISTERED):
                raise RpcError(f"ept_lookup failed with status 0x{res.status:08x}")
            for e in res.entries:
                row: dict[str, Any] = {"object": str(e.object), "annotation": e.annotation}
                try:
                    t = Tower.decode(e.tower.tower_octet_string if e.tower else b"")
                    row |= {
                        "interface": str(t.interface.uuid),
                        "version": f"{t.interface.version[0]}.{t.interface.version[1]}",
                        "name": interface_name(t.interface.uuid),
                        "binding": t.binding,
                    }
                except TowerError as ex:
                    row |= {
                        "interface": "",
                        "version": "",
                        "name": "",
                        "binding": f"(unreadable tower: {ex})",
                    }
                rows.append(row)
            handle = res.entry_handle
            if res.status != 0 or handle.is_null:
                break
        if not handle.is_null:
            await epm.ept_lookup_handle_free(handle)
    return rows


@click.command()
@click.argument("host")
@epm_port_option("--epm-port", "--port")
@client_auth_options
def dump(
    host: str,
    epm_port: int | None,
    user: str | None,
    mech: str,
    level: str,
    config: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Every endpoint HOST's endpoint mapper knows: interface, version, name, annotation, binding.

    HOST is a host name or address, or a binding to the mapper (ncacn_ip_tcp:HOST[PORT])."""
    binding = mapper_binding(host, client_epm_port(config, epm_port))
    try:
        rows = asyncio.run(_dump(binding, credentials(user, mech), level, timeout))
    except (OSError, RpcError) as e:
        raise _failure(binding, e) from None
    if as_json:
        emit_json(rows)
        return
    out = console()
    cols = ("interface", "version", "name", "annotation", "binding")
    out.print(
        table(
            f"{len(rows)} endpoints at {binding}",
            ["Interface", "Ver", "Name", "Annotation", "Binding"],
            [[r[c] for c in cols] for r in rows],
        )
    )
    nil = str(uuid.UUID(int=0))
    for r in rows:
        if r["object"] != nil:
            out.print(Text(f"  object {r['object']} on {r['binding']}"))


@click.command()
@click.argument("target")
@epm_port_option()
@client_auth_options
def ping(
    target: str,
    epm_port: int | None,
    user: str | None,
    mech: str,
    level: str,
    config: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Is the server at TARGET there and listening (mgmt is_server_listening), and how fast.

    TARGET is a binding (ncacn_ip_tcp:HOST[PORT], ncalrpc:[PATH]); a bare HOST, or a binding
    without an endpoint, pings HOST's endpoint mapper. Exit status 0 only when it listens."""
    binding = mapper_binding(target, client_epm_port(config, epm_port))
    auth = credentials(user, mech)

    async def go() -> tuple[bool, float]:
        async with await connect(
            str(binding), call_timeout=timeout, timeout=timeout, auth=auth, level=level
        ) as conn:
            mgmt = await conn.bind(Mgmt)
            start = time.perf_counter()
            answer = await mgmt.is_server_listening()
            return bool(answer.result) and answer.status == 0, time.perf_counter() - start

    try:
        listening, rtt = asyncio.run(go())
    except (OSError, RpcError, ValueError) as e:
        raise Failure(f"{binding}: {e}", type(e).__name__, binding=str(binding), reachable=False) from None
    if as_json:
        emit_json(
            {
                "ok": listening,
                "binding": str(binding),
                "reachable": True,
                "listening": listening,
                "rtt_ms": rtt * 1e3,
            }
        )
    else:
        state = Text("listening", style="green") if listening else Text("not listening", style="yellow")
        console().print(Text.assemble(f"{binding}: ", state, f" (round trip {rtt * 1e3:.2f} ms)"))
    raise SystemExit(0 if listening else 1)
