"""A real server on a real socket, in a background thread: for synchronous tests and outside peers.

with ServerThread(EchoServer()) as srv:
    with dcerpc.connect_sync(f"ncacn_ip_tcp:127.0.0.1[{srv.port}]") as conn:
        assert conn.bind(Echo).AddOne(41) == 42
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Any

from ..audit import Audit
from ..auth.base import SecurityProvider
from ..interface import Interface
from ..protocol.limits import Limits
from ..server.server import Server

__all__ = ["ServerThread"]


class ServerThread:
    """Run a :class:`Server` on its own event loop in a daemon thread (for sync tests and peers).

    with ServerThread(EchoServer()) as srv:
        subprocess.run(["smbtorture", f"ncacn_ip_tcp:127.0.0.1[{srv.port}]", "rpc.echo", "-U%"])
    """

    def __init__(
        self,
        *implementations: Interface,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: Limits | None = None,
        unix_path: str | None = None,
        security: list[SecurityProvider] | None = None,
        audit: Audit | None = None,
        metrics: bool = False,
    ) -> None:
        self.server = Server(*implementations, limits=limits, security=security, audit=audit, metrics=metrics)
        self.host = host
        self.port = port
        self.unix_path = unix_path
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="dcerpc-server", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.host, self.port = self.loop.run_until_complete(self.server.listen_tcp(self.host, self.port))
            if self.unix_path:
                self.loop.run_until_complete(self.server.listen_unix(self.unix_path))
        except BaseException as e:
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.server.close(drain=1.0))
        self.loop.close()

    def start(self) -> ServerThread:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
