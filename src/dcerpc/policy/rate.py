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

__all__ = ["KINDS", "Bucket", "Level", "Meter", "RateLimits", "Throttle"]

KINDS: Final = ("connections", "contexts", "calls", "auth_failures", "handshakes", "control")


@dataclass(frozen=True, slots=True)
class Bucket:
    """``rate`` tokens a second, at most ``burst`` saved up (floats: a level is one, and a call
    takes its token with a subtraction of floats, which the interpreter specializes; one of a
    float and an int costs twice as much)."""

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


class Level:
    """One kind's bucket of one source: its tokens when last taken from, and when (``now``)."""

    __slots__ = ("at", "tokens")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens = tokens
        self.at = at


@dataclass(slots=True)
class _Source:
    levels: dict[str, Level] = field(default_factory=dict)  # by kind, once a token was taken


class Throttle:
    """The buckets of every source (see the module docstring)."""

    def __init__(self, limits: RateLimits) -> None:
        self.limits = limits
        self._buckets = {kind: limits.bucket(kind) for kind in KINDS}  # one look-up per take
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

    @staticmethod
    def _refilled(state: _Source, kind: str, bucket: Bucket, now: float) -> Level:
        """``state``'s level of ``kind``, refilled to ``now`` in place (made full when it has none):
        the one refill rule, which every take reads. Comparisons rather than min() and max(): a
        connection's calls refill once per read, and at one call a read the builtins and their
        keyword parsing were some 480 instructions of the 3,100 this form saved a call (callgrind,
        benchmarks/inproc.py --policy)."""
        level = state.levels.get(kind)
        if level is None:
            level = state.levels[kind] = Level(bucket.burst, now)
        elif now > level.at:  # (a clock that did not move, or went back, adds nothing)
            tokens = level.tokens + (now - level.at) * bucket.rate
            level.tokens = tokens if tokens < bucket.burst else bucket.burst
            level.at = now
        return level

    def meter(self, kind: str, key: str | None) -> Meter | None:
        """What a connection takes its tokens of ``kind`` with, for the source ``counted_as``
        gave (None: that kind or that source is not limited)."""
        bucket = self._buckets[kind]
        if bucket is None or key is None:
            return None
        return Meter(self, kind, key, bucket)

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
        bucket = self._buckets[kind]
        if bucket is None or key is None:
            return True
        level = self._refilled(self._state(key), kind, bucket, now)
        if level.tokens < 1:
            self.limited[kind] += 1
            return False
        level.tokens -= 1
        return True

    def spend(self, kind: str, key: str | None, now: float, n: int) -> float:
        """Spend ``n`` tokens of ``kind`` at once, into debt if need be: the seconds until the
        bucket is back above nothing (0: it was not overdrawn). For what has already happened,
        to pace what comes next."""
        bucket = self.limits.bucket(kind)
        if bucket is None or key is None or n <= 0:
            return 0.0
        level = self._refilled(self._state(key), kind, bucket, now)
        tokens = level.tokens - n
        level.tokens = max(tokens, -bucket.burst * 64)  # bounded debt: a bounded pause
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
        return state is not None and self._refilled(state, kind, bucket, now).tokens < 1


class Meter:
    """One source's bucket of one kind as a connection holds it (:meth:`Throttle.meter`), the same
    bucket :meth:`Throttle.take_counted` takes from (a source's connections share it). A connection
    reads its level once per read (:meth:`refill`: refilled to ``now``, the source kept the most
    recently seen) and its calls of that read take their tokens from that level in place, one
    subtraction each: nothing else runs between them, so no other connection of the source sees the
    bucket half spent. A source forgotten meanwhile is looked up again, and starts full."""

    __slots__ = ("_bucket", "_key", "_kind", "_throttle")

    def __init__(self, throttle: Throttle, kind: str, key: str, bucket: Bucket) -> None:
        self._throttle = throttle
        self._kind = kind
        self._key = key
        self._bucket = bucket

    def refill(self, now: float) -> Level:
        """The bucket's level at ``now``, refilled as :meth:`Throttle.take_counted` refills it:
        take a token by ``level.tokens -= 1`` while it is at least 1, and call :meth:`refused`
        for a token it did not have."""
        throttle = self._throttle
        # (the source the most recently seen now; made again, full, if it was forgotten)
        return throttle._refilled(throttle._state(self._key), self._kind, self._bucket, now)

    def refused(self) -> None:
        """A token the level did not have (counted in the throttle's ``limited``)."""
        self._throttle.limited[self._kind] += 1

    def take(self, now: float) -> bool:
        """One token now (False: over the rate, counted)."""
        level = self.refill(now)
        if level.tokens < 1:
            self.refused()
            return False
        level.tokens -= 1
        return True
