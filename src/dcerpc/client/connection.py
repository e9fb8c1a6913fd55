"""The asyncio client: one connection, many concurrent calls, typed proxies.

    async with await dcerpc.connect("ncacn_ip_tcp:127.0.0.1[49152]") as conn:
        echo = await conn.bind(Echo)
        assert await echo.AddOne(41) == 42

Each call is a future keyed by call_id, so calls on one connection run concurrently and their answers
may come back in any order. Cancelling the awaiting task sends co_cancel. Faults raise
:class:`FaultError` with the status by name and number.

Deadlines: connecting and binding each have ``timeout`` (30 s), every call ``call_timeout`` (60 s);
None waits forever. A call whose deadline passes is orphaned (the server stops working on it) and
raises :class:`CallTimeoutError`. The connection's default call deadline is kept by one timer per
connection rather than one per call, so that it costs a call nothing: while calls are in flight the
timer ticks every tenth of the deadline and takes a snapshot of the call ids outstanding; a call still
outstanding in the snapshot taken ten ticks ago is overdue (so it fires between 1 and 1.1 times the
deadline). A proxy's own ``timeout`` is exact (a timer of its own). Opening a connection turns the
operating system's errors into :class:`ConnectError` subclasses (``client.opening``; docs/errors.md).

The connection's octets go through an ``aio.client.ClientProtocol``; after each read it calls
:meth:`Connection._on_events`, which settles the futures. A binding without an endpoint is resolved
at the first bind by the connection's resolver (``client.resolve.Resolver``; ``dcerpc.connect``
gives it the endpoint mapper's).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Coroutine
from enum import IntEnum
from typing import Any, TypeVar, cast

from .._errors import (
    BindError,
    BindingError,
    BindTimeoutError,
    CallTimeoutError,
    ConnectionClosedError,
    EndpointNotRegisteredError,
    FaultError,
    RpcError,
)
from ..aio.client import ClientProtocol
from ..auth.base import ClientCredentials
from ..auth.mechs import NTLM, Kerberos, Negotiate
from ..interface import ENCODE_FAILURES, Interface, Operation, ResultDecodeFn
from ..ndr.compiler import EncodeFn
from ..pdu.constants import AuthLevel, ProviderReason, RejectReason
from ..pdu.syntax import SyntaxId
from ..protocol.client import ClientAssociation
from ..protocol.events import (
    AlterContextAccepted,
    BindAccepted,
    BindRejected,
    Closing,
    FaultReceived,
    ProtocolViolation,
    ResponseReceived,
    ShutdownRequested,
)
from ..protocol.limits import Limits
from ..protocol.security import AuthState
from .binding import Binding, parse_binding
from .opening import open_tcp, open_unix
from .resolve import Resolver

__all__ = ["Connection", "connect"]

I = TypeVar("I", bound=Interface)  # noqa: E741


# Requests made in one turn of the loop while others are in flight go out this many per write:
# fewer system calls, while the server already works on the first ones (measured on loopback with
# 64 in flight: one write per request 187,000 calls/s, all in one write at the end of the turn
# 131,000 as the two sides take turns, 16 per write 260,000).
_COALESCE = 16

# The default call deadline is checked this many times per deadline (see the module's docstring).
_TICKS = 10

CONNECT_TIMEOUT = 30.0
"""Seconds to connect, and to bind, unless ``connect(timeout=...)`` says otherwise."""
CALL_TIMEOUT = 60.0
"""Seconds a call waits for its answer unless ``connect(call_timeout=...)`` or the proxy's
``timeout`` says otherwise."""


class _Slots:
    """A counting semaphore whose uncontended path is an attribute test (asyncio.Semaphore's is a
    coroutine call). Take a slot with ``if s.free: s.free -= 1`` else ``await s.wait()``; give it
    back with ``release()``. Waiters are served first come, first served."""

    __slots__ = ("free", "waiters")

    def __init__(self, n: int) -> None:
        self.free = n
        self.waiters: deque[asyncio.Future[None]] = deque()

    async def wait(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            await fut  # released to us: the slot passes without touching ``free``
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed to us as we were cancelled: pass it on
            else:
                self.waiters.remove(fut)
            raise

    def release(self) -> None:
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.free += 1


class Connection:
    """A client association over one transport connection.

    Args:
        binding: where to connect.
        limits: bounds on what the server may make us hold.
        default_timeout: per-call timeout where a proxy sets none (None: wait forever).
        bind_timeout: seconds to wait for a bind or alter_context answer (None: forever).
        max_concurrent_calls: calls in flight at once; more wait their turn.
        auth: the security context to bind with (None: unauthenticated).
        resolver: finds the endpoint when ``binding`` names none (None: such a binding fails).
    """

    def __init__(
        self,
        binding: Binding,
        limits: Limits | None = None,
        default_timeout: float | None = None,
        max_concurrent_calls: int = 64,
        auth: AuthState | None = None,
        resolver: Resolver | None = None,
        bind_timeout: float | None = CONNECT_TIMEOUT,
    ) -> None:
        self.binding = binding
        # Calls beyond this wait their turn here rather than overrun the server's outstanding-call
        # limit (which would answer them with nca_s_server_too_busy).
        self._slots = _Slots(max_concurrent_calls)
        self.assoc = ClientAssociation(limits, auth)
        self.default_timeout = default_timeout
        self.resolver = resolver
        # the octets' way in and out (reads go to the association's inbox), connected by _open
        self._proto = ClientProtocol(self.assoc, self._on_events, self._lost)
        self._calls: dict[int, asyncio.Future[ResponseReceived]] = {}
        self._control: dict[int, asyncio.Future[Any]] = {}
        self._bound: dict[SyntaxId, int] = {}
        self._next_context = 0
        self._closed: BaseException | None = None
        self._bind_lock = asyncio.Lock()
        self._open_timeout: float | None = CONNECT_TIMEOUT
        self.bind_timeout = bind_timeout
        # the default call deadline's timer (module docstring): _sweep_off is true while it is due
        # but not armed, which is the one thing a call tests
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_off = default_timeout is not None
        self._snapshots: deque[frozenset[int]] = deque(maxlen=_TICKS)

    @property
    def _transport(self) -> asyncio.Transport | None:
        return self._proto.transport

    @property
    def protocol(self) -> ClientProtocol:
        """The asyncio protocol that carries this connection (to attach a transport of one's own,
        as dcerpc.testing's in-memory transport does)."""
        return self._proto

    # opening and closing ------------------------------------------------------------------------

    async def _open(self, timeout: float | None) -> None:
        b = self.binding
        if b.protseq == "ncacn_ip_tcp":
            if b.port is None:
                self._open_timeout = timeout
                return  # resolved through the endpoint mapper at the first bind
            await open_tcp(self._proto, b.host or "127.0.0.1", b.port, timeout)
        elif b.protseq == "ncalrpc":
            await open_unix(self._proto, b.endpoint or b.host, timeout)
        else:
            raise BindingError(
                str(b),
                "protocol sequence",
                f"{b.protseq} is not supported by this client yet",
                "ncacn_ip_tcp or ncalrpc",
            )

    async def _resolve_and_open(self, iface: type[Interface]) -> None:
        """Ask the resolver where ``iface`` listens, then connect (once more if that refuses)."""
        b = self.binding
        syntax = iface.__syntax__
        resolver = self.resolver
        if resolver is None:
            raise BindingError(
                str(b),
                "endpoint",
                "there is none and this connection has no resolver",
                "a port (ncacn_ip_tcp:HOST[PORT]), or dcerpc.connect, which asks the endpoint mapper",
            )
        host = b.host or "127.0.0.1"
        for attempt in range(2):
            try:
                endpoint = await resolver.resolve(b, syntax, self._open_timeout)
            except EndpointNotRegisteredError as e:  # name the interface as the caller knows it
                raise EndpointNotRegisteredError(e.host, _iface_name(iface), str(syntax), e.status) from None
            try:
                await open_tcp(self._proto, host, int(endpoint), self._open_timeout)
            except ConnectionRefusedError:
                resolver.forget(b, syntax)  # a remembered port is stale: the service moved
                if attempt:
                    raise
                continue
            self.binding = b.with_endpoint(endpoint)
            return

    async def close(self) -> None:
        """Close the connection; outstanding calls fail with ConnectionClosedError."""
        self._stop_sweep()
        self._proto.close()
        await asyncio.sleep(0)

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def assoc_group_id(self) -> int:
        """The association group this connection belongs to (to join it from another connection)."""
        return self.assoc.assoc_group_id

    # binding --------------------------------------------------------------------------------------

    async def bind(self, iface: type[I], *, assoc_group_id: int = 0, timeout: float | None = None) -> I:
        """A proxy for ``iface`` on this connection (bind first, alter_context after).

        ``timeout``: seconds to wait for the server's answer (default: the connection's
        ``bind_timeout``); when it passes, the connection is closed and BindTimeoutError raised.
        """
        syntax = iface.__syntax__
        async with self._bind_lock:
            if self._transport is None and self._closed is None:
                await self._resolve_and_open(iface)
            if self._closed is not None:
                raise ConnectionClosedError(f"connection to {self.binding} is closed") from self._closed
            if syntax not in self._bound:
                ctx_id = self._next_context
                self._next_context += 1
                if self.assoc.state.value == "idle":
                    cid = self.assoc.bind({ctx_id: syntax}, assoc_group_id)
                else:
                    cid = self.assoc.alter_context({ctx_id: syntax})
                limit = timeout if timeout is not None else self.bind_timeout
                try:
                    accepted, rejected = await self._await_control(cid, limit)
                except TimeoutError:
                    self._proto.close()  # the association is mid-bind: nothing more can be sent on it
                    raise BindTimeoutError(
                        "bind",
                        f"{_iface_name(iface)} {syntax} at {self.binding}",
                        limit or 0,
                        "the server accepted the connection but did not answer: is this port a DCE/RPC "
                        "server? (raise connect(timeout=...) for a slow one)",
                    ) from None
                if ctx_id not in accepted:
                    reason = rejected.get(ctx_id, 0)
                    name = _reason_name(ProviderReason, reason)
                    raise BindError(f"{syntax} rejected by the server: {name}", reason)
                self._bound[syntax] = ctx_id
        proxy: Any = _proxy_class(iface)
        return cast(I, proxy(self, self._bound[syntax]))

    async def _await_control(self, call_id: int, timeout: float | None) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._control[call_id] = fut
        self._proto.flush()
        try:
            if timeout is None:
                return await fut
            async with asyncio.timeout(timeout):
                return await fut
        finally:
            self._control.pop(call_id, None)

    # calls ----------------------------------------------------------------------------------------

    def call(
        self,
        context_id: int,
        op: Operation,
        args: tuple[Any, ...],
        *,
        timeout: float | None = None,
        object: uuid.UUID | None = None,
    ) -> Coroutine[Any, Any, Any]:
        """Send one call and await its result (as the operation's declaration shapes it)."""
        encode, decode = op.client_codecs()
        return self._call(context_id, op.opnum, encode, decode, op, args, timeout, object)

    async def _call(
        self,
        context_id: int,
        opnum: int,
        encode: EncodeFn,
        decode: ResultDecodeFn,
        op: Operation,
        args: tuple[Any, ...],
        timeout: float | None,
        object: uuid.UUID | None,
    ) -> Any:
        # The hot path of every call: what the proxies call, positionally, with their operation's
        # codecs (see ``call``).
        try:
            stub = encode(*args)
        except ENCODE_FAILURES as e:  # which value, and why: found now, at no cost to calls that encode
            raise op.request_error(args, e) from None
        slots = self._slots
        if slots.free:
            slots.free -= 1
        else:
            await slots.wait()
        try:
            if self._closed is not None:
                raise ConnectionClosedError(f"connection to {self.binding} is closed") from self._closed
            assoc = self.assoc
            proto = self._proto
            cid = assoc.request(context_id, opnum, stub, object)
            fut: asyncio.Future[ResponseReceived] = (proto.loop or asyncio.get_running_loop()).create_future()
            calls = self._calls
            calls[cid] = fut
            if len(calls) == 1 or len(assoc.outbox) >= _COALESCE:
                proto.flush()
            else:
                # Others are in flight, and the tasks their answers woke run in this same turn of
                # the loop sending their next calls: those leave together, at the end of the turn
                # or every _COALESCE requests, whichever comes first.
                proto.flush_soon()
            try:
                if timeout is None:  # the connection's deadline, if any (module docstring)
                    if self._sweep_off:
                        self._arm_sweep()
                    reply = await fut
                else:
                    reply = await asyncio.wait_for(asyncio.shield(fut), timeout)
            except TimeoutError:
                assoc.orphan(cid)
                proto.flush()
                limit = timeout if timeout is not None else self.default_timeout
                raise CallTimeoutError(
                    "call",
                    f"{op.name} at {self.binding}",
                    limit or 0,
                    "the call was orphaned; raise the proxy's timeout (or connect(call_timeout=...)) "
                    "for a slow operation",
                ) from None
            except asyncio.CancelledError:
                if not fut.done() or fut.cancelled():
                    assoc.cancel(cid)
                    proto.flush()
                raise
            finally:
                calls.pop(cid, None)
        finally:
            if slots.waiters:
                slots.release()
            else:
                slots.free += 1
        return decode(reply.stub, reply.little_endian, assoc.limits.ndr)

    def _arm_sweep(self) -> None:
        limit = self.default_timeout
        if limit is None or self._closed is not None:
            return
        self._sweep_off = False
        self._snapshots.clear()
        loop = self._proto.loop or asyncio.get_running_loop()
        self._sweep = loop.call_later(limit / _TICKS, self._tick)

    def _tick(self) -> None:
        """Fail the calls outstanding since ``_TICKS`` ticks ago with CallTimeoutError; stop when idle."""
        calls = self._calls
        if not calls or self._closed is not None:
            self._sweep = None
            self._sweep_off = self.default_timeout is not None and self._closed is None
            return
        snapshots = self._snapshots
        now = frozenset(calls)
        if len(snapshots) == _TICKS:
            for cid in snapshots[0] & now:
                fut = calls[cid]
                if not fut.done():  # _call orphans it and raises CallTimeoutError naming the operation
                    fut.set_exception(TimeoutError())
        snapshots.append(now)
        assert self.default_timeout is not None
        loop = self._proto.loop or asyncio.get_running_loop()
        self._sweep = loop.call_later(self.default_timeout / _TICKS, self._tick)

    def _stop_sweep(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self._sweep_off = False

    # events -------------------------------------------------------------------------------------

    def _on_events(self) -> None:
        """Settle the futures of what the association made of the last read (the protocol writes
        whatever was answered meanwhile after this)."""
        for ev in self.assoc.events():
            if type(ev) is ResponseReceived:
                fut = self._calls.pop(ev.call_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(ev)
            elif isinstance(ev, FaultReceived):
                fut2: asyncio.Future[Any] | None = self._calls.get(ev.call_id) or self._control.get(
                    ev.call_id
                )
                if fut2 is not None and not fut2.done():
                    fut2.set_exception(FaultError(ev.status))
            elif isinstance(ev, BindAccepted | AlterContextAccepted):
                for cfut in list(self._control.values()):
                    if not cfut.done():
                        cfut.set_result((ev.accepted, ev.rejected))
                        break
            elif isinstance(ev, BindRejected):
                reason = _reason_name(RejectReason, ev.reason)
                self._fail_all(BindError(f"bind refused (bind_nak): {reason}", ev.reason))
            elif isinstance(ev, ProtocolViolation):
                self._fail_all(RpcError(f"protocol error from {self.binding}: {ev.reason}"))
            elif isinstance(ev, ShutdownRequested):
                pass  # no new calls should be started; existing ones still complete
            elif isinstance(ev, Closing):
                self._proto.close()

    def _fail_all(self, exc: BaseException) -> None:
        for fut in [*self._calls.values(), *self._control.values()]:
            if not fut.done():
                fut.set_exception(exc)

    def _lost(self, exc: BaseException | None) -> None:
        self._closed = exc or ConnectionClosedError("closed")
        self._stop_sweep()
        if self._calls or self._control:
            self._fail_all(
                ConnectionClosedError(f"connection to {self.binding} closed" + (f": {exc}" if exc else ""))
            )


def _iface_name(iface: type[Interface]) -> str:
    """The class name, and the IDL name where it differs: ``Echo (rpcecho)``."""
    name, idl = iface.__name__, iface.__ifname__
    return name if name == idl else f"{name} ({idl})"


def _reason_name(kind: type[IntEnum], value: int) -> str:
    try:
        return kind(value).name.lower()
    except ValueError:
        return str(value)


class _Proxy:
    """Base of generated proxies: holds the connection and the presentation context."""

    __slots__ = ("_conn", "_ctx", "object", "timeout")

    def __init__(self, conn: Connection, context_id: int) -> None:
        self._conn = conn
        self._ctx = context_id
        self.object: uuid.UUID | None = None
        self.timeout: float | None = None


_proxies: dict[type[Interface], type[Any]] = {}


def _proxy_class(iface: type[I]) -> type[I]:
    """A subclass of ``iface`` whose operations call the server (built once per interface)."""
    cls = _proxies.get(iface)
    if cls is None:
        ns: dict[str, Any] = {"__slots__": ()}
        for op in iface.__operations__.values():
            op.compiled()
            ns[op.name] = _remote(op)
        cls = _proxies[iface] = type(f"{iface.__name__}Proxy", (_Proxy, iface), ns)
    return cast(type[I], cls)


def _remote(op: Operation) -> Any:
    """The proxy method of ``op``: a plain function with the operation's own parameters, returning
    the call's coroutine (one coroutine per call, not two). Generated, so that a call costs no
    argument juggling and wrong arguments raise Python's own TypeError at once."""
    names = op.in_names
    encode, decode = op.client_codecs()
    # the declaration's own parameter names (Python names, none of them ``self``); none may
    # shadow the names the generated body reads
    clash = [n for n in names if n.startswith("_dcerpc_")]
    if clash:
        raise TypeError(f"{op.name}: parameter names {clash} are reserved for the generated proxy")
    params = "".join(f", {n}" for n in names)
    values = "".join(f"{n}, " for n in names)
    src = (
        f"def {op.name}(self{params}):\n"
        f"    return self._conn._call(self._ctx, _dcerpc_opnum, _dcerpc_encode, _dcerpc_decode,\n"
        f"        _dcerpc_op, ({values}), self.timeout, self.object)\n"
    )
    namespace: dict[str, Any] = {
        "_dcerpc_opnum": op.opnum,
        "_dcerpc_encode": encode,
        "_dcerpc_decode": decode,
        "_dcerpc_op": op,
    }
    exec(compile(src, f"<proxy {op.name}>", "exec"), namespace)
    remote = namespace[op.name]
    remote.__qualname__ = op.name
    remote.__doc__ = op.function.__doc__
    return remote


async def connect(
    binding: str | Binding,
    *,
    timeout: float | None = CONNECT_TIMEOUT,
    call_timeout: float | None = CALL_TIMEOUT,
    limits: Limits | None = None,
    max_concurrent_calls: int = 64,
    auth: ClientCredentials | None = None,
    level: str | int = "privacy",
    resolver: Resolver | None = None,
) -> Connection:
    """Open a connection to the endpoint a string binding names (``dcerpc.connect`` is this with
    the endpoint mapper as the resolver).

    Args:
        binding: ``"ncacn_ip_tcp:HOST[PORT]"``, ``"ncalrpc:[PATH]"`` ...
        timeout: seconds to wait for the transport connection, and again for each bind's answer
            (None: wait forever); ConnectTimeoutError / BindTimeoutError when they pass.
        call_timeout: seconds each call waits for its answer unless its proxy's ``timeout`` says
            otherwise (None: wait forever); CallTimeoutError when it passes.
        max_concurrent_calls: calls in flight at once on this connection; more wait their turn.
        auth: credentials to authenticate with (None: anonymous, unauthenticated).
        level: protection when ``auth`` is given: "connect", "call", "packet", "integrity",
            "privacy" (or the AuthLevel number). The binding's ``sign`` / ``seal`` options set
            integrity / privacy too.
        resolver: finds the endpoint of an interface when the binding names none (at the first
            bind); None: such a binding fails at bind.
    """
    b = parse_binding(binding) if isinstance(binding, str) else binding
    state = None
    if auth is not None:
        if "seal" in b.flags:
            level = "privacy"
        elif "sign" in b.flags:
            level = "integrity"
        elif "connect" in b.flags:
            level = "connect"
        auth = _mechanism_from_binding(auth, b.flags)
        number = _auth_level(level)
        # Samba's binding option: the host name the service principal names (Kerberos will not
        # ask for a ticket to an IP address)
        target = b.options.get("target_hostname") or b.host or "localhost"
        ctx = auth.client_context(target, number)
        state = AuthState(ctx, auth.auth_type, number, context_id=0, header_sign=True)
    conn = Connection(b, limits, call_timeout, max_concurrent_calls, state, resolver, timeout)
    await conn._open(timeout)
    return conn


def _auth_level(level: str | int) -> AuthLevel:
    try:
        return AuthLevel[level.upper()] if isinstance(level, str) else AuthLevel(level)
    except (KeyError, ValueError):
        names = ", ".join(lv.name.lower() for lv in AuthLevel if lv.name != "DEFAULT")
        raise RpcError(f"unknown authentication level {level!r}; expected one of {names}") from None


def _mechanism_from_binding(auth: ClientCredentials, flags: frozenset[str] | set[str]) -> ClientCredentials:
    """The binding options ntlm / spnego / krb5 choose the mechanism for a user name and password."""
    if isinstance(auth, NTLM):
        domain, user, password = auth.domain, auth.user, auth.password
    elif isinstance(auth, Negotiate) and auth.user is not None:
        domain, user, password = auth.domain, auth.user, auth.password or ""
    else:
        return auth
    if "spnego" in flags and not isinstance(auth, Negotiate):
        return Negotiate(domain, user, password, kerberos=False)  # NTLM credentials: NTLM inside
    if "ntlm" in flags and not isinstance(auth, NTLM):
        return NTLM(domain, user, password)
    if "krb5" in flags:
        principal = f"{user}@{domain.upper()}" if domain and "@" not in user else user
        return Kerberos(principal, password)
    return auth
