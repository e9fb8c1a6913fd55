"""The first listener freezes what start-up made (tuning.settle_heap): a full collection walks what
connections hold, not every module, class and codec of the process; what connections make is
still collected."""

from __future__ import annotations

import asyncio
import gc
import weakref

import dcerpc
from dcerpc import tuning
from dcerpc.rpcecho import Echo
from dcerpc.rpcecho.server import EchoServer
from dcerpc.server.server import Server, settle_heap


def _as_at_start_up() -> None:
    """The process as before its first listener (another test's listener, or mypy's in-process
    run, which unfreezes at its end, may have come first)."""
    tuning._SETTLED.clear()
    gc.unfreeze()


class _Marker:
    """An object in a reference cycle of its own: only a collection frees it."""

    def __init__(self) -> None:
        self.me = self


def test_a_listening_server_has_frozen_what_start_up_made() -> None:
    _as_at_start_up()
    assert gc.get_freeze_count() == 0

    async def main() -> None:
        server = Server(EchoServer())
        await server.listen_tcp("127.0.0.1", 0)
        try:
            # every module, class and compiled codec is in the permanent generation: a full
            # collection walks fewer objects than there are frozen
            assert gc.get_freeze_count() > 10_000
            assert len(gc.get_objects(generation=2)) < gc.get_freeze_count()
            assert not settle_heap()  # once per process
        finally:
            await server.close()

    asyncio.run(main())


def test_what_connections_make_is_still_collected() -> None:
    _as_at_start_up()

    async def main() -> None:
        server = Server(EchoServer())
        host, port = await server.listen_tcp("127.0.0.1", 0)
        try:
            assert gc.get_freeze_count() > 0
            async with await dcerpc.connect(f"ncacn_ip_tcp:{host}[{port}]") as conn:
                echo = await conn.bind(Echo)
                assert await echo.AddOne(1) == 2
                (dispatcher,) = server._connections
                assert dispatcher.assoc.alive  # read only
                ref = weakref.ref(dispatcher)
                del dispatcher
            for _ in range(100):
                if not server.open_connections:
                    break
                await asyncio.sleep(0.01)
            cycle = _Marker()
            cyclic = weakref.ref(cycle)
            del cycle
            gc.collect()
            assert ref() is None
            assert cyclic() is None  # made after the freeze: collected as ever
        finally:
            await server.close()

    asyncio.run(main())
