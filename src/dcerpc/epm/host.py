"""An RPC host: the endpoint mapper on TCP 135 and its local registration socket, plus services.

This is what ``dcerpc run`` / ``dcerpc epm`` / ``dcerpc serve`` drive; tests use it in-process.

    host = EpmHost(HostConfig(epm_port=135))
    await host.start()
    await host.add_service(EchoServer())        # a dynamic port, registered in the map
    ...
    await host.close(drain=10)                  # calls in progress get 10 s to finish

The registration socket is claimed with care: a socket a live process answers on is another
mapper's, and :class:`SocketInUseError` stops this one before it touches the socket or the port; a
socket nobody answers on is what a killed mapper left, and is replaced (:func:`claim_socket`).
Sockets systemd handed over (``start(activated)``) are used as they are and never removed.
:meth:`EpmHost.reload` applies the settings that can change while running (credentials, levels,
who may register or insert) to the mapper and every service.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..auth.config import AuthConfig
from ..interface import Interface
from ..pdu.syntax import SyntaxId
from ..policy.rules import Policy
from ..protocol.budget import Budget, process_budget, set_process_budget
from ..protocol.limits import Limits
from ..protocol.rules import WINDOWS_MAX_FRAGMENT
from ..server.ports import DEFAULT_RANGE, PortAllocator, PortRange
from ..server.server import Server
from .idl import Epm
from .map import EndpointMap, Entry
from .register import towers_for
from .service import EpmService

__all__ = [
    "EpmHost",
    "HostConfig",
    "SocketInUseError",
    "apply_auth",
    "claim_socket",
    "default_socket_path",
    "make_server",
]

log = logging.getLogger("dcerpc.epm")


class SocketInUseError(RuntimeError):
    """A live endpoint mapper already answers on the registration socket."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"an endpoint mapper is already running on {path} (it answered a connection); "
            "stop it first, or give this one another socket"
        )


def claim_socket(path: str) -> None:
    """Make way for a listener at ``path``: a socket nobody answers on (left by a mapper that died)
    is removed; one a live process answers on is not.

    Raises:
        SocketInUseError: a process accepted a connection there.
    """
    if not os.path.lexists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(path)
    except TimeoutError:  # its accept queue is full: alive, and busy
        raise SocketInUseError(path) from None
    except OSError:  # ECONNREFUSED: nobody listens (a stale socket); ENOTSOCK and the like: not one
        log.info("removing the stale registration socket %s", path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    finally:
        probe.close()
    raise SocketInUseError(path)


def default_socket_path() -> str:
    """/run/dcerpc/epmapper for root; a per-user directory otherwise."""
    if os.geteuid() == 0:
        return "/run/dcerpc/epmapper"
    base = os.environ.get("XDG_RUNTIME_DIR") or os.path.join(tempfile.gettempdir(), f"dcerpc-{os.getuid()}")
    return os.path.join(base, "dcerpc", "epmapper")


@dataclass
class HostConfig:
    """Everything ``dcerpc run`` takes as flags or from its TOML config file."""

    host: str = "127.0.0.1"
    epm_port: int = 135
    ports: PortRange = DEFAULT_RANGE
    socket: str = field(default_factory=default_socket_path)
    epm_allow_insert: list[str] = field(default_factory=list)
    register_uids: set[int] | None = None  # who may register over the socket; None: root and us
    limits: Limits = field(default_factory=Limits)
    auth: AuthConfig = field(default_factory=AuthConfig)
    policy: Policy | None = None  # who may call what, on the mapper and every service
    max_memory: int = 0  # the process's memory budget in octets (0: protocol.budget's default)


def make_server(config: HostConfig, *implementations: Interface) -> Server:
    """A server for ``implementations`` with the host's limits, credentials and required levels."""
    if config.max_memory and process_budget().total != config.max_memory:
        set_process_budget(Budget(config.max_memory))  # one for the process: every server shares it
    server = Server(*implementations, limits=config.limits, policy=config.policy)
    apply_auth(server, config.auth, implementations)
    return server


def apply_auth(server: Server, auth: AuthConfig, implementations: Iterable[Interface]) -> None:
    """Give ``server`` the credentials and required levels of ``auth`` (at start, and again when the
    settings are reloaded: new binds see the new providers, calls resolved after see the new levels).
    """
    providers = {p.auth_type: p for p in auth.providers()}
    server.security.clear()  # in place: associations made before share this dict
    server.security.update(providers)
    server.min_auth_level = auth.min_auth_level
    names = {type(i).__ifname__.lower(): type(i).__syntax__ for i in implementations}
    for syntax in names.values():  # a level dropped from the settings falls back to the minimum
        server.require_auth(syntax, auth.min_auth_level)
    for name, level in auth.interfaces.items():
        named = names.get(name.lower())
        if named is not None:
            server.require_auth(named, level)
        elif _is_uuid(name):
            server.require_auth(name, level)
    if Epm.__syntax__ in names.values():
        # the endpoint mapper has its own setting, untouched by the global minimum
        server.require_auth(Epm, auth.interfaces.get("epmapper", auth.epm_min_auth_level))


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


class EpmHost:
    """The endpoint mapper and the services hosted beside it."""

    def __init__(self, config: HostConfig | None = None) -> None:
        self.config = config or HostConfig()
        self.map = EndpointMap()
        self.epm = EpmService(
            self.map, allow_insert=self.config.epm_allow_insert, local_uids=self.config.register_uids
        )
        # The mapper on 135 is what Windows tools and scanners talk to first: it negotiates
        # fragments as Windows does (at most 5840 octets); services keep the configured size.
        epm_limits = dataclasses.replace(
            self.config.limits, max_fragment=min(self.config.limits.max_fragment, WINDOWS_MAX_FRAGMENT)
        )
        self.epm_server = make_server(dataclasses.replace(self.config, limits=epm_limits), self.epm)
        self.ports = PortAllocator(self.config.ports)
        self.services: list[Server] = []
        self._served: list[tuple[Server, tuple[Interface, ...]]] = []
        self.epm_address: tuple[str, int] | None = None
        self.socket_path = self.config.socket
        self._own_socket = False  # ours to remove at close (not one systemd handed over)

    async def start(self, activated: Sequence[socket.socket] = ()) -> None:
        """Listen on the endpoint-mapper port and the local registration socket, or on the sockets
        systemd handed over (``activated``, see ``server.activation``: its TCP sockets are the
        mapper's port, its Unix socket the registration socket; what it lacks is opened here).

        Raises:
            PermissionError: the port needs privileges (port 135: root or CAP_NET_BIND_SERVICE).
            OSError: the port is taken.
            SocketInUseError: a live endpoint mapper holds the registration socket.
        """
        cfg = self.config
        tcp = [s for s in activated if s.family in (socket.AF_INET, socket.AF_INET6)]
        unix = [s for s in activated if s.family == socket.AF_UNIX]
        if not unix:
            claim_socket(cfg.socket)  # before the port: a second mapper stops without touching either
        if tcp:
            for sock in tcp:
                addr = await self.epm_server.listen_socket(sock)
            host, port = addr[0], addr[1]
        else:
            host, port = await self.epm_server.listen_tcp(cfg.host, cfg.epm_port)
        self.epm_address = (host, port)
        if unix:
            self.socket_path = str(await self.epm_server.listen_socket(unix[0]))
        else:
            Path(cfg.socket).parent.mkdir(parents=True, exist_ok=True)
            await self.epm_server.listen_unix(cfg.socket)
            os.chmod(cfg.socket, 0o666)  # anyone may connect; SO_PEERCRED decides who may register
            self.socket_path = cfg.socket
            self._own_socket = True
        self.map.insert(self._entries(self.epm_server, [Epm.__syntax__], "Endpoint Mapper"))
        log.info("endpoint mapper on %s:%d and %s", host, port, self.socket_path)

    def reload(self, config: HostConfig) -> list[str]:
        """Apply the settings that can change while running: credentials, required levels, who may
        register and insert. Returns the settings that differ but need a restart."""
        old = self.config
        self.config = dataclasses.replace(
            old,
            auth=config.auth,
            epm_allow_insert=config.epm_allow_insert,
            register_uids=config.register_uids,
            policy=config.policy,
        )
        self.epm.set_policy(config.epm_allow_insert, config.register_uids)
        apply_auth(self.epm_server, config.auth, [self.epm])
        self.epm_server.policy = config.policy
        for server, impls in self._served:
            apply_auth(server, config.auth, impls)
            server.policy = config.policy
        return [k for k in ("host", "epm_port", "ports", "socket") if getattr(old, k) != getattr(config, k)]

    async def add_service(
        self, *implementations: Interface, port: int | None = None, annotation: str = ""
    ) -> Server:
        """Serve implementations on one dynamic (or pinned) TCP port and register them in the map."""
        server = make_server(self.config, *implementations)
        bound, _ = await self.ports.bind(lambda p: server.listen_tcp(self.config.host, p), pinned=port)
        self.services.append(server)
        self._served.append((server, implementations))
        served = [type(i).__syntax__ for i in implementations]
        note = annotation or ", ".join(type(i).__ifname__ for i in implementations)
        self.map.insert(self._entries(server, served, note))
        log.info("%s on %s:%d", note, self.config.host, bound)
        return server

    def _entries(self, server: Server, interfaces: list[SyntaxId], annotation: str) -> list[Entry]:
        towers = towers_for(interfaces, server.addresses)
        return [Entry.make(uuid.UUID(int=0), t, annotation) for t in towers]

    async def close(self, drain: float = 2.0) -> None:
        """Stop listening; calls in progress get ``drain`` seconds to finish (the services' first,
        then the mapper's); remove the registration socket if this host made it."""
        await asyncio.gather(*(server.close(drain=drain) for server in self.services))
        await self.epm_server.close(drain=drain)
        if self._own_socket:
            with contextlib.suppress(OSError):
                os.unlink(self.socket_path)
