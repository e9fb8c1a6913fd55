"""An RPC host: the endpoint mapper on TCP 135 and its local registration socket, plus services.

This is what ``dcerpc run`` / ``dcerpc epm`` / ``dcerpc serve`` drive; tests use it in-process.

    host = EpmHost(HostConfig(epm_port=135))
    await host.start()
    await host.add_service(EchoServer())        # a dynamic port, registered in the map
    ...
    await host.close()
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..auth.config import AuthConfig
from ..interface import Interface
from ..pdu.syntax import SyntaxId
from ..protocol.limits import Limits
from ..protocol.rules import WINDOWS_MAX_FRAGMENT
from ..server.ports import DEFAULT_RANGE, PortAllocator, PortRange
from ..server.server import Server
from .idl import Epm
from .map import EndpointMap, Entry
from .register import towers_for
from .service import EpmService

__all__ = ["EpmHost", "HostConfig", "default_socket_path"]

log = logging.getLogger("dcerpc.epm")


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
    limits: Limits = field(default_factory=Limits)
    auth: AuthConfig = field(default_factory=AuthConfig)


def make_server(config: HostConfig, *implementations: Interface) -> Server:
    """A server for ``implementations`` with the host's limits, credentials and required levels."""
    auth = config.auth
    server = Server(
        *implementations,
        limits=config.limits,
        security=auth.providers(),
        min_auth_level=auth.min_auth_level,
    )
    names = {type(i).__ifname__.lower(): type(i).__syntax__ for i in implementations}
    for name, level in auth.interfaces.items():
        syntax = names.get(name.lower())
        if syntax is not None:
            server.require_auth(syntax, level)
        elif _is_uuid(name):
            server.require_auth(name, level)
    if any(type(i).__syntax__ == Epm.__syntax__ for i in implementations):
        # the endpoint mapper has its own setting, untouched by the global minimum
        server.require_auth(Epm, auth.interfaces.get("epmapper", auth.epm_min_auth_level))
    return server


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
        self.epm = EpmService(self.map, allow_insert=self.config.epm_allow_insert)
        # The mapper on 135 is what Windows tools and scanners talk to first: it negotiates
        # fragments as Windows does (at most 5840 octets); services keep the configured size.
        epm_limits = dataclasses.replace(
            self.config.limits, max_fragment=min(self.config.limits.max_fragment, WINDOWS_MAX_FRAGMENT)
        )
        self.epm_server = make_server(dataclasses.replace(self.config, limits=epm_limits), self.epm)
        self.ports = PortAllocator(self.config.ports)
        self.services: list[Server] = []
        self.epm_address: tuple[str, int] | None = None

    async def start(self) -> None:
        """Listen on the endpoint-mapper port and the local registration socket.

        Raises:
            PermissionError: the port needs privileges (port 135: root or CAP_NET_BIND_SERVICE).
            OSError: the port is taken.
        """
        cfg = self.config
        host, port = await self.epm_server.listen_tcp(cfg.host, cfg.epm_port)
        self.epm_address = (host, port)
        Path(cfg.socket).parent.mkdir(parents=True, exist_ok=True)
        await self.epm_server.listen_unix(cfg.socket)
        os.chmod(cfg.socket, 0o666)  # anyone may connect; SO_PEERCRED decides who may register
        self.map.insert(self._entries(self.epm_server, [Epm.__syntax__], "Endpoint Mapper"))
        log.info("endpoint mapper on %s:%d and %s", host, port, cfg.socket)

    async def add_service(
        self, *implementations: Interface, port: int | None = None, annotation: str = ""
    ) -> Server:
        """Serve implementations on one dynamic (or pinned) TCP port and register them in the map."""
        server = make_server(self.config, *implementations)
        bound, _ = await self.ports.bind(lambda p: server.listen_tcp(self.config.host, p), pinned=port)
        self.services.append(server)
        served = [type(i).__syntax__ for i in implementations]
        note = annotation or ", ".join(type(i).__ifname__ for i in implementations)
        self.map.insert(self._entries(server, served, note))
        log.info("%s on %s:%d", note, self.config.host, bound)
        return server

    def _entries(self, server: Server, interfaces: list[SyntaxId], annotation: str) -> list[Entry]:
        towers = towers_for(interfaces, server.addresses)
        return [Entry.make(uuid.UUID(int=0), t, annotation) for t in towers]

    async def close(self) -> None:
        for server in self.services:
            await server.close(drain=2.0)
        await self.epm_server.close(drain=2.0)
        with contextlib.suppress(OSError):
            os.unlink(self.config.socket)
