"""The records' JSON: one event per record (made once when the detectors run), one line of JSON
per event with the document ``json.dumps`` writes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dcerpc.detect import Detectors
from dcerpc.detect.engine import Alert
from dcerpc.monitor import Monitor, json_line, to_event
from dcerpc.monitor.records import Record
from tests.monitor.streams import segments, session


def run(mon: Monitor) -> list[tuple[Record, dict[str, Any]]]:
    """Every record with ``mon.event`` of it, asked as a consumer of monitor_file asks."""
    out = []
    segs = segments(session(calls=2, big=6000))
    for seg in segs:
        out += [(rec, mon.event(rec)) for rec in mon.feed(seg)]
    out += [(rec, mon.event(rec)) for rec in mon.finish()]
    return out


class Recording(Detectors):
    """The detectors, keeping every event they are given."""

    def __init__(self) -> None:
        super().__init__()
        self.given: list[Mapping[str, Any]] = []

    def feed(
        self, ev: Mapping[str, Any], ts: float, features: Mapping[str, Any] | None = None
    ) -> list[Alert]:
        self.given.append(ev)
        return super().feed(ev, ts, features)


def test_the_event_given_to_the_detectors_is_the_one_handed_out() -> None:
    detectors = Recording()
    got = run(Monitor(detectors=detectors))
    assert len(got) >= 5 and len(detectors.given) == len(got)
    for (rec, event), detected in zip(got, detectors.given, strict=True):
        assert event is detected  # made once
        assert event == to_event(rec)


def test_an_event_asked_later_is_made_again() -> None:
    mon = Monitor(detectors=Detectors())
    got = run(mon)
    rec, event = got[0]
    again = mon.event(rec)  # its batch is gone: made anew, equal
    assert again is not event and again == event
    plain = run(Monitor())  # no detectors: every event made when asked
    assert [e for _, e in plain] == [e for _, e in got]


def test_a_json_line_is_the_document_json_dumps_writes() -> None:
    for _, event in run(Monitor()):
        line = json_line(event)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert json.loads(line) == event
        assert list(json.loads(line)) == list(event)  # keys in the same order
        assert json.loads(line) == json.loads(json.dumps(event, separators=(",", ":")))
    odd = {"user": {"name": "j\u00f6rg\u2028", "domain": "d\ud800"}, "rtt": 5.03e-05, "n": [1, None, True]}
    assert json.loads(json_line(odd)) == odd  # a lone surrogate: json's escapes, not an error
    assert json.loads(json_line({"name": "j\u00f6rg"}).decode("utf-8")) == {"name": "j\u00f6rg"}
