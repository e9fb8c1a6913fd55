"""The server's policy (``dcerpc.policy``) applied where it decides: at accept, at bind, per call
before the stub is read, and in what the endpoint mapper and mgmt show.

    accept   Server.accept -> Enforcer.admits(peer, transport)      denied: closed at once
    bind     the association's interface matcher, per connection     denied: the context is
             (Enforcer.matcher)                                      rejected as not served
    call     Dispatcher._serve -> Enforcer.permits(...)              denied: rpc_s_access_denied
             (cached per connection, by context, opnum and caller)   before the stub is decoded
    view     CallContext.may_see -> Enforcer.visible                 hidden from ept_lookup,
                                                                     ept_map and inq_if_ids

Each decision is counted by moment and action (``decisions``), audit-only ones and denials logged
(rate-limited), and told to ``on_decision`` when set (the audit log's hook). A new policy
(:meth:`Enforcer.set`) applies to the next connection, bind and call of every connection: the
server's generation moves, so per-connection caches start over.
"""

from __future__ import annotations

import ipaddress
import logging
import uuid
from collections.abc import Callable
from typing import Any

from ..audit import peer_text
from ..pdu.syntax import SyntaxId
from ..policy.rate import Throttle
from ..policy.rules import UNKNOWN, Action, Address, Decision, Policy, Subject, _Unknown
from .ratelimit import LogLimiter

__all__ = ["Enforcer", "source_address", "source_text"]

_ALLOWED = Decision(Action.ALLOW)

log = logging.getLogger("dcerpc.server")
_limited = LogLimiter(log)

DecisionHook = Callable[[str, Decision, Subject, Any], None]
"""Told every decision that denies or audits: the moment (accept, bind, call, view), the decision,
what was known, and the peer."""


def source_text(peer: Any) -> str | None:
    """The address a peer is counted by (connection slots, the memory budget, rate limits): a TCP
    peer's IP address as text (an IPv4 address mapped into IPv6 as itself), None for a local peer."""
    if not isinstance(peer, tuple) or not peer or not isinstance(peer[0], str):
        return None
    host = peer[0]
    return host[7:] if host.startswith("::ffff:") else host


def source_address(peer: Any) -> Address | None:
    """A TCP peer's IP address (an IPv4 address mapped into IPv6 as itself); None for local peers."""
    if not isinstance(peer, tuple) or not peer or not isinstance(peer[0], str):
        return None
    try:
        address = ipaddress.ip_address(peer[0].split("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class Enforcer:
    """A server's policy and its counters (see the module docstring)."""

    def __init__(self, policy: Policy | None = None, on_change: Callable[[], None] | None = None) -> None:
        self.policy = policy
        self.throttle: Throttle | None = Throttle(policy.rate) if policy and policy.rate else None
        # "moment:action", e.g. "call:deny": a plain dict with every key (a Counter's increment
        # costs three times a dict's, and an allowed call makes one)
        # decisions made: a connection asks once per context, opnum and caller allowed, and
        # remembers (dispatch); audit-only and denied calls are asked, and counted, each time
        self.decisions: dict[str, int] = {
            f"{m}:{a.value}": 0 for m in ("accept", "bind", "call", "view") for a in Action
        }
        self.on_decision: DecisionHook | None = None
        self._on_change = on_change

    def set(self, policy: Policy | None) -> None:
        """Put ``policy`` in force (None: none, everything allowed). Its rate limits start afresh
        unless they are the same as before (then the buckets keep their levels)."""
        old = self.throttle
        rate = policy.rate if policy is not None else None
        if rate is None:
            self.throttle = None
        elif old is None or old.limits != rate:
            self.throttle = Throttle(rate)
        self.policy = policy
        if self._on_change is not None:
            self._on_change()

    # rate limits (policy.rate) ------------------------------------------------------------------

    def rate_refusal(self, peer: Any, now: float) -> str | None:
        """At accept: "auth_failures" (the source failed to authenticate too often: refused until
        its bucket refills), "connections" (over its connection rate), or None."""
        throttle = self.throttle
        source = source_text(peer)
        if throttle is None or source is None:
            return None
        if throttle.exhausted("auth_failures", source, now):
            kind = "auth_failures"
        elif not throttle.take("connections", source, now):
            kind = "connections"
        else:
            return None
        _limited.info(
            f"rate_{kind}", "rate limit: %s from %s (%s)", kind, peer_text(peer), throttle.limits.action
        )
        return kind

    def rate_ok(self, kind: str, peer: Any, now: float, key: str | _Unknown | None = UNKNOWN) -> bool:
        """A token of ``kind`` ("contexts", "calls", "auth_failures") for ``peer``'s source
        (``key``: what ``Throttle.counted_as`` gave for it, when the caller knows already)."""
        throttle = self.throttle
        if throttle is None:
            return True
        counted = throttle.counted_as(source_text(peer)) if key is UNKNOWN else key
        assert not isinstance(counted, _Unknown)
        if throttle.take_counted(kind, counted, now):
            return True
        self.over_rate(kind, peer)
        return False

    def over_rate(self, kind: str, peer: Any) -> None:
        """Log (rate-limited) that ``peer``'s source was over its rate of ``kind`` (its token
        refused: counted by the throttle)."""
        action = self.throttle.limits.action if self.throttle is not None else "refuse"
        _limited.info(f"rate_{kind}", "rate limit: %s from %s (%s)", kind, peer_text(peer), action)

    def counted_as(self, peer: Any) -> str | None:
        """The rate limits' key for ``peer`` (None: never limited), worked out once per connection."""
        throttle = self.throttle
        return None if throttle is None else throttle.counted_as(source_text(peer))

    def _record(self, moment: str, decision: Decision, subject: Subject, peer: Any) -> None:
        self.decisions[f"{moment}:{decision.action.value}"] += 1
        if decision.action is Action.ALLOW:
            return
        rule = decision.rule
        if rule is None:
            which = "the default"
        else:
            which = (f"rule at line {rule.line}" if rule.line else "a rule") + (
                f" {rule.name!r}" if rule.name else ""
            )
        _limited.info(
            f"policy_{decision.action.value}",
            "policy %s: %s %s (%s)",
            decision.action.value,
            moment,
            _describe(subject, peer),
            which,
        )
        if self.on_decision is not None:
            self.on_decision(moment, decision, subject, peer)

    # the moments -----------------------------------------------------------------------------------

    def admits(self, peer: Any, transport: str) -> bool:
        """A new connection may be taken (False: close it before any PDU is read)."""
        policy = self.policy
        if policy is None:
            return True
        subject = Subject(source_address(peer), transport)
        decision = policy.decide(subject)
        if decision.final:
            self._record("accept", decision, subject, peer)
        return not (decision.denied and decision.final)

    def matcher(
        self,
        match: Callable[[SyntaxId], SyntaxId | None],
        peer: Any,
        transport: str,
        clock: Callable[[], float],
    ) -> Callable[[SyntaxId], SyntaxId | None]:
        """The association's interface matcher for one connection: what ``match`` serves, less
        what the policy denies this peer at bind (an interface denied is answered as not served),
        and nothing once the peer proposes contexts faster than its rate (interface scans)."""

        def admitted(proposed: SyntaxId) -> SyntaxId | None:
            if self.throttle is not None and not self.rate_ok("contexts", peer, clock()):
                return None
            served = match(proposed)
            policy = self.policy
            if served is None or policy is None:
                return served
            subject = Subject(source_address(peer), transport, served)  # binds are few: not kept
            decision = policy.decide(subject)
            if decision.final:
                self._record("bind", decision, subject, peer)
            return None if decision.denied and decision.final else served

        return admitted

    def permits(
        self,
        peer: Any,
        transport: str,
        interface: SyntaxId,
        opnum: int,
        auth_type: int,
        auth_level: int,
        principal: str | None,
    ) -> Decision:
        """Whether a call may run (denied: fault rpc_s_access_denied before its stub is read)."""
        policy = self.policy
        if policy is None:
            return _ALLOWED
        subject = Subject(source_address(peer), transport, interface, opnum, auth_type, auth_level, principal)
        decision = policy.decide(subject)
        self._record("call", decision, subject, peer)
        return decision

    def visible(
        self,
        peer: Any,
        transport: str,
        auth_type: int,
        auth_level: int,
        principal: str | None,
        interface: uuid.UUID,
    ) -> bool:
        """The caller may see ``interface`` in the endpoint map and inq_if_ids."""
        policy = self.policy
        if policy is None or not policy.has_visibility_rules:
            return True
        subject = Subject(source_address(peer), transport, UNKNOWN, UNKNOWN, auth_type, auth_level, principal)
        decision = policy.visible(subject, interface)
        if decision.rule is not None:
            self._record("view", decision, subject, peer)
        return not decision.denied


def _describe(subject: Subject, peer: Any) -> str:
    """A decision's log words: who, and what of it was known."""
    parts = [f"from {peer_text(peer)} over {subject.transport}"]
    if isinstance(subject.interface, SyntaxId):
        major, minor = subject.interface.version
        parts.append(f"interface {subject.interface.uuid} v{major}.{minor}")
    if isinstance(subject.opnum, int):
        parts.append(f"opnum {subject.opnum}")
    if isinstance(subject.auth_type, int):
        parts.append(f"auth {subject.auth_type}/{subject.auth_level}")
    if subject.principal is not UNKNOWN:
        parts.append(f"as {subject.principal or 'anonymous'}")
    return ", ".join(parts)
