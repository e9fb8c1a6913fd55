"""Events the sans-IO associations hand to their adapters."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TypeAlias, final

from ..pdu.syntax import SyntaxId
from .rules import Violation

Stub: TypeAlias = bytes | memoryview
"""A call's stub: bytes, or a view of the buffer a long call was reassembled in (no copy)."""

__all__ = [
    "AlterContextAccepted",
    "Authenticated",
    "BindAccepted",
    "BindRejected",
    "CallCancelled",
    "CallOrphaned",
    "CallReceived",
    "Caller",
    "Closing",
    "Event",
    "FaultReceived",
    "ProtocolViolation",
    "ResponseReceived",
    "ShutdownRequested",
    "Stub",
]


class Event:
    """Base of all association events.

    Events are values; treat them as read-only. The two made once per call (CallReceived,
    ResponseReceived) are plain slotted classes built positionally: a frozen keyword-only
    dataclass costs a microsecond more per call, which shows at tens of thousands of calls a second.
    """

    __slots__ = ()


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class BindAccepted(Event):
    """A bind or alter_context was answered; ``accepted`` maps context id to interface."""

    accepted: dict[int, SyntaxId]
    rejected: dict[int, int]  # context id -> provider reason
    assoc_group_id: int
    max_xmit_frag: int
    max_recv_frag: int
    # server side, for the audit trail: an alter_context (not a bind), and its security context
    alter: bool = False
    auth_type: int = 0
    auth_level: int = 1
    # server side: what each rejected context proposed (the audit trail's, the detectors' version
    # sweeps); empty when nothing was rejected
    rejected_syntaxes: dict[int, SyntaxId] = field(default_factory=dict)


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Authenticated(Event):
    """Server side: a security context's handshake ended, for the audit trail. ``failure`` None:
    it completed for ``principal`` (None with ``anonymous``: the anonymous logon); else why the
    provider refused it, and the name the peer gave where the provider could read one (an NTLM
    AUTHENTICATE's user and domain)."""

    auth_type: int
    auth_level: int
    context_id: int
    principal: str | None = None
    anonymous: bool = False
    failure: str | None = None
    user: str | None = None
    domain: str | None = None


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class AlterContextAccepted(Event):
    """Client side: alter_context_resp arrived."""

    accepted: dict[int, SyntaxId]
    rejected: dict[int, int]


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class BindRejected(Event):
    """Client side: bind_nak arrived (``reason`` is a RejectReason value)."""

    reason: int


@final
@dataclass(slots=True)
class CallReceived(Event):
    """Server side: a whole request is here."""

    call_id: int
    context_id: int
    interface: SyntaxId
    opnum: int
    object: uuid.UUID | None
    stub: Stub
    little_endian: bool
    auth_type: int = 0
    auth_level: int = 1
    principal: str | None = None


class Caller:
    """Who made a call, as what remembers calls by their caller reads it (the server's routes, the
    audit trail's sites): auth type, level and principal, and the object UUID, each compared by
    identity with the next call's (``is``: what one security context and one object make is the
    same object from call to call)."""

    __slots__ = ("auth_level", "auth_type", "object", "principal")

    def __init__(self, ev: CallReceived) -> None:
        self.auth_type = ev.auth_type
        self.auth_level = ev.auth_level
        self.principal = ev.principal
        self.object = ev.object


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class CallCancelled(Event):
    """Server side: the client sent co_cancel for a call being served."""

    call_id: int


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class CallOrphaned(Event):
    """Server side: the client abandoned a call (orphaned); send nothing for it."""

    call_id: int


@final
@dataclass(slots=True)
class ResponseReceived(Event):
    """Client side: a whole response is here."""

    call_id: int
    stub: Stub
    little_endian: bool


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class FaultReceived(Event):
    """Client side: the call failed with ``status``."""

    call_id: int
    status: int
    did_not_execute: bool


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ShutdownRequested(Event):
    """Client side: the server sent shutdown."""


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ProtocolViolation(Event):
    """The peer broke a rule: ``kind`` is which (rules.ANSWERS says what it got), ``reason`` says
    how, for people (the log and the audit trail); no code looks inside it."""

    reason: str
    call_id: int = 0
    fatal: bool = False
    kind: Violation = Violation.PEER_PROTOCOL


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Closing(Event):
    """The association is over: flush ``data_to_send()`` and close the transport."""

    reason: str
