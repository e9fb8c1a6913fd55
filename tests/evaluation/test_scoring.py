"""The scorer on known inputs (sans-IO), and the detectors' targets on the corpus (once the
detectors exist on this branch)."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.evaluation.corpus import DETECTORS, Capture
from tests.evaluation.score import TARGET_RECALL, detections, monitor_events, score


def _cap(
    name: str, expect: tuple[str, ...] = (), allow: tuple[str, ...] = (), attack: bool = False
) -> Capture:
    return Capture(name, f"/{name}", "ours", name, list(expect), list(allow), not expect and not attack)


def _alert(rule: str) -> dict[str, object]:
    return {"event": {"kind": "alert", "action": "detection"}, "rule": {"name": rule}}


def test_detections_count_only_detection_alerts() -> None:
    violation = {
        "event": {"kind": "alert", "action": "protocol-violation"},
        "dcerpc": {"violation": "malformed"},
    }
    call = {"event": {"kind": "event", "action": "call"}}
    assert detections([_alert("zerologon"), _alert("zerologon"), violation, call, _alert("port_scan")]) == {
        "zerologon": 2, "port_scan": 1}  # fmt: skip


def test_score_recall_precision_and_benign_alerts() -> None:
    results = [
        (_cap("a1", ("zerologon",)), Counter({"zerologon": 1})),
        (_cap("a2", ("zerologon",)), Counter()),  # missed
        (_cap("a3", ("port_scan",), allow=("zerologon",)), Counter({"zerologon": 3, "port_scan": 1})),
        (_cap("b1"), Counter({"zerologon": 2})),  # benign: a false positive
        (_cap("n1", attack=True), Counter({"port_scan": 1})),  # an attack expecting nothing
    ]
    rows = {r.detector: r for r in score(results, ["zerologon", "port_scan", "opnum_sweep"])}
    z = rows["zerologon"]
    assert (z.labelled, z.detected, z.fired, z.false_positives, z.benign_alerts) == (2, 1, 3, 1, 2)
    assert z.recall == 0.5 and z.precision == pytest.approx(2 / 3)
    assert z.missed == ["a2"] and z.wrong == ["b1"]
    p = rows["port_scan"]
    assert (p.recall, p.precision, p.benign_alerts, p.wrong) == (1.0, 0.5, 0, ["n1"])
    o = rows["opnum_sweep"]
    assert o.recall is None and o.precision is None and o.fired == 0


@pytest.mark.interop
def test_detectors_meet_their_targets(corpus: list[Capture]) -> None:
    from dcerpc.detect import DETECTORS as DECLARED

    assert set(DECLARED) == set(DETECTORS)  # the corpus labels every detector the package declares
    names = list(DETECTORS)
    rows = score([(c, detections(monitor_events(c.path))) for c in corpus], names)
    bad = [
        (r.detector, r.recall, r.missed, r.wrong, r.benign_alerts)
        for r in rows
        if (r.recall is not None and r.recall < TARGET_RECALL) or r.benign_alerts or r.false_positives
    ]
    assert not bad, bad
