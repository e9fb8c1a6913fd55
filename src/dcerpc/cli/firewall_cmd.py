"""``dcerpc firewall``: packet-filter rules for the running configuration (``policy.firewall``):
TCP and UDP ``epm_port``, the pinned service ports and the dynamic range, open to the source
networks the policy admits. Prints nftables (default) or iptables-restore text, to apply with
``nft -f -`` or ``iptables-restore --noflush`` / ``ip6tables-restore --noflush``."""

from __future__ import annotations

from typing import Any

import click

from ..policy.firewall import Ports, describe, iptables, nftables
from .options import host_options, settings
from .output import emit_json

__all__ = ["firewall"]


@click.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["nftables", "iptables", "ip6tables"]),
    default="nftables",
    show_default=True,
    help="nft -f input, or iptables-restore / ip6tables-restore input.",
)
@click.option(
    "--pinned-only", is_flag=True, help="Every service has a pinned port: leave the dynamic range closed."
)
@host_options
def firewall(fmt: str, pinned_only: bool, config: str | None, as_json: bool, **flags: Any) -> None:
    """Print filter rules for the RPC ports, open to the sources the policy admits."""
    s = settings(config, **flags)
    h = s.host
    ports = Ports(h.epm_port, tuple(s.pinned.values()), None if pinned_only else (h.ports.low, h.ports.high))
    if as_json:
        emit_json(
            {"ok": True, "tcp": ports.tcp(), "udp": [str(ports.epm)], "rules": describe(ports, h.policy)}
        )
        return
    if fmt == "nftables":
        click.echo(nftables(ports, h.policy), nl=False)
    else:
        v4, v6 = iptables(ports, h.policy)
        click.echo(v4 if fmt == "iptables" else v6, nl=False)
