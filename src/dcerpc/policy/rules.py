"""Who may call what: a policy's rules, matched first to last, and the decision for what is known.

A policy is an ordered list of rules and a default action. A rule names conditions (each key
optional; a rule without a key matches everything on it) and an action: ``allow``, ``deny``, or
``audit`` (allow, and record the decision). The first rule whose every condition holds decides.

The server asks at three moments, knowing more each time (:class:`Subject`):

    accept   source address, transport                  a denial closes the connection at once
    bind     + interface and version, auth type, level  a denial rejects the context (as an
                                                        interface not served: nothing revealed)
    call     + opnum, principal                         a denial is fault rpc_s_access_denied,
                                                        before the stub is unmarshalled

A condition on something not yet known (:data:`UNKNOWN`) cannot be judged. Such a rule that would
allow may yet allow, so the question waits for the next moment; one that would deny may not apply,
so the next rule is looked at. Only a rule that matches on what is known decides early. This makes
the early answers exact: what is refused at accept or bind is refused at every later moment too.

Rules with ``epm_interface`` are a fourth question, asked by the endpoint mapper and mgmt: may this
caller see that interface (in ept_lookup, ept_map and inq_if_ids)? Only those rules answer it, and
an interface no rule hides is visible.

Pure data and functions (no I/O); ``policy.load`` reads a TOML file into a :class:`Policy`.
"""

from __future__ import annotations

import enum
import ipaddress
import uuid
from dataclasses import dataclass, field
from typing import Final

from ..pdu.syntax import SyntaxId
from .rate import RateLimits

__all__ = [
    "UNKNOWN",
    "Action",
    "Decision",
    "Policy",
    "Principal",
    "Rule",
    "Subject",
]


class _Unknown(enum.Enum):
    UNKNOWN = "unknown"


UNKNOWN: Final = _Unknown.UNKNOWN
"""What a subject's field is before the moment that knows it."""


class Action(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    AUDIT = "audit"  # allow, and record the decision


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Subject:
    """What is known about a connection, bind or call when the policy is asked.

    ``source`` is None for a local (ncalrpc) peer; ``principal`` None for an anonymous caller."""

    source: Address | None
    transport: str
    interface: SyntaxId | _Unknown = UNKNOWN
    opnum: int | _Unknown = UNKNOWN
    auth_type: int | _Unknown = UNKNOWN
    auth_level: int | _Unknown = UNKNOWN
    principal: str | _Unknown | None = UNKNOWN


@dataclass(frozen=True, slots=True)
class Principal:
    """A principal pattern: ``user`` (any domain), ``DOMAIN\\user``, or the anonymous caller.
    Names compare without case, as Windows account names do."""

    user: str  # lowercased; "" with anonymous
    domain: str | None = None  # lowercased; None: any
    anonymous: bool = False

    def matches(self, principal: str | None) -> bool:
        if principal is None:
            return self.anonymous
        if self.anonymous:
            return False
        user, domain = _split_principal(principal)
        return user == self.user and (self.domain is None or domain == self.domain)


def _split_principal(principal: str) -> tuple[str, str | None]:
    """(user, domain) of ``DOMAIN\\user`` or ``user@REALM`` (the realm's first label: the NetBIOS
    domain as Kerberos names it), lowercased."""
    p = principal.lower()
    if "\\" in p:
        domain, _, user = p.partition("\\")
        return user, domain
    if "@" in p:
        user, _, realm = p.partition("@")
        return user, realm.split(".")[0]
    return p, None


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule; a condition that is None matches anything (see the module docstring)."""

    action: Action
    name: str = ""
    line: int = 0  # where it starts in its file (for messages)
    interfaces: frozenset[uuid.UUID] | None = None
    versions: tuple[tuple[int, int], tuple[int, int]] | None = None  # lowest, highest (inclusive)
    opnums: tuple[tuple[int, int], ...] | None = None  # ranges, inclusive
    sources: tuple[Network, ...] | None = None
    transports: frozenset[str] | None = None
    auth_types: frozenset[int] | None = None
    auth_levels: frozenset[int] | None = None
    principals: tuple[Principal, ...] | None = None
    epm_interfaces: frozenset[uuid.UUID] | None = None  # a visibility rule (mapper and mgmt)

    def judge(self, s: Subject, interface: uuid.UUID | _Unknown | None = None) -> bool | None:
        """True: every condition holds; False: one does not; None: none fails, but one is on
        something not yet known. ``interface``: the visibility question's interface."""
        unknown = False
        if self.sources is not None and (s.source is None or not any(s.source in n for n in self.sources)):
            return False
        if self.transports is not None and s.transport not in self.transports:
            return False
        if self.epm_interfaces is not None and (
            interface is None or interface is UNKNOWN or interface not in self.epm_interfaces
        ):
            return False
        if self.interfaces is not None or self.versions is not None:
            if s.interface is UNKNOWN:
                unknown = True
            else:
                assert isinstance(s.interface, SyntaxId)
                if self.interfaces is not None and s.interface.uuid not in self.interfaces:
                    return False
                if self.versions is not None:
                    low, high = self.versions
                    if not low <= s.interface.version <= high:
                        return False
        if self.opnums is not None:
            if s.opnum is UNKNOWN:
                unknown = True
            elif not any(a <= s.opnum <= b for a, b in self.opnums):
                return False
        if self.auth_types is not None:
            if s.auth_type is UNKNOWN:
                unknown = True
            elif s.auth_type not in self.auth_types:
                return False
        if self.auth_levels is not None:
            if s.auth_level is UNKNOWN:
                unknown = True
            elif s.auth_level not in self.auth_levels:
                return False
        if self.principals is not None:
            if s.principal is UNKNOWN:
                unknown = True
            elif not any(p.matches(s.principal) for p in self.principals):
                return False
        return None if unknown else True


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's answer: the action, the rule that decided (None: the default, or nothing
    decided yet), and whether it is final (False: ask again when more is known; not a denial)."""

    action: Action
    rule: Rule | None = None
    final: bool = True

    @property
    def denied(self) -> bool:
        return self.action is Action.DENY

    @property
    def audited(self) -> bool:
        return self.action is Action.AUDIT


_UNDECIDED: Final = Decision(Action.ALLOW, None, final=False)


@dataclass(frozen=True, slots=True)
class Policy:
    """Rules in order, the default action, and the groups of principals the rules name."""

    rules: tuple[Rule, ...] = ()
    default: Action = Action.ALLOW
    groups: dict[str, tuple[Principal, ...]] = field(default_factory=dict)
    source: str = ""  # the file it was read from, if any
    rate: RateLimits | None = None  # [rate_limit]: per-source token buckets (server.throttle)

    def decide(self, subject: Subject) -> Decision:
        """The decision for what ``subject`` knows (see the module docstring)."""
        for rule in self.rules:
            if rule.epm_interfaces is not None:
                continue
            verdict = rule.judge(subject)
            if verdict is True:
                return Decision(rule.action, rule)
            if verdict is None and rule.action is not Action.DENY:
                return _UNDECIDED  # it may allow once more is known
        return Decision(self.default)

    def visible(self, subject: Subject, interface: uuid.UUID) -> Decision:
        """May ``subject`` see ``interface`` in the endpoint map and in inq_if_ids? Denied when a
        visibility rule that matches says deny (a condition not known counts as not holding)."""
        for rule in self.rules:
            if rule.epm_interfaces is None:
                continue
            if rule.judge(subject, interface) is True:
                return Decision(rule.action, rule)
        return Decision(Action.ALLOW)

    @property
    def has_visibility_rules(self) -> bool:
        return any(r.epm_interfaces is not None for r in self.rules)
