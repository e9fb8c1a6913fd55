"""A synchronous facade of the client, same shape: ``connect_sync(binding).bind(Echo).AddOne(41)``.

It runs the asyncio client on a private event loop in a daemon thread; each call blocks the caller
until its answer (or its timeout).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from ..interface import Interface
from ..protocol.limits import Limits
from .connection import Connection, connect
from .resolve import Resolver

__all__ = ["SyncConnection", "SyncProxy", "connect_sync"]

T = TypeVar("T")


class _Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="dcerpc-client", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


class SyncProxy:
    """Blocking methods named after the interface's operations."""

    def __init__(self, loop: _Loop, proxy: Any) -> None:
        self._loop = loop
        self._proxy = proxy

    def __getattr__(self, name: str) -> Any:
        remote = getattr(self._proxy, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run(remote(*args, **kwargs))

        call.__name__ = name
        return call


class SyncConnection:
    """A connection whose calls block."""

    def __init__(self, loop: _Loop, conn: Connection) -> None:
        self._loop = loop
        self.conn = conn

    def bind(self, iface: type[Interface], **kwargs: Any) -> Any:
        """A blocking proxy for ``iface``."""
        return SyncProxy(self._loop, self._loop.run(self.conn.bind(iface, **kwargs)))

    @property
    def assoc_group_id(self) -> int:
        return self.conn.assoc_group_id

    def close(self) -> None:
        self._loop.run(self.conn.close())
        self._loop.stop()

    def __enter__(self) -> SyncConnection:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def connect_sync(
    binding: str,
    *,
    timeout: float | None = 30.0,
    call_timeout: float | None = None,
    limits: Limits | None = None,
    resolver: Resolver | None = None,
) -> SyncConnection:
    """Open a connection for blocking use (see :func:`connect`; ``dcerpc.connect_sync`` is this
    with the endpoint mapper as the resolver)."""
    loop = _Loop()
    try:
        conn = loop.run(
            connect(binding, timeout=timeout, call_timeout=call_timeout, limits=limits, resolver=resolver)
        )
    except BaseException:
        loop.stop()
        raise
    return SyncConnection(loop, conn)
