"""``dcerpc config check``: the effective settings (defaults, the file, the flags) and where each came
from, or the first wrong setting named by file, key and what was expected (exit status 2)."""

from __future__ import annotations

from typing import Any

import click

from .options import host_options, settings
from .output import console, emit_json, table

__all__ = ["config"]


@click.group()
def config() -> None:
    """The configuration file (docs/configuration.md)."""


@config.command()
@host_options
def check(config: str | None, as_json: bool, **flags: Any) -> None:
    """Check the settings and print the effective ones, with where each came from."""
    s = settings(config, **flags)
    flat = s.flat()
    if as_json:
        emit_json({"ok": True, "file": config, "settings": flat, "sources": s.sources})
        return
    rows = []
    for key, value in flat.items():
        source = s.sources.get(key, config or "default")  # services.* and auth.interfaces.*: the file
        shown = ", ".join(map(str, value)) if isinstance(value, list) else ("" if value is None else value)
        rows.append([key, shown, source])
    console().print(
        table(f"settings ({config or 'no file: defaults and flags'})", ["Key", "Value", "From"], rows)
    )
