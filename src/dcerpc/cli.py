"""The ``dcerpc`` command. Subcommands arrive with the runtime and endpoint-mapper work."""

from __future__ import annotations

import click

from . import __version__


@click.group()
@click.version_option(__version__, prog_name="dcerpc")
def main() -> None:
    """DCE/RPC tools: endpoint mapper, servers, clients, and monitoring."""


if __name__ == "__main__":
    main()
