"""What a client needs to connect to a binding that names a host but no endpoint: a resolver.

``ncacn_ip_tcp:HOST`` names a host but not a port. A :class:`Connection` asks its resolver, at the
first bind, where the interface being bound listens; when the port it answers refuses the
connection, the connection tells the resolver to :meth:`~Resolver.forget` it and asks once more.
The client knows no resolver of its own: ``dcerpc.connect`` gives it the endpoint mapper's
(``dcerpc.epm.resolve.EpmResolver``, ept_map on the host's port 135).
"""

from __future__ import annotations

from typing import Protocol

from .._errors import EndpointNotRegisteredError, ResolveError
from ..pdu.syntax import SyntaxId
from .binding import Binding

__all__ = ["EndpointNotRegisteredError", "ResolveError", "Resolver"]


class Resolver(Protocol):
    """Finds the endpoint an interface listens on at a binding's host."""

    async def resolve(self, binding: Binding, interface: SyntaxId, timeout: float | None) -> str:
        """The endpoint (for ncacn_ip_tcp: the port) where ``interface`` listens at ``binding``'s
        host. Raises ResolveError (EndpointNotRegisteredError when the host knows none)."""
        ...

    def forget(self, binding: Binding, interface: SyntaxId) -> None:
        """Drop what was remembered about ``interface`` at ``binding``'s host (its endpoint refused
        a connection)."""
        ...
