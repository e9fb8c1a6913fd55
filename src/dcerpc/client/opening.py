"""Opening a transport connection (TCP, or a unix socket for ncalrpc), and the errors it raises.

The operating system's failures become :class:`ConnectError` subclasses naming the host and port
and saying what to do; a connection not established in time is a ConnectTimeoutError. They derive
from :class:`~dcerpc.RpcError` and from the builtin exception they replace
(``ConnectionRefusedError``, ``socket.gaierror``), so ``except`` clauses written for either keep
working; the operating system's error is ``__cause__``. They live here rather than in
``dcerpc._errors`` because naming ``socket`` is the I/O layer's business.
"""

from __future__ import annotations

import asyncio
import socket

from .._errors import ConnectTimeoutError, RpcError

__all__ = ["ConnectError", "ConnectRefusedError", "HostNotFoundError", "open_tcp", "open_unix"]

_CONNECT_ADVICE = "is the host up and reachable? (a firewall that drops packets looks like this)"


class ConnectError(RpcError, OSError):
    """The transport connection could not be opened (the operating system's error is ``__cause__``).

    Attributes:
        host, port: where (``port`` is the path for ncalrpc).
    """

    def __init__(self, host: str, port: int | str, problem: str, advice: str) -> None:
        self.host = host
        self.port = port
        self.problem = problem
        target = f"{host}:{port}" if host else str(port)
        self._text = f"cannot connect to {target}: {problem}; {advice}"
        super().__init__(self._text)

    def __str__(self) -> str:
        return self._text


class ConnectRefusedError(ConnectError, ConnectionRefusedError):
    """Nothing listens at the host and port (or the path) the binding names."""


class HostNotFoundError(ConnectError, socket.gaierror):
    """The binding's host name does not resolve to an address."""


async def open_tcp(proto: asyncio.BaseProtocol, host: str, port: int, timeout: float | None) -> None:
    """Connect ``proto`` to host:port within ``timeout`` seconds (None: as long as the OS tries)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):  # no extra task, unlike wait_for
            await loop.create_connection(lambda: proto, host, port)
    except TimeoutError:
        raise ConnectTimeoutError("connect", f"to {host}:{port}", timeout or 0, _CONNECT_ADVICE) from None
    except ConnectionRefusedError as e:
        raise ConnectRefusedError(
            host,
            port,
            "connection refused (nothing listens there)",
            "is the service running, and is this its port? (with no port, the endpoint mapper is asked)",
        ) from e
    except socket.gaierror as e:
        raise HostNotFoundError(host, port, f"unknown host ({e.strerror})", "check the host name") from e
    except OSError as e:
        raise ConnectError(host, port, e.strerror or str(e), "check the address and the network") from e


async def open_unix(proto: asyncio.BaseProtocol, path: str, timeout: float | None) -> None:
    """Connect ``proto`` to the unix socket at ``path`` within ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            await loop.create_unix_connection(lambda: proto, path)
    except TimeoutError:
        raise ConnectTimeoutError("connect", f"to {path}", timeout or 0, _CONNECT_ADVICE) from None
    except (FileNotFoundError, ConnectionRefusedError) as e:
        raise ConnectRefusedError(
            "", path, "no server listens on this socket", "is the service running?"
        ) from e
    except OSError as e:
        raise ConnectError("", path, e.strerror or str(e), "check the path and its permissions") from e
