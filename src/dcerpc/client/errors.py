"""The errors of opening a transport connection, as the client raises them.

They derive from :class:`~dcerpc.RpcError` and from the builtin exception they replace
(``ConnectionRefusedError``, ``socket.gaierror``), so ``except`` clauses written for either keep
working; the operating system's error is ``__cause__``. They live here rather than in
``dcerpc._errors`` because naming ``socket`` is the I/O layer's business.
"""

from __future__ import annotations

import socket

from .._errors import RpcError

__all__ = ["ConnectError", "ConnectRefusedError", "HostNotFoundError"]


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
