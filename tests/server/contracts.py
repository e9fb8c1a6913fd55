"""Interfaces for testing what implementations do wrong (``dcerpc serve tests.server.contracts:Calc``)."""

from __future__ import annotations

from typing import Annotated, Any, NamedTuple

from dcerpc import FaultError, Interface, operation
from dcerpc.ndr import SizeIs, Struct, Unique, WString, uint32


class Item(Struct):
    id: uint32
    name: Unique[WString]


class Bag(Struct):
    n: uint32
    items: Unique[Annotated[list[Item], SizeIs("n")]]


class GetResult(NamedTuple):
    bag: Bag
    status: uint32


class Calc(Interface, uuid="6d6f636b-0000-4000-8000-00000000ca1c", version=(1, 0), name="calc"):
    @operation(0)
    async def Add(self, a: uint32, b: uint32) -> uint32: ...

    @operation(1)
    async def Store(self, s: Bag) -> None: ...

    @operation(2)
    async def Get(self, n: uint32) -> GetResult: ...

    @operation(3)
    async def Reset(self) -> None: ...


class CalcServer(Calc):
    """Adds, except that 13 + anything returns a str; Store faults with a message."""

    async def Add(self, a: int, b: int) -> Any:
        return "thirteen" if a == 13 else (a + b) & 0xFFFFFFFF

    async def Store(self, s: Bag) -> None:
        raise FaultError(5, "nope")

    async def Get(self, n: int) -> Any:
        items = [Item(i, f"item {i}") for i in range(n)]
        if n > 1:
            items[1] = Item("one", None)  # type: ignore[arg-type]  (the mistake under test)
        return GetResult(Bag(n, items), 0)

    async def Reset(self) -> None:
        raise NotImplementedError  # not served on purpose: nca_s_op_rng_error


class HalfCalc(Calc):
    """Implements Add alone: Store, Get and Reset are left to the contract's placeholders."""

    async def Add(self, a: int, b: int) -> int:
        return a + b
