"""What the commands print: rich tables for people, whole lines for pipes, JSON for scripts.

- On a terminal, rich fits tables to its width. Into a pipe or a file, nothing is cut: the console
  is as wide as the longest line (rich would otherwise assume 80 columns and fold UUIDs and
  bindings), so ``dcerpc dump HOST | grep`` sees each endpoint whole.
- With ``--json`` every outcome is one JSON document on stdout, failures included
  (``{"ok": false, "error": "...", "kind": "..."}``, exit status 1, or 2 for a usage error):
  :class:`Cli` (the command group) turns any :class:`click.ClickException` into one when ``--json``
  is among the arguments.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["Cli", "Failure", "cells", "console", "emit_json", "err_console", "table"]

_WIDE = 1 << 16  # "as wide as needed": rich lays out no wider than its content unless told to expand


def console() -> Console:
    """A console on stdout: the terminal's width on a terminal, unlimited otherwise."""
    return Console(width=None if sys.stdout.isatty() else _WIDE, soft_wrap=not sys.stdout.isatty())


def err_console() -> Console:
    return Console(stderr=True, width=None if sys.stderr.isatty() else _WIDE)


class Failure(click.ClickException):
    """A command that could not do what was asked (exit status 1); ``kind`` names the cause for --json."""

    def __init__(self, message: str, kind: str = "error", **details: Any) -> None:
        super().__init__(message)
        self.kind = kind
        self.details = details


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def cells(*values: object) -> list[Text]:
    """Table cells shown as they are: bindings like ncalrpc:[/path] are not markup."""
    return [Text("" if v is None else str(v)) for v in values]


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> Table:
    t = Table(title=title)
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*cells(*row))
    return t


def _error_document(e: click.ClickException) -> dict[str, Any]:
    if isinstance(e, Failure):
        return {"ok": False, "error": e.format_message(), "kind": e.kind, **e.details}
    kind = "usage" if isinstance(e, click.UsageError) else "error"
    return {"ok": False, "error": e.format_message(), "kind": kind}


class Cli(click.Group):
    """The ``dcerpc`` group: with ``--json`` anywhere in the arguments, failures are JSON too."""

    def main(self, args: Sequence[str] | None = None, *a: Any, **kw: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if "--json" not in argv:
            return super().main(argv, *a, **kw)
        kw["standalone_mode"] = False
        try:
            code = super().main(argv, *a, **kw)
        except click.ClickException as e:
            emit_json(_error_document(e))
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            emit_json({"ok": False, "error": "aborted", "kind": "aborted"})
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)
