"""Association groups, context handles and their rundown, cancellation, timeouts, transports, shutdown.

All over real sockets, between our client and our server.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import dcerpc
from dcerpc import FaultError, Interface, current_call, operation
from dcerpc.ndr import ContextHandle, uint32
from dcerpc.pdu import constants as const
from dcerpc.testing import ServerThread


class Counter(Interface, uuid="5c0f3b7a-8f2e-4d61-9a43-2b8f6f7d1e90", version=(1, 0)):
    @operation(0)
    async def Open(self, start: uint32) -> ContextHandle: ...

    @operation(1)
    async def Add(self, handle: ContextHandle, n: uint32) -> uint32: ...

    @operation(2)
    async def Close(self, handle: ContextHandle) -> ContextHandle: ...

    @operation(3)
    async def Slow(self, seconds: uint32) -> uint32: ...

    @operation(4)
    def Blocking(self, seconds: uint32) -> uint32: ...


class CounterServer(Counter):
    def __init__(self) -> None:
        self.rundowns: list[int] = []
        self.rundown_event = threading.Event()
        self.cancelled = threading.Event()
        self.finished: list[int] = []

    def _rundown(self, state: list[int]) -> None:
        self.rundowns.append(state[0])
        self.rundown_event.set()

    async def Open(self, start: int) -> ContextHandle:
        return current_call().open_handle([start], self._rundown)

    async def Add(self, handle: ContextHandle, n: int) -> int:
        state = current_call().handle_value(handle)
        state[0] += n
        return int(state[0])

    async def Close(self, handle: ContextHandle) -> ContextHandle:
        current_call().close_handle(handle)
        return ContextHandle()

    async def Slow(self, seconds: int) -> int:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        self.finished.append(seconds)
        return seconds

    def Blocking(self, seconds: int) -> int:  # a plain function: runs off the event loop
        time.sleep(seconds)
        return seconds


@pytest.fixture
def served() -> Iterator[tuple[ServerThread, CounterServer]]:
    impl = CounterServer()
    with ServerThread(impl) as srv:
        yield srv, impl


def binding(srv: ServerThread) -> str:
    return f"ncacn_ip_tcp:127.0.0.1[{srv.port}]"


def test_handle_works_across_connections_of_its_group_only(
    served: tuple[ServerThread, CounterServer],
) -> None:
    srv, impl = served

    async def main() -> None:
        async with await dcerpc.connect(binding(srv)) as c1:
            counter = await c1.bind(Counter)
            handle = await counter.Open(10)
            assert await counter.Add(handle, 5) == 15
            async with await dcerpc.connect(binding(srv)) as c2:  # joins the group
                same_group = await c2.bind(Counter, assoc_group_id=c1.assoc_group_id)
                assert await same_group.Add(handle, 1) == 16
            async with await dcerpc.connect(binding(srv)) as c3:  # a group of its own
                other = await c3.bind(Counter)
                with pytest.raises(FaultError) as e:
                    await other.Add(handle, 1)
                assert e.value.status == const.NCA_S_FAULT_CONTEXT_MISMATCH
                assert e.value.name == "nca_s_fault_context_mismatch"
            assert impl.rundowns == []  # c1 still holds the group
            closed = await counter.Close(handle)
            assert closed.is_null
            with pytest.raises(FaultError):
                await counter.Add(handle, 1)

    asyncio.run(main())
    assert impl.rundowns == []  # closed by the client: no rundown


def test_rundown_when_the_last_connection_of_the_group_goes(
    served: tuple[ServerThread, CounterServer],
) -> None:
    srv, impl = served

    async def main() -> None:
        c1 = await dcerpc.connect(binding(srv))
        counter = await c1.bind(Counter)
        handle = await counter.Open(7)
        await counter.Add(handle, 1)
        c2 = await dcerpc.connect(binding(srv))
        await (await c2.bind(Counter, assoc_group_id=c1.assoc_group_id)).Add(handle, 1)
        await c1.close()
        await asyncio.sleep(0.3)
        assert impl.rundowns == []  # c2 keeps the group alive
        await c2.close()

    asyncio.run(main())
    assert impl.rundown_event.wait(5)
    assert impl.rundowns == [9]
    deadline = time.monotonic() + 5
    while len(srv.server.groups) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(srv.server.groups) == 0  # the group and its handles are released


def test_cancelling_the_awaiting_task_sends_co_cancel(served: tuple[ServerThread, CounterServer]) -> None:
    srv, impl = served

    async def main() -> None:
        async with await dcerpc.connect(binding(srv)) as conn:
            counter = await conn.bind(Counter)
            task = asyncio.create_task(counter.Slow(30))
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await counter.Open(1)  # the connection is still usable

    start = time.monotonic()
    asyncio.run(main())
    assert impl.cancelled.wait(5)
    assert time.monotonic() - start < 10


def test_call_timeout_orphans_the_call(served: tuple[ServerThread, CounterServer]) -> None:
    srv, impl = served

    async def main() -> None:
        async with await dcerpc.connect(binding(srv), call_timeout=0.3) as conn:
            counter = await conn.bind(Counter)
            with pytest.raises(TimeoutError):
                await counter.Slow(30)
            counter.timeout = 5
            assert await counter.Slow(0) == 0

    asyncio.run(main())
    assert impl.cancelled.wait(5)


def test_calls_on_one_connection_run_concurrently(served: tuple[ServerThread, CounterServer]) -> None:
    srv, _ = served

    async def main() -> list[int]:
        async with await dcerpc.connect(binding(srv)) as conn:
            counter = await conn.bind(Counter)
            return list(await asyncio.gather(counter.Slow(1), counter.Blocking(1), counter.Slow(0)))

    start = time.monotonic()
    assert asyncio.run(main()) == [1, 1, 0]
    assert time.monotonic() - start < 1.9  # not 2: they overlapped


def test_graceful_shutdown_drains_calls_in_progress(served: tuple[ServerThread, CounterServer]) -> None:
    srv, impl = served

    async def main() -> int:
        async with await dcerpc.connect(binding(srv)) as conn:
            counter = await conn.bind(Counter)
            pending = asyncio.create_task(counter.Slow(1))
            await asyncio.sleep(0.2)
            closing = asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(srv.server.close(drain=5), srv.loop)
            )
            result = await pending
            await closing
            return int(result)

    assert asyncio.run(main()) == 1
    assert impl.finished == [1]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()


def test_ncalrpc_unix_socket() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "counter.sock")
        with ServerThread(CounterServer(), unix_path=path), dcerpc.connect_sync(f"ncalrpc:[{path}]") as conn:
            counter = conn.bind(Counter)
            assert counter.Add(counter.Open(1), 2) == 3


def test_ipv6_loopback() -> None:
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")
    with (
        ServerThread(CounterServer(), host="::1") as srv,
        dcerpc.connect_sync(f"ncacn_ip_tcp:[::1][{srv.port}]") as conn,
    ):
        counter = conn.bind(Counter)
        assert counter.Add(counter.Open(40), 2) == 42


def test_unknown_interface_bind_error(served: tuple[ServerThread, CounterServer]) -> None:
    srv, _ = served
    from dcerpc.rpcecho import Echo

    with (
        dcerpc.connect_sync(binding(srv)) as conn,
        pytest.raises(dcerpc.BindError, match="abstract_syntax_not_supported"),
    ):
        conn.bind(Echo)
