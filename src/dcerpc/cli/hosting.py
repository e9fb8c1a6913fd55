"""The serving commands, ``run``, ``epm`` and ``serve``, and their life as a service.

Signals: SIGINT and SIGTERM stop. Stopping first withdraws what this process registered with the
endpoint mapper (so clients stop being sent here), then stops accepting connections and gives the
calls in progress ``drain_seconds`` to finish before closing every connection (``Server.close``).
SIGHUP reads the configuration file again and applies what can change while running: the log level,
the credentials (``auth.ntlm_users``, ``auth.keytab``), the required levels, and who may register or
insert (``register_users``, ``epm_allow_insert``), the policy (its file read again; a file that
does not read keeps the policy in force), and ``[detect]`` (the detectors' settings, and whether
they run: ``Observing.reload_detect``); a changed address, port or socket is logged as needing a
restart. A file that no longer reads keeps the settings in force (and says why).

Sockets handed over by systemd socket activation (``LISTEN_FDS``, see ``server.activation``) are
used for the endpoint mapper's port and registration socket instead of opening them; under a
``Type=notify`` unit the service manager hears READY=1 once everything listens (and registered),
RELOADING=1 / READY=1 around a SIGHUP, and STOPPING=1 when the drain begins.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable
from typing import Any

import click
from rich.markup import escape

from .._errors import DeclarationError, RpcError
from ..epm.host import EpmHost, SocketInUseError, apply_auth, make_server
from ..epm.register import RegistrationRefusedError, register, towers_for
from ..interface import Interface
from ..known import interface_name
from ..rpcecho.server import EchoServer
from ..server.activation import listen_fds, notify
from ..server.ports import PortAllocator
from ..server.registry import refusal
from ..server.server import Server
from ..tuning import keep_large_buffers
from .config import Settings
from .observe import Observing, hangup, observe_options, observing
from .options import host_options, settings
from .output import Failure, console, emit_json, table

__all__ = ["epm", "run", "serve"]

log = logging.getLogger("dcerpc.cli")


def _setup(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    Server.use_uvloop()
    keep_large_buffers()  # large calls reuse freed buffers instead of faulting fresh pages in


def _set_level(level: str) -> None:
    logging.getLogger().setLevel(getattr(logging, level.upper(), logging.INFO))


async def _until_stopped(reload: Callable[[], None], announce: Callable[[], None]) -> None:
    """With the signal handlers in place, ``announce`` that we are ready (the ready line) and tell
    systemd (``Type=notify``); then wait for SIGINT or SIGTERM, running ``reload`` on each SIGHUP.
    (Announced before the handlers, a SIGHUP sent on seeing the ready line would find the default
    action, and end the process.)"""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def reloading() -> None:
        notify("RELOADING=1")
        try:
            reload()
            hangup()  # the audit file reopens (logrotate)
        finally:
            notify("READY=1")

    loop.add_signal_handler(signal.SIGHUP, reloading)
    announce()
    sys.stdout.flush()
    notify("READY=1", f"MAINPID={os.getpid()}")
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    notify("STOPPING=1")
    log.info("stopping: calls in progress have their drain deadline to finish")


def _reread(config: str | None, flags: dict[str, Any]) -> Settings | None:
    """The settings read again for SIGHUP (None: the file is wrong now; the old ones stay)."""
    try:
        new = settings(config, **flags) if config or flags.get("policy") else None
    except click.UsageError as e:  # ConfigError, as settings() words it
        log.error("SIGHUP: settings not reloaded: %s", e.format_message())
        return None
    if new is None:
        log.info("SIGHUP: no configuration file to read again (--config); nothing reloaded")
    return new


async def _start_host(s: Settings) -> EpmHost:
    host = EpmHost(s.host)
    try:
        activated = listen_fds()
    except ValueError as e:
        raise Failure(f"socket activation: {e}", "activation") from None
    try:
        await host.start(activated)
    except SocketInUseError as e:
        raise Failure(str(e), "socket_in_use") from None
    except PermissionError:
        await host.close()
        port = s.host.epm_port
        raise Failure(
            f"listening on TCP port {port} needs privileges this process does not have.\n"
            "  Run it as a systemd service (contrib/systemd/: the unit grants CAP_NET_BIND_SERVICE\n"
            "  to a dedicated user, or passes the socket in), or as root, or give the interpreter the\n"
            f"  capability (the real file, not a venv's symlink):\n"
            f"    sudo setcap cap_net_bind_service=+ep {os.path.realpath(sys.executable)}\n"
            "  or choose another port:  --epm-port 1135",
            "permission",
        ) from None
    except OSError as e:
        await host.close()
        if e.errno == errno.EADDRINUSE:
            raise Failure(
                f"TCP port {s.host.epm_port} is already in use (another endpoint mapper, such as"
                " Samba's samba-dcerpcd?). Stop it or choose --epm-port.",
                "port_in_use",
            ) from None
        raise Failure(f"cannot listen: {e}", "listen") from None
    return host


def _map_rows(host: EpmHost) -> list[dict[str, str]]:
    rows = []
    for e in host.map:
        t = e.tower
        rows.append(
            {
                "interface": str(t.interface.uuid),
                "version": f"{t.interface.version[0]}.{t.interface.version[1]}",
                "name": interface_name(t.interface.uuid),
                "binding": t.binding,
                "annotation": e.annotation,
            }
        )
    return rows


def _host_reloader(
    host: EpmHost, config: str | None, flags: dict[str, Any], observe: Observing
) -> Callable[[], None]:
    def reload() -> None:
        new = _reread(config, flags)
        if new is None:
            return
        try:
            restart = host.reload(new.host)
        except OSError as e:  # a credentials file that is gone
            log.error("SIGHUP: settings not reloaded: %s", e)
            return
        _set_level(new.log_level)
        observe.reload_detect(new.detect)
        for key in restart:
            log.warning("SIGHUP: %s changed; it takes effect when the service restarts", key)
        log.info("SIGHUP: settings reloaded from %s", config)

    return reload


def _hosting(with_demo: bool, config: str | None, as_json: bool, flags: dict[str, Any]) -> None:
    observe = observing(config, flags)  # audit and metrics (cli/observe.py); their flags taken out
    s = settings(config, **flags)
    _setup(s.log_level)

    async def go() -> None:
        host = await _start_host(s)
        try:
            if with_demo:
                demo = EchoServer()
                served = await host.add_service(demo, port=s.pinned.get("rpcecho"), annotation="rpcecho demo")
                _restrict(served, s, [demo])
            observe.attach([host.epm_server, *host.services], host.map)

            def announce() -> None:
                h, port = host.epm_address or (s.host.host, s.host.epm_port)
                rows = _map_rows(host)
                if as_json:
                    emit_json(
                        {"ok": True, "epm": f"{h}:{port}", "socket": host.socket_path, "endpoints": rows}
                    )
                    return
                out = console()
                cols = ("interface", "version", "name", "binding", "annotation")
                out.print(table("Endpoints", [c.title() for c in cols], [[r[c] for c in cols] for r in rows]))
                out.print(
                    f"[green]ready[/]: endpoint mapper on {h}:{port}, registrations on"
                    f" {escape(host.socket_path)}; list the endpoints with  dcerpc dump {h} --epm-port {port}"
                )

            await _until_stopped(_host_reloader(host, config, flags, observe), announce)
        finally:
            await host.close(drain=s.drain_seconds)
            observe.close()

    asyncio.run(go())


@click.command()
@host_options
@observe_options
def run(config: str | None, as_json: bool, **flags: Any) -> None:
    """The endpoint mapper with the demo services (rpcecho), each on a dynamic port."""
    _hosting(True, config, as_json, flags)


@click.command()
@host_options
@observe_options
def epm(config: str | None, as_json: bool, **flags: Any) -> None:
    """Only the endpoint mapper and its local registration socket."""
    _hosting(False, config, as_json, flags)


def load_implementation(spec: str) -> Interface:
    """An instance of MODULE:CLASS, the module found as ``python -m`` finds one (the current
    directory first)."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise click.UsageError(f"{spec!r}: expected MODULE:CLASS")
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, DeclarationError) as e:
        raise click.UsageError(f"cannot load {spec}: {e}") from None
    if not (isinstance(cls, type) and issubclass(cls, Interface)):
        raise click.UsageError(f"{spec} is not an Interface implementation")
    if (refused := refusal(cls)) is not None:  # the contract itself, operations left out, bad declarations
        raise click.UsageError(f"cannot serve {spec}: {refused}")
    return cls()


def _named(table: dict[str, Any], impl: Interface) -> Any:
    """``[services.NAME]``'s entry for ``impl`` (by interface name, class name or MODULE:CLASS)."""
    entries = {k.lower(): v for k, v in table.items()}
    cls = type(impl)
    for name in (cls.__ifname__, cls.__name__, f"{cls.__module__}:{cls.__name__}"):
        if name.lower() in entries:
            return entries[name.lower()]
    return None


def _pinned(s: Settings, impls: list[Interface], port: int | None) -> int | None:
    """--port, else the first ``[services.NAME] port`` naming one of the implementations."""
    if port is not None:
        return port
    for impl in impls:
        found = _named(s.pinned, impl)
        if found is not None:
            return int(found)
    return None


def _restrict(server: Server, s: Settings, impls: Iterable[Interface]) -> None:
    """``[services.NAME]``'s registration flags (secure_only, local_only, max_call_size, max_calls)
    on the interfaces they name (at start and on SIGHUP)."""
    for impl in impls:
        flags = _named(s.restricted, impl)
        server.restrict(type(impl), **(flags or {}))


@click.command()
@click.argument("implementations", nargs=-1, required=True)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Pin a fixed TCP port (default: [services.NAME] port, else a dynamic one).",
)
@host_options
@observe_options
def serve(
    implementations: tuple[str, ...], port: int | None, config: str | None, as_json: bool, **flags: Any
) -> None:
    """Serve MODULE:CLASS implementations on one port, registered with the local endpoint mapper."""
    observe = observing(config, flags)  # audit and metrics (cli/observe.py); their flags taken out
    s = settings(config, **flags)
    _setup(s.log_level)
    impls = [load_implementation(spec) for spec in implementations]
    pinned = _pinned(s, impls, port)

    async def go() -> None:
        server = make_server(s.host, *impls)
        _restrict(server, s, impls)
        observe.attach([server])
        ports = PortAllocator(s.host.ports)
        try:
            bound, _ = await ports.bind(lambda p: server.listen_tcp(s.host.host, p), pinned=pinned)
        except OSError as e:
            raise Failure(f"cannot listen on {s.host.host}:{pinned or s.host.ports}: {e}", "listen") from None
        served = [type(i).__syntax__ for i in impls]
        note = ", ".join(type(i).__ifname__ for i in impls)
        try:
            registration = await register(
                towers_for(served, server.addresses), note, socket_path=s.host.socket
            )
        except RegistrationRefusedError as e:
            await server.close()
            raise Failure(str(e), "registration_refused", status=e.status) from None
        except (OSError, RpcError) as e:
            await server.close()
            raise Failure(
                f"no endpoint mapper answers on {s.host.socket} ({e}).\n"
                "  Start one with `dcerpc epm` (or `dcerpc run`), or pass --socket.",
                "no_endpoint_mapper",
            ) from None

        def announce() -> None:
            if as_json:
                emit_json(
                    {"ok": True, "serving": note, "address": f"{s.host.host}:{bound}", "registered": True}
                )
            else:
                console().print(f"[green]serving[/] {escape(note)} on {s.host.host}:{bound}, registered")

        def reload() -> None:
            new = _reread(config, flags)
            if new is not None:
                try:
                    apply_auth(server, new.host.auth, impls)
                    server.policy = new.host.policy
                    _restrict(server, new, impls)
                except OSError as e:
                    log.error("SIGHUP: settings not reloaded: %s", e)
                    return
                _set_level(new.log_level)
                observe.reload_detect(new.detect)
                log.info("SIGHUP: settings reloaded from %s", config)

        try:
            await _until_stopped(reload, announce)
        finally:
            with contextlib.suppress(RpcError, OSError):
                await asyncio.wait_for(registration.close(), 5)
            log.info("deregistered from the endpoint mapper")
            await server.close(drain=s.drain_seconds)
            observe.close()

    asyncio.run(go())
