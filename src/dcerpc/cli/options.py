"""The options commands share: a host's settings (servers), credentials and the mapper's port (clients).

The endpoint mapper's port is one setting on both sides: a server takes ``--epm-port`` (or
``epm_port`` in the config file, or ``DCERPC_EPM_PORT``); a client command takes the same option,
file key and variable, and a binding may carry it itself as ``[epm_port=N]`` (what
``dcerpc.connect`` reads when it resolves an endpoint).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import click

from ..auth.base import ClientCredentials
from ..auth.config import LEVELS
from ..auth.mechs import NTLM, Kerberos, Negotiate
from ..client.binding import Binding, parse_binding
from .config import ConfigError, Settings, load

__all__ = [
    "client_auth_options",
    "credentials",
    "epm_port_option",
    "host_options",
    "mapper_binding",
    "settings",
    "with_epm_port",
]

EPM_PORT_ENV = "DCERPC_EPM_PORT"
_IS_BINDING = re.compile(r"^(?:[0-9a-fA-F-]{36}@)?[a-z_]+:")
F = Callable[..., Any]


def _apply(f: F, options: list[Callable[[F], F]]) -> F:
    for option in reversed(options):
        f = option(f)
    return f


def config_option() -> Callable[[F], F]:
    return click.option(
        "--config",
        "config",
        type=click.Path(exists=True, dir_okay=False),
        envvar="DCERPC_CONFIG",
        help="TOML settings file (docs/configuration.md); flags override it. [env: DCERPC_CONFIG]",
    )


def epm_port_option(*names: str) -> Callable[[F], F]:
    return click.option(
        *(names or ("--epm-port",)),
        "epm_port",
        type=click.IntRange(0, 65535),
        default=None,
        envvar=EPM_PORT_ENV,
        help=f"Endpoint-mapper TCP port (default 135, or the config file's epm_port). [env: {EPM_PORT_ENV}]",
    )


def json_option() -> Callable[[F], F]:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output, errors included.")


def host_options(f: F) -> F:
    """The settings of ``run``, ``epm``, ``serve`` and ``config check``."""
    return _apply(
        f,
        [
            config_option(),
            click.option(
                "--host", default=None, help="Address to listen on (default 127.0.0.1; 0.0.0.0 exposes it)."
            ),
            epm_port_option(),
            click.option("--ports", default=None, help="Dynamic port range LOW-HIGH (default 49152-65535)."),
            click.option("--socket", default=None, help="Local registration socket (ncalrpc) path."),
            click.option(
                "--epm-allow-insert",
                multiple=True,
                metavar="CIDR",
                help="Networks allowed to ept_insert / ept_delete remotely (repeatable; off by default).",
            ),
            click.option(
                "--register-user",
                "register_users",
                multiple=True,
                metavar="USER",
                help="Local user (name or uid) allowed to register over the socket (repeatable; "
                "default root and the mapper's own user).",
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
            click.option(
                "--drain-seconds",
                type=click.FloatRange(0),
                default=None,
                help="On SIGTERM, how long calls in progress may take to finish (default 10).",
            ),
            click.option(
                "--policy",
                default=None,
                metavar="FILE",
                help="Who may call what: a policy file (docs/policy.md); read again on SIGHUP.",
            ),
            click.option(
                "--max-memory",
                type=click.IntRange(0),
                default=None,
                metavar="OCTETS",
                help="What all connections may hold together (default: a quarter of physical memory).",
            ),
            click.option(
                "--log-level", default=None, type=click.Choice(["debug", "info", "warning", "error"])
            ),
            json_option(),
        ],
    )


def settings(config: str | None, **flags: Any) -> Settings:
    """The effective settings, or a usage error naming the file, key and what was expected."""
    try:
        return load(config, **flags)
    except ConfigError as e:
        raise click.UsageError(str(e)) from None


def client_auth_options(f: F) -> F:
    return _apply(
        f,
        [
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
            config_option(),
            click.option(
                "--timeout",
                type=click.FloatRange(0),
                default=10.0,
                show_default=True,
                help="Seconds for connect, bind and each call.",
            ),
            json_option(),
        ],
    )


def credentials(user: str | None, mech: str) -> ClientCredentials | None:
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


def client_epm_port(config: str | None, epm_port: int | None) -> int | None:
    """The mapper port a client command was told: the option (or its variable), else the config file's."""
    if epm_port is not None:
        return epm_port
    if config:
        return settings(config).host.epm_port
    return None


def _parse(text: str) -> Binding:
    try:
        return parse_binding(text)
    except ValueError as e:
        raise click.UsageError(str(e)) from None


def with_epm_port(target: str, epm_port: int | None) -> Binding:
    """``target`` as a binding: a bare HOST is ``ncacn_ip_tcp:HOST``; a binding resolved through a
    mapper (no endpoint) learns ``epm_port`` unless it names one itself."""
    if not _IS_BINDING.match(target):
        host = target.strip("[]")
        target = f"ncacn_ip_tcp:[{host}]" if ":" in host else f"ncacn_ip_tcp:{host}"
    b = _parse(target)
    if epm_port is not None and not b.endpoint and "epm_port" not in b.options:
        b = Binding(
            b.protseq, b.host, b.endpoint, b.object, b.flags, {**b.options, "epm_port": str(epm_port)}
        )
    return b


def mapper_binding(target: str, epm_port: int | None) -> Binding:
    """The endpoint mapper's own binding for ``target``: a HOST, or a TCP binding without an endpoint
    (at ``epm_port``, the binding's ``[epm_port=N]``, or 135)."""
    b = with_epm_port(target, epm_port)
    if b.protseq != "ncacn_ip_tcp" or b.endpoint:
        return b
    options = dict(b.options)
    port = options.pop("epm_port", "135")
    return Binding(b.protseq, b.host, port, b.object, b.flags, options)
