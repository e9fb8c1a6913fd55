"""What a received call runs: its implementation method and codecs, resolved once per operation,
and the fault each failure gets.

The request stub is decoded before anything of the implementation runs; context handles among the
[in] values must belong to the caller's association group. Every failure has its fault:

    interface not served                  nca_s_unk_if (did not execute)
    unknown opnum                         nca_s_op_rng_error (did not execute)
    auth level below the required one     rpc_s_access_denied (did not execute, stub unread)
    stub does not decode                  rpc_x_bad_stub_data (did not execute)
    a context handle of another group     nca_s_fault_context_mismatch (did not execute)
    the implementation raises FaultError  its status
    operation not implemented             nca_s_op_rng_error
    any other exception                   nca_s_fault_unspec (logged with the traceback)
    the result does not encode            rpc_x_bad_stub_data (logged: a server bug)
    cancelled by the client               nca_s_fault_cancel

The running itself is the adapter's (aio/connection.py): it starts the method at once and gives it a
task only if it waits.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from .._errors import FaultError
from ..interface import Interface, Operation
from ..ndr.compiler import DecodeContext, DecodeFn, uses_context
from ..ndr.declarations import ContextHandle
from ..pdu import constants as const
from ..protocol.groups import Group

__all__ = ["Target", "foreign_handle", "status_of"]

log = logging.getLogger("dcerpc.server")


class Target:
    """One served operation, resolved: the bound method, whether it is a coroutine function, its
    codecs, and the lowest authentication level it is served at."""

    __slots__ = (
        "decode_be",
        "decode_le",
        "encode_response",
        "handle_params",
        "is_async",
        "level",
        "method",
        "name",
        "op",
        "shared_context",
    )

    def __init__(self, impl: Interface, op: Operation, level: int) -> None:
        self.op = op
        self.name = f"{type(impl).__name__}.{op.name}"  # for log lines
        self.method: Callable[..., Any] = getattr(impl, op.name)
        self.is_async = inspect.iscoroutinefunction(self.method)
        self.level = level
        self.decode_le: DecodeFn
        self.decode_be: DecodeFn
        self.decode_le, self.decode_be = op.request_decoders()
        # a decoder of scalars only never reads its context: one shared instance serves every call
        self.shared_context = None if uses_context(self.decode_le) else DecodeContext()
        self.encode_response = op.response_encoder()
        self.handle_params = op.handle_params


def foreign_handle(target: Target, args: tuple[Any, ...], group: Group) -> bool:
    """True when an [in] context handle is not one of ``group``'s (nca_s_fault_context_mismatch)."""
    for i in target.handle_params:
        handle = args[i]
        if isinstance(handle, ContextHandle) and not handle.is_null and group.lookup(handle) is None:
            return True
    return False


def status_of(exc: Exception, where: str) -> int:
    """The fault status for an exception an implementation raised (logged when it is a bug)."""
    if isinstance(exc, FaultError):
        return exc.status
    if isinstance(exc, NotImplementedError):
        return const.NCA_S_OP_RNG_ERROR
    log.error("%s raised", where, exc_info=exc)
    return const.NCA_S_FAULT_UNSPEC
