"""Rate limits per source address: token buckets for connections, presentation contexts proposed,
calls and failed authentications, in bounded memory however many sources there are.

    connections    one token per connection accepted           over: refused at accept
    handshakes     one per security context started (a bind    over: bind_nak temporary_congestion,
                   or alter_context with a first auth token)   or fault nca_s_server_too_busy DNE
                                                               (the server's Limits set a default)
    control        one per PDU other than a request (bind,     over: the connection is not read
                   alter_context, auth3, co_cancel, orphaned)  until the bucket refills (Limits)
    contexts       one per presentation context proposed in a  over: the context is rejected as
                   bind or alter_context (interface scans)     not served
    calls          one per call                                over: fault nca_s_server_too_busy,
                                                               did-not-execute (retry later)
    auth_failures  one per refused authentication (a bind,     over: the source's new connections
                   alter_context or auth3 whose token the      are refused until the bucket
                   provider refused)                           refills (password spraying)

``action = "tarpit"`` delays instead of refusing, where a delay makes sense: a call over its rate
is answered ``tarpit_seconds`` late (the connection's other calls go on), a connection over its
rate is read only after that long. Sources in ``exempt`` are never limited.

Memory: one entry per source seen recently, at most ``max_sources`` (the least recently seen is
forgotten first, and starts full again if it comes back). An IPv6 source is counted by its /64, the
block one subscriber is usually given: rotating through addresses of one's own block does not
buy new buckets. Time is the caller's (``now``, seconds on any monotonic clock): no clock here.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

__all__ = ["KINDS", "Bucket", "RateLimits", "Throttle"]

KINDS: Final = ("connections", "contexts", "calls", "auth_failures", "handshakes", "control")


@dataclass(frozen=True, slots=True)
class Bucket:
    """``rate`` tokens a second, at most ``burst`` saved up."""

    rate: float
    burst: float

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("a rate must be positive and a burst at least 1")


@dataclass(frozen=True, slots=True)
class RateLimits:
    """A policy's ``[rate_limit]`` table: a bucket per kind (None: that kind is not limited)."""

    connections: Bucket | None = None
    contexts: Bucket | None = None
    calls: Bucket | None = None
    auth_failures: Bucket | None = None
    handshakes: Bucket | None = None
    control: Bucket | None = None
    action: str = "refuse"  # or "tarpit"
    tarpit_seconds: float = 2.0
    exempt: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    max_sources: int = 65536

    def bucket(self, kind: str) -> Bucket | None:
        b: Bucket | None = getattr(self, kind)
        return b


@dataclass(slots=True)
class _Source:
    tokens: dict[str, float] = field(default_factory=dict)
    at: dict[str, float] = field(default_factory=dict)


class Throttle:
    """The buckets of every source (see the module docstring)."""

    def __init__(self, limits: RateLimits) -> None:
        self.limits = limits
        self._sources: OrderedDict[str, _Source] = OrderedDict()
        self.limited: dict[str, int] = dict.fromkeys(KINDS, 0)  # times each kind was over its rate

    def __len__(self) -> int:
        return len(self._sources)

    @staticmethod
    def key(source: str) -> str:
        """What a source is counted by: its address, or an IPv6 address's /64."""
        try:
            address = ipaddress.ip_address(source)
        except ValueError:
            return source
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
            return str(ipaddress.IPv6Network((address, 64), strict=False))
        return (
            str(address.ipv4_mapped or address)
            if isinstance(address, ipaddress.IPv6Address)
            else str(address)
        )

    def exempt(self, source: str) -> bool:
        try:
            address = ipaddress.ip_address(source)
        except ValueError:
            return False
        return any(address in net for net in self.limits.exempt)

    def _state(self, key: str) -> _Source:
        state = self._sources.get(key)
        if state is None:
            state = self._sources[key] = _Source()
            while len(self._sources) > self.limits.max_sources:
                self._sources.popitem(last=False)  # bounded: the least recently seen goes
        else:
            self._sources.move_to_end(key)
        return state

    def _level(self, state: _Source, kind: str, bucket: Bucket, now: float) -> float:
        tokens = state.tokens.get(kind, bucket.burst)
        then = state.at.get(kind, now)
        return min(bucket.burst, tokens + max(0.0, now - then) * bucket.rate)

    def counted_as(self, source: str | None) -> str | None:
        """What ``take_counted`` takes for ``source``: its key, or None when it is never limited
        (a local peer, an exempt one). A connection works it out once."""
        if source is None or self.exempt(source):
            return None
        return self.key(source)

    def take(self, kind: str, source: str | None, now: float) -> bool:
        """One token of ``kind`` for ``source`` (None: a local peer, never limited). False: over
        its rate (counted in ``limited``)."""
        return self.take_counted(kind, self.counted_as(source), now)

    def take_counted(self, kind: str, key: str | None, now: float) -> bool:
        """:meth:`take`, for a source already worked out by :meth:`counted_as`."""
        bucket = self.limits.bucket(kind)
        if bucket is None or key is None:
            return True
        state = self._state(key)
        tokens = self._level(state, kind, bucket, now)
        state.at[kind] = now
        if tokens < 1:
            state.tokens[kind] = tokens
            self.limited[kind] += 1
            return False
        state.tokens[kind] = tokens - 1
        return True

    def spend(self, kind: str, key: str | None, now: float, n: int) -> float:
        """Spend ``n`` tokens of ``kind`` at once, into debt if need be: the seconds until the
        bucket is back above nothing (0: it was not overdrawn). For what has already happened,
        to pace what comes next."""
        bucket = self.limits.bucket(kind)
        if bucket is None or key is None or n <= 0:
            return 0.0
        state = self._state(key)
        tokens = self._level(state, kind, bucket, now) - n
        state.at[kind] = now
        state.tokens[kind] = max(tokens, -bucket.burst * 64)  # bounded debt: a pause is bounded too
        if tokens >= 0:
            return 0.0
        self.limited[kind] += 1
        return -tokens / bucket.rate

    def exhausted(self, kind: str, source: str | None, now: float) -> bool:
        """``source`` has no token of ``kind`` left now (nothing is taken)."""
        bucket = self.limits.bucket(kind)
        if bucket is None or source is None or self.exempt(source):
            return False
        state = self._sources.get(self.key(source))
        return state is not None and self._level(state, kind, bucket, now) < 1
