"""The asyncio adapter for one server connection: bytes in, events out, calls run.

This and ``server.py`` are the only places the server touches sockets or the clock. A call starts at
once; one that waits continues in a task of its own, so calls on one connection proceed
concurrently and answer out of order; co_cancel cancels the task (answered with
nca_s_fault_cancel), orphaned cancels it silently. Answers made while a read is handled leave in
one write after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import socket
import struct
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, cast

from .._errors import NdrError
from ..ndr.compiler import DecodeContext
from ..pdu import constants as const
from ..protocol.events import CallCancelled, CallOrphaned, CallReceived, Closing, ProtocolViolation
from ..protocol.framing import Inbox
from ..protocol.outbox import FLUSH_BUDGET
from ..protocol.server import ServerAssociation
from ..server.context import CallContext, _current
from ..server.dispatch import Target, foreign_handle, status_of

if TYPE_CHECKING:
    from ..server.server import Server

__all__ = ["ServerConnection"]

log = logging.getLogger("dcerpc.server")

_copy_context = contextvars.copy_context  # once per call: a global rather than a module attribute


def _peer_credentials(transport: asyncio.Transport) -> tuple[int, int, int] | None:
    """(pid, uid, gid) of a Unix-socket peer (SO_PEERCRED); None for other transports."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family != socket.AF_UNIX or not hasattr(socket, "SO_PEERCRED"):
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


async def _resume(coro: Coroutine[Any, Any, Any], waiting: Any) -> Any:
    """Drive a started coroutine to its end: wait for what it waits on, then resume it; returns
    its value (or raises its exception).

    A cancelled task cancels the future it waits on, so the coroutine sees CancelledError where it
    waited, as it would have in a task of its own.
    """
    while True:
        if waiting is None:
            await asyncio.sleep(0)  # a bare yield: one turn of the loop
        else:
            waiting._asyncio_future_blocking = False
            with contextlib.suppress(BaseException):  # the coroutine reads the outcome itself
                await waiting
        try:
            waiting = coro.send(None)
        except StopIteration as done:
            return done.value


class ServerConnection(asyncio.BufferedProtocol):
    """One accepted connection. Reads go where the association asks (a long call's stub straight
    into that call's buffer)."""

    def __init__(self, server: Server, transport_name: str) -> None:
        self.server = server
        self.transport_name = transport_name
        self.transport: asyncio.Transport | None = None
        self.assoc: ServerAssociation | None = None
        self.peer: Any = None
        self.local: Any = None
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self._idle: asyncio.TimerHandle | None = None
        self._paused = False
        self._more = False  # a flush of the rest of a long response is scheduled
        self._receiving = False  # handling a read: answers wait for the one write after it
        self._draining = False
        self._targets: dict[int, Target | int] = {}  # context id << 16 | opnum -> what it runs
        self._generation = -1  # the server's operations generation the above was resolved in
        self._last_active = 0.0
        self.credentials: tuple[int, int, int] | None = None
        # Reads go to the association's inbox, made now so that the transport, which takes
        # get_buffer from its protocol once (uvloop) or per read (asyncio), calls the inbox's
        # directly: a Python call fewer per read. Until the association exists, and once the
        # connection is closing, buffer_updated ignores what lands there.
        self._inbox = Inbox()
        self.get_buffer = self._inbox.get_buffer  # type: ignore[method-assign]

    # asyncio.Protocol -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they are transports
        self.transport = cast(asyncio.Transport, transport)
        self._loop = asyncio.get_running_loop()
        self.peer = self.transport.get_extra_info("peername")
        self.local = self.transport.get_extra_info("sockname")
        if not self.server._admit(self):
            log.warning(
                "refusing %s: %d connections is the limit", self.peer, self.server.limits.max_connections
            )
            self.transport.abort()
            return
        port = self.local[1] if isinstance(self.local, tuple) else None
        sec_addr = str(port).encode() if port is not None else b""
        self.assoc = ServerAssociation(
            self.server.registry.match,
            self.server.groups,
            self.server.limits,
            sec_addr,
            self.server.security,
            self.server.stats,
            self._inbox,
        )
        if self.transport_name == "ncalrpc":  # asking a TCP transport for its socket costs a wrapper
            self.credentials = _peer_credentials(self.transport)
        self._arm_idle()

    def buffer_updated(self, nbytes: int) -> None:
        assoc = self.assoc
        if assoc is None or self._draining:
            return
        assoc.buffer_updated(nbytes)
        self._receiving = True
        try:
            self._handle_events()
        finally:
            self._receiving = False
        if assoc.outbox:
            self._flush()
        if self._idle is not None:  # the idle timer compares this with the time it fires
            self._last_active = self._loop.time()
        else:
            self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        for task in self.tasks.values():
            task.cancel()
        self.tasks.clear()
        if self.assoc is not None:
            self.assoc.connection_lost()
        self.server._release(self)

    def pause_writing(self) -> None:
        # Backpressure: stop reading new requests while the peer is not reading our answers.
        self._paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
            self._flush()

    # events -----------------------------------------------------------------------------------------

    def _handle_events(self) -> None:
        assert self.assoc is not None
        for ev in self.assoc.events():
            if type(ev) is CallReceived:
                # Each call runs in a context of its own (its task, if it needs one, keeps it):
                # context variables an implementation sets, the current call among them, stay
                # the call's.
                _copy_context().run(self._serve, ev)
            elif isinstance(ev, CallCancelled | CallOrphaned):
                task = self.tasks.get(ev.call_id)
                if task is not None:
                    task.cancel()
            elif isinstance(ev, ProtocolViolation):
                self.server._violation(self, ev)
            elif isinstance(ev, Closing):
                self._flush(everything=True)
                log.info("closing connection from %s: %s", self.peer, ev.reason)
                self._close_gracefully()

    # calls ------------------------------------------------------------------------------------------

    def _serve(self, ev: CallReceived) -> None:
        """Check a call, decode its stub and start its implementation (see dispatch.py for the
        fault each failure gets). Most calls (the endpoint mapper's, AddOne) finish without
        waiting and are answered within the read that brought them, with no task to create and
        schedule; one that waits continues in a task; a plain function runs in a worker thread."""
        server = self.server
        # resolved per connection by context and opnum (a context's interface never changes),
        # valid while the server's operations are as they were
        key = ev.context_id << 16 | ev.opnum
        target = self._targets.get(key) if self._generation == server.generation else None
        if target is None:
            # bounded: opnums are the client's choice (65536 of them per context)
            if self._generation != server.generation or len(self._targets) >= 256:
                self._targets.clear()
                self._generation = server.generation
            target = self._targets[key] = server.target(ev.interface, ev.opnum)
        if isinstance(target, int):  # no such operation: its status
            self._fault(ev, target, did_not_execute=True)
            return
        if ev.auth_level < target.level:
            # MS-RPCE 3.3.3.4.1: below the interface's required level -> access denied, unread
            log.warning(
                "refused %s opnum %d from %s: auth level %d, %d required",
                ev.interface,
                ev.opnum,
                self.peer,
                ev.auth_level,
                target.level,
            )
            self._fault(ev, const.RPC_S_ACCESS_DENIED, did_not_execute=True)
            return
        decode = target.decode_le if ev.little_endian else target.decode_be
        try:
            args = decode(ev.stub, 0, target.shared_context or DecodeContext(server.limits.ndr))[0]
        except NdrError as e:
            log.info("bad stub from %s for %s opnum %d: %s", self.peer, ev.interface, ev.opnum, e)
            self._fault(ev, const.RPC_X_BAD_STUB_DATA, did_not_execute=True)
            return
        if target.handle_params:
            assert self.assoc is not None and self.assoc.group is not None
            if foreign_handle(target, args, self.assoc.group):
                self._fault(ev, const.NCA_S_FAULT_CONTEXT_MISMATCH, did_not_execute=True)
                return
        _current.set((self, ev))
        try:
            coro = target.method(*args) if target.is_async else asyncio.to_thread(target.method, *args)
            waiting = coro.send(None)
        except StopIteration as done:
            self._answer(ev, target, args, done.value)
            return
        except Exception as e:
            self._fault(ev, status_of(e, target.name))
            return
        task = self._loop.create_task(
            self._complete(ev, target, args, coro, waiting), context=contextvars.copy_context()
        )
        self.tasks[ev.call_id] = task

    async def _complete(
        self,
        ev: CallReceived,
        target: Target,
        args: tuple[Any, ...],
        coro: Coroutine[Any, Any, Any],
        waiting: Any,
    ) -> None:
        """Drive a started implementation to its end (in the call's task), then answer."""
        try:
            result = await _resume(coro, waiting)
        except asyncio.CancelledError:
            self._fault(ev, const.NCA_S_FAULT_CANCEL)
            return
        except Exception as e:
            self._fault(ev, status_of(e, target.name))
            return
        finally:
            self.tasks.pop(ev.call_id, None)
        self._answer(ev, target, args, result)

    def _answer(self, ev: CallReceived, target: Target, args: tuple[Any, ...], result: Any) -> None:
        assoc = self.assoc
        assert assoc is not None
        try:
            stub = target.encode_response(result, args)
        except Exception as e:  # NdrError, or struct's and Python's own for values of the wrong kind
            log.error("%s returned a value that does not encode: %r", target.name, e)
            self._fault(ev, const.RPC_X_BAD_STUB_DATA)
            return
        assoc.respond(ev.call_id, stub, ev.context_id)
        if not self._receiving:  # within a read, everything answered goes out in one write after it
            self._flush()

    def _fault(self, ev: CallReceived, status: int, did_not_execute: bool = False) -> None:
        assoc = self.assoc
        assert assoc is not None
        self.server.stats["faults"] += 1
        assoc.fault(ev.call_id, status, ev.context_id, did_not_execute)
        if not self._receiving:
            self._flush()

    def call_context(self, ev: CallReceived) -> CallContext:
        """What ``current_call()`` returns during ``ev`` (made when first asked for)."""
        assert self.assoc is not None and self.assoc.group is not None
        return CallContext(
            peer=self.peer,
            local=self.local,
            transport=self.transport_name,
            interface=ev.interface,
            opnum=ev.opnum,
            call_id=ev.call_id,
            group=self.assoc.group,
            object=ev.object,
            auth_type=ev.auth_type,
            auth_level=ev.auth_level,
            principal=ev.principal,
            peer_credentials=self.credentials,
        )

    def _flush(self, everything: bool = False) -> None:
        """Write what the association has; a long response goes out a budget per loop turn, so the
        client verifies its first fragments while the later ones are made."""
        assoc = self.assoc
        if assoc is None or not assoc.outbox:
            return
        t = self.transport
        if t is None or t.is_closing():
            return
        data = assoc.outbox.take(None if everything else FLUSH_BUDGET)
        if isinstance(data, bytes):
            t.write(data)
        else:
            t.writelines(data)
        if assoc.outbox and not self._more and not self._paused:
            self._more = True
            self._loop.call_soon(self._flush_more)

    def _flush_more(self) -> None:
        self._more = False
        self._flush()

    def _arm_idle(self) -> None:
        # Note the time of activity; one timer per connection checks it (re-arming a timer on every
        # read would cost more than the reads).
        loop = asyncio.get_running_loop()
        self._last_active = loop.time()
        timeout = self.server.limits.idle_timeout
        if self._idle is None and timeout > 0:
            self._idle = loop.call_later(timeout, self._idle_expired)

    def _idle_expired(self) -> None:
        loop = asyncio.get_running_loop()
        timeout = self.server.limits.idle_timeout
        remaining = self._last_active + timeout - loop.time()
        if self.tasks or remaining > 0:  # calls in progress are not idleness
            self._idle = loop.call_later(max(remaining, timeout if self.tasks else 0.0), self._idle_expired)
            return
        self._idle = None
        log.info("closing idle connection from %s", self.peer)
        if self.transport is not None:
            self.transport.close()

    def _close_gracefully(self) -> None:
        """Send our last answer and a FIN, then discard what the peer still sends for a moment.

        Closing a socket with unread input makes the kernel send RST, which can destroy the bind_nak
        or fault we just wrote before the peer reads it; half-closing first lets it arrive.
        """
        t = self.transport
        if t is None or t.is_closing():
            return
        if t.can_write_eof():
            t.write_eof()
            self._draining = True
            asyncio.get_running_loop().call_later(1.0, t.close)
        else:
            t.close()

    def close(self) -> None:
        """Close now (server shutdown)."""
        if self.transport is not None:
            self.transport.close()
