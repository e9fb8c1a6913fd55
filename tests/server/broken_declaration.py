"""A module whose declaration breaks a rule: importing it raises DeclarationError (for the CLI test)."""

from __future__ import annotations

from typing import Annotated

from dcerpc import Interface, operation
from dcerpc.ndr import SizeIs, uint32


class Broken(Interface, uuid="6d6f636b-0000-4000-8000-00000000b0e1", version=(1, 0)):
    @operation(0)
    async def Send(self, length: uint32, data: Annotated[bytes, SizeIs("len")]) -> None: ...


class BrokenServer(Broken):
    async def Send(self, length: int, data: bytes) -> None:
        return None
