"""Command implementations (click for parsing, rich for people, --json for scripts)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import json
import logging
import signal
import sys
import time
import uuid
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .. import __version__
from .._errors import RpcError
from ..auth.base import ClientCredentials
from ..auth.config import LEVELS
from ..auth.mechs import NTLM, Kerberos, Negotiate
from ..connecting import connect
from ..epm.host import EpmHost, make_server
from ..epm.idl import Epm
from ..epm.register import register, towers_for
from ..epm.towers import Tower, TowerError
from ..interface import Interface
from ..known import interface_name
from ..mgmt.idl import Mgmt
from ..ndr import ContextHandle
from ..rpcecho.server import EchoServer
from ..server.ports import PortAllocator
from ..server.server import Server
from ..tuning import keep_large_buffers
from .config import Settings, load
from .observe import observe_options, observing

console = Console()
err = Console(stderr=True)

EPT_S_NOT_REGISTERED = 0x16C9A0D6


def _setup(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    Server.use_uvloop()
    keep_large_buffers()  # large calls reuse freed buffers instead of faulting fresh pages in


def _host_options(f: Any) -> Any:
    options = [
        click.option(
            "--config", "config", type=click.Path(exists=True, dir_okay=False), help="TOML settings file."
        ),
        click.option(
            "--host", default=None, help="Address to listen on (default 127.0.0.1; 0.0.0.0 exposes it)."
        ),
        click.option("--epm-port", type=int, default=None, help="Endpoint-mapper TCP port (default 135)."),
        click.option("--ports", default=None, help="Dynamic port range LOW-HIGH (default 49152-65535)."),
        click.option("--socket", default=None, help="Local registration socket (ncalrpc) path."),
        click.option(
            "--epm-allow-insert",
            multiple=True,
            metavar="CIDR",
            help="Networks allowed to ept_insert / ept_delete remotely (repeatable; off by default).",
        ),
        click.option(
            "--ntlm-users",
            default=None,
            type=click.Path(exists=True, dir_okay=False),
            help="Accept NTLM (and SPNEGO) for the users in this file (lines DOMAIN:USER:PASSWORD).",
        ),
        click.option(
            "--keytab",
            default=None,
            type=click.Path(exists=True, dir_okay=False),
            help="Accept Kerberos (and SPNEGO) with the service keys in this keytab.",
        ),
        click.option(
            "--min-auth-level",
            default=None,
            type=click.Choice(LEVELS),
            help="Refuse calls below this level (the endpoint mapper keeps --epm-min-auth-level).",
        ),
        click.option(
            "--epm-min-auth-level",
            default=None,
            type=click.Choice(LEVELS),
            help="The endpoint mapper's own minimum (default none: anyone may resolve).",
        ),
        click.option("--log-level", default=None, type=click.Choice(["debug", "info", "warning", "error"])),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _settings(config: str | None, **flags: Any) -> Settings:
    try:
        return load(config, **flags)
    except (ValueError, OSError) as e:
        raise click.UsageError(str(e)) from None


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _start_host(settings: Settings) -> EpmHost:
    host = EpmHost(settings.host)
    try:
        await host.start()
    except PermissionError:
        port = settings.host.epm_port
        raise click.ClickException(
            f"listening on TCP port {port} needs privileges this process does not have.\n"
            "  Run as root, or allow this Python to bind low ports:\n"
            f"    sudo setcap cap_net_bind_service=+ep {sys.executable}\n"
            "  or choose another port:  --epm-port 1135"
        ) from None
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise click.ClickException(
                f"TCP port {settings.host.epm_port} is already in use (another endpoint mapper, such as"
                " Samba's samba-dcerpcd?). Stop it or choose --epm-port."
            ) from None
        raise click.ClickException(f"cannot listen: {e}") from None
    return host


def _cells(*values: str) -> list[Text]:
    """Table cells shown as they are: bindings like ncalrpc:[/path] are not markup."""
    return [Text(v) for v in values]


def _print_map(host: EpmHost) -> None:
    table = Table(title="Endpoints", show_lines=False)
    for col in ("Interface", "Ver", "Name", "Binding", "Annotation"):
        table.add_column(col)
    for e in host.map:
        t = e.tower
        table.add_row(
            *_cells(
                str(t.interface.uuid),
                f"{t.interface.version[0]}.{t.interface.version[1]}",
                interface_name(t.interface.uuid),
                t.binding,
                e.annotation,
            )
        )
    console.print(table)


@click.group()
@click.version_option(__version__, prog_name="dcerpc")
def main() -> None:
    """DCE/RPC tools: endpoint mapper, servers, clients, and monitoring."""


@main.command()
@_host_options
@observe_options
def run(config: str | None, log_level: str | None, **flags: Any) -> None:
    """The endpoint mapper with the demo services (rpcecho), each on a dynamic port."""
    observe = observing(config, flags)  # audit and metrics (cli/observe.py)
    settings = _settings(config, log_level=log_level, **flags)
    _setup(settings.log_level)

    async def go() -> None:
        host = await _start_host(settings)
        try:
            await host.add_service(
                EchoServer(), port=settings.pinned.get("rpcecho"), annotation="rpcecho demo"
            )
            observe.attach([host.epm_server, *host.services], host.map)
            _print_map(host)
            console.print(
                f"[green]ready[/]: list the endpoints with  dcerpc dump {settings.host.host}"
                f" --port {settings.host.epm_port}   (Ctrl-C stops)"
            )
            await _until_signalled()
        finally:
            await host.close()
            observe.close()

    asyncio.run(go())


@main.command()
@_host_options
def epm(config: str | None, log_level: str | None, **flags: Any) -> None:
    """Only the endpoint mapper and its local registration socket."""
    settings = _settings(config, log_level=log_level, **flags)
    _setup(settings.log_level)

    async def go() -> None:
        host = await _start_host(settings)
        try:
            console.print(
                f"[green]endpoint mapper[/] on {settings.host.host}:{settings.host.epm_port},"
                f" registrations on {escape(settings.host.socket)}"
            )
            await _until_signalled()
        finally:
            await host.close()

    asyncio.run(go())


def _load_impl(spec: str) -> Interface:
    module, _, name = spec.partition(":")
    if not module or not name:
        raise click.UsageError(f"{spec!r}: expected MODULE:CLASS")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise click.UsageError(f"cannot load {spec}: {e}") from None
    if not (isinstance(cls, type) and issubclass(cls, Interface)):
        raise click.UsageError(f"{spec} is not an Interface implementation")
    return cls()


@main.command()
@click.argument("implementations", nargs=-1, required=True)
@click.option("--port", type=int, default=None, help="Pin a fixed TCP port instead of a dynamic one.")
@_host_options
@observe_options
def serve(
    implementations: tuple[str, ...],
    port: int | None,
    config: str | None,
    log_level: str | None,
    **flags: Any,
) -> None:
    """Serve MODULE:CLASS implementations on a dynamic port, registered with the local endpoint mapper."""
    observe = observing(config, flags)  # audit and metrics (cli/observe.py)
    settings = _settings(config, log_level=log_level, **flags)
    _setup(settings.log_level)
    impls = [_load_impl(s) for s in implementations]

    async def go() -> None:
        server = make_server(settings.host, *impls)
        observe.attach([server])
        ports = PortAllocator(settings.host.ports)
        bound, _ = await ports.bind(lambda p: server.listen_tcp(settings.host.host, p), pinned=port)
        served = [type(i).__syntax__ for i in impls]
        note = ", ".join(type(i).__ifname__ for i in impls)
        try:
            registration = await register(
                towers_for(served, server.addresses), note, socket_path=settings.host.socket
            )
        except (OSError, RpcError) as e:
            await server.close()
            raise click.ClickException(
                f"no endpoint mapper accepted the registration on {settings.host.socket} ({e}).\n"
                "  Start one with `dcerpc epm` (or `dcerpc run`), or pass --socket."
            ) from None
        console.print(f"[green]serving[/] {note} on {settings.host.host}:{bound}, registered")
        try:
            await _until_signalled()
        finally:
            with contextlib.suppress(RpcError, OSError):
                await registration.close()
            await server.close()
            observe.close()

    asyncio.run(go())


def _client_auth_options(f: Any) -> Any:
    options = [
        click.option(
            "-U",
            "--user",
            default=None,
            metavar="[DOMAIN/]USER[%PASSWORD]",
            help="Authenticate as this user (Samba's -U spelling); the password is asked for if absent.",
        ),
        click.option(
            "--mech",
            type=click.Choice(["ntlm", "spnego", "krb5"]),
            default="ntlm",
            show_default=True,
            help="Security mechanism.",
        ),
        click.option(
            "--level",
            type=click.Choice(LEVELS[1:]),
            default="privacy",
            show_default=True,
            help="Protection level when authenticating.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _credentials(user: str | None, mech: str) -> ClientCredentials | None:
    """Credentials from -U DOMAIN/USER%PASSWORD (None: anonymous)."""
    if user is None:
        return None
    who, _, password = user.partition("%")
    if not password:
        password = click.prompt(f"password for {who}", hide_input=True, default="", show_default=False)
    domain, _, name = who.rpartition("/") if "/" in who else who.rpartition("\\")
    if mech == "krb5":
        return Kerberos(name if "@" in name or not domain else f"{name}@{domain.upper()}", password)
    if mech == "spnego":
        return Negotiate(domain, name, password)
    return NTLM(domain, name, password)


async def _dump(
    host: str, port: int, auth: ClientCredentials | None = None, level: str = "privacy"
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    url = f"ncacn_ip_tcp:{host}[{port}]"
    async with await connect(url, call_timeout=30, auth=auth, level=level) as conn:
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


@main.command()
@click.argument("host")
@click.option("--port", type=int, default=135, show_default=True, help="Endpoint-mapper port.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_client_auth_options
def dump(host: str, port: int, as_json: bool, user: str | None, mech: str, level: str) -> None:
    """Every endpoint HOST's endpoint mapper knows: interface, version, name, annotation, binding."""
    try:
        rows = asyncio.run(_dump(host, port, _credentials(user, mech), level))
    except (OSError, RpcError) as e:
        raise click.ClickException(f"{host}[{port}]: {e}") from None
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(rows)} endpoints at {host}[{port}]")
    for col in ("Interface", "Ver", "Name", "Annotation", "Binding"):
        table.add_column(col)
    for r in rows:
        table.add_row(*_cells(r["interface"], r["version"], r["name"], r["annotation"], r["binding"]))
    console.print(table)
    nil = str(uuid.UUID(int=0))
    for r in rows:
        if r["object"] != nil:
            console.print(Text(f"  object {r['object']} on {r['binding']}"))


@main.command()
@click.argument("binding")
@click.option("--json", "as_json", is_flag=True)
@_client_auth_options
def ping(binding: str, as_json: bool, user: str | None, mech: str, level: str) -> None:
    """Is the server at BINDING there and listening (mgmt is_server_listening), and how fast."""
    auth = _credentials(user, mech)

    async def go() -> tuple[bool, float]:
        async with await connect(binding, call_timeout=10, timeout=10, auth=auth, level=level) as conn:
            mgmt = await conn.bind(Mgmt)
            start = time.perf_counter()
            answer = await mgmt.is_server_listening()
            return bool(answer.result) and answer.status == 0, time.perf_counter() - start

    try:
        listening, rtt = asyncio.run(go())
    except (OSError, RpcError, ValueError) as e:
        if as_json:
            click.echo(json.dumps({"binding": binding, "reachable": False, "error": str(e)}))
        else:
            err.print(Text(f"{binding}: {e}", style="red"))
        sys.exit(1)
    if as_json:
        click.echo(
            json.dumps({"binding": binding, "reachable": True, "listening": listening, "rtt_ms": rtt * 1e3})
        )
    else:
        state = Text("listening", style="green") if listening else Text("not listening", style="yellow")
        console.print(Text.assemble(f"{binding}: ", state, f" (round trip {rtt * 1e3:.2f} ms)"))
    sys.exit(0 if listening else 1)
