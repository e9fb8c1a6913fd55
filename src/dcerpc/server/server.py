"""Serve interface implementations over TCP (IPv4, IPv6) and Unix sockets (ncalrpc).

The server holds what its connections share: the served operations (resolved once each, see
``dispatch.Target``), association groups, limits, security providers, counters. Each accepted
connection is an ``aio.server.ServerProtocol`` (octets) that the server's :meth:`Server.accept`
gives an association and a ``dispatch.Dispatcher`` (calls); the dispatcher reports back through
:meth:`Server.release` and :meth:`Server.record_violation`.

What happens is observed when the server is given an :class:`~dcerpc.audit.Audit` (audit events,
metrics counters; ``dcerpc.metrics`` serves them), or when the ``dcerpc.server`` logger is at
DEBUG as a connection is accepted (one line per connection, bind and call).

The first listener of the process freezes what start-up made (:func:`settle_heap`): the cyclic
collector's full passes then walk only what connections hold, however often a peer sets them off.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from ..aio.server import ServerProtocol
from ..audit import Audit, peer_text
from ..auth.base import SecurityProvider
from ..interface import Interface
from ..mgmt.idl import Mgmt
from ..mgmt.service import MgmtService
from ..pdu import constants as const
from ..pdu.syntax import SyntaxId
from ..policy.rate import Bucket, RateLimits, Throttle
from ..policy.rules import Decision, Policy, Subject
from ..protocol.budget import Budget, process_budget
from ..protocol.events import ProtocolViolation
from ..protocol.groups import GroupTable
from ..protocol.limits import Limits
from ..protocol.rules import Violation
from ..protocol.server import ServerAssociation, new_stats
from ..tuning import settle_heap
from .context import current_call
from .dispatch import Dispatcher, Target
from .enforce import Enforcer, source_text
from .flags import InterfaceFlags
from .ratelimit import LogLimiter
from .registry import Registry

__all__ = ["Server", "settle_heap"]

log = logging.getLogger("dcerpc.server")
_limited = LogLimiter(log)  # lines a peer can make: a flood of them is not a flood of lines

_MAX_TARGETS = 4096  # resolved operations kept (every opnum 0..65535 of every interface could be asked)


_EXPIRED = {  # what each deadline's log line says (aio.deadlines names them)
    "bind_timeout": "no bind within the bind deadline",
    "pdu_timeout": "a PDU not whole within the PDU deadline of its first octet",
    "idle_timeout": "idle",
    "write_timeout": "the peer read none of our answers within the write deadline",
}


_AUTH_FAILURES = frozenset({Violation.AUTH_REFUSED, Violation.ALTER_AUTH_REFUSED, Violation.AUTH3_REFUSED})


def _resume(proto: ServerProtocol) -> None:
    """A tarpitted connection's wait is over: read it."""
    t = proto.transport
    if t is not None and not t.is_closing():
        t.resume_reading()


def _throttle(kind: str, rate: float, burst: int) -> Throttle | None:
    """One kind's per-source buckets from a Limits rate (0: none)."""
    if rate <= 0:
        return None
    bucket = Bucket(float(rate), float(max(1, burst)))
    return Throttle(RateLimits(control=bucket) if kind == "control" else RateLimits(handshakes=bucket))


def _interface_uuid(interface: type[Interface] | SyntaxId | uuid.UUID | str) -> uuid.UUID:
    """The UUID an interface is named by: its class, its syntax, the UUID, or its text."""
    if isinstance(interface, type):
        return interface.__syntax__.uuid
    if isinstance(interface, SyntaxId):
        return interface.uuid
    return uuid.UUID(str(interface))


def _caller_may_see(interface: uuid.UUID) -> bool:
    """mgmt's inq_if_ids asks the policy, through the call being served, what its caller sees."""
    return current_call().may_see(interface)


def _event_loop_policy() -> None:
    """Use uvloop when it is installed (a faster event loop; optional)."""
    try:
        import uvloop  # type: ignore[import-not-found, unused-ignore]  # noqa: PLC0415
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


class Server:
    """An RPC server: implementations, listeners, and the state their connections share.

        server = Server(EchoServer())
        host, port = await server.listen_tcp("127.0.0.1", 0)
        ...
        await server.close()           # stop listening, let calls finish, close connections

    Args:
        implementations: instances of interface implementations to serve.
        limits: per-connection and per-server bounds.
        security: providers that accept authenticated binds (by their auth_type).
        mgmt: serve the remote management interface too (on by default: every endpoint offers it).
        min_auth_level: the lowest authentication level a call may arrive at (1: none, 2: connect,
            3: call, 4: packet, 5: integrity, 6: privacy); calls below it are refused with
            access denied before their stub is read. :meth:`require_auth` sets it per interface.
        budget: the memory budget its connections draw on (``protocol.budget``; default the one
            every server of the process shares).
        policy: who may call what (``dcerpc.policy``; :attr:`policy` replaces it while serving).
        audit: where its audit events go and the counters its metrics read (``dcerpc.audit``);
            several servers may share one. None: no events.
        metrics: keep the per-call metrics counters (an ``Audit`` without sinks is made when
            ``audit`` is None); ``dcerpc.metrics.start_metrics`` serves them over HTTP.
    """

    use_uvloop = staticmethod(_event_loop_policy)

    def __init__(
        self,
        *implementations: Interface,
        limits: Limits | None = None,
        security: list[SecurityProvider] | None = None,
        mgmt: bool = True,
        min_auth_level: int = 1,
        budget: Budget | None = None,
        policy: Policy | None = None,
        audit: Audit | None = None,
        metrics: bool = False,
    ) -> None:
        self.security = {p.auth_type: p for p in security or []}
        self._targets: dict[tuple[SyntaxId, int], Target | int] = {}
        self.generation = 0  # bumped whenever what an operation resolves to may change
        self._min_auth_level = int(min_auth_level)
        self._interface_levels: dict[uuid.UUID, int] = {}
        self._flags: dict[uuid.UUID, InterfaceFlags] = {}  # registration flags, by interface
        self.stats: dict[str, int] = new_stats()  # see protocol.server.STATS
        self.registry = Registry()
        for impl in implementations:
            self.registry.add(impl)
        if mgmt and self.registry.match(Mgmt.__syntax__) is None:
            self.registry.add(MgmtService(self.registry.interfaces, self.stats, visible=_caller_may_see))
        self.limits = limits or Limits()
        self.budget = budget if budget is not None else process_budget()
        self.enforcer = Enforcer(policy, on_change=self._forget_targets)
        self.enforcer.on_decision = self._policy_event  # denials and audits: the audit trail
        self.draining = False  # close() has begun: new calls are refused (nca_s_server_too_busy)
        # per source, bounded like any bucket table: control PDUs (Limits.control_rate) and
        # security contexts started (Limits.handshake_rate)
        limits = self.limits
        self._control = _throttle("control", limits.control_rate, limits.control_burst)
        self._handshakes = _throttle("handshakes", limits.handshake_rate, limits.handshake_burst)
        self.groups = GroupTable(
            on_rundown_error=lambda e: log.error("context handle rundown failed: %r", e),
            max_handles=self.limits.max_context_handles,
        )
        self._listeners: list[asyncio.Server] = []
        self._connections: set[Dispatcher] = set()
        self.addresses: list[Any] = []
        self.violations: Counter[str] = Counter()
        # connections refused at accept or closed by a deadline, by kind: connection_limit,
        # source_limit, bind_timeout, pdu_timeout, idle_timeout
        self.refusals: Counter[str] = Counter()
        self._per_source: Counter[str] = Counter()  # connections held, by peer address (IP only)
        if metrics:
            if audit is None:
                audit = Audit(metrics=True)
            audit.metrics = True
        self.audit = audit
        self._debug = Audit()  # observes connections accepted while DEBUG is on, when audit is None

    def _policy_event(self, moment: str, decision: Decision, subject: Subject, peer: Any) -> None:
        """A policy decision that denied or audited, as an audit event (when audit is on)."""
        audit = self.audit
        if audit is None:
            return
        rule = decision.rule
        name = None if rule is None else (rule.name or f"rule at line {rule.line}")
        interface = subject.interface if isinstance(subject.interface, SyntaxId) else None
        opnum = subject.opnum if isinstance(subject.opnum, int) else None
        principal = subject.principal if isinstance(subject.principal, str) else None
        audit.emit_policy(
            decision.action.value,
            moment,
            peer,
            rule=name or "default",
            reason=None if rule is not None else "no rule matched: the policy's default",
            interface=interface,
            opnum=opnum,
            principal=principal,
        )

    @property
    def policy(self) -> Policy | None:
        """The policy in force (None: everything allowed that limits and auth levels allow).
        Setting it applies to the next connection, bind and call of every connection."""
        return self.enforcer.policy

    @policy.setter
    def policy(self, policy: Policy | None) -> None:
        self.enforcer.set(policy)

    @property
    def min_auth_level(self) -> int:
        """The lowest authentication level calls are served at (where no interface says otherwise)."""
        return self._min_auth_level

    @min_auth_level.setter
    def min_auth_level(self, level: int) -> None:
        self._min_auth_level = int(level)
        self._forget_targets()

    @property
    def open_connections(self) -> int:
        """Connections being served."""
        return len(self._connections)

    def observer(self) -> Audit | None:
        """What observes a connection accepted now: the server's audit, or debug lines only."""
        if self.audit is not None:
            return self.audit
        return self._debug if log.isEnabledFor(logging.DEBUG) else None

    def _forget_targets(self) -> None:
        self._targets.clear()
        self.generation += 1

    def target(self, interface: SyntaxId, opnum: int) -> Target | int:
        """What a call to ``opnum`` of ``interface`` runs, resolved once; or the fault status when
        nothing does (nca_s_unk_if, nca_s_op_rng_error), or when nothing new runs any more
        (nca_s_server_too_busy while draining: the connections' caches were dropped when it began,
        so each call sees it without a test of its own)."""
        if self.draining:
            return const.NCA_S_SERVER_TOO_BUSY
        key = (interface, opnum)
        found = self._targets.get(key)
        if found is None:
            impl = self.registry.get(interface)
            op = type(impl).__operations__.get(opnum) if impl is not None else None
            if impl is None:  # cannot happen: contexts only name served interfaces
                found = const.NCA_S_UNK_IF
            elif op is None:
                found = const.NCA_S_OP_RNG_ERROR
            else:
                flags = self._flags.get(interface.uuid)
                found = Target(
                    impl, op, self.required_level(interface), flags if flags and flags.any else None
                )
            if len(self._targets) >= _MAX_TARGETS:  # bounded: opnums are the peer's choice
                self._targets.clear()
            self._targets[key] = found
        return found

    def require_auth(self, interface: type[Interface] | SyntaxId | uuid.UUID | str, level: int) -> None:
        """The lowest authentication level for calls to one interface (overrides ``min_auth_level``,
        in either direction: the endpoint mapper stays anonymous under a global minimum this way)."""
        key = _interface_uuid(interface)
        self._interface_levels[key] = int(level)
        self._forget_targets()

    def restrict(
        self,
        interface: type[Interface] | SyntaxId | uuid.UUID | str,
        *,
        secure_only: bool = False,
        local_only: bool = False,
        max_call_size: int | None = None,
        max_calls: int | None = None,
    ) -> None:
        """Registration flags for one interface, as Windows' RpcServerRegisterIf3 takes them
        (``server.flags``): authenticated calls only, ncalrpc only, the largest request, the most
        calls running at once. Replaces what was set before for it."""
        key = _interface_uuid(interface)
        new = InterfaceFlags(secure_only, local_only, max_call_size, max_calls)
        old = self._flags.get(key)
        if old is None:
            self._flags[key] = new
        else:  # changed in place: the calls running still count, and leave the same counter
            old.secure_only, old.local_only = new.secure_only, new.local_only
            old.max_call_size, old.max_calls = new.max_call_size, new.max_calls
        self._forget_targets()

    def required_level(self, interface: SyntaxId) -> int:
        """The lowest authentication level a call to ``interface`` is served at."""
        return self._interface_levels.get(interface.uuid, self._min_auth_level)

    def add(self, impl: Interface) -> None:
        """Serve another implementation (before or while listening)."""
        self.registry.add(impl)
        self._forget_targets()

    async def listen_tcp(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on TCP (``port`` 0: a free port); returns the bound address."""
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(lambda: ServerProtocol(self._accept, "ncacn_ip_tcp"), host, port)
        settle_heap()
        self._listeners.append(srv)
        addr = srv.sockets[0].getsockname()
        self.addresses.append(("ncacn_ip_tcp", addr))
        return addr[0], addr[1]

    async def listen_unix(self, path: str) -> str:
        """Listen on a Unix socket (ncalrpc)."""
        if os.path.exists(path):
            os.unlink(path)
        loop = asyncio.get_running_loop()
        srv = await loop.create_unix_server(lambda: ServerProtocol(self._accept, "ncalrpc"), path)
        settle_heap()
        self._listeners.append(srv)
        self.addresses.append(("ncalrpc", path))
        return path

    async def listen_socket(self, sock: socket.socket) -> Any:
        """Serve on a socket already bound and listening (one systemd handed over, see
        ``server.activation``): TCP as ncacn_ip_tcp, a Unix socket as ncalrpc. Returns its address."""
        loop = asyncio.get_running_loop()
        protseq = "ncalrpc" if sock.family == socket.AF_UNIX else "ncacn_ip_tcp"
        if protseq == "ncalrpc":
            srv = await loop.create_unix_server(lambda: ServerProtocol(self.accept, protseq), sock=sock)
        else:
            srv = await loop.create_server(lambda: ServerProtocol(self.accept, protseq), sock=sock)
        settle_heap()
        self._listeners.append(srv)
        addr = sock.getsockname()
        self.addresses.append((protseq, addr))
        return addr

    async def serve_forever(self) -> None:
        """Run until cancelled."""
        await asyncio.gather(*(s.serve_forever() for s in self._listeners))

    async def close(self, drain: float = 5.0) -> None:
        """Stop accepting, give calls in progress ``drain`` seconds, then close every connection.
        Meanwhile a new call on a connection already open is refused with nca_s_server_too_busy,
        marked did-not-execute (the client may retry it elsewhere), and every connection with no
        call in progress is sent a shutdown PDU (C706 12.6.4.11: the server asks the client to end
        the association; one waiting for answers gets them first, then the close)."""
        self.draining = True
        self._forget_targets()  # connections see it at their next call
        for srv in self._listeners:
            srv.close()
        for conn in list(self._connections):
            if not conn.tasks:
                conn.shutdown()
        tasks = [t for c in self._connections for t in c.tasks.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=drain)
        for conn in list(self._connections):
            conn.close()
        for srv in self._listeners:
            await srv.wait_closed()
        self._listeners.clear()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # connections ----------------------------------------------------------------------------------

    def _accept(self, proto: ServerProtocol) -> bool:
        """:meth:`accept`, and an audit event for each refusal it counted."""
        audit = self.audit
        if audit is None:
            return self.accept(proto)
        before = dict(self.refusals)
        if self.accept(proto):
            return True
        for kind, n in self.refusals.items():
            if n != before.get(kind, 0):
                audit.refused(proto.peer, proto.local, proto.transport_name, kind)
        return False

    def accept(self, proto: ServerProtocol) -> bool:
        """Take a new connection (its protocol calls this once connected): give it an association
        and a dispatcher. False: refused (and closed before a PDU is read), over the
        ``max_connections`` limit or its address's ``max_connections_per_source``."""
        limits = self.limits
        source = source_text(proto.peer)
        if source is not None and self._per_source[source] >= limits.max_connections_per_source:
            self.refusals["source_limit"] += 1
            _limited.warning(
                "source_limit",
                "refusing %s: %d connections from one address is the limit",
                peer_text(proto.peer),
                limits.max_connections_per_source,
            )
            return False
        if len(self._connections) >= limits.max_connections:
            self.refusals["connection_limit"] += 1
            _limited.warning(
                "connection_limit",
                "refusing %s: %d connections is the limit",
                peer_text(proto.peer),
                limits.max_connections,
            )
            return False
        enforcer = self.enforcer
        tarpit = False
        if enforcer.throttle is not None:
            over = enforcer.rate_refusal(proto.peer, proto.loop.time())
            if over is not None:
                self.refusals[f"rate_{over}"] += 1  # logged by the enforcer
                tarpit = enforcer.throttle.limits.action == "tarpit" and over == "connections"
                if not tarpit:
                    return False
        if not enforcer.admits(proto.peer, proto.transport_name):
            self.refusals["policy"] += 1  # logged by the enforcer
            return False
        local = proto.local
        port = local[1] if isinstance(local, tuple) else None
        assoc = ServerAssociation(
            enforcer.matcher(self.registry.match, proto.peer, proto.transport_name, proto.loop.time),
            self.groups,
            limits,
            str(port).encode() if port is not None else b"",  # bind_ack's secondary address
            self.security,
            self.stats,
            proto.inbox,
        )
        assoc.account = self.budget.account(source)
        assoc.admit_handshake = self._handshake_gate(proto, source)
        if source is not None:
            self._per_source[source] += 1
        self._connections.add(Dispatcher(self, proto, assoc))
        if tarpit and proto.transport is not None:  # over its connection rate: read it later
            assert enforcer.throttle is not None
            proto.transport.pause_reading()
            proto.loop.call_later(enforcer.throttle.limits.tarpit_seconds, _resume, proto)
        return True

    def control_wait(self, peer: Any, now: float, n: int) -> float:
        """Seconds ``peer``'s source must wait after ``n`` more control PDUs (Limits.control_rate;
        0: within it, or not counted)."""
        throttle = self._control
        if throttle is None:
            return 0.0
        return throttle.spend("control", throttle.counted_as(source_text(peer)), now, n)

    def record_paced(self, peer: Any, seconds: float) -> None:
        """A connection held back for its source's control PDUs (counted as refusals["control_rate"])."""
        self.refusals["control_rate"] += 1
        _limited.info(
            "control_rate",
            "holding %s for %.1f s: control PDUs (bind, alter_context, co_cancel, ...) faster than %s/s",
            peer_text(peer),
            min(seconds, 10.0),
            self.limits.control_rate,
        )

    def _handshake_gate(self, proto: ServerProtocol, source: str | None) -> Callable[[], bool] | None:
        """What the association asks before it starts a security context: a token of the source's
        handshake rate (Limits.handshake_rate, and the policy's [rate_limit] handshakes if any).
        The source's bucket is looked up when a handshake starts, not at accept: most
        connections never start one."""
        throttle = self._handshakes
        if (throttle is None or source is None) and self.enforcer.throttle is None:
            return None  # a local peer, or no limit
        loop, enforcer, peer = proto.loop, self.enforcer, proto.peer

        def admit() -> bool:
            now = loop.time()
            if throttle is not None and not throttle.take("handshakes", source, now):
                return False
            return enforcer.throttle is None or enforcer.rate_ok("handshakes", peer, now)

        return admit

    def release(self, dispatcher: Dispatcher) -> None:
        """A connection is gone (its dispatcher calls this)."""
        if dispatcher not in self._connections:
            return
        self._connections.discard(dispatcher)
        source = source_text(dispatcher.proto.peer)
        if source is not None:
            left = self._per_source[source] - 1
            if left > 0:
                self._per_source[source] = left
            else:
                del self._per_source[source]  # bounded: only addresses holding a connection stay

    def record_expiry(self, peer: Any, kind: str) -> None:
        """Count and log a connection closed by a deadline (``aio.deadlines``: bind_timeout,
        pdu_timeout, idle_timeout, write_timeout)."""
        self.refusals[kind] += 1
        _limited.info(kind, "closing connection from %s: %s", peer_text(peer), _EXPIRED.get(kind, kind))

    def record_violation(self, peer: Any, event: ProtocolViolation) -> None:
        """Count a protocol violation by its kind and log it (the kind, then the reason's words);
        a refused authentication takes a token of the source's auth_failures rate."""
        kind = event.kind.value
        self.violations[kind] += 1
        if event.kind in _AUTH_FAILURES and self.enforcer.throttle is not None:
            self.enforcer.rate_ok("auth_failures", peer, asyncio.get_running_loop().time())
        _limited.warning(
            kind,
            "protocol violation %s from %s (call %d): %s",
            kind,
            peer_text(peer),
            event.call_id,
            event.reason,
        )
