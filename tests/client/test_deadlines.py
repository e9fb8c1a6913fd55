"""Deadlines: connect and bind (``timeout``), and each call (``call_timeout``, or a proxy's own), in
the async and sync clients, against a silent peer (a real socket that accepts and never answers) and
a server whose operation outlasts the deadline."""

from __future__ import annotations

import asyncio
import inspect
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import dcerpc
from dcerpc.rpcecho import Echo
from dcerpc.testing import ServerThread
from tests.client.peers import silent_peer
from tests.server.test_sessions import Counter, CounterServer


@pytest.fixture
def served() -> Iterator[tuple[ServerThread, CounterServer]]:
    impl = CounterServer()
    with ServerThread(impl) as srv:
        yield srv, impl


def within(seconds: float, fn: Callable[[], Any]) -> tuple[BaseException | None, float]:
    """Run ``fn`` in a thread; fail the test (rather than hang it) if it has not ended in ``seconds``."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            fn()
        except BaseException as e:
            outcome.append(e)
        else:
            outcome.append(None)

    start = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still waiting after {seconds} s"
    return outcome[0], time.monotonic() - start


def test_defaults_are_deadlines() -> None:
    for fn in (dcerpc.connect, dcerpc.connect_sync):
        params = inspect.signature(fn).parameters
        assert params["timeout"].default == 30.0
        assert params["call_timeout"].default == 60.0


@pytest.mark.skipif(sys.platform != "linux", reason="relies on Linux dropping SYNs to a full accept queue")
def test_connect_to_a_listener_that_takes_no_more_connections_times_out() -> None:
    # backlog 0 holds one connection that nobody accepts; Linux then drops further SYNs unanswered
    with socket.create_server(("127.0.0.1", 0), backlog=0) as listener:
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            start = time.monotonic()
            with pytest.raises(dcerpc.ConnectTimeoutError) as info:
                asyncio.run(dcerpc.connect(f"ncacn_ip_tcp:127.0.0.1[{port}]", timeout=0.5))
            assert 0.5 <= time.monotonic() - start < 3
    e = info.value
    assert isinstance(e, TimeoutError) and (e.step, e.seconds) == ("connect", 0.5)
    assert f"connect to 127.0.0.1:{port}: no answer within 0.5 s" in str(e)


def test_async_bind_to_a_silent_peer_times_out() -> None:
    async def main() -> None:
        with silent_peer() as port:
            conn = await dcerpc.connect(f"ncacn_ip_tcp:127.0.0.1[{port}]", timeout=0.5)
            start = time.monotonic()
            with pytest.raises(dcerpc.BindTimeoutError) as info:
                await conn.bind(Echo)
            assert 0.5 <= time.monotonic() - start < 3
            with pytest.raises(dcerpc.ConnectionClosedError):  # the half-bound connection was closed
                await conn.bind(Echo)
        e = info.value
        assert isinstance(e, TimeoutError) and isinstance(e, dcerpc.RpcTimeoutError)
        assert (e.step, e.seconds) == ("bind", 0.5)
        assert "Echo (rpcecho)" in str(e) and "0.5 s" in str(e) and f"[{port}]" in str(e)

    asyncio.run(main())


def test_sync_bind_to_a_silent_peer_times_out_within_the_deadline() -> None:
    with silent_peer() as port:

        def attempt() -> None:
            with dcerpc.connect_sync(f"ncacn_ip_tcp:127.0.0.1[{port}]", timeout=2) as conn:
                conn.bind(Echo)

        error, elapsed = within(10, attempt)
    assert isinstance(error, dcerpc.BindTimeoutError), error
    assert isinstance(error, TimeoutError)
    assert 2 <= elapsed < 5
    assert "no answer within 2 s" in str(error)


def test_a_call_past_the_connection_deadline_is_orphaned_and_named(
    served: tuple[ServerThread, CounterServer],
) -> None:
    srv, impl = served

    async def main() -> None:
        url = f"ncacn_ip_tcp:127.0.0.1[{srv.port}]"
        async with await dcerpc.connect(url, call_timeout=0.4) as conn:
            counter = await conn.bind(Counter)
            start = time.monotonic()
            slow = asyncio.create_task(counter.Slow(30))
            quick = [await counter.Slow(0) for _ in range(3)]  # others finish meanwhile
            with pytest.raises(dcerpc.CallTimeoutError) as info:
                await slow
            elapsed = time.monotonic() - start
            assert quick == [0, 0, 0]
            assert 0.4 <= elapsed < 2, elapsed
            assert await counter.Slow(0) == 0  # the connection is still usable
        e = info.value
        assert isinstance(e, TimeoutError) and e.step == "call" and e.seconds == 0.4
        assert "Slow" in str(e) and "0.4 s" in str(e) and "orphaned" in str(e)

    asyncio.run(main())
    assert impl.cancelled.wait(5)  # the server stopped working on it


def test_a_proxy_timeout_overrides_the_connection_deadline(
    served: tuple[ServerThread, CounterServer],
) -> None:
    srv, _ = served

    async def main() -> None:
        async with await dcerpc.connect(f"ncacn_ip_tcp:127.0.0.1[{srv.port}]", call_timeout=None) as conn:
            counter = await conn.bind(Counter)
            counter.timeout = 0.2
            with pytest.raises(dcerpc.CallTimeoutError, match=r"Slow .*0\.2 s"):
                await counter.Slow(30)

    asyncio.run(main())


def test_sync_call_past_its_deadline_raises(served: tuple[ServerThread, CounterServer]) -> None:
    srv, impl = served

    def attempt() -> None:
        with dcerpc.connect_sync(f"ncacn_ip_tcp:127.0.0.1[{srv.port}]", call_timeout=0.5) as conn:
            conn.bind(Counter).Slow(30)

    error, elapsed = within(10, attempt)
    assert isinstance(error, dcerpc.CallTimeoutError), error
    assert 0.5 <= elapsed < 4
    assert impl.cancelled.wait(5)
