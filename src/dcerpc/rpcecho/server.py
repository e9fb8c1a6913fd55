"""rpcecho served as Samba's reference server answers it (source4/rpc_server/echo)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from .._errors import FaultError
from ..ndr import NTSTATUS
from ..pdu.constants import RPC_S_OUT_OF_RESOURCES, RPC_X_BAD_STUB_DATA
from ..protocol.limits import Limits
from ..server.context import current_call
from .idl import (
    ECHO_ENUM2,
    Echo,
    TestEnumResult,
    _TestCall2Result,
    echo_Enum1,
    echo_Enum2,
    echo_Enum3,
    echo_Info,
    echo_info1,
    echo_info2,
    echo_info3,
    echo_info4,
    echo_info5,
    echo_info6,
    echo_info7,
    echo_Surrounding,
)

__all__ = ["EchoServer"]

_PATTERN = bytes(range(256))  # what SourceData sends, over and over (as Samba's server does)


def _limits() -> Limits:
    """The serving server's Limits (the defaults when the method is called directly, outside a
    server)."""
    try:
        return current_call().limits
    except LookupError:
        return Limits()


_LEVELS: dict[int, Callable[[], object]] = {
    1: lambda: echo_info1(10),
    2: lambda: echo_info2(20),
    3: lambda: echo_info3(30),
    4: lambda: echo_info4(40),
    5: lambda: echo_info5(50, 60),
    6: lambda: echo_info6(70, echo_info1(80)),
    7: lambda: echo_info7(80, echo_info4(90)),
}


class EchoServer(Echo):
    """The rpcecho implementation (all ten operations)."""

    async def AddOne(self, in_data: int) -> int:
        return (in_data + 1) & 0xFFFFFFFF

    async def EchoData(self, len: int, in_data: bytes) -> bytes:
        return in_data

    async def SinkData(self, len: int, data: bytes) -> None:
        return None

    async def SourceData(self, len: int) -> bytes:
        # A 28-octet request may ask for 4 GiB: refused before anything is made when no answer
        # that long may be sent (Limits.max_call_size), and made once (a view of the pattern
        # repeated, not a slice of it copied again).
        limit = _limits().max_call_size
        if len > limit:
            raise FaultError(
                RPC_S_OUT_OF_RESOURCES, f"SourceData of {len} octets asked, at most {limit} served"
            )
        # the encoder takes any buffer of the right length: a view, not a copy
        return cast(bytes, memoryview(_PATTERN * (len // 256 + 1))[:len])

    async def TestCall(self, s1: str) -> str | None:
        return s1

    async def TestCall2(self, level: int) -> _TestCall2Result:
        make = _LEVELS.get(level)
        if make is None:
            # The union has no arm for other levels, so no [out] can be encoded (Samba faults too).
            raise FaultError(RPC_X_BAD_STUB_DATA, f"TestCall2 level {level} is not defined")
        return _TestCall2Result(echo_Info(level, make()), NTSTATUS(0))

    async def TestSleep(self, seconds: int) -> int:
        # A running call keeps its connection from the idle deadline (Limits.idle_timeout), so a
        # caller asking to sleep 0xFFFFFFFF seconds (smbtorture rpc.scanner's 0xFF stub does) would
        # hold a connection slot for 136 years: a sleep longer than a quiet connection may last is
        # refused at once, as SourceData refuses an answer longer than may be sent (0: connections
        # may be quiet for ever, so a sleep takes nothing more).
        limit = _limits().idle_timeout
        if limit and seconds > limit:
            raise FaultError(
                RPC_S_OUT_OF_RESOURCES, f"TestSleep of {seconds} s asked, at most {limit:g} s served"
            )
        await asyncio.sleep(seconds)
        return seconds

    async def TestEnum(self, foo1: echo_Enum1, foo2: echo_Enum2, foo3: echo_Enum3) -> TestEnumResult:
        foo2 = echo_Enum2(ECHO_ENUM2, foo2.e2)
        return TestEnumResult(foo1, foo2, foo3)

    async def TestSurrounding(self, data: echo_Surrounding) -> echo_Surrounding:
        x = data.x * 2
        return echo_Surrounding(x, [0] * x)

    async def TestDoublePointer(self, data: int | None) -> int:
        return data or 0
