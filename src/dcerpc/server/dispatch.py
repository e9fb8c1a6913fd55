"""Run one received call against its implementation and turn the outcome into a stub or a fault.

The request stub is decoded before anything of the implementation runs; context handles among the
[in] values must belong to the caller's association group. Every failure has its fault:

    unknown opnum                         nca_s_op_rng_error (did not execute)
    stub does not decode                  rpc_x_bad_stub_data (did not execute)
    a context handle of another group     nca_s_fault_context_mismatch (did not execute)
    the implementation raises FaultError  its status
    operation not implemented             nca_s_op_rng_error
    any other exception                   nca_s_fault_unspec (logged with the traceback)
    the result does not encode            rpc_x_bad_stub_data (logged: a server bug)
    cancelled by the client               nca_s_fault_cancel
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from dataclasses import dataclass

from .._errors import FaultError, NdrError
from ..interface import Interface
from ..ndr.compiler import Limits as NdrLimits
from ..ndr.declarations import ContextHandle
from ..pdu import constants as const
from ..protocol.events import CallReceived
from .context import CallContext, _reset_current, _set_current

__all__ = ["Outcome", "dispatch"]

log = logging.getLogger("dcerpc.server")


_async_methods: dict[tuple[type, str], bool] = {}  # (implementation class, method) -> is a coroutine


@dataclass(frozen=True, slots=True)
class Outcome:
    """A stub to send, or a fault status (with whether the call never ran)."""

    stub: bytes | None = None
    status: int = 0
    did_not_execute: bool = False


async def dispatch(impl: Interface, event: CallReceived, ctx: CallContext, limits: NdrLimits) -> Outcome:
    """Decode, check, run and encode one call."""
    op = type(impl).__operations__.get(event.opnum)
    if op is None:
        return Outcome(status=const.NCA_S_OP_RNG_ERROR, did_not_execute=True)
    try:
        args, _end = op.decode_request(event.stub, big_endian=not event.little_endian, limits=limits)
    except NdrError as e:
        log.info("bad stub from %s for %s opnum %d: %s", ctx.peer, ctx.interface, event.opnum, e)
        return Outcome(status=const.RPC_X_BAD_STUB_DATA, did_not_execute=True)
    for i in op.handle_params:
        handle = args[i]
        if isinstance(handle, ContextHandle) and not handle.is_null and ctx.group.lookup(handle) is None:
            return Outcome(status=const.NCA_S_FAULT_CONTEXT_MISMATCH, did_not_execute=True)
    method = getattr(impl, op.name)
    key = (type(impl), op.name)
    is_async = _async_methods.get(key)
    if is_async is None:
        is_async = _async_methods[key] = inspect.iscoroutinefunction(method)
    token = _set_current(ctx)
    try:
        if is_async:
            result = await method(*args)
        else:
            result = await asyncio.to_thread(method, *args)
    except FaultError as e:
        return Outcome(status=e.status)
    except NotImplementedError:
        return Outcome(status=const.NCA_S_OP_RNG_ERROR)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("%s.%s raised", type(impl).__name__, op.name)
        return Outcome(status=const.NCA_S_FAULT_UNSPEC)
    finally:
        _reset_current(token)
    try:
        return Outcome(stub=op.encode_response(result, args))
    except NdrError as e:
        log.error("%s.%s returned a value that does not encode: %s", type(impl).__name__, op.name, e)
        return Outcome(status=const.RPC_X_BAD_STUB_DATA)
