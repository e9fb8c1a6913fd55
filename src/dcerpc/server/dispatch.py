"""What happens to a received call: resolved once per operation, checked, decoded, run in a Task of
its own, answered; and the fault each failure gets.

:class:`Dispatcher` owns one connection's calls. After each read the adapter (``aio.server``) calls
:meth:`Dispatcher.handle_events`; for each call, in order:

    resolve    context id and opnum -> Target (cached per connection, valid for a server generation)
    level      the interface's required auth level, before the stub is read (MS-RPCE 3.3.3.4.1)
    decode     the [in] stub, by the operation's compiled plan
    handles    every [in] context handle must be one of the caller's association group's
    run        a new asyncio Task runs the implementation in a context of its own (the current
               call set in it): current_task(), asyncio.timeout, TaskGroup, cancellation and context
               variables behave as in any task; a plain function runs in a worker thread
               (asyncio.to_thread), awaited by the task
    answer     the result encoded as the response stub; or a fault

Every failure has its fault. As Windows answers (observed; Samba's server does the same), only an
operation that does not exist is marked PFC_DID_NOT_EXECUTE at this level; the association's own
refusals carry it as rules.ANSWERS says (docs/protocol-behaviours.md):

    interface not served                  nca_s_unk_if (did not execute)
    unknown opnum                         nca_s_op_rng_error (did not execute)
    the server is draining (stopping)     nca_s_server_too_busy (did not execute: the client may
                                          go elsewhere), as the operation resolves while it drains
    auth level below the required one     rpc_s_access_denied (stub unread); a required level
                                          also requires a principal (anonymous NTLM has none)
    stub does not decode                  rpc_x_bad_stub_data
    a context handle of another group     nca_s_fault_context_mismatch
    the implementation raises FaultError  its status alone (a fault PDU carries no text: C706
                                          12.6.4.7); the status and message are logged
    NotImplementedError                   nca_s_op_rng_error (an operation the implementation does
                                          not define is refused when it registers: registry.py)
    any other exception                   nca_s_fault_unspec (logged with the traceback)
    the result does not encode            rpc_x_bad_stub_data, as Samba's stubs answer a push that
                                          fails (DCERPC_FAULT_NDR); logged naming the operation and
                                          the result field (a server bug)

The log lines a peer can provoke (bad stubs, faults, results that do not encode) are rate-limited
(``ratelimit.py``).
    cancelled by the client (co_cancel)   nca_s_fault_cancel (C706 12.4.2)
    orphaned by the client                the task is cancelled, nothing is sent (the association
                                          drops the answer of an orphaned call)

A call whose context, opnum and caller (auth type, level, principal, object) are those of one
checked before on the connection takes that call's **route** (:class:`Route`): what it runs, that
the policy allowed it (a decision the policy asks to see each time, audit-only, makes no route),
that its auth level was enough, and its audit site. It pays one look-up and four ``is`` tests, then
its call rate and its interface's per-call flags (the size); everything else was settled once.

An observed connection (the server has an ``audit.Audit``, or DEBUG logging was on when it was
accepted) reports its association, binds, handshakes, violations and calls to it: each read's
calls are timed from the read (one clock per read, handed to the call's task), the calls answered
in one turn of the loop are reported together after it (``_report``: their answers left in one
write; at the last answer itself when no other can join it), its protocol counts the octets it
writes (``StreamProtocol.counting``). An unobserved call pays one ``is not None`` test, at its
answer, and two more arguments to its task (and its connection's writes one test each).

A source's call rate (policy.rate) is taken the same way: its bucket is refilled once per read
(``Meter.refill``), and each call of the read takes its token from the level, one subtraction.

The task's cost: one Task per call, its first step one turn of the loop after the read (Python 3.11
has no eager start; on 3.12 and later the task starts eagerly, inside the read, and a call that does
not wait is answered before the read's one write). Answers made while a read is handled leave in
one write after it; on 3.11 the calls of one read answer in the next turn, and what the first of
them answer waits for the last to start (``_unstarted``) so that they too leave together.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

from .._errors import FaultError, NdrError
from ..aio.server import ServerProtocol
from ..audit import Audit, Site, peer_text
from ..interface import Interface, Operation
from ..ndr.compiler import DecodeContext, DecodeFn, uses_context
from ..ndr.declarations import ContextHandle
from ..pdu import constants as const
from ..pdu.syntax import SyntaxId
from ..policy.rate import Level, Meter, Throttle
from ..policy.rules import Action, Policy
from ..protocol.events import (
    Authenticated,
    BindAccepted,
    CallCancelled,
    Caller,
    CallOrphaned,
    CallReceived,
    Closing,
    ProtocolViolation,
)
from ..protocol.groups import Group
from ..protocol.limits import Limits
from ..protocol.server import ServerAssociation, State
from .context import CallContext, _current
from .enforce import Enforcer
from .flags import InterfaceFlags
from .ratelimit import LogLimiter

_Task = asyncio.Task  # once per call: a global rather than a module attribute
_clock = time.perf_counter_ns  # a read's arrival, when observed (audit, metrics)

__all__ = ["Dispatcher", "Host", "Target", "foreign_handle", "status_of"]

log = logging.getLogger("dcerpc.server")
_limited = LogLimiter(log)  # lines a peer can make: a flood of them is not a flood of lines


class Target:
    """One served operation, resolved: the bound method, whether it is a coroutine function, its
    codecs, and the lowest authentication level it is served at."""

    __slots__ = (
        "decode_be",
        "decode_le",
        "encode_response",
        "flags",
        "handle_params",
        "ifname",
        "is_async",
        "key",
        "level",
        "method",
        "name",
        "op",
        "operation",
        "shared_context",
    )

    def __init__(
        self, impl: Interface, op: Operation, level: int, flags: InterfaceFlags | None = None
    ) -> None:
        self.op = op
        self.flags = flags  # registration flags (None: none set; the common case costs one test)
        self.name = f"{type(impl).__name__}.{op.name}"  # for log lines
        self.ifname: str = op.interface.__ifname__  # the audit trail's and the metrics' names
        self.operation = op.name
        self.key = (self.ifname, op.name)  # the metrics' key: made once, not per call
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

    def label(self) -> str:
        """For log lines: ``rpcecho.AddOne (EchoServer)``, the interface's name and the class."""
        return f"{self.ifname}.{self.operation} ({self.name.partition('.')[0]})"


class Route(Caller):
    """What a connection found a call of one context and opnum by one caller to be (a checked
    call's, ``Dispatcher._admit``): the operation it runs, and its audit site when observed. The
    caller is what a call's checks read of it and the audit trail names (the context's interface
    is the same for all its calls)."""

    __slots__ = ("site", "target")

    def __init__(self, ev: CallReceived, target: Target, site: Site | None) -> None:
        super().__init__(ev)
        self.target = target
        self.site = site


def foreign_handle(target: Target, args: tuple[Any, ...], group: Group) -> bool:
    """True when an [in] context handle is not one of ``group``'s (nca_s_fault_context_mismatch)."""
    for i in target.handle_params:
        handle = args[i]
        if isinstance(handle, ContextHandle) and not handle.is_null and group.lookup(handle) is None:
            return True
    return False


def status_of(exc: Exception, where: str, peer: object = None) -> int:
    """The fault status for an exception an implementation raised (logged: a FaultError as one
    line, rate-limited; another exception, a bug, with its traceback)."""
    if isinstance(exc, FaultError):
        _limited.info(
            "fault",
            "%s faulted %s (0x%08x) to %s: %s",
            where,
            exc.name,
            exc.status,
            peer,
            exc.message or "(no message)",
        )
        return exc.status
    if isinstance(exc, NotImplementedError):
        return const.NCA_S_OP_RNG_ERROR
    log.error("%s raised", where, exc_info=exc)
    return const.NCA_S_FAULT_UNSPEC


class Host(Protocol):
    """What a dispatcher needs of its server (``server.Server`` is one)."""

    @property
    def generation(self) -> int:
        """Bumped whenever what an operation resolves to may change."""
        ...

    @property
    def limits(self) -> Limits: ...

    @property
    def stats(self) -> dict[str, int]: ...

    @property
    def enforcer(self) -> Enforcer:
        """The policy and its counters."""
        ...

    def control_wait(self, peer: Any, now: float, n: int) -> float:
        """Seconds ``peer``'s source must wait after ``n`` more control PDUs (0: within its rate)."""
        ...

    def record_paced(self, peer: Any, seconds: float) -> None:
        """Count and log a connection held back for sending control PDUs too fast."""
        ...

    def target(self, interface: SyntaxId, opnum: int) -> Target | int:
        """What a call runs, or the fault status when nothing does (nca_s_server_too_busy too,
        once the server drains: calls in progress finish, new ones are refused)."""
        ...

    def release(self, dispatcher: Dispatcher) -> None:
        """The connection is gone."""
        ...

    def record_violation(self, peer: Any, event: ProtocolViolation) -> None:
        """Count and log a protocol violation."""
        ...

    def record_expiry(self, peer: Any, kind: str) -> None:
        """Count and log a connection closed by a deadline (aio.deadlines names the kind)."""
        ...

    def observer(self) -> Audit | None:
        """What observes a new connection (audit events, metrics, debug lines), if anything."""
        ...


class Dispatcher:
    """One server connection's calls (see the module docstring).

    Args:
        host: the server.
        proto: the connection's adapter; the dispatcher attaches itself to it.
        assoc: the connection's association (reading from ``proto.inbox``).
    """

    def __init__(self, host: Host, proto: ServerProtocol, assoc: ServerAssociation) -> None:
        self.host = host
        self.proto = proto
        self.assoc = assoc
        self.tasks: dict[int, asyncio.Task[None]] = {}  # call_id -> the task running it
        self._loop = proto.loop or asyncio.get_running_loop()
        self._targets: dict[int, Target | int] = {}  # context id << 16 | opnum -> what it runs
        self._generation = -1  # the host's generation the above was resolved in
        self._policy: Policy | None = None  # the host's policy in that generation
        self._throttle: Throttle | None = None  # and its rate limits
        self._meter: Meter | None = None  # this source's call rate (None: not limited)
        self._level: Level | None = None  # its level for the read's calls (refilled per read)
        self._arrived = 0  # perf_counter_ns() of the read being handled (when observed)
        self._rate_key: str | None = None  # the rate limits' key for this peer (None: not limited)
        self._control = 0  # the association's control PDUs already paced (Limits.control_rate)
        self._decided: dict[tuple[int, int, int, str | None], bool] = {}  # its calls allowed, by caller
        self._routes: dict[int, Route] = {}  # context id << 16 | opnum -> its last caller's route
        self._answered: list[tuple[CallReceived, Site, int, int]] = []  # to report, when observed
        self._unstarted = 0  # tasks made whose first step has not run yet
        # observed (audit events, metrics, debug lines): one test of this per call when not
        self._audit = audit = host.observer()
        self.number = 0  # the association's number in the audit trail
        self.calls = 0  # calls answered (counted when observed)
        self.opened = 0  # perf_counter_ns() when accepted (when observed)
        self.sites: dict[Any, Site] = {}  # the observer's call sites (when observed)
        proto.attach(assoc, self.handle_events, self.connection_lost)
        if audit is not None:
            proto.counting = True
            audit.opened(self, proto.credentials)
        limits = host.limits
        proto.set_deadlines(
            bind=limits.bind_timeout,
            pdu=limits.pdu_timeout,
            idle=limits.idle_timeout,
            write=limits.write_timeout,
            unbound=self.unbound,
            busy=self.busy,
            on_expired=self._expired,
        )

    @property
    def peer(self) -> Any:
        return self.proto.peer

    @property
    def local(self) -> Any:
        return self.proto.local

    @property
    def transport(self) -> str:
        return self.proto.transport_name

    def busy(self) -> bool:
        """Calls are in progress (an idle connection is one without)."""
        return bool(self.tasks)

    def unbound(self) -> bool:
        """The association still waits for its bind, or has made no call and its handshake is not
        finished (the auth3 or alter_context that would finish it never came): what the bind
        deadline asks. A connection that has made calls is past it (no call resolved yet: the
        per-connection target cache was never filled)."""
        assoc = self.assoc
        if assoc.state is State.AWAIT_BIND:
            return True
        if self._generation != -1 or not assoc.auth:
            return False
        return not any(s.finished for s in assoc.auth.values())

    def close(self) -> None:
        """Close the connection now (server shutdown)."""
        self.proto.close()

    def shutdown(self) -> None:
        """Ask the client to end the association (the server is stopping): a shutdown PDU."""
        if self.assoc.state is State.OPEN:
            self.assoc.shutdown()
            self.proto.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        for task in self.tasks.values():
            task.cancel()
        self.tasks.clear()
        self.host.release(self)
        if self._audit is not None:
            self._report()  # its calls before its close
            self._audit.closed(self, self.proto.received, self.proto.sent)

    def _expired(self, kind: str) -> None:
        """A deadline passed (aio.deadlines): the connection closes, the server counts and logs it."""
        self.host.record_expiry(self.proto.peer, kind)
        if self._audit is not None:
            self._audit.expired(self, kind)

    # events ---------------------------------------------------------------------------------------

    def handle_events(self) -> None:
        """Act on what the association made of the last read."""
        if self._audit is not None:
            self._arrived = _clock()  # the read's calls are timed from here
        if self._meter is not None:
            self._level = self._meter.refill(self._loop.time())  # and take their tokens from this
        for ev in self.assoc.events():
            if type(ev) is CallReceived:
                self._serve(ev)
            elif isinstance(ev, CallCancelled | CallOrphaned):
                task = self.tasks.get(ev.call_id)
                if task is not None:
                    # after the task's first step, which was scheduled before this (a task cancelled
                    # before it starts would end without running a line of its own, unanswered)
                    self._loop.call_soon(task.cancel)
            elif isinstance(ev, ProtocolViolation):
                self.host.record_violation(self.proto.peer, ev)
                if self._audit is not None:
                    self._audit.violation(self, ev)
            elif isinstance(ev, Closing):
                peer = peer_text(self.proto.peer)
                _limited.info("closing", "closing connection from %s: %s", peer, ev.reason)
                self.proto.close_gracefully()
            elif self._audit is not None:
                if type(ev) is BindAccepted:
                    self._audit.bound(self, ev)
                elif type(ev) is Authenticated:
                    self._audit.authenticated(self, ev)
        if self.assoc.control != self._control:  # a bind, alter_context, co_cancel, ...: paced
            self._pace()

    def _pace(self) -> None:
        """The source's control PDUs against Limits.control_rate: an overdrawn source's
        connection is not read until its bucket refills (at most 10 s at a time)."""
        n = self.assoc.control - self._control
        self._control = self.assoc.control
        wait = self.host.control_wait(self.proto.peer, self._loop.time(), n)
        if wait > 0:
            self.host.record_paced(self.proto.peer, wait)
            self.proto.hold(min(wait, 10.0))

    # calls ----------------------------------------------------------------------------------------

    def _serve(self, ev: CallReceived, rated: bool = False) -> None:
        """Check a call and decode its stub (a failure is answered at once), then start the task
        that runs it. A call of a context and opnum by the same caller as one checked before on
        this connection (its :class:`Route`) is past every check but its source's call rate and its
        interface's per-call flags: one look-up and four ``is`` tests."""
        key = ev.context_id << 16 | ev.opnum
        route = self._routes.get(key) if self._generation == self.host.generation else None
        if (
            route is None or route.principal is not ev.principal or route.auth_level is not ev.auth_level
            or route.auth_type is not ev.auth_type or route.object is not ev.object
        ):  # fmt: skip
            route = None
            target = self._resolve(ev, key)
            if target is None:
                return  # refused (answered)
        else:
            target = route.target
        # every call, routed or not: its source's call rate, then its interface's flags
        level = self._level
        if level is not None and not rated:
            if level.tokens >= 1.0:  # (floats both: the interpreter's float path, half the cost)
                level.tokens -= 1.0
            else:
                self._over_rate(ev)
                return
        if target.flags is not None and self._flags_refuse(ev, target.flags):
            return
        if route is None:
            route = self._admit(ev, key, target)
            if route is None:
                return  # refused (answered)
        host = self.host
        decode = target.decode_le if ev.little_endian else target.decode_be
        try:
            args = decode(ev.stub, 0, target.shared_context or DecodeContext(host.limits.ndr))[0]
        except NdrError as e:
            _limited.info(
                "bad_stub",
                "bad stub from %s for %s opnum %d: %s",
                peer_text(self.proto.peer),
                ev.interface,
                ev.opnum,
                e,
            )
            self._fault(ev, const.RPC_X_BAD_STUB_DATA)
            return
        if target.handle_params:
            assert self.assoc.group is not None
            if foreign_handle(target, args, self.assoc.group):
                self._fault(ev, const.NCA_S_FAULT_CONTEXT_MISMATCH)
                return
        self._unstarted += 1
        # One Task per call, in a copy of the current context (the task's own: no other copy).
        # The loop's create_task: measured cheaper than asyncio.Task(..., name=...) on uvloop.
        if sys.version_info >= (3, 12):
            task = _Task(
                self._run(ev, target, args, self._arrived, route.site), loop=self._loop, eager_start=True
            )
            if not task.done():
                self.tasks[ev.call_id] = task
        else:
            self.tasks[ev.call_id] = self._loop.create_task(
                self._run(ev, target, args, self._arrived, route.site)
            )

    def _resolve(self, ev: CallReceived, key: int) -> Target | None:
        """What a call not routed before runs, if the policy lets it (answered and None when it
        does not, or when nothing does); its call rate and flags are checked next, then
        :meth:`_admit`."""
        host = self.host
        # resolved per connection by context and opnum (a context's interface never changes),
        # valid while the host's operations are as they were
        generation = host.generation
        target = self._targets.get(key) if self._generation == generation else None
        if target is None:
            # bounded: opnums are the client's choice (65536 of them per context)
            if self._generation != generation or len(self._targets) >= 256:
                self._targets.clear()
                self._decided.clear()
                self._routes.clear()
                self._generation = generation
                self._policy = host.enforcer.policy
                self._throttle = host.enforcer.throttle
                self._rate_key = host.enforcer.counted_as(self.proto.peer)
                throttle = self._throttle
                meter = self._meter = None if throttle is None else throttle.meter("calls", self._rate_key)
                self._level = None if meter is None else meter.refill(self._loop.time())
            target = self._targets[key] = host.target(ev.interface, ev.opnum)
        if isinstance(target, int):  # no such operation: its status
            self._fault(ev, target, did_not_execute=True)
            return None
        if (
            self._policy is not None
            and (key, ev.auth_type, ev.auth_level, ev.principal) not in self._decided
            and not self._permitted(ev, key)
        ):
            self._fault(ev, const.RPC_S_ACCESS_DENIED)
            return None
        return target

    def _admit(self, ev: CallReceived, key: int, target: Target) -> Route | None:
        """The last check of a call not routed before, its auth level (answered and None when it
        is short); its route, kept for the caller's next calls unless the policy asks to see each
        of them (audit-only)."""
        if ev.auth_level < target.level or (target.level > 1 and ev.principal is None):
            # MS-RPCE 3.3.3.4.1: below the interface's required level -> access denied, unread. A
            # required level also requires somebody: an anonymous (null-session) context reaches
            # connect level but proves no principal, and serves only interfaces that require no
            # level (Windows lets null sessions through RPC_IF_ALLOW_SECURE_ONLY; we do not)
            _limited.warning(
                "auth_level",
                "refused %s opnum %d from %s: auth level %d%s, %d required",
                ev.interface,
                ev.opnum,
                peer_text(self.proto.peer),
                ev.auth_level,
                "" if ev.principal is not None else " (no principal)",
                target.level,
            )
            self._fault(ev, const.RPC_S_ACCESS_DENIED)
            return None
        audit = self._audit
        route = Route(ev, target, audit.site(self, ev, target) if audit is not None else None)
        if self._policy is None or (key, ev.auth_type, ev.auth_level, ev.principal) in self._decided:
            if len(self._routes) >= 256:  # bounded: the keys are partly the client's choice
                self._routes.clear()
            self._routes[key] = route
        return route

    def _flags_refuse(self, ev: CallReceived, flags: InterfaceFlags) -> bool:
        """Refuse (answered) a call its interface's registration flags do not take: transport,
        auth level, size, before its stub is read (``flags.InterfaceFlags``; concurrency is
        counted when the call's task starts)."""
        transport = self.proto.transport_name
        refused = flags.refusal(transport, ev.auth_level, len(ev.stub))
        if refused is None:
            return False
        _limited.info(
            "interface_flags",
            "refused %s opnum %d from %s: %s",
            ev.interface,
            ev.opnum,
            peer_text(self.proto.peer),
            refused,
        )
        self._fault(ev, const.RPC_S_ACCESS_DENIED)
        return True

    def _over_rate(self, ev: CallReceived) -> None:
        """The call is over its source's call rate (policy.rate): answered nca_s_server_too_busy,
        did-not-execute; or, when the policy tarpits, served that much later (the connection's
        other calls go on meanwhile)."""
        assert self._meter is not None and self._throttle is not None
        throttle = self._throttle
        self._meter.refused()
        self.host.enforcer.over_rate("calls", self.proto.peer)
        if throttle.limits.action == "tarpit":
            self._loop.call_later(throttle.limits.tarpit_seconds, self._serve_late, ev)
        else:
            self._fault(ev, const.NCA_S_SERVER_TOO_BUSY, did_not_execute=True)

    def _serve_late(self, ev: CallReceived) -> None:
        """A tarpitted call's wait is over (unless its connection went meanwhile); timed, when
        observed, from now."""
        if self.assoc.alive:
            if self._audit is not None:
                self._arrived = _clock()
            self._serve(ev, rated=True)

    def _permitted(self, ev: CallReceived, key: int) -> bool:
        """The policy lets this call run (asked when ``_resolve`` did not find it allowed before).
        Allowed calls are remembered per connection by context, opnum and caller (bounded: the keys
        are the client's choice); denied and audited ones are asked each time, so that each is
        recorded."""
        proto = self.proto
        decision = self.host.enforcer.permits(
            proto.peer,
            proto.transport_name,
            ev.interface,
            ev.opnum,
            ev.auth_type,
            ev.auth_level,
            ev.principal,
        )
        if decision.action is Action.ALLOW:
            if len(self._decided) >= 256:
                self._decided.clear()
            self._decided[key, ev.auth_type, ev.auth_level, ev.principal] = True
        return not decision.denied

    async def _run(
        self, ev: CallReceived, target: Target, args: tuple[Any, ...], started: int, site: Site | None
    ) -> None:
        """The call's task: run the implementation, then answer (on an observed connection,
        ``started``: perf_counter_ns() of the read that completed the call, ``site``: its audit
        site; else 0 and None)."""
        self._unstarted -= 1
        if target.flags is not None and not target.flags.enter():  # max_calls running already
            self.tasks.pop(ev.call_id, None)
            self._fault(ev, const.NCA_S_SERVER_TOO_BUSY, did_not_execute=True)
            return
        _current.set((self, ev))  # in the task's own context: the call's alone
        try:
            if target.is_async:
                result = await target.method(*args)
            else:
                result = await asyncio.to_thread(target.method, *args)
        except asyncio.CancelledError:
            self.tasks.pop(ev.call_id, None)
            if target.flags is not None:
                target.flags.leave()
            # dropped by the association when orphaned
            self._fault(ev, const.NCA_S_FAULT_CANCEL, started=started)
            return
        except Exception as e:
            self.tasks.pop(ev.call_id, None)
            if target.flags is not None:
                target.flags.leave()
            self._fault(ev, status_of(e, target.label(), self.proto.peer), started=started)
            return
        self.tasks.pop(ev.call_id, None)
        if target.flags is not None:
            target.flags.leave()
        try:
            stub = target.encode_response(result, args)
        except Exception as e:  # NdrError, or struct's and Python's own for values of the wrong kind
            # which field, and why: found now by walking the result again (no cost to calls that
            # encode); answered as Samba's stubs answer a failed push (DCERPC_FAULT_NDR)
            _limited.error(
                "bad_result",
                "%s returned a value that does not encode, answered rpc_x_bad_stub_data: %s",
                target.label(),
                target.op.result_error(result, args, e),
            )
            self._fault(ev, const.RPC_X_BAD_STUB_DATA, started=started)
            return
        if not self.assoc.respond(ev.call_id, stub, ev.context_id):
            self.handle_events()  # a fault went instead (no memory for the answer): it is reported
        proto = self.proto
        if not proto.reading:  # as _sent, inline: once per call
            if self._unstarted:
                proto.flush_soon()
            else:
                proto.flush()
        if site is not None:  # the one test an unobserved call pays
            # reported with the others of this turn, after it (_report): their answers leave
            # together; at once when none can join it (no task of the connection's is left, and
            # no read is being handled: one call in flight, or a turn's last), with no callback
            done = self._answered
            done.append((ev, site, started, len(stub)))
            if self.tasks or self._unstarted or proto.reading:
                if len(done) == 1:
                    self._loop.call_soon(self._report)
            else:
                self._report()

    def _report(self) -> None:
        """Tell the observer of the calls answered since the last report."""
        done = self._answered
        if done:
            self._answered = []
            assert self._audit is not None
            self._audit.answered_all(self, done)

    def _fault(self, ev: CallReceived, status: int, did_not_execute: bool = False, started: int = 0) -> None:
        self.host.stats["faults"] += 1
        self.assoc.fault(ev.call_id, status, ev.context_id, did_not_execute)
        self._sent()
        audit = self._audit
        if audit is not None:
            # the operation, when the call got as far as resolving it (cached per connection)
            target = self._targets.get(ev.context_id << 16 | ev.opnum)
            audit.faulted(self, ev, target if isinstance(target, Target) else None, status, started)

    def _sent(self) -> None:
        """An answer is in the outbox: write it, unless more answers are about to join it."""
        proto = self.proto
        if proto.reading:
            return  # everything answered within a read goes out in one write after it
        if self._unstarted:
            proto.flush_soon()  # others of the same read start in this turn: one write after them
        else:
            proto.flush()

    def call_context(self, ev: CallReceived) -> CallContext:
        """What ``current_call()`` returns during ``ev`` (made when first asked for)."""
        proto = self.proto
        assert self.assoc.group is not None
        return CallContext(
            peer=proto.peer,
            local=proto.local,
            transport=proto.transport_name,
            interface=ev.interface,
            opnum=ev.opnum,
            call_id=ev.call_id,
            group=self.assoc.group,
            object=ev.object,
            auth_type=ev.auth_type,
            auth_level=ev.auth_level,
            principal=ev.principal,
            peer_credentials=proto.credentials,
            limits=self.host.limits,
            enforcer=self.host.enforcer,
        )
