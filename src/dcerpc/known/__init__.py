"""Names of well-known RPC interfaces and their operations, for listings (``dcerpc dump``), logs
and the capture monitor (``dcerpc monitor``).

The facts live in :mod:`.table` (one text table, parsed once at import); this module gives the
lookups: :func:`interface_name` (UUID -> display name), :func:`operation_name` (UUID, opnum ->
operation name) and :data:`KNOWN` (UUID -> :class:`KnownInterface`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final

from .table import TABLE

__all__ = ["KNOWN", "KNOWN_INTERFACES", "KnownInterface", "interface_name", "operation_name"]


@dataclass(frozen=True, slots=True)
class KnownInterface:
    """One interface of the table: its short name, UUID, version, a title and its operations."""

    name: str
    uuid: uuid.UUID
    version: tuple[int, int]
    title: str
    operations: tuple[str, ...]  # by opnum; "" where the opnum has no known name

    @property
    def display(self) -> str:
        """``svcctl (service control manager)``, or the bare name when there is no title."""
        return f"{self.name} ({self.title})" if self.title else self.name

    def operation(self, opnum: int) -> str:
        """The operation's name ("" when unknown)."""
        return self.operations[opnum] if 0 <= opnum < len(self.operations) else ""


def _parse(text: str) -> dict[uuid.UUID, KnownInterface]:
    known: dict[uuid.UUID, KnownInterface] = {}
    head: list[str] = []
    ops: list[str] = []

    def close() -> None:
        if head:
            name, u, version, *title = head
            major, minor = version.split(".")
            iface = KnownInterface(name, uuid.UUID(u), (int(major), int(minor)), " ".join(title), tuple(ops))
            known[iface.uuid] = iface

    for line in text.splitlines():
        if not line.strip():
            continue
        if line[0].isspace():
            ops.extend("" if w == "-" else w for w in line.split())
            continue
        close()
        head, ops = line.split(), []
    close()
    return known


KNOWN: Final[dict[uuid.UUID, KnownInterface]] = _parse(TABLE)
KNOWN_INTERFACES: Final[dict[uuid.UUID, str]] = {u: i.display for u, i in KNOWN.items()}


def interface_name(u: uuid.UUID) -> str:
    """The conventional name of an interface UUID ("" when unknown)."""
    return KNOWN_INTERFACES.get(u, "")


def operation_name(u: uuid.UUID, opnum: int) -> str:
    """The name of operation ``opnum`` of interface ``u`` ("" when either is unknown)."""
    iface = KNOWN.get(u)
    return iface.operation(opnum) if iface is not None else ""
