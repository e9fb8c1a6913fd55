"""What an implementation may know about the call it is serving.

``current_call()`` inside an operation returns the :class:`CallContext`: the peer's address, the
association group, and (with authentication) who the caller is. Context handles are made and closed
through it, so that they belong to the caller's association group and are run down if the client
disappears.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._errors import FaultError
from ..ndr.declarations import ContextHandle
from ..pdu.constants import NCA_S_FAULT_CONTEXT_MISMATCH
from ..pdu.syntax import SyntaxId
from ..protocol.groups import Group
from ..protocol.limits import Limits
from .enforce import Enforcer

__all__ = ["CallContext", "current_call"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallContext:
    """One call being served.

    Attributes:
        peer: the client's address as the transport gives it ((host, port) for TCP).
        local: our address for this connection.
        transport: "ncacn_ip_tcp" or "ncalrpc".
        interface, opnum, call_id: what is being called.
        object: the object UUID the client named (PFC_OBJECT_UUID), if any.
        group: the association group of the connection.
        auth_type, auth_level, principal: the caller's authentication (none yet: 0, 1, None).
        limits: the server's limits (an implementation bounds what a caller may ask of it by them:
            no answer is sent longer than ``limits.max_call_size``).
        enforcer: the server's policy (see :meth:`may_see`).
    """

    peer: Any
    local: Any
    transport: str
    interface: SyntaxId
    opnum: int
    call_id: int
    group: Group
    object: uuid.UUID | None = None
    auth_type: int = 0
    auth_level: int = 1
    principal: str | None = None
    peer_credentials: tuple[int, int, int] | None = None  # (pid, uid, gid) over ncalrpc
    limits: Limits = field(default_factory=Limits)
    enforcer: Enforcer | None = None

    def may_see(self, interface: uuid.UUID) -> bool:
        """The policy lets this caller see ``interface`` in listings: the endpoint map (ept_lookup,
        ept_map) and inq_if_ids (a policy's visibility rules; everything without one)."""
        enforcer = self.enforcer
        if enforcer is None:
            return True
        return enforcer.visible(
            self.peer, self.transport, self.auth_type, self.auth_level, self.principal, interface
        )

    def open_handle(self, value: Any, rundown: Callable[[Any], None] | None = None) -> ContextHandle:
        """A context handle for ``value`` in the caller's association group."""
        return self.group.open_handle(value, rundown)

    def handle_value(self, handle: ContextHandle) -> Any:
        """The value behind a handle of this group (FaultError context mismatch otherwise)."""
        entry = self.group.lookup(handle)
        if entry is None:
            raise FaultError(NCA_S_FAULT_CONTEXT_MISMATCH, "context handle of another association group")
        return entry.value

    def close_handle(self, handle: ContextHandle) -> Any:
        """Forget a handle the client is closing; returns its value."""
        self.handle_value(handle)
        return self.group.close_handle(handle)


# The call being served: its CallContext, or until an implementation asks for it, the connection
# and event to make it from (most calls never ask; making one costs more than a small call's stub).
_current: contextvars.ContextVar[CallContext | tuple[Any, Any]] = contextvars.ContextVar("dcerpc_call")


def current_call() -> CallContext:
    """The call being served (LookupError outside a call)."""
    value = _current.get()
    if isinstance(value, CallContext):
        return value
    conn, event = value
    ctx: CallContext = conn.call_context(event)
    _current.set(ctx)  # each call runs in a context of its own: this is the call's alone
    return ctx
