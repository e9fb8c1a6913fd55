"""Our client and Server in memory (connect_in_memory): the whole stack but the socket."""

from __future__ import annotations

import asyncio

from dcerpc import Interface, Server, current_call, operation
from dcerpc.ndr import uint32
from dcerpc.rpcecho import Echo
from dcerpc.rpcecho.server import EchoServer
from dcerpc.testing import connect_in_memory
from tests.protocol.toy_auth import ToyCredentials, ToyProvider


class Who(Interface, uuid="a4b1c2d3-0000-4000-8000-00000000beef", version=(1, 0)):
    @operation(0)
    async def Port(self) -> uint32: ...

    @operation(1)
    async def Level(self) -> uint32: ...


class WhoServer(Who):
    async def Port(self) -> int:
        return int(current_call().peer[1])

    async def Level(self) -> int:
        return current_call().auth_level


def test_calls_concurrent_and_long_then_both_ends_closed() -> None:
    async def main() -> None:
        server = Server(EchoServer())
        async with connect_in_memory(server) as conn:
            echo = await conn.bind(Echo)
            assert await asyncio.gather(*(echo.AddOne(i) for i in range(200))) == [i + 1 for i in range(200)]
            data = bytes(range(256)) * 8192  # 2 MiB each way: many fragments, writes paused and resumed
            assert await echo.EchoData(len(data), data) == data
            assert len(server._connections) == 1
        assert not server._connections  # the server saw the connection go

    asyncio.run(main())


def test_the_server_sees_the_addresses_given() -> None:
    async def main() -> int:
        async with connect_in_memory(Server(WhoServer()), client_address=("192.0.2.7", 40001)) as conn:
            return await (await conn.bind(Who)).Port()

    assert asyncio.run(main()) == 40001


def test_authenticated_and_sealed() -> None:
    async def main() -> int:
        server = Server(WhoServer(), security=[ToyProvider({"alice": "secret"})])
        async with connect_in_memory(server, auth=ToyCredentials("alice", "secret"), level="privacy") as conn:
            return await (await conn.bind(Who)).Level()

    assert asyncio.run(main()) == 6
