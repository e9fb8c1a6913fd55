"""Registration flags of one served interface, as Windows has them for RpcServerRegisterIf3
(MS-RPCE 3.3.3.4.1 and the RPC_IF_* flags of the Windows SDK): what a call to it must be before its
stub is read, and how many may run at once.

    secure_only      RPC_IF_ALLOW_SECURE_ONLY: an auth level above none (as Windows: an anonymous
                     NTLM context counts; a required level, ``Server.require_auth``, does not let it)
    local_only       RPC_IF_ALLOW_LOCAL_ONLY: ncalrpc only, no network transport
    max_call_size    MaxRpcSize: the largest request stub, in octets
    max_calls        MaxCalls: calls to the interface running at once, across the server

A call refused for the first three is fault rpc_s_access_denied (no PFC_DID_NOT_EXECUTE, as for a
required auth level); beyond ``max_calls`` it is nca_s_server_too_busy with PFC_DID_NOT_EXECUTE
(the call did not run, the client may retry), as for ``Limits.max_outstanding_calls``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["InterfaceFlags"]


@dataclass(slots=True)
class InterfaceFlags:
    """See the module docstring; ``running`` counts the calls in progress (for ``max_calls``)."""

    secure_only: bool = False
    local_only: bool = False
    max_call_size: int | None = None
    max_calls: int | None = None
    running: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        for name in ("max_call_size", "max_calls"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (None: no limit)")

    @property
    def any(self) -> bool:
        """Some flag is set (otherwise the call path does not look)."""
        return (
            self.secure_only
            or self.local_only
            or self.max_call_size is not None
            or self.max_calls is not None
        )

    def refusal(self, transport: str, auth_level: int, stub_size: int) -> str | None:
        """Why a call is refused (None: it is not), before its stub is read."""
        if self.local_only and transport != "ncalrpc":
            return f"the interface is local only (RPC_IF_ALLOW_LOCAL_ONLY), the call came over {transport}"
        if self.secure_only and auth_level <= 1:
            return "the interface takes authenticated calls only (RPC_IF_ALLOW_SECURE_ONLY)"
        if self.max_call_size is not None and stub_size > self.max_call_size:
            return f"a {stub_size}-octet request, the interface takes at most {self.max_call_size}"
        return None

    def enter(self) -> bool:
        """A call starts (False: ``max_calls`` already run; it does not start)."""
        if self.max_calls is not None and self.running >= self.max_calls:
            return False
        self.running += 1
        return True

    def leave(self) -> None:
        """A call that :meth:`enter` let start has ended."""
        self.running -= 1
