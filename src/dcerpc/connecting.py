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
from .client.connection import Connection
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
    timeout: float | None = 30.0,
    call_timeout: float | None = None,
    limits: Limits | None = None,
    max_concurrent_calls: int = 64,
    auth: ClientCredentials | None = None,
    level: str | int = "privacy",
    resolver: Resolver | None = default_resolver,
) -> Connection:
    """Open a connection to the endpoint a string binding names; a binding without an endpoint
    (``ncacn_ip_tcp:HOST``) is resolved at the first bind through HOST's endpoint mapper (or
    ``resolver``). The other arguments are :func:`dcerpc.client.connect`'s."""
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
    binding: str,
    *,
    timeout: float | None = 30.0,
    call_timeout: float | None = None,
    limits: Limits | None = None,
    resolver: Resolver | None = default_resolver,
) -> SyncConnection:
    """Open a connection for blocking use, resolving as :func:`connect` does."""
    return _connect_sync(
        binding, timeout=timeout, call_timeout=call_timeout, limits=limits, resolver=resolver
    )
