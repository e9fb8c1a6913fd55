"""The server's one observer: audit events, the counters metrics read, and the debug log lines.

A server with an :class:`Audit` hands each of its connections the same instance; the connection
calls it once per association opened and closed, bind and alter_context, end of a security
handshake, call, protocol violation and deadline, and the server once per connection refused. A
policy engine reports its decisions through :meth:`Audit.emit_policy` (or any event through
:meth:`Audit.emit`). A server without one pays a single ``is not None`` test per call.

With ``detect`` set (``detect.Inline``: ``[detect] enabled``), the hooks also hand what they saw to
the detectors (docs/detection.md), whose alerts are events here and counts in ``alerts``; without
it, each hook pays one more ``is not None`` test.

What each call costs when the observer is on: its **site** (:class:`Site`: what a connection's
calls of one operation, caller and outcome share), found once per caller (:meth:`Audit.site`: the
connection's last of that operation, one look-up and five ``is`` tests; the server's dispatcher
keeps it in its route); the calls a connection answers in one turn of the loop come together
(:meth:`Audit.answered_all`: one clock). With audit events, they go into the writer's open chunk,
a list of integers, as runs (calls.py): the calls of one read, site and octet counts are seven
numbers and the ids of the run's other calls (the site's JSON form goes once a chunk), which the
writer process fills in (process.py; a thread does, writer.py, for
sinks of other kinds), and the metrics count the chunk's calls when it is shipped
(:meth:`Audit._fold`); without, each call's :class:`Tally` is incremented and a histogram bucket
found (a shift and ``bit_length``). The counters are plain ints and dicts that a Prometheus
collector reads when scraped (``dcerpc.metrics``); nothing here imports prometheus_client.

Events are JSON with ECS field names where ECS has them and ``dcerpc.*`` for the rest;
docs/audit.md lists every event and field, docs/audit-event.schema.json is the schema. No event
carries stub octets or a credential.
"""

from __future__ import annotations

import itertools
import logging
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping
from json.encoder import encode_basestring
from typing import Any, Final, Protocol

from .._errors import status_name
from ..known import interface_name
from ..pdu.constants import ProviderReason
from ..pdu.syntax import SyntaxId
from ..protocol.events import Authenticated, BindAccepted, Caller, CallReceived, ProtocolViolation
from ..protocol.rules import Violation
from .calls import COUNT, DURATION, RUN, SLOT, Form
from .fields import TRANSPORTS, address, auth_level_name, auth_type_name, peer_text
from .process import ProcessWriter, portable
from .sinks import FileSink, StdoutSink, SyslogSink
from .writer import ECS_VERSION, Sink, Writer, nest

__all__ = [
    "LATENCY_BUCKETS", "LATENCY_SHIFT", "Audit", "Connection", "Detection", "Operation", "Site", "Tally",
    "call_template",
]  # fmt: skip

log = logging.getLogger("dcerpc.server")

LATENCY_SHIFT: Final = 15
LATENCY_BUCKETS: Final = tuple(1 << (LATENCY_SHIFT + i) for i in range(20))
"""Upper bounds (ns, exclusive) of the call-latency histogram's buckets: powers of two from 32.8 µs
to 17.2 s. A call of ``d`` ns counts in bucket ``(d >> LATENCY_SHIFT).bit_length()`` (no search);
``Audit.latency`` has room for any 64-bit duration, the collector folds the rest into +Inf."""

_BIND_VIOLATIONS: Final = {
    Violation.SECOND_BIND, Violation.UNKNOWN_GROUP, Violation.BAD_CONTEXT_LIST, Violation.BAD_AUTH_TRAILER,
    Violation.BAD_AUTH_LEVEL, Violation.UNKNOWN_AUTH_TYPE, Violation.AUTH_TYPE_UNAVAILABLE,
    Violation.AUTH_REFUSED, Violation.MALFORMED_BIND,
}  # fmt: skip
_ALTER_VIOLATIONS: Final = {
    Violation.ALTER_BAD_CONTEXT_LIST, Violation.ALTER_AUTH_REFUSED, Violation.ALTER_AUTH_CHANGED,
    Violation.ALTER_LEVEL_UNAVAILABLE, Violation.ALTER_BAD_AUTH_TRAILER, Violation.CONTEXT_CHANGED,
}  # fmt: skip
"""The violations that refuse a whole bind (bind_nak) or alter_context (a fault): each is also a
failed bind or alter-context event."""

_REASONS: Final = {r.value: r.name.lower() for r in ProviderReason}
_numbers = itertools.count(1)
_perf = time.perf_counter_ns


class Operation(Protocol):
    """What the observer reads of a served operation (``server.dispatch.Target`` is one)."""

    ifname: str  # the interface's declared name
    operation: str
    key: tuple[str, str]  # (ifname, operation), made once


class Connection(Protocol):
    """What the observer reads of a connection (``server.dispatch.Dispatcher`` is one)."""

    number: int  # the association's number in the trail (``dcerpc.association.id``)
    calls: int  # calls answered so far
    opened: int  # time.perf_counter_ns() when it was accepted
    sites: dict[Any, Site]  # the last site of each operation answered (its Target -> Site)

    @property
    def peer(self) -> Any: ...

    @property
    def local(self) -> Any: ...

    @property
    def transport(self) -> str: ...


class Detection(Protocol):
    """What the hooks hand their events to when detection is on (``detect.inline.Inline`` is one:
    it sits above this layer, so it is known here only by this shape)."""

    def closed(self, audit: Audit, conn: Connection) -> None: ...

    def bound(self, audit: Audit, conn: Connection, ev: BindAccepted) -> None: ...

    def authenticated(self, audit: Audit, conn: Connection, ev: Authenticated) -> None: ...

    def violation(self, audit: Audit, conn: Connection, ev: ProtocolViolation) -> None: ...

    def called(self, audit: Audit, conn: Connection, ev: CallReceived, status: int) -> None: ...


# the writer's side (its process or thread): flat fields from what the loop queued ----------------


def _endpoints(peer: Any, local: Any, transport: str) -> dict[str, Any]:
    src_ip, src_port = address(peer)
    dst_ip, dst_port = address(local)
    out: dict[str, Any] = {
        "network.transport": TRANSPORTS.get(transport, transport),
        "network.protocol": "dcerpc",
        "dcerpc.transport": transport,
    }
    if src_port is None:  # a Unix socket: its path is where we listen
        out["destination.address"] = dst_ip
    else:
        out.update({"source.ip": src_ip, "source.port": src_port, "destination.ip": dst_ip,
                    "destination.port": dst_port})  # fmt: skip
    return out


def _base(action: str, outcome: str, category: str, kind: str = "event") -> dict[str, Any]:
    return {
        "event.kind": kind,
        "event.category": [category],
        "event.action": action,
        "event.outcome": outcome,
    }


def _interface(syntax: SyntaxId | None, name: str | None) -> dict[str, Any]:
    if syntax is None:
        return {}
    return {
        "dcerpc.interface.uuid": str(syntax.uuid),
        "dcerpc.interface.version": f"{syntax.version[0]}.{syntax.version[1]}",
        # the declared name (Interface's name=); in a bind's contexts, the well-known one if any
        "dcerpc.interface.name": name or (interface_name(syntax.uuid) or "").split(" (")[0] or None,
    }


def _opened(
    number: int, peer: Any, local: Any, transport: str, creds: tuple[int, int, int] | None
) -> dict[str, Any]:
    out = _base("association-open", "success", "network") | _endpoints(peer, local, transport)
    out["event.type"] = ["connection", "start"]
    out["dcerpc.association.id"] = number
    if creds is not None:
        out["process.pid"], out["user.id"], out["group.id"] = creds[0], str(creds[1]), str(creds[2])
    return nest(out)


def _closed(
    number: int, peer: Any, local: Any, transport: str, received: int, sent: int, duration: int, calls: int
) -> dict[str, Any]:
    out = _base("association-close", "success", "network") | _endpoints(peer, local, transport)
    out.update({
        "event.type": ["connection", "end"], "event.duration": duration, "dcerpc.association.id": number,
        "source.bytes": received, "destination.bytes": sent, "network.bytes": received + sent,
        "dcerpc.association.calls": calls,
    })  # fmt: skip
    return nest(out)


def _bound(number: int, peer: Any, local: Any, transport: str, ev: BindAccepted) -> dict[str, Any]:
    action = "alter-context" if ev.alter else "bind"
    out = _base(action, "success" if ev.accepted else "failure", "network") | _endpoints(
        peer, local, transport
    )
    contexts: list[dict[str, Any]] = [
        {
            "id": cid,
            "result": "accepted",
            "interface": {k.split(".")[-1]: v for k, v in _interface(s, None).items()},
        }
        for cid, s in ev.accepted.items()
    ]
    for cid, reason in ev.rejected.items():
        why = _REASONS.get(reason, str(reason))
        rejected: dict[str, Any] = {"id": cid, "result": "rejected", "reason": why}
        proposed = ev.rejected_syntaxes.get(cid)
        if proposed is not None:  # what the client asked for (an interface or version not served)
            named = _interface(proposed, None).items()
            rejected["interface"] = {k.split(".")[-1]: v for k, v in named if v is not None}
        contexts.append(rejected)
    out.update({
        "dcerpc.association.id": number, "dcerpc.association.group": ev.assoc_group_id,
        "dcerpc.auth.type": auth_type_name(ev.auth_type), "dcerpc.auth.level": auth_level_name(ev.auth_level),
        "dcerpc.contexts": contexts, "dcerpc.max_fragment": ev.max_xmit_frag,
    })  # fmt: skip
    return nest(out)


def _refused_bind(
    number: int, peer: Any, local: Any, transport: str, ev: ProtocolViolation
) -> dict[str, Any]:
    action = "alter-context" if ev.kind in _ALTER_VIOLATIONS else "bind"
    out = _base(action, "failure", "network") | _endpoints(peer, local, transport)
    out.update(
        {"dcerpc.association.id": number, "dcerpc.violation": ev.kind.value, "event.reason": ev.reason}
    )
    return nest(out)


def _authenticated(number: int, peer: Any, local: Any, transport: str, ev: Authenticated) -> dict[str, Any]:
    ok = ev.failure is None
    out = _base("authentication", "success" if ok else "failure", "authentication")
    out |= _endpoints(peer, local, transport)
    out.update({
        "event.type": ["start" if ok else "denied"], "dcerpc.association.id": number,
        "dcerpc.auth.type": auth_type_name(ev.auth_type), "dcerpc.auth.level": auth_level_name(ev.auth_level),
        "dcerpc.auth.context_id": ev.context_id, "dcerpc.auth.anonymous": ev.anonymous,
        "event.reason": ev.failure,
    })  # fmt: skip
    if ok:
        name = ev.principal
        if name is not None and "\\" in name:
            out["user.domain"], out["user.name"] = name.split("\\", 1)
        elif name is not None and "@" in name:
            out["user.name"], out["user.domain"] = name.rsplit("@", 1)
        else:
            out["user.name"] = name
    else:
        out["user.name"], out["user.domain"] = ev.user, ev.domain or None
    if ev.principal is not None:
        out["dcerpc.auth.principal"] = ev.principal
    return nest(out)


_quote = encode_basestring  # a JSON string (C), for text a peer may have chosen


def _interface_json(interface: SyntaxId, ifname: str | None) -> str:
    name = ifname or interface_name(interface.uuid).split(" (")[0]
    named = f',"name":{_quote(name)}' if name else ""
    version = f"{interface.version[0]}.{interface.version[1]}"
    return f'"interface":{{"uuid":"{interface.uuid}","version":"{version}"{named}}}'


def call_template(
    number: int, peer: Any, interface: SyntaxId, ifname: str | None, operation: str | None, opnum: int,
    obj: Any, auth_type: int, auth_level: int, principal: str | None, status: int,
) -> Form:  # fmt: skip
    """The call event's JSON line as a form for ``%`` (calls.Form: conversions where each call's
    numbers go, the duration, call id, octets in and out, the ``@timestamp``), written out directly:
    the one event made per call (the general path through dicts and json costs several times more).
    Same fields and order as the others. What a connection's calls of one operation share (a
    :class:`Site`) is made once, on the loop; the writer fills in each call's numbers
    (calls.format_calls)."""
    iface = _interface_json(interface, ifname)
    auth = f'"type":"{auth_type_name(auth_type)}","level":"{auth_level_name(auth_level)}"'
    if principal is not None:
        auth += f',"principal":{_quote(principal)}'
    extra = ""
    if operation is not None:
        extra += f',"operation":{_quote(operation)}'
    if obj is not None:
        extra += f',"object":"{obj}"'
    if status:
        extra += f',"fault":{{"status":{_quote(status_name(status))},"code":{status}}}'
    src_ip, src_port = address(peer)
    source = f',"source":{{"ip":{_quote(src_ip or "")},"port":{src_port}}}' if src_port is not None else ""
    pieces = (
        f'{{"event":{{"kind":"event","category":["network"],"action":"call",'
        f'"outcome":"{"failure" if status else "success"}","duration":',
        f'}},"dcerpc":{{"association":{{"id":{number}}},"call_id":',
        f',{iface},"opnum":{opnum},"octets":{{"in":',
        ',"out":',
        f'}},"auth":{{{auth}}}{extra}}}{source},"@timestamp":"',
        f'Z","ecs":{{"version":"{ECS_VERSION}"}}}}\n',
    )
    escaped = [piece.replace("%", "%%") for piece in pieces]  # (a principal's name may hold one)
    return ("%d".join(escaped[:5]) + "%s%06d" + escaped[5]).encode()


class Tally:
    """Calls counted under one set of metric labels: (interface, operation) and the status (0:
    answered). Shared by every :class:`Site` of those labels; summed by the collector when scraped."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class Site(Caller):
    """What a connection's calls of one operation, caller and outcome share: the call event's
    form (None without a writer), its slot in the writer's open chunk of calls (calls.py) and the
    metrics' tally. A connection keeps the last site of each operation (``Connection.sites``): a
    call is one look-up and five ``is`` tests of what its caller could have changed (another
    context's interface version, another security context)."""

    __slots__ = ("chunk", "form", "interface", "slot", "status", "tally", "target")

    def __init__(
        self, ev: CallReceived, target: Operation | None, status: int, form: Form | None, tally: Tally
    ) -> None:
        super().__init__(ev)
        self.target = target
        self.status = status  # the fault's (0: answered with a result)
        self.interface = ev.interface
        self.form = form
        self.tally = tally
        self.chunk: list[Form] | None = None  # the chunk it has a slot in (CallChunks.enrol)
        self.slot = 0


_MORE: Final = RUN - 1
"""A run's numbers, less its calls (calls.RUN: one call's are its numbers)."""
_SITES: Final = 4096  # sites kept (the keys are partly the client's choice): beyond, made again


def _violated(number: int, peer: Any, local: Any, transport: str, ev: ProtocolViolation) -> dict[str, Any]:
    out = _base("protocol-violation", "failure", "intrusion_detection", "alert")
    out |= _endpoints(peer, local, transport)
    out.update({
        "dcerpc.association.id": number, "dcerpc.violation": ev.kind.value, "event.reason": ev.reason,
        "dcerpc.call_id": ev.call_id or None, "dcerpc.fatal": ev.fatal,
    })  # fmt: skip
    return nest(out)


def _refused(peer: Any, local: Any, transport: str, kind: str) -> dict[str, Any]:
    out = _base("connection-refused", "failure", "network") | _endpoints(peer, local, transport)
    out.update({"event.type": ["connection", "denied"], "dcerpc.refusal": kind})
    return nest(out)


def _expired(number: int, peer: Any, local: Any, transport: str, kind: str) -> dict[str, Any]:
    out = _base("deadline-expired", "failure", "network") | _endpoints(peer, local, transport)
    out.update({"event.type": ["connection", "end"], "dcerpc.association.id": number, "dcerpc.refusal": kind})
    return nest(out)


def _emitted(action: str, outcome: str, peer: Any, fields: Mapping[str, Any]) -> dict[str, Any]:
    category = "iam" if action == "policy" else "network"
    out = _base(action, outcome, category)
    src_ip, src_port = address(peer)
    if src_ip is not None:
        out["source.ip"], out["source.port"] = src_ip, src_port
    out.update(fields)
    return nest(out)


# the loop's side ---------------------------------------------------------------------------------


class Audit:
    """Audit events and metrics counters of one or more servers (see the module docstring).

        audit = Audit([FileSink("/var/log/dcerpc/audit.json"), SyslogSink("/dev/log")], metrics=True)
        server = Server(EchoServer(), audit=audit)

    Args:
        sinks: where events are written (none: no events, only counters and debug lines).
        metrics: keep the per-call counters a metrics collector reads (``dcerpc.metrics``).
        capacity: events that may wait for the writer; beyond it they are dropped and counted.
        process: format and write in a process of its own (process.py; the default when every sink
            is one of ours), else on a thread of this one (writer.py; any other sink).
    """

    def __init__(
        self,
        sinks: Iterable[Sink] = (),
        *,
        metrics: bool = False,
        capacity: int = 65536,
        process: bool | None = None,
    ) -> None:
        sinks = list(sinks)
        self.writer: ProcessWriter | Writer | None = None
        if sinks:
            if process is None:
                process = portable(sinks)
            self.writer = ProcessWriter(sinks, capacity) if process else Writer(sinks, capacity)
        self._metrics = False
        self._inline = False  # metrics counted per call (no writer: else from its chunks)
        self.metrics = metrics
        self.debug = log.isEnabledFor(logging.DEBUG)  # read again at each connection
        # the counters (plain dicts, copied by a collector when scraped)
        # calls by ((interface, operation), status; 0: answered), each a Tally its Sites count in
        self.tallies: dict[tuple[tuple[str, str], int], Tally] = {}
        self._sites: dict[tuple[Any, ...], Site] = {}  # a call's site by connection, operation, caller
        self.latency = [0] * 64  # calls by bucket ((ns >> LATENCY_SHIFT).bit_length())
        self.latency_sum = 0  # ns
        self.binds: dict[tuple[str, str], int] = {}  # (bind | alter_context, accepted | rejected | refused)
        self.auth: dict[tuple[str, str], int] = {}  # (auth type, success | failure) -> handshakes
        self.policy: dict[tuple[str, str], int] = {}  # (decision, stage) -> decisions
        # the detectors, when on (detect/inline.py): fed from the hooks below, alerts counted here
        self.detect: Detection | None = None
        self.alerts: dict[tuple[str], int] = {}  # (detector,) -> alerts

    @classmethod
    def configure(
        cls,
        file: str | None = None,
        stdout: bool = False,
        syslog: str | None = None,
        *,
        metrics: bool = False,
    ) -> Audit:
        """An observer writing to the sinks named as the config file and CLI name them."""
        sinks: list[Sink] = []
        if file:
            sinks.append(FileSink(file))
        if stdout:
            sinks.append(StdoutSink())
        if syslog:
            sinks.append(SyslogSink(syslog))
        return cls(sinks, metrics=metrics)

    @property
    def metrics(self) -> bool:
        """Keep the counters metrics read. With a writer, the calls' counts and latencies are
        counted from each chunk of call events as it is shipped (:meth:`_fold`: C loops over the
        chunk's numbers, not Python per call); without one, per call."""
        return self._metrics

    @metrics.setter
    def metrics(self, on: bool) -> None:
        self._metrics = on
        w = self.writer
        if w is not None:
            w.fold = self._fold if on else None
        self._inline = on and w is None

    def _fold(self, sites: list[Site], numbers: list[int], calls: int) -> None:
        """The metrics of a chunk of ``calls`` calls being shipped (calls.CallChunks.fold): a run
        at a time (its calls share their site and duration), or, when every run is one call
        (one call in flight, or many connections of one each), by slices of the chunk."""
        if len(numbers) == calls * RUN:
            self._fold_singles(sites, numbers)
            return
        latency = self.latency
        spent = 0
        at = 0
        end = len(numbers)
        while at < end:
            count, slot, duration = numbers[at + COUNT], numbers[at + SLOT], numbers[at + DURATION]
            sites[slot].tally.n += count
            latency[(duration >> LATENCY_SHIFT).bit_length()] += count
            spent += duration * count
            at += _MORE + count
        self.latency_sum += spent

    def _fold_singles(self, sites: list[Site], numbers: list[int]) -> None:
        slots = numbers[SLOT::RUN]
        if len(sites) == 1:
            sites[0].tally.n += len(slots)
        else:
            for slot, n in Counter(slots).items():
                sites[slot].tally.n += n
        durations = numbers[DURATION::RUN]
        self.latency_sum += sum(durations)
        # in order, each bucket's calls are a run found by bisection, from the first call's bucket
        # on (the bucket rule's bounds, 1 << (LATENCY_SHIFT + bucket)): a sort in C, then a few
        # look-ups, a fifth of counting each call's bucket (1,140 instructions a call, callgrind)
        durations.sort()
        latency = self.latency
        bucket = (durations[0] >> LATENCY_SHIFT).bit_length()
        start, count = 0, len(durations)
        while start < count:
            end = bisect_left(durations, 1 << (LATENCY_SHIFT + bucket), start)
            latency[bucket] += end - start
            start = end
            bucket += 1

    @property
    def dropped(self) -> int:
        """Events dropped because the writer's queue was full."""
        return self.writer.dropped if self.writer is not None else 0

    def reopen(self) -> None:
        """Reopen the audit files (the CLI's SIGHUP handler calls this after logrotate)."""
        if self.writer is not None:
            self.writer.reopen()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued event is written."""
        return self.writer.flush(timeout) if self.writer is not None else True

    def close(self) -> None:
        """Write what is queued and stop the writer."""
        if self.writer is not None:
            self.writer.close()

    # associations ---------------------------------------------------------------------------------

    def opened(self, conn: Connection, credentials: tuple[int, int, int] | None = None) -> None:
        """A connection was accepted: numbers it (``conn.number``) and records it."""
        conn.number = next(_numbers)
        conn.opened = time.perf_counter_ns()
        self.debug = debug = log.isEnabledFor(logging.DEBUG)
        w = self.writer
        if w is not None:
            w.put((_opened, time.time_ns(), conn.number, conn.peer, conn.local, conn.transport, credentials))
        if debug:
            log.debug("connection %d from %s (%s)", conn.number, peer_text(conn.peer), conn.transport)

    def closed(self, conn: Connection, received: int, sent: int) -> None:
        duration = time.perf_counter_ns() - conn.opened
        w = self.writer
        if w is not None:
            w.put((_closed, time.time_ns(), conn.number, conn.peer, conn.local, conn.transport,
                   received, sent, duration, conn.calls))  # fmt: skip
        if self.detect is not None:
            self.detect.closed(self, conn)
        if self.debug:
            log.debug(
                "connection %d from %s closed: %d calls, %d octets in, %d out, %.3f s",
                conn.number, peer_text(conn.peer), conn.calls, received, sent, duration / 1e9,
            )  # fmt: skip

    def bound(self, conn: Connection, ev: BindAccepted) -> None:
        """A bind or alter_context was answered (its contexts accepted or rejected one by one)."""
        action = "alter_context" if ev.alter else "bind"
        if self.metrics:
            key = (action, "accepted" if ev.accepted else "rejected")
            self.binds[key] = self.binds.get(key, 0) + 1
        w = self.writer
        if w is not None:
            w.put((_bound, time.time_ns(), conn.number, conn.peer, conn.local, conn.transport, ev))
        if self.detect is not None:
            self.detect.bound(self, conn, ev)
        if self.debug:
            log.debug(
                "%s from %s: accepted %s, rejected %s, auth %s level %s",
                action, peer_text(conn.peer),
                ", ".join(f"{c}={interface_name(s.uuid) or s.uuid}" for c, s in ev.accepted.items()) or "-",
                ", ".join(f"{c}={_REASONS.get(r, r)}" for c, r in ev.rejected.items()) or "-",
                auth_type_name(ev.auth_type), auth_level_name(ev.auth_level),
            )  # fmt: skip

    def authenticated(self, conn: Connection, ev: Authenticated) -> None:
        """A security context's handshake completed or was refused."""
        if self.metrics:
            key = (auth_type_name(ev.auth_type), "success" if ev.failure is None else "failure")
            self.auth[key] = self.auth.get(key, 0) + 1
        w = self.writer
        if w is not None:
            w.put((_authenticated, time.time_ns(), conn.number, conn.peer, conn.local, conn.transport, ev))
        if self.detect is not None:
            self.detect.authenticated(self, conn, ev)
        if self.debug:
            if ev.failure is None:
                who = ev.principal or ("anonymous" if ev.anonymous else "?")
                log.debug(
                    "%s authenticated %s from %s", auth_type_name(ev.auth_type), who, peer_text(conn.peer)
                )
            else:
                who = f"{ev.domain}\\{ev.user}" if ev.domain else ev.user or "?"
                log.debug(
                    "%s authentication of %s from %s refused: %s",
                    auth_type_name(ev.auth_type), who, peer_text(conn.peer), ev.failure,
                )  # fmt: skip

    # calls ----------------------------------------------------------------------------------------

    def site(self, conn: Connection, ev: CallReceived, target: Operation) -> Site:
        """The site of a call of ``target`` by ``ev``'s caller on ``conn``, answered (not faulted):
        what :meth:`answered` takes. The connection's last site of the operation when the caller is
        the same (five ``is`` tests); a connection that remembers what its calls were found to be
        (the server's dispatcher does, per context, opnum and caller) asks once."""
        site = conn.sites.get(target)
        if (
            site is None or site.principal is not ev.principal or site.auth_level is not ev.auth_level
            or site.auth_type is not ev.auth_type or site.interface is not ev.interface
            or site.object is not ev.object
        ):  # fmt: skip
            site = self._site(conn, ev, target, 0)
        return site

    def answered(self, conn: Connection, ev: CallReceived, site: Site, started: int, out_octets: int) -> None:
        """A call was answered; its site (:meth:`site`); ``started``: perf_counter_ns() when the
        read that completed it was handled."""
        self.answered_all(conn, [(ev, site, started, out_octets)])

    def answered_all(self, conn: Connection, calls: list[tuple[CallReceived, Site, int, int]]) -> None:
        """Calls a connection answered, with a result or a fault (its site's ``status``), reported
        together (the server's dispatcher reports a turn of the loop's answers after it): (event,
        site, started, octets out) each, ``started`` 0 for a call refused before it ran (no
        duration). One clock for all (the answers left together), the writer and the counters
        looked up once."""
        now = _perf()
        conn.calls += len(calls)
        if self._inline:
            latency = self.latency
            spent = 0
            for _, site, started, _ in calls:
                duration = now - started if started else 0
                site.tally.n += 1
                latency[(duration >> LATENCY_SHIFT).bit_length()] += 1
                spent += duration
            self.latency_sum += spent
        w = self.writer
        if w is not None:
            # runs of calls (calls.py): those of one read and site, with the same octets in and
            # out, are their numbers once and their ids; not the event (its stub is a call's
            # whole buffer), nor what the connection's calls share (the site's, made once)
            if not w.templates:
                w.begin(now)
            at = (now - w.base) // 1000  # µs into the chunk's second (one int for the turn's calls)
            if not 0 <= at < 1_000_000:  # the turn is past the chunk's second: a chunk of its own
                w.ship()
                w.begin(now)
                at = (now - w.base) // 1000
            templates = w.templates
            numbers = w.numbers
            run = -1  # where the open run's numbers start
            read = last = None
            received = sent = -1
            for ev, site, started, out_octets in calls:
                octets = len(ev.stub)
                if started is read and site is last and octets == received and out_octets == sent:
                    numbers.append(ev.call_id)  # the run goes on
                    continue
                if run >= 0:
                    numbers[run] = len(numbers) - run - _MORE  # its count
                if site.chunk is not templates:
                    w.enrol(site)
                read, last, received, sent = started, site, octets, out_octets
                run = len(numbers)
                duration = now - started if started else 0
                numbers += (1, site.slot, duration, ev.call_id, octets, out_octets, at)
            if run >= 0:
                numbers[run] = len(numbers) - run - _MORE
            w.calls += len(calls)
            if w.calls >= w.limit:  # (a chunk may pass CHUNK_CALLS by a turn's calls)
                w.ship()
        if self.detect is not None:
            for ev, site, _, _ in calls:
                self.detect.called(self, conn, ev, site.status)
        if self.debug:
            for ev, site, started, out_octets in calls:
                target = site.target
                ifname, operation = (target.ifname, target.operation) if target is not None else (None, None)
                duration = now - started if started else 0
                self._debug_call(conn, ev, ifname, operation, site.status, duration, out_octets)

    def faulted(
        self, conn: Connection, ev: CallReceived, target: Operation | None, status: int, started: int = 0
    ) -> None:
        """A call was answered with a fault: refused before it ran (``started`` 0: no duration), or
        by its implementation; ``target`` None when no operation was resolved. Its site is its own
        look-up (faults are fewer), its event at once."""
        self.answered_all(conn, [(ev, self._site(conn, ev, target, status), started, 0)])

    def _site(self, conn: Connection, ev: CallReceived, target: Operation | None, status: int) -> Site:
        """The site of a call its connection's last of the operation does not share: found among
        the sites of every connection by all it is made of, or made (its form, its tally)."""
        sites = self._sites
        key = (conn.number, ev.interface, ev.opnum, target, ev.auth_type, ev.auth_level, ev.principal,
               ev.object, status)  # fmt: skip
        site = sites.get(key)
        if site is not None:
            if not status:
                conn.sites[target] = site
            return site
        if len(sites) >= _SITES:
            sites.clear()  # made again as calls come (the tallies stay: they are the counts)
        names = target.key if target is not None else (str(ev.interface.uuid), str(ev.opnum))
        tally = self.tallies.get((names, status))
        if tally is None:
            tally = self.tallies[names, status] = Tally()
        ifname, operation = (target.ifname, target.operation) if target is not None else (None, None)
        form = None
        if self.writer is not None:
            form = call_template(
                conn.number, conn.peer, ev.interface, ifname, operation, ev.opnum, ev.object, ev.auth_type,
                ev.auth_level, ev.principal, status,
            )  # fmt: skip
        site = sites[key] = Site(ev, target, status, form, tally)
        if not status:
            if len(conn.sites) >= 256:
                conn.sites.clear()
            conn.sites[target] = site
        return site

    def counts(self) -> dict[tuple[tuple[str, str], int], int]:
        """Calls answered by ((interface, operation), status), status 0 for those not faulted (the
        collector's copy, when scraped: the tallies are counted as calls come, and as chunks of
        them are shipped: the open one is shipped first)."""
        w = self.writer
        if w is not None and self._metrics:
            w.ship_open(time.monotonic() + 1.0)
        return {key: tally.n for key, tally in list(self.tallies.items()) if tally.n}

    @staticmethod
    def _debug_call(
        conn: Connection, ev: CallReceived, ifname: str | None, operation: str | None, status: int,
        duration: int, out_octets: int,
    ) -> None:  # fmt: skip
        log.debug(
            "call %d from %s: %s.%s (opnum %d) %s in %.3f ms, %d octets in, %d out",
            ev.call_id, peer_text(conn.peer), ifname or ev.interface.uuid, operation or "?", ev.opnum,
            status_name(status) if status else "ok", duration / 1e6, len(ev.stub), out_octets,
        )  # fmt: skip

    # refusals -------------------------------------------------------------------------------------

    def violation(self, conn: Connection, ev: ProtocolViolation) -> None:
        """A protocol violation (counted by the server); a refused bind or alter_context is also a
        failed bind or alter-context event."""
        w = self.writer
        t = time.time_ns()
        refuses = ev.kind in _BIND_VIOLATIONS or ev.kind in _ALTER_VIOLATIONS
        if refuses and self.metrics:
            key = ("alter_context" if ev.kind in _ALTER_VIOLATIONS else "bind", "refused")
            self.binds[key] = self.binds.get(key, 0) + 1
        if w is not None:
            w.put((_violated, t, conn.number, conn.peer, conn.local, conn.transport, ev))
            if refuses:
                w.put((_refused_bind, t, conn.number, conn.peer, conn.local, conn.transport, ev))
        if self.detect is not None:
            self.detect.violation(self, conn, ev)

    def refused(self, peer: Any, local: Any, transport: str, kind: str) -> None:
        """A connection refused at accept (``Server.refusals`` counts it)."""
        w = self.writer
        if w is not None:
            w.put((_refused, time.time_ns(), peer, local, transport, kind))

    def expired(self, conn: Connection, kind: str) -> None:
        """A deadline closed a connection (``Server.refusals`` counts it)."""
        w = self.writer
        if w is not None:
            w.put((_expired, time.time_ns(), conn.number, conn.peer, conn.local, conn.transport, kind))

    # policy and the rest --------------------------------------------------------------------------

    def emit(
        self, action: str, outcome: str, peer: Any = None, fields: Mapping[str, Any] | None = None
    ) -> None:
        """Any other event: ECS ``event.action`` and ``event.outcome`` ("success", "failure",
        "unknown"), the peer's address tuple if there is one, and flat fields by their dotted
        names (``{"dcerpc.policy.rule": "deny-lsa"}``): ECS names where ECS has one, else ``dcerpc.*``."""
        w = self.writer
        if w is not None:
            w.put((_emitted, time.time_ns(), action, outcome, peer, dict(fields or {})))

    def emit_policy(
        self,
        decision: str,
        stage: str,
        peer: Any = None,
        *,
        rule: str | None = None,
        reason: str | None = None,
        interface: SyntaxId | None = None,
        opnum: int | None = None,
        principal: str | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        """A policy decision: ``decision`` allow, deny or audit; ``stage`` accept, bind or call;
        the rule that matched (its name or number), why, and what it was asked about. Counted
        for metrics (``dcerpc_policy_decisions_total``) and written as a ``policy`` event."""
        key = (decision, stage)
        self.policy[key] = self.policy.get(key, 0) + 1
        if self.writer is None:
            return
        flat: dict[str, Any] = {
            "event.type": ["denied" if decision == "deny" else "allowed"],
            "dcerpc.policy.decision": decision, "dcerpc.policy.stage": stage, "dcerpc.policy.rule": rule,
            "event.reason": reason, "dcerpc.opnum": opnum, "dcerpc.auth.principal": principal,
        }  # fmt: skip
        if interface is not None:
            flat |= _interface(interface, None)
        if fields:
            flat.update(fields)
        self.emit("policy", "failure" if decision == "deny" else "success", peer, flat)
