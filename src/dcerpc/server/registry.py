"""Which interfaces a server serves, and which of them a proposed abstract syntax binds to."""

from __future__ import annotations

import uuid

from ..interface import Interface
from ..pdu.syntax import SyntaxId

__all__ = ["Registry"]


class Registry:
    """Implementations by interface UUID and major version."""

    def __init__(self) -> None:
        self._impls: dict[tuple[uuid.UUID, int], Interface] = {}

    def add(self, impl: Interface) -> None:
        """Serve ``impl`` (an instance of a subclass of an interface declaration)."""
        syntax = type(impl).__syntax__
        key = (syntax.uuid, syntax.version[0])
        if key in self._impls:
            raise ValueError(f"{syntax} is already served by {type(self._impls[key]).__name__}")
        self._impls[key] = impl

    def match(self, proposed: SyntaxId) -> SyntaxId | None:
        """C706 12.6.3.1 / 6.2.4: same UUID and major version, the client's minor at most ours."""
        impl = self._impls.get((proposed.uuid, proposed.version[0]))
        if impl is None:
            return None
        ours = type(impl).__syntax__
        return ours if proposed.version[1] <= ours.version[1] else None

    def get(self, syntax: SyntaxId) -> Interface | None:
        """The implementation serving this (matched) interface."""
        return self._impls.get((syntax.uuid, syntax.version[0]))

    def interfaces(self) -> list[SyntaxId]:
        """Every served interface."""
        return [type(i).__syntax__ for i in self._impls.values()]
