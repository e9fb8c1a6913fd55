"""The TOML configuration file: everything the flags hold; flags override it.

# /etc/dcerpc.toml
host = "127.0.0.1"            # where the endpoint mapper and services listen
epm_port = 135
ports = "49152-65535"         # dynamic port range for services
socket = "/run/dcerpc/epmapper"
epm_allow_insert = ["127.0.0.0/8"]   # networks allowed to ept_insert / ept_delete remotely
log_level = "info"

[services.rpcecho]            # pin a service to a fixed port (what firewalls want)
port = 50000
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..epm.host import HostConfig, default_socket_path
from ..server.ports import DEFAULT_RANGE, parse_range

__all__ = ["Settings", "load"]

_KEYS = {"host", "epm_port", "ports", "socket", "epm_allow_insert", "log_level", "services"}


@dataclass
class Settings:
    host: HostConfig = field(default_factory=HostConfig)
    log_level: str = "info"
    pinned: dict[str, int] = field(default_factory=dict)  # service name -> port


def load(path: str | None, **flags: Any) -> Settings:
    """Settings from the file (if any), then the flags that were given (None: not given).

    Raises:
        ValueError: unknown keys or bad values, naming them.
    """
    data: dict[str, Any] = {}
    if path:
        with Path(path).open("rb") as f:
            data = tomllib.load(f)
        unknown = set(data) - _KEYS
        if unknown:
            raise ValueError(f"{path}: unknown settings {', '.join(sorted(unknown))}")
    for key, value in flags.items():
        if value is not None and value != ():
            data[key] = value
    ports = data.get("ports", DEFAULT_RANGE)
    allow = data.get("epm_allow_insert", [])
    host = HostConfig(
        host=str(data.get("host", "127.0.0.1")),
        epm_port=int(data.get("epm_port", 135)),
        ports=parse_range(ports) if isinstance(ports, str) else ports,
        socket=str(data.get("socket") or default_socket_path()),
        epm_allow_insert=[str(a) for a in ([allow] if isinstance(allow, str) else allow)],
    )
    pinned = {name: int(s["port"]) for name, s in data.get("services", {}).items() if "port" in s}
    return Settings(host, str(data.get("log_level", "info")), pinned)
