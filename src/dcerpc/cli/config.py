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

[auth]                        # see dcerpc.auth.config
ntlm_users = "/etc/dcerpc/ntlm-users"   # DOMAIN:USER:PASSWORD lines
keytab = "/etc/dcerpc/rpc.keytab"
min_auth_level = "integrity"             # none connect call packet integrity privacy
epm_min_auth_level = "none"

[auth.interfaces]
rpcecho = "privacy"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..auth.config import AuthConfig, parse_level
from ..epm.host import HostConfig, default_socket_path
from ..server.ports import DEFAULT_RANGE, parse_range

__all__ = ["Settings", "load"]

_KEYS = {"host", "epm_port", "ports", "socket", "epm_allow_insert", "log_level", "services", "auth"}
_KEYS |= {"audit", "metrics"}  # read by cli/observe.py
_AUTH_KEYS = {"ntlm_users", "keytab", "service", "min_auth_level", "epm_min_auth_level", "interfaces"}


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
    auth: dict[str, Any] = dict(data.get("auth", {}))
    unknown = set(auth) - _AUTH_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown [auth] settings {', '.join(sorted(unknown))}")
    for key, value in flags.items():
        if value is None or value == ():
            continue
        if key in _AUTH_KEYS:
            auth[key] = value
        else:
            data[key] = value
    ports = data.get("ports", DEFAULT_RANGE)
    allow = data.get("epm_allow_insert", [])
    host = HostConfig(
        host=str(data.get("host", "127.0.0.1")),
        epm_port=int(data.get("epm_port", 135)),
        ports=parse_range(ports) if isinstance(ports, str) else ports,
        socket=str(data.get("socket") or default_socket_path()),
        epm_allow_insert=[str(a) for a in ([allow] if isinstance(allow, str) else allow)],
        auth=AuthConfig(
            ntlm_users=auth.get("ntlm_users"),
            keytab=auth.get("keytab"),
            service=str(auth.get("service", "host")),
            min_auth_level=parse_level(auth.get("min_auth_level", "none")),
            epm_min_auth_level=parse_level(auth.get("epm_min_auth_level", "none")),
            interfaces={str(k): parse_level(v) for k, v in auth.get("interfaces", {}).items()},
        ),
    )
    pinned = {name: int(s["port"]) for name, s in data.get("services", {}).items() if "port" in s}
    return Settings(host, str(data.get("log_level", "info")), pinned)
