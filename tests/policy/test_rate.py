"""Per-source token buckets (policy/rate.py), sans-IO with the caller's clock: rates, bursts,
refills, exemptions, IPv6 counted by /64, and memory bounded however many sources come."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcerpc.policy import PolicyError, parse
from dcerpc.policy.rate import Bucket, RateLimits, Throttle


def test_a_burst_then_the_rate() -> None:
    t = Throttle(RateLimits(calls=Bucket(rate=2.0, burst=3)))
    assert [t.take("calls", "192.0.2.1", 0.0) for _ in range(4)] == [True, True, True, False]
    assert t.take("calls", "192.0.2.2", 0.0)  # another source has its own bucket
    assert not t.take("calls", "192.0.2.1", 0.2)  # 0.4 tokens refilled: not yet
    assert t.take("calls", "192.0.2.1", 0.6)  # 1.2
    assert t.limited["calls"] == 2
    assert t.take("connections", "192.0.2.1", 0.0)  # a kind without a bucket is not limited


def test_a_bucket_refills_to_its_burst_and_not_from_a_clock_that_went_back() -> None:
    t = Throttle(RateLimits(calls=Bucket(rate=1.0, burst=2)))
    assert t.take("calls", "192.0.2.1", 10.0) and t.take("calls", "192.0.2.1", 10.0)
    assert not t.take("calls", "192.0.2.1", 5.0)  # back in time: nothing refilled
    assert not t.take("calls", "192.0.2.1", 10.5)  # half a token since 10.0 (not since 5.0)
    assert t.take("calls", "192.0.2.1", 11.0)
    # an hour idle refills to the burst, no more
    assert [t.take("calls", "192.0.2.1", 3611.0) for _ in range(3)] == [True, True, False]
    assert t.spend("calls", "192.0.2.1", 3611.0, 3) == 3.0  # 3 into debt: 3 s until above none


def test_exempt_and_local_sources_are_never_limited() -> None:
    t = Throttle(RateLimits(calls=Bucket(1.0, 1), exempt=(ipaddress.ip_network("10.0.0.0/8"),)))
    assert all(t.take("calls", "10.1.2.3", 0.0) for _ in range(10))
    assert all(t.take("calls", None, 0.0) for _ in range(10))
    assert len(t) == 0


def test_ipv6_sources_are_counted_by_their_slash_64() -> None:
    t = Throttle(RateLimits(connections=Bucket(1.0, 2)))
    assert t.take("connections", "2001:db8:1:2::1", 0.0)
    assert t.take("connections", "2001:db8:1:2::ffff", 0.0)
    assert not t.take("connections", "2001:db8:1:2:a:b:c:d", 0.0)  # the same /64
    assert t.take("connections", "2001:db8:1:3::1", 0.0)  # another /64
    assert Throttle.key("::ffff:192.0.2.9") == "192.0.2.9"


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=400))
def test_memory_is_bounded_however_many_sources(addresses: list[int]) -> None:
    t = Throttle(RateLimits(calls=Bucket(1.0, 1), max_sources=64))
    for i, a in enumerate(addresses):
        t.take("calls", str(ipaddress.IPv4Address(a)), float(i))
        assert len(t) <= 64


def test_exhausted_looks_without_taking() -> None:
    t = Throttle(RateLimits(auth_failures=Bucket(0.1, 2)))
    assert not t.exhausted("auth_failures", "192.0.2.1", 0.0)
    t.take("auth_failures", "192.0.2.1", 0.0)
    t.take("auth_failures", "192.0.2.1", 0.0)
    assert t.exhausted("auth_failures", "192.0.2.1", 1.0)
    assert not t.exhausted("auth_failures", "192.0.2.1", 11.0)  # a token back after 10 s


def test_the_rate_limit_table_of_a_policy_file() -> None:
    p = parse(
        '[rate_limit]\nconnections = "20/s"\ncalls = "120/m burst 500"\nauth_failures = "5/h"\n'
        'action = "tarpit"\ntarpit_seconds = 1.5\nexempt = ["127.0.0.0/8"]\n'
    )
    assert p.rate is not None
    assert p.rate.connections == Bucket(20.0, 20.0)
    assert p.rate.calls == Bucket(2.0, 500.0)
    assert p.rate.auth_failures == Bucket(5 / 3600, 5.0)
    assert (p.rate.action, p.rate.tarpit_seconds) == ("tarpit", 1.5)


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ('[rate_limit]\ncalls = "fast"\n', 2, "rate_limit.calls"),
        ('[rate_limit]\n\naction = "drop"\n', 3, "rate_limit.action"),
        ("[rate_limit]\ntarpit_seconds = 600\n", 2, "rate_limit.tarpit_seconds"),
        ('[rate_limit]\nbinds = "1/s"\n', 2, "rate_limit.binds"),
        ('[rate_limit]\nexempt = "localhost"\n', 2, "rate_limit.exempt"),
    ],
)
def test_a_bad_rate_limit_table_is_refused_with_its_line(text: str, line: int, key: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse(text, "p.toml")
    assert (caught.value.line, caught.value.key) == (line, key), str(caught.value)


def test_a_meter_takes_from_the_sources_own_bucket() -> None:
    """A connection's Meter (the call path's) and Throttle.take share the source's bucket: what
    one takes the other does not get; over the rate is counted once either way."""
    t = Throttle(RateLimits(calls=Bucket(rate=2.0, burst=3)))
    m = t.meter("calls", "192.0.2.1")
    assert m is not None
    assert m.take(0.0) and t.take("calls", "192.0.2.1", 0.0) and m.take(0.0)
    assert not m.take(0.0) and not t.take("calls", "192.0.2.1", 0.0)
    assert t.limited["calls"] == 2
    assert not m.take(0.2) and m.take(0.6)  # refilled at the bucket's rate
    assert t.meter("calls", None) is None and t.meter("connections", "192.0.2.1") is None


def test_a_meter_of_a_forgotten_source_looks_it_up_again() -> None:
    """A source forgotten (the least recently seen of too many) starts full when it comes back,
    for its connection's meter too; and the meter keeps its source the most recently seen."""
    t = Throttle(RateLimits(calls=Bucket(rate=1.0, burst=2), max_sources=2))
    m = t.meter("calls", "192.0.2.1")
    assert m is not None
    assert m.take(0.0) and m.take(0.0) and not m.take(0.0)
    assert t.take("calls", "192.0.2.2", 0.0)
    assert not m.take(0.0)  # seen last now: a third source forgets 192.0.2.2, not it
    assert t.take("calls", "192.0.2.3", 0.0)
    assert len(t) == 2 and not m.take(0.0)
    assert t.take("calls", "192.0.2.4", 0.0) and t.take("calls", "192.0.2.5", 0.0)  # now it goes
    assert m.take(0.0) and m.take(0.0) and not m.take(0.0)  # back, full: its own bucket again
    assert not t.take("calls", "192.0.2.1", 0.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.floats(0, 0.5)), max_size=40))
def test_a_meter_decides_as_take_does(steps: list[tuple[bool, float]]) -> None:
    """The same takes, through a meter (or take, at random) on one throttle and take on another:
    the same answers."""
    limits = RateLimits(calls=Bucket(rate=3.0, burst=2))
    metered, plain = Throttle(limits), Throttle(limits)
    m = metered.meter("calls", "192.0.2.1")
    assert m is not None
    now = 0.0
    for through_meter, wait in steps:
        now += wait
        got = m.take(now) if through_meter else metered.take("calls", "192.0.2.1", now)
        assert got == plain.take("calls", "192.0.2.1", now)
    assert metered.limited == plain.limited
