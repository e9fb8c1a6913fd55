"""The TOML configuration file: a declared schema (msgspec), then the flags on top of it.

# /etc/dcerpc.toml                  docs/configuration.md describes every key and its default
host = "127.0.0.1"            # where the endpoint mapper and services listen
epm_port = 135
ports = "49152-65535"         # dynamic port range for services
socket = "/run/dcerpc/epmapper"
register_users = ["root", "dcerpc"]  # local users who may register over the socket (SO_PEERCRED)
epm_allow_insert = ["127.0.0.0/8"]   # networks allowed to ept_insert / ept_delete remotely
log_level = "info"
drain_seconds = 10.0          # on SIGTERM: how long calls in progress may take to finish
policy = "/etc/dcerpc/policy.toml"   # who may call what (docs/policy.md); reread on SIGHUP
max_memory = 0                # octets all connections may hold together (0: a quarter of RAM)

[services.rpcecho]            # pin a service to a fixed port (what firewalls want)
port = 50000

[auth]                        # see dcerpc.auth.config
ntlm_users = "/etc/dcerpc/ntlm-users"   # DOMAIN:USER:PASSWORD lines
keytab = "/etc/dcerpc/rpc.keytab"
min_auth_level = "integrity"             # none connect call packet integrity privacy
epm_min_auth_level = "none"

[auth.interfaces]
rpcecho = "privacy"

The schema (:class:`ConfigFile`) is what msgspec checks a file against: an unknown key, a value of
the wrong type or outside its choices is a :class:`ConfigError` naming the file, the key and what
was expected (``dcerpc.toml: epm_port: expected int, got str``). Values a type cannot say (a port
range, a network, a user name) are checked after, with the same naming.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import pwd
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec

from ..auth.config import LEVELS, AuthConfig, parse_level
from ..detect import DETECTORS, Rule
from ..detect import Settings as DetectSettings
from ..epm.host import HostConfig, default_socket_path
from ..policy import PolicyError
from ..policy import load as load_policy
from ..protocol.limits import Limits
from ..server.ports import DEFAULT_RANGE, parse_range

__all__ = ["DEFAULTS", "ConfigError", "ConfigFile", "Settings", "detect_settings", "keys", "load"]

Level = Literal["none", "connect", "call", "packet", "integrity", "privacy"] | int
LogLevel = Literal["debug", "info", "warning", "error"]


class _Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class ServiceFile(_Strict):
    port: int | None = None
    secure_only: bool = False  # the registration flags of server.flags (RpcServerRegisterIf3's)
    local_only: bool = False
    max_call_size: int | None = None
    max_calls: int | None = None


class AuthFile(_Strict):
    ntlm_users: str | None = None
    keytab: str | None = None
    service: str = "host"
    min_auth_level: Level = "none"
    epm_min_auth_level: Level = "none"
    interfaces: dict[str, Level] = {}


class LimitsFile(_Strict):
    """``[limits]``: protocol.limits.Limits, each field optional (left out: Limits' default)."""

    max_fragment: int | None = None
    max_call_size: int | None = None
    max_buffered: int | None = None
    max_outstanding_calls: int | None = None
    max_contexts: int | None = None
    idle_timeout: float | None = None
    bind_timeout: float | None = None
    pdu_timeout: float | None = None
    write_timeout: float | None = None
    max_connections: int | None = None
    max_connections_per_source: int | None = None
    max_context_handles: int | None = None
    handshake_rate: float | None = None
    handshake_burst: int | None = None
    control_rate: float | None = None
    control_burst: int | None = None
    control_octets: int | None = None
    pdus_per_turn: int | None = None


class AuditFile(_Strict):
    """``[audit]``: where audit events go (read by cli/observe.py; docs/audit.md)."""

    file: str | None = None
    stdout: bool = False
    syslog: str | None = None
    syslog_facility: str = "authpriv"
    queue: int = 65536


class DetectorFile(_Strict):
    """``[detect.NAME]``: one detector's rule (docs/detection.md); left out: its default."""

    threshold: int | None = None
    window: float | None = None
    enabled: bool | None = None


class DetectFile(_Strict):
    """``[detect]``: the detectors (detect/config.py's Settings; docs/detection.md)."""

    enabled: bool = False  # inline, in dcerpc run / serve (dcerpc monitor runs them unless --no-detect)
    max_sources: int = 10_000
    local_networks: list[str] | None = None
    rpc_ports: list[int] | None = None
    dynamic_ports: str | None = None
    map_threshold: int | None = None
    huge_max_ents: int | None = None
    max_name: int | None = None
    max_fragments: int | None = None
    small_fragment: int | None = None
    max_alloc_hint: int | None = None
    max_call_octets: int | None = None
    epm_enumeration: DetectorFile | None = None
    mgmt_probe: DetectorFile | None = None
    interface_brute_force: DetectorFile | None = None
    opnum_sweep: DetectorFile | None = None
    version_sweep: DetectorFile | None = None
    unmapped_dynamic_port: DetectorFile | None = None
    port_scan: DetectorFile | None = None
    auth_spraying: DetectorFile | None = None
    malformed_pdus: DetectorFile | None = None
    blaster_activation: DetectorFile | None = None
    fragment_overflow: DetectorFile | None = None
    service_creation: DetectorFile | None = None
    task_registration: DetectorFile | None = None
    zerologon: DetectorFile | None = None


class ConfigFile(_Strict):
    """Every key the file may hold, with its type and default (docs/configuration.md)."""

    host: str = "127.0.0.1"
    epm_port: int = 135
    ports: str = str(DEFAULT_RANGE)
    socket: str | None = None  # None: default_socket_path()
    register_users: list[str | int] | None = None  # None: root and the mapper's own user
    epm_allow_insert: str | list[str] = []
    log_level: LogLevel = "info"
    drain_seconds: float = 10.0
    policy: str | None = None
    max_memory: int = 0
    services: dict[str, ServiceFile] = {}
    auth: AuthFile = msgspec.field(default_factory=AuthFile)
    limits: LimitsFile = msgspec.field(default_factory=LimitsFile)
    metrics: str | None = None  # HOST:PORT of the Prometheus exposition (cli/observe.py)
    audit: AuditFile = msgspec.field(default_factory=AuditFile)
    detect: DetectFile = msgspec.field(default_factory=DetectFile)


DEFAULTS = ConfigFile()
_AUTH_KEYS = frozenset(f.name for f in msgspec.structs.fields(AuthFile))


def keys() -> list[str]:
    """Every key as docs/configuration.md spells it (``auth.min_auth_level``, ``services.NAME.port``)."""
    out = []
    for f in msgspec.structs.fields(ConfigFile):
        if f.name == "auth":
            out += [f"auth.{a}" for a in sorted(_AUTH_KEYS)]
        elif f.name == "limits":
            out += [f"limits.{x.name}" for x in msgspec.structs.fields(LimitsFile)]
        elif f.name == "audit":
            out += [f"audit.{x.name}" for x in msgspec.structs.fields(AuditFile)]
        elif f.name == "detect":
            out += [f"detect.{x.name}" for x in msgspec.structs.fields(DetectFile) if x.name not in DETECTORS]
            out += [f"detect.NAME.{r.name}" for r in msgspec.structs.fields(DetectorFile)]
        elif f.name == "services":
            out += [f"services.NAME.{s.name}" for s in msgspec.structs.fields(ServiceFile)]
        else:
            out.append(f.name)
    return out


class ConfigError(ValueError):
    """A setting that is wrong: the file (or the flag), the key, what was expected."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source, self.key, self.problem = source, key, problem
        super().__init__(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")


@dataclass
class Settings:
    host: HostConfig = field(default_factory=HostConfig)
    log_level: str = "info"
    pinned: dict[str, int] = field(default_factory=dict)  # service name -> port
    drain_seconds: float = 10.0
    path: str | None = None  # the file they came from
    sources: dict[str, str] = field(default_factory=dict)  # key -> "default" / the file / "flag"
    # service name -> its registration flags (Server.restrict's keywords), where any is set
    restricted: dict[str, dict[str, Any]] = field(default_factory=dict)
    detect: DetectSettings | None = None  # [detect], when enabled (inline detection in run / serve)

    def flat(self) -> dict[str, Any]:
        """The effective settings, keyed as in the file (``config check`` prints them)."""
        h, a = self.host, self.host.auth
        out: dict[str, Any] = {
            "host": h.host,
            "epm_port": h.epm_port,
            "ports": str(h.ports),
            "socket": h.socket,
            "register_users": sorted(h.register_uids if h.register_uids is not None else {0, os.getuid()}),
            "epm_allow_insert": list(h.epm_allow_insert),
            "log_level": self.log_level,
            "drain_seconds": self.drain_seconds,
            "policy": h.policy.source if h.policy is not None else None,
            "max_memory": h.max_memory,
            "auth.ntlm_users": a.ntlm_users,
            "auth.keytab": a.keytab,
            "auth.service": a.service,
            "auth.min_auth_level": LEVELS[a.min_auth_level - 1],
            "auth.epm_min_auth_level": LEVELS[a.epm_min_auth_level - 1],
        }
        out |= {f"auth.interfaces.{k}": LEVELS[v - 1] for k, v in a.interfaces.items()}
        out |= {
            f"limits.{f.name}": getattr(h.limits, f.name)
            for f in dataclasses.fields(h.limits)
            if f.name != "ndr"
        }
        out |= {f"services.{k}.port": v for k, v in self.pinned.items()}
        out |= {f"services.{k}.{f}": v for k, flags in self.restricted.items() for f, v in flags.items()}
        out["detect.enabled"] = self.detect is not None
        if self.detect is not None:
            for name, rule in self.detect.rules.items():
                out |= {f"detect.{name}.threshold": rule.threshold, f"detect.{name}.window": rule.window,
                        f"detect.{name}.enabled": rule.enabled}  # fmt: skip
        return out


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$\.?(?P<at>[^`]*)`)?$", re.DOTALL)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]*)`$")


def _entry(data: dict[str, Any], at: str) -> str:
    """The name of the table entry msgspec writes as ``[...]`` (services.NAME, auth.interfaces.NAME)."""
    table, schema = (
        (data.get("services"), ServiceFile) if at.startswith("services") else
        ((data.get("auth") or {}).get("interfaces"), Level)
    )  # fmt: skip
    for name, value in (table or {}).items() if isinstance(table, dict) else ():
        try:
            msgspec.convert(value, schema)
        except msgspec.ValidationError:
            return str(name)
    return "*"


def _explain(source: str, e: msgspec.ValidationError, data: dict[str, Any]) -> ConfigError:
    m = _AT.match(str(e))
    msg, at = (m.group("msg"), m.group("at") or "") if m else (str(e), "")
    if "[...]" in at:
        at = at.replace("[...]", "." + _entry(data, at), 1)
    unknown = _UNKNOWN.match(msg)
    if unknown:
        key = f"{at}.{unknown.group('name')}" if at else unknown.group("name")
        return ConfigError(source, key, "unknown key (docs/configuration.md lists them)")
    msg = msg.replace("`", "")
    if msg.startswith("Invalid enum value"):
        choices = (
            LEVELS if "level" in at and not at.startswith("log") else ("debug", "info", "warning", "error")
        )
        msg = f"{msg[len('Invalid enum value ') :]} is not one of {', '.join(choices)}"
    return ConfigError(source, at, msg[:1].lower() + msg[1:])


def read(path: str) -> ConfigFile:
    """The file checked against the schema.

    Raises:
        ConfigError: unreadable, not TOML, or not the schema (naming the file and key).
    """
    try:
        with Path(path).open("rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(path, "", f"cannot read it: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, "", f"not valid TOML: {e}") from None
    try:
        return msgspec.convert(data, ConfigFile)
    except msgspec.ValidationError as e:
        raise _explain(path, e, data) from None


def _uid(source: str, who: str | int) -> int:
    if isinstance(who, int):
        return who
    if who.isdigit():
        return int(who)
    try:
        return pwd.getpwnam(who).pw_uid
    except KeyError:
        raise ConfigError(source, "register_users", f"no local user {who!r}") from None


def load(path: str | None, **flags: Any) -> Settings:
    """Settings from the file (if any), then the flags that were given (None or (): not given).

    Raises:
        ConfigError: (a ValueError) unknown keys or bad values, naming the file and key.
    """
    cfg = read(path) if path else ConfigFile()
    source = path or "defaults"
    sources: dict[str, str] = {}
    given = msgspec.structs.asdict(cfg) if path else {}
    auth_given = msgspec.structs.asdict(cfg.auth) if path else {}
    for f in msgspec.structs.fields(ConfigFile):
        if f.name not in ("auth", "services", "limits", "audit", "detect"):
            sources[f.name] = path if path and given[f.name] != getattr(DEFAULTS, f.name) else "default"
    for a in _AUTH_KEYS:
        sources[f"auth.{a}"] = path if path and auth_given[a] != getattr(DEFAULTS.auth, a) else "default"
    auth_changes: dict[str, Any] = {}
    top_changes: dict[str, Any] = {}
    for key, value in flags.items():
        if value is None or value == ():
            continue
        if key in _AUTH_KEYS:
            auth_changes[key] = value
            sources[f"auth.{key}"] = "flag"
        else:
            top_changes[key] = list(value) if isinstance(value, tuple) else value
            sources[key] = "flag"
    try:
        auth = msgspec.structs.replace(cfg.auth, **auth_changes)
        cfg = msgspec.structs.replace(cfg, auth=auth, **top_changes)
        cfg = msgspec.convert(msgspec.to_builtins(cfg), ConfigFile)  # flags checked as the file is
    except (TypeError, msgspec.ValidationError) as e:
        raise ConfigError("flags", "", str(e)) from None
    return _settings(cfg, source, path, sources)


def _settings(cfg: ConfigFile, source: str, path: str | None, sources: dict[str, str]) -> Settings:
    def level(key: str, value: str | int) -> int:
        try:
            return parse_level(value)
        except ValueError as e:
            raise ConfigError(source, key, str(e)) from None

    try:
        ports = parse_range(cfg.ports)
    except ValueError as e:
        raise ConfigError(source, "ports", str(e)) from None
    allow = [cfg.epm_allow_insert] if isinstance(cfg.epm_allow_insert, str) else cfg.epm_allow_insert
    for net in allow:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError as e:
            raise ConfigError(source, "epm_allow_insert", str(e)) from None
    for what, port in [("epm_port", cfg.epm_port)] + [
        (f"services.{n}.port", s.port) for n, s in cfg.services.items() if s.port is not None
    ]:
        if not 0 <= port <= 65535:
            raise ConfigError(source, what, f"{port} is not a TCP port (0-65535)")
    if cfg.drain_seconds < 0:
        raise ConfigError(source, "drain_seconds", "must not be negative")
    if cfg.max_memory < 0:
        raise ConfigError(source, "max_memory", "must not be negative (0: a quarter of physical memory)")
    policy = None
    if cfg.policy:
        try:
            policy = load_policy(cfg.policy)
        except PolicyError as e:
            raise ConfigError(source, "policy", str(e)) from None
    given_limits = {k: v for k, v in msgspec.structs.asdict(cfg.limits).items() if v is not None}
    try:
        limits = Limits(**given_limits)
    except (ValueError, TypeError) as e:  # Limits' messages begin with the field's name
        first = str(e).split()[0] if str(e) else ""
        key = f"limits.{first}" if first in given_limits else "limits"
        raise ConfigError(source, key, str(e)) from None
    a = cfg.auth
    host = HostConfig(
        host=cfg.host,
        epm_port=cfg.epm_port,
        ports=ports,
        socket=cfg.socket or default_socket_path(),
        epm_allow_insert=list(allow),
        register_uids=None if cfg.register_users is None else {_uid(source, u) for u in cfg.register_users},
        policy=policy,
        max_memory=cfg.max_memory,
        limits=limits,
        auth=AuthConfig(
            ntlm_users=a.ntlm_users,
            keytab=a.keytab,
            service=a.service,
            min_auth_level=level("auth.min_auth_level", a.min_auth_level),
            epm_min_auth_level=level("auth.epm_min_auth_level", a.epm_min_auth_level),
            interfaces={k: level(f"auth.interfaces.{k}", v) for k, v in a.interfaces.items()},
        ),
    )
    pinned = {name: s.port for name, s in cfg.services.items() if s.port is not None}
    restricted: dict[str, dict[str, Any]] = {}
    for name, svc in cfg.services.items():
        flags = {f: getattr(svc, f) for f in ("secure_only", "local_only", "max_call_size", "max_calls")}
        for f in ("max_call_size", "max_calls"):
            if flags[f] is not None and flags[f] < 1:
                raise ConfigError(
                    source, f"services.{name}.{f}", "must be at least 1 (leave it out: no limit)"
                )
        if any(v not in (None, False) for v in flags.values()):
            restricted[name] = flags
    detect = detect_settings(cfg.detect, source)  # checked even when off: config check names a bad key
    return Settings(
        host, cfg.log_level, pinned, cfg.drain_seconds, path, sources, restricted,
        detect if cfg.detect.enabled else None,
    )  # fmt: skip


def detect_settings(cfg: DetectFile, source: str) -> DetectSettings:
    """The detectors' settings of a ``[detect]`` section (each value checked, naming its key).

    Raises:
        ConfigError: a threshold below 1, a window not above 0, a network or port range unread.
    """
    rules: dict[str, Rule] = {}
    for name, (default, _) in DETECTORS.items():
        given: DetectorFile | None = getattr(cfg, name)
        if given is None:
            continue
        rule = Rule(
            given.threshold if given.threshold is not None else default.threshold,
            given.window if given.window is not None else default.window,
            given.enabled if given.enabled is not None else default.enabled,
        )
        if not 1 <= rule.threshold <= 100_000:
            raise ConfigError(source, f"detect.{name}.threshold", "must be 1 to 100000")
        if not rule.window > 0:
            raise ConfigError(source, f"detect.{name}.window", "must be above 0 (seconds)")
        rules[name] = rule
    extra: dict[str, Any] = {}
    if not 1 <= cfg.max_sources <= 10_000_000:
        raise ConfigError(source, "detect.max_sources", "must be 1 to 10000000")
    extra["max_sources"] = cfg.max_sources
    if cfg.local_networks is not None:
        for net in cfg.local_networks:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as e:
                raise ConfigError(source, "detect.local_networks", str(e)) from None
        extra["local_networks"] = tuple(cfg.local_networks)
    if cfg.rpc_ports is not None:
        if any(not 0 < p <= 65535 for p in cfg.rpc_ports):
            raise ConfigError(source, "detect.rpc_ports", "ports are 1-65535")
        extra["rpc_ports"] = frozenset(cfg.rpc_ports)
    if cfg.dynamic_ports is not None:
        try:
            r = parse_range(cfg.dynamic_ports)
        except ValueError as e:
            raise ConfigError(source, "detect.dynamic_ports", str(e)) from None
        extra["dynamic_ports"] = (r.low, r.high)
    numbers = (
        "map_threshold", "huge_max_ents", "max_name", "max_fragments", "small_fragment", "max_alloc_hint",
        "max_call_octets",
    )  # fmt: skip
    for key in numbers:
        value = getattr(cfg, key)
        if value is not None:
            if value < 1:
                raise ConfigError(source, f"detect.{key}", "must be at least 1")
            extra[key] = value
    return DetectSettings.of(rules, **extra)
