"""A synchronous facade of the client, same shape: ``connect_sync(binding).bind(Echo).AddOne(41)``.

It runs the asyncio client on a private event loop in a daemon thread; each call blocks the caller
until its answer or its deadline: the deadlines are the asyncio client's own (``timeout`` for connect
and bind, ``call_timeout`` per call), so a silent peer raises the same ``RpcTimeoutError`` here.
An interrupted wait (Ctrl-C) cancels the call, which sends co_cancel.

Typing: ``bind(Echo)`` is a ``SyncProxy[Echo]``. Its operations by name (``proxy.AddOne(41)``) are
looked up at run time (typed ``Any``: Python's types cannot turn an ``async def`` into a blocking
one); ``proxy.call(Echo.AddOne, 41)`` is the same call typed from the declaration (arguments checked,
the result an ``int``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from ..auth.base import ClientCredentials
from ..interface import Interface
from ..protocol.limits import Limits
from .binding import Binding
from .connection import CALL_TIMEOUT, CONNECT_TIMEOUT, Connection, connect
from .resolve import Resolver

__all__ = ["SyncConnection", "SyncProxy", "connect_sync"]

T = TypeVar("T")
P = ParamSpec("P")
I = TypeVar("I", bound=Interface)  # noqa: E741


class _Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="dcerpc-client", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result()
        except BaseException:
            fut.cancel()  # interrupted (KeyboardInterrupt): the task is cancelled, the call co_cancelled
            raise

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


class SyncProxy(Generic[I]):
    """Blocking methods named after the interface's operations (see the module's docstring).

    Attributes:
        aio: the asyncio proxy underneath (its ``timeout`` and ``object`` apply to these calls).
    """

    def __init__(self, loop: _Loop, proxy: I) -> None:
        self._loop = loop
        self.aio = proxy

    def call(
        self, method: Callable[Concatenate[I, P], Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Call the operation ``method`` names (``Echo.AddOne``) and block for its result, typed as
        the declaration types it."""
        remote: Callable[P, Coroutine[Any, Any, T]] = getattr(self.aio, method.__name__)
        return self._loop.run(remote(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        remote = getattr(self.aio, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run(remote(*args, **kwargs))

        call.__name__ = name
        return call


class SyncConnection:
    """A connection whose calls block."""

    def __init__(self, loop: _Loop, conn: Connection) -> None:
        self._loop = loop
        self.conn = conn

    def bind(self, iface: type[I], *, assoc_group_id: int = 0, timeout: float | None = None) -> SyncProxy[I]:
        """A blocking proxy for ``iface`` (see :meth:`Connection.bind`)."""
        proxy = self._loop.run(self.conn.bind(iface, assoc_group_id=assoc_group_id, timeout=timeout))
        return SyncProxy(self._loop, proxy)

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
    binding: str | Binding,
    *,
    timeout: float | None = CONNECT_TIMEOUT,
    call_timeout: float | None = CALL_TIMEOUT,
    limits: Limits | None = None,
    max_concurrent_calls: int = 64,
    auth: ClientCredentials | None = None,
    level: str | int = "privacy",
    resolver: Resolver | None = None,
) -> SyncConnection:
    """Open a connection for blocking use; the arguments are :func:`connect`'s
    (``dcerpc.connect_sync`` is this with the endpoint mapper as the resolver)."""
    loop = _Loop()
    try:
        conn = loop.run(
            connect(
                binding,
                timeout=timeout,
                call_timeout=call_timeout,
                limits=limits,
                max_concurrent_calls=max_concurrent_calls,
                auth=auth,
                level=level,
                resolver=resolver,
            )
        )
    except BaseException:
        loop.stop()
        raise
    return SyncConnection(loop, conn)
