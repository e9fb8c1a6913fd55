"""The engine: fire at the threshold and not below, in event time; windows slide; one alert per
(detector, source) per window; memory bounded per window and in all; the alert's shape."""

from __future__ import annotations

from typing import Any

from dcerpc.detect import Engine, Rule
from dcerpc.detect.engine import MAX_SAMPLES, SAMPLE_CHARS
from tests.audit.helpers import valid


def _engine(threshold: int = 3, window: float = 10.0, max_sources: int = 100) -> Engine:
    return Engine({"d": Rule(threshold, window)}, max_sources)


def test_fires_at_the_threshold_not_below() -> None:
    e = _engine()
    assert e.hit("d", "1.1.1.1", 0.0, "a", "a", "why") is None
    assert e.hit("d", "1.1.1.1", 1.0, "b", "b", "why") is None
    assert e.hit("d", "1.1.1.1", 1.5, "a", "a", "why") is None  # distinct keys count once
    alert = e.hit("d", "1.1.1.1", 2.0, "c", "c", "why")
    assert alert is not None and alert.count == 3 and alert.threshold == 3
    assert alert.first == 0.0 and alert.last == 2.0 and alert.samples == ("a", "b", "c")
    assert e.take() == [alert] and e.take() == []


def test_sources_and_detectors_are_counted_apart() -> None:
    e = Engine({"d": Rule(2, 10.0), "other": Rule(2, 10.0)})
    e.hit("d", "1.1.1.1", 0.0, "a", None, "why")
    e.hit("d", "2.2.2.2", 0.0, "b", None, "why")
    e.hit("other", "1.1.1.1", 0.0, "c", None, "why")
    assert not e.take()


def test_the_window_slides_in_event_time() -> None:
    e = _engine(window=10.0)
    e.hit("d", "s", 0.0, 1, None, "why")
    e.hit("d", "s", 5.0, 2, None, "why")
    assert e.hit("d", "s", 10.5, 3, None, "why") is None  # key 1 left the window
    assert e.hit("d", "s", 14.0, 4, None, "why") is not None  # 2, 3, 4 within 10 s


def test_one_alert_per_source_per_window() -> None:
    e = _engine(threshold=2, window=10.0)
    alerts = [e.hit("d", "s", t * 0.5, t, None, "why") for t in range(40)]  # 20 s of a flood
    fired = [a for a in alerts if a is not None]
    assert [a.last for a in fired] == [0.5, 10.5]  # then quiet until the window after each alert


def test_disabled_rule_and_unknown_detector_do_nothing() -> None:
    e = Engine({"d": Rule(1, 10.0, enabled=False)})
    assert e.hit("d", "s", 0.0, 1, None, "why") is None
    assert e.hit("nope", "s", 0.0, 1, None, "why") is None


def test_memory_is_bounded_per_window_and_in_all() -> None:
    e = _engine(threshold=1000, window=1e9, max_sources=50)
    for i in range(100_000):  # one source, a hundred thousand distinct keys: a sweep
        e.hit("d", "s", float(i), i, f"k{i}" * 100, "why")
    win = next(iter(e._windows["d"].values()))
    assert len(win.keys) <= 1000 and len(win.samples) <= MAX_SAMPLES
    assert all(len(s) <= SAMPLE_CHARS for s in win.samples)
    for i in range(10_000):  # ten thousand sources: a scan from many addresses
        e.hit("d", f"10.0.{i // 256}.{i % 256}", 0.0, 1, None, "why")
    assert e.windows() <= 50 and len(e._quiet["d"]) <= 50


def test_alert_event_shape() -> None:
    e = _engine(threshold=1)
    alert = e.hit(
        "d", "203.0.113.9", 1_700_000_000.25, "k", "ept_lookup", "why", destination=("10.0.0.2", 135)
    )
    assert alert is not None
    ev: dict[str, Any] = alert.event()
    assert ev["event"] == {"kind": "alert", "category": ["intrusion_detection"], "action": "detection",
                           "outcome": "unknown", "reason": "why"}  # fmt: skip
    assert ev["rule"] == {"name": "d"} and ev["source"] == {"ip": "203.0.113.9"}
    assert ev["destination"] == {"ip": "10.0.0.2", "port": 135}
    assert ev["dcerpc"]["alert"] == {
        "window": 10.0, "count": 1, "threshold": 1, "first": "2023-11-14T22:13:20.250000Z",
        "last": "2023-11-14T22:13:20.250000Z", "samples": ["ept_lookup"],
    }  # fmt: skip
    valid({**ev, "ecs": {"version": "8.11.0"}})  # the audit trail's schema
