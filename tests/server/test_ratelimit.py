"""Log lines under a flood: a burst per kind per window, then one line saying how many were held."""

from __future__ import annotations

import logging

import pytest

from dcerpc.server.ratelimit import LogLimiter


def test_a_flood_logs_a_burst_then_a_summary(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    log = logging.getLogger("dcerpc.test.ratelimit")
    limiter = LogLimiter(log, burst=3, window=10.0, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger=log.name)
    for i in range(1000):
        limiter.warning("malformed", "bad PDU %d", i)
    limiter.warning("second_bind", "another kind")  # a kind of its own is not held back by the first
    assert [r.getMessage() for r in caplog.records] == ["bad PDU 0", "bad PDU 1", "bad PDU 2", "another kind"]
    caplog.clear()
    now[0] += 10.0
    limiter.warning("malformed", "bad PDU again")
    assert [r.getMessage() for r in caplog.records] == [
        "997 more malformed lines held back in 10 s",
        "bad PDU again",
    ]
