"""The ``dcerpc`` command group; each command lives in the module of its concept:

hosting.py  run, epm, serve       (serving, signals, systemd socket activation)
query.py    dump, ping            (looking at a host)
call.py     call                  (one call to any declared operation)
config_cmd.py  config check       (the effective settings)

options.py holds the options they share, output.py how they print (tables, JSON, errors).
"""

from __future__ import annotations

import click

from .. import __version__
from .call import call
from .config_cmd import config
from .firewall_cmd import firewall
from .hosting import epm, run, serve
from .monitor_cmd import monitor
from .output import Cli
from .policy_cmd import policy
from .query import dump, ping

__all__ = ["main"]


@click.group(cls=Cli)
@click.version_option(__version__, prog_name="dcerpc")
def main() -> None:
    """DCE/RPC tools: endpoint mapper, servers, clients. docs/cli.md describes every command."""


for command in (run, epm, serve, dump, ping, call, config, policy, firewall, monitor):
    main.add_command(command)
