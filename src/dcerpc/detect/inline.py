"""The detectors inside a server: the audit observer's events, as the monitor's records spell them.

An :class:`~dcerpc.audit.Audit` with ``detect`` set (``Audit.detect = Inline(Detectors(...))``,
what ``dcerpc run`` / ``serve`` do with ``[detect] enabled = true``) calls this object from its
hooks with what the loop holds: the connection, the protocol event, the call's status. Each is made
into the event shape the detectors read (the fields the audit trail writes for it, ECS +
``dcerpc.*``) and fed, on the loop, to :class:`~.detectors.Detectors`; a call on an operation whose
stub the detectors read (:func:`~.stubs.inspect`: the endpoint mapper's lookups and maps,
activations, Netlogon's challenges, CreateService) is inspected from the stub the dispatcher
decoded, its first 4096 octets as the monitor keeps them. A server without detection pays nothing
(the observer's hooks test ``detect is not None``; a server without an observer not even that).

Each alert is an audit event (``event.kind`` alert, ``event.action`` detection: docs/detection.md)
queued to the audit writer, one warning line on ``dcerpc.detect``, and a count in ``Audit.alerts``
(``dcerpc_alerts_total{detector}``).

What a server knows that a capture does not, and the reverse:

- ``port_scan``: every connection accepted is to an RPC port; one closed without a bind (or a
  refused bind) counts.
- ``unmapped_dynamic_port`` does not fire inline: a server listens only where it was told to, and a
  client reaching it there found the port somewhere (the map, a pin in the config); what the
  detector is for, a port nobody published, is a capture's question (documented in
  docs/detection.md).
- ``version_sweep`` and ``interface_brute_force`` inline read each rejected context's abstract
  syntax (``BindAccepted.rejected_syntaxes``) as the monitor reads it from the bind: distinct
  (interface, version) pairs, rejected versions included.
- ``auth_spraying`` reads the handshake's end (``Authenticated``: the user and domain an NTLM
  AUTHENTICATE named), not faults.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, Final

from .._errors import status_name
from ..audit.fields import address, auth_type_name
from ..known import interface_name
from ..pdu.constants import ProviderReason
from ..protocol.events import Authenticated, BindAccepted, CallReceived, ProtocolViolation
from ..protocol.rules import Violation
from .detectors import ATSVC, MGMT, SASEC, TASK_SCHEDULER, Detectors
from .engine import Alert
from .stubs import ACTIVATION, EPM, NETLOGON, REMOTE_ACTIVATION, SVCCTL, inspect

if TYPE_CHECKING:
    from ..audit.observer import Audit, Connection

__all__ = ["STUB_KEPT", "Inline"]

log = logging.getLogger("dcerpc.detect")

STUB_KEPT: Final = 4096
"""Octets of a call's stub inspected (the monitor's MAX_STUB_KEPT: the same evidence both ways)."""
INSPECTED: Final = frozenset({EPM, REMOTE_ACTIVATION, ACTIVATION, NETLOGON, SVCCTL})
"""Interfaces whose calls' stubs the detectors read."""
READ: Final = INSPECTED | {MGMT, ATSVC, TASK_SCHEDULER, SASEC}
"""Interfaces whose calls are evidence even when they succeed; a successful call of any other is
evidence of nothing (inline the server's calls carry no fragment sizes) and is not fed: the common
call costs the detectors one set lookup."""
_REASONS: Final = {r.value: r.name.lower() for r in ProviderReason}
_BIND_REFUSALS: Final = frozenset({
    Violation.SECOND_BIND, Violation.UNKNOWN_GROUP, Violation.BAD_CONTEXT_LIST, Violation.BAD_AUTH_TRAILER,
    Violation.BAD_AUTH_LEVEL, Violation.UNKNOWN_AUTH_TYPE, Violation.AUTH_TYPE_UNAVAILABLE,
    Violation.AUTH_REFUSED, Violation.MALFORMED_BIND, Violation.NOT_A_BIND, Violation.HANDSHAKE_RATE,
})  # fmt: skip
"""A connection that sent one of these tried to bind: not a port scan's connection."""


def _alert_event(alert: Alert) -> dict[str, Any]:
    """The audit writer's formatter (it adds ``@timestamp`` and ``ecs``)."""
    event = alert.event()
    del event["@timestamp"]
    return event


class Inline:
    """The detectors, fed from a server's audit observer (see the module)."""

    def __init__(self, detectors: Detectors | None = None) -> None:
        self.detectors = detectors or Detectors()
        self._bound: set[int] = set()  # connections that bound (at most the server's open ones)
        self._interfaces: dict[Any, dict[str, Any]] = {}  # SyntaxId -> its event fields (bounded)
        self.clock = time.time

    # the observer's hooks ----------------------------------------------------------------------

    def closed(self, audit: Audit, conn: Connection) -> None:
        bound = conn.number in self._bound
        self._bound.discard(conn.number)
        ev = self._base(conn, "association-close")
        ev["dcerpc"]["association"]["bound"] = bound
        self._feed(audit, ev)

    def bound(self, audit: Audit, conn: Connection, ev: BindAccepted) -> None:
        self._bound.add(conn.number)
        out = self._base(conn, "alter-context" if ev.alter else "bind")
        contexts: list[dict[str, Any]] = [
            {"id": cid, "result": "accepted", "interface": self._interface(s)}
            for cid, s in ev.accepted.items()
        ]
        for cid, r in ev.rejected.items():
            rejected: dict[str, Any] = {"id": cid, "result": "rejected", "reason": _REASONS.get(r, str(r))}
            proposed = ev.rejected_syntaxes.get(cid)
            if proposed is not None:  # the interface and version asked for: version_sweep's evidence
                rejected["interface"] = self._interface(proposed)
            contexts.append(rejected)
        out["dcerpc"]["contexts"] = contexts
        self._feed(audit, out)

    def authenticated(self, audit: Audit, conn: Connection, ev: Authenticated) -> None:
        if ev.failure is None:
            return
        out = self._base(conn, "authentication", "failure")
        out["event"]["reason"] = ev.failure
        out["user"] = {"name": ev.user, "domain": ev.domain}
        out["dcerpc"]["auth"] = {"type": auth_type_name(ev.auth_type)}
        self._feed(audit, out)

    def violation(self, audit: Audit, conn: Connection, ev: ProtocolViolation) -> None:
        if ev.kind in _BIND_REFUSALS:
            self._bound.add(conn.number)
        out = self._base(conn, "protocol-violation", "failure")
        out["dcerpc"]["violation"] = ev.kind.value
        out["event"]["reason"] = ev.reason
        self._feed(audit, out)

    def called(self, audit: Audit, conn: Connection, ev: CallReceived, status: int) -> None:
        """A call was answered (``status`` 0) or faulted."""
        if not status and ev.interface.uuid not in READ:
            return
        out = self._base(conn, "call", "failure" if status else "success")
        d = out["dcerpc"]
        d["interface"] = self._interface(ev.interface)
        d["opnum"] = ev.opnum
        d["octets"] = {"in": len(ev.stub)}
        if status:
            d["fault"] = {"status": status_name(status), "code": status}
        features = None
        if ev.interface.uuid in INSPECTED:
            features = inspect(ev.interface.uuid, ev.opnum, bytes(ev.stub[:STUB_KEPT]))
        self._feed(audit, out, features)

    # helpers -----------------------------------------------------------------------------------

    def _interface(self, syntax: Any) -> dict[str, Any]:
        found = self._interfaces.get(syntax)
        if found is None:
            if len(self._interfaces) >= 1024:
                self._interfaces.clear()
            u: uuid.UUID = syntax.uuid
            found = {"uuid": str(u), "version": f"{syntax.version[0]}.{syntax.version[1]}"}
            name = (interface_name(u) or "").split(" (")[0]
            if name:
                found["name"] = name
            self._interfaces[syntax] = found
        return found

    def _base(self, conn: Connection, action: str, outcome: str = "success") -> dict[str, Any]:
        src_ip, src_port = address(conn.peer)
        dst_ip, dst_port = address(conn.local)
        out: dict[str, Any] = {
            "event": {"kind": "event", "action": action, "outcome": outcome},
            "network": {"protocol": "dcerpc"},
            "dcerpc": {"association": {"id": conn.number}, "transport": conn.transport},
        }
        if src_port is not None:
            out["source"] = {"ip": src_ip, "port": src_port}
            out["destination"] = {"ip": dst_ip, "port": dst_port}
        return out

    def _feed(self, audit: Audit, ev: dict[str, Any], features: dict[str, Any] | None = None) -> None:
        alerts = self.detectors.feed(ev, self.clock(), features)
        for alert in alerts:
            key = (alert.detector,)
            audit.alerts[key] = audit.alerts.get(key, 0) + 1
            log.warning("alert %s from %s: %s (%d in %g s)", alert.detector, alert.source, alert.reason,
                        alert.count, alert.window)  # fmt: skip
            if audit.writer is not None:
                audit.writer.put((_alert_event, int(alert.last * 1e9), alert))
