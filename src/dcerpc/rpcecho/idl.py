"""The rpcecho contract, as declared by Samba's librpc/idl/echo.idl (uuid 60a15ec5-..., v1.0).

Opnums: 0 AddOne, 1 EchoData, 2 SinkData, 3 SourceData, 4 TestCall, 5 TestCall2, 6 TestSleep,
7 TestEnum, 8 TestSurrounding, 9 TestDoublePointer. ``pointer_default(unique)``: pointers below the
top level are unique unless marked.
"""

from __future__ import annotations

from typing import Annotated, NamedTuple

from ..interface import Interface, operation
from ..ndr import (
    NTSTATUS,
    Case,
    Enum16,
    Enum32,
    SizeIs,
    Struct,
    SwitchIs,
    Union,
    Unique,
    WString,
    hyper,
    uint8,
    uint16,
    uint32,
)


class echo_info1(Struct):
    v: uint8


class echo_info2(Struct):
    v: uint16


class echo_info3(Struct):
    v: uint32


class echo_info4(Struct):
    v: hyper


class echo_info5(Struct):
    v1: uint8
    v2: hyper


class echo_info6(Struct):
    v1: uint8
    info1: echo_info1


class echo_info7(Struct):
    v1: uint8
    info4: echo_info4


class echo_Info(Union, switch_type=uint16):
    info1: Annotated[echo_info1, Case(1)]
    info2: Annotated[echo_info2, Case(2)]
    info3: Annotated[echo_info3, Case(3)]
    info4: Annotated[echo_info4, Case(4)]
    info5: Annotated[echo_info5, Case(5)]
    info6: Annotated[echo_info6, Case(6)]
    info7: Annotated[echo_info7, Case(7)]


class echo_Enum1(Enum16):
    ECHO_ENUM1 = 1
    ECHO_ENUM2 = 2


class echo_Enum1_32(Enum32):  # [v1_enum]
    ECHO_ENUM1_32 = 1
    ECHO_ENUM2_32 = 2


ECHO_ENUM1 = echo_Enum1.ECHO_ENUM1
ECHO_ENUM2 = echo_Enum1.ECHO_ENUM2
ECHO_ENUM1_32 = echo_Enum1_32.ECHO_ENUM1_32
ECHO_ENUM2_32 = echo_Enum1_32.ECHO_ENUM2_32


class echo_Enum2(Struct):
    e1: echo_Enum1
    e2: echo_Enum1_32


class echo_Enum3(Union, switch_type=uint16):
    e1: Annotated[echo_Enum1, Case(1)]
    e2: Annotated[echo_Enum2, Case(2)]


class echo_Surrounding(Struct):
    x: uint32
    surrounding: Annotated[list[uint16], SizeIs("x")]


class TestEnumResult(NamedTuple):
    foo1: echo_Enum1
    foo2: echo_Enum2
    foo3: Annotated[echo_Enum3, SwitchIs("foo1")]


class Echo(Interface, uuid="60a15ec5-4de8-11d7-a637-005056a20182", version=(1, 0), name="rpcecho"):
    """Samba's echo test interface."""

    @operation(0)
    async def AddOne(self, in_data: uint32) -> uint32:
        """Return ``in_data + 1`` (modulo 2**32)."""
        raise NotImplementedError

    @operation(1)
    async def EchoData(
        self, len: uint32, in_data: Annotated[bytes, SizeIs("len")]
    ) -> Annotated[bytes, SizeIs("len")]:
        """Return the same octets."""
        raise NotImplementedError

    @operation(2)
    async def SinkData(self, len: uint32, data: Annotated[bytes, SizeIs("len")]) -> None:
        """Accept and discard ``len`` octets."""
        raise NotImplementedError

    @operation(3)
    async def SourceData(self, len: uint32) -> Annotated[bytes, SizeIs("len")]:
        """Return ``len`` octets, octet i being ``i & 0xff``."""
        raise NotImplementedError

    @operation(4)
    async def TestCall(self, s1: WString) -> Unique[WString]:
        """Return the string (``[out] uint16 **s2``: a unique pointer to a string)."""
        raise NotImplementedError

    @operation(5)
    async def TestCall2(self, level: uint16) -> _TestCall2Result:
        """Return the info structure of the given level, and a status."""
        raise NotImplementedError

    @operation(6)
    async def TestSleep(self, seconds: uint32) -> uint32:
        """Sleep, then return ``seconds``; other calls proceed meanwhile."""
        raise NotImplementedError

    @operation(7)
    async def TestEnum(
        self, foo1: echo_Enum1, foo2: echo_Enum2, foo3: Annotated[echo_Enum3, SwitchIs("foo1")]
    ) -> TestEnumResult:
        """The enums back (the reference server sets ``foo2.e1`` to 2)."""
        raise NotImplementedError

    @operation(8)
    async def TestSurrounding(self, data: echo_Surrounding) -> echo_Surrounding:
        """The structure with ``x`` doubled and as many zero entries."""
        raise NotImplementedError

    @operation(9)
    async def TestDoublePointer(self, data: Unique[Unique[uint16]]) -> uint16:
        """``***data`` (0 where a pointer is NULL)."""
        raise NotImplementedError


class _TestCall2Result(NamedTuple):
    info: Annotated[echo_Info, SwitchIs("level")]
    result: NTSTATUS
