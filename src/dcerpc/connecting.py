"""``dcerpc.connect`` and ``dcerpc.connect_sync``: the client's own, with the endpoint mapper wired in
as the resolver of bindings that name no endpoint.

The client (``dcerpc.client``) sits beneath the endpoint mapper (``dcerpc.epm``), which is itself a
client of the mapper it asks; so the client takes a resolver rather than importing one, and this
module, above both, joins them. ``dcerpc.client.connect`` without a resolver connects only to
bindings that name their endpoint.
"""

from __future__ import annotations

from .auth.base import ClientCredentials
from .client.binding import Binding
from .client.connection import CALL_TIMEOUT, CONNECT_TIMEOUT, Connection
from .client.connection import connect as _connect
from .client.resolve import Resolver
from .client.sync import SyncConnection
from .client.sync import connect_sync as _connect_sync
from .epm.resolve import default_resolver
from .protocol.limits import Limits

__all__ = ["connect", "connect_sync"]


async def connect(
    binding: str | Binding,
    *,
    timeout: float | None = CONNECT_TIMEOUT,
    call_timeout: float | None = CALL_TIMEOUT,
    limits: Limits | None = None,
    max_concurrent_calls: int = 64,
    auth: ClientCredentials | None = None,
    level: str | int = "privacy",
    resolver: Resolver | None = default_resolver,
) -> Connection:
    """Open a connection to the endpoint a string binding names; a binding without an endpoint
    (``ncacn_ip_tcp:HOST``) is resolved at the first bind through HOST's endpoint mapper (or
    ``resolver``). The other arguments are :func:`dcerpc.client.connect`'s: ``timeout`` bounds
    the connect and each bind (30 s), ``call_timeout`` each call (60 s); None waits forever.
    Failures are RpcErrors (docs/errors.md)."""
    return await _connect(
        binding,
        timeout=timeout,
        call_timeout=call_timeout,
        limits=limits,
        max_concurrent_calls=max_concurrent_calls,
        auth=auth,
        level=level,
        resolver=resolver,
    )


def connect_sync(
    binding: str | Binding,
    *,
    timeout: float | None = CONNECT_TIMEOUT,
    call_timeout: float | None = CALL_TIMEOUT,
    limits: Limits | None = None,
    max_concurrent_calls: int = 64,
    auth: ClientCredentials | None = None,
    level: str | int = "privacy",
    resolver: Resolver | None = default_resolver,
) -> SyncConnection:
    """Open a connection for blocking use, resolving as :func:`connect` does; the same arguments
    (``auth``, ``level``, deadlines...), and proxies whose calls block."""
    return _connect_sync(
        binding,
        timeout=timeout,
        call_timeout=call_timeout,
        limits=limits,
        max_concurrent_calls=max_concurrent_calls,
        auth=auth,
        level=level,
        resolver=resolver,
    )
