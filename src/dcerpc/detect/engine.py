"""The detectors' engine: events in (ECS + ``dcerpc.*``, the one shape of the monitor's records and
the server's audit events), alerts out, in event time and in bounded memory.

Theory of operation. A detector (detectors.py) looks at one event and, when it is evidence, calls
:meth:`Engine.hit` with the event's source, its time, a *key* and a small *sample*. The engine
keeps, per (detector, source[, group]), a sliding window of the keys seen in the last ``window``
seconds (an insertion-ordered dict key -> last time: distinct keys for detectors that count
distinct things, a running number for those that count events). When the window holds
``threshold`` keys an alert is made, and no other for that (detector, source) until ``window``
seconds after it: one alert per (detector, source) per window, however long the attack lasts.

Time is the event's own (the capture's timestamps offline, ``time.time()`` at the event inline), so
the same events give the same alerts from a capture and from a live server. Events a little out of
order (a capture's calls complete out of order) are taken as they come: a window only forgets keys
older than the newest time seen minus ``window``.

Bounds, and the attack each stops:

- keys per window: ``threshold`` (a window is only asked whether it holds that many; the oldest go
  first): a source sweeping 65,536 opnums or spraying a million user names costs ``threshold``
  entries, not a million;
- samples per alert: :data:`MAX_SAMPLES` items of :data:`SAMPLE_CHARS` characters: a peer's chosen
  names (a 64 KiB interface name, a UNC path of shellcode) do not grow the alert;
- windows per detector: ``max_sources`` (least recently active dropped first): a scan from a /8 of
  spoofed or NATed sources, or an IPv6 source rotating its address per connection, costs at most
  that many windows per detector, so the engine's memory is at most detectors x max_sources x
  (threshold + samples) entries.
"""

from __future__ import annotations

import datetime
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["MAX_SAMPLES", "SAMPLE_CHARS", "Alert", "Engine", "Rule", "timestamp"]

MAX_SAMPLES: Final = 8
"""Evidence items an alert carries (the first distinct ones of its window)."""
SAMPLE_CHARS: Final = 80
"""Characters of one evidence item (a peer-chosen name is cut there)."""


def timestamp(ts: float) -> str:
    """``2026-12-01T13:56:24.123456Z`` (UTC, microseconds): the events' ``@timestamp`` format."""
    when = datetime.datetime.fromtimestamp(ts, datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class Rule:
    """One detector's settings: fire at ``threshold`` keys within ``window`` seconds."""

    threshold: int
    window: float
    enabled: bool = True


@dataclass(slots=True)
class _Window:
    keys: OrderedDict[Hashable, float] = field(default_factory=OrderedDict)
    first: float = 0.0  # the earliest evidence of the window (when still within it)
    samples: list[str] = field(default_factory=list)
    destination: tuple[str, int | None] | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert: :meth:`event` is its ECS shape (docs/detection.md)."""

    detector: str
    reason: str
    source: str
    first: float
    last: float
    window: float
    count: int
    threshold: int
    samples: tuple[str, ...]
    destination: tuple[str, int | None] | None = None

    def event(self) -> dict[str, Any]:
        """The alert event (the audit trail's and ``dcerpc monitor --json``'s line)."""
        out: dict[str, Any] = {
            "@timestamp": timestamp(self.last),
            "event": {
                "kind": "alert",
                "category": ["intrusion_detection"],
                "action": "detection",
                "outcome": "unknown",
                "reason": self.reason,
            },
            "rule": {"name": self.detector},
            "source": {"ip": self.source},
        }
        if self.destination is not None:
            ip, port = self.destination
            out["destination"] = {"ip": ip} if port is None else {"ip": ip, "port": port}
        out["dcerpc"] = {
            "alert": {
                "window": self.window,
                "count": self.count,
                "threshold": self.threshold,
                "first": timestamp(self.first),
                "last": timestamp(self.last),
                "samples": list(self.samples),
            }
        }
        return out


class Engine:
    """Windows of evidence per (detector, source), and the alerts they make (see the module).

    Args:
        rules: each detector's threshold and window, by name.
        max_sources: windows kept per detector (the least recently active go first).
    """

    def __init__(self, rules: Mapping[str, Rule], max_sources: int = 10_000) -> None:
        self.rules = dict(rules)
        self.max_sources = max(1, max_sources)
        self._windows: dict[str, OrderedDict[Hashable, _Window]] = {name: OrderedDict() for name in rules}
        self._quiet: dict[str, OrderedDict[str, float]] = {name: OrderedDict() for name in rules}
        self.alerts: list[Alert] = []  # made since the last take()
        self.counts: dict[str, int] = {}  # alerts made, by detector (ever)

    def enabled(self, detector: str) -> bool:
        rule = self.rules.get(detector)
        return rule is not None and rule.enabled

    def take(self) -> list[Alert]:
        """The alerts made since the last call."""
        out, self.alerts = self.alerts, []
        return out

    def windows(self) -> int:
        """Windows held, all detectors together (for the bounds' tests)."""
        return sum(len(w) for w in self._windows.values())

    def hit(
        self,
        detector: str,
        source: str,
        ts: float,
        key: Hashable,
        sample: str | None,
        reason: str,
        *,
        group: Hashable = None,
        destination: tuple[str, int | None] | None = None,
        threshold: int | None = None,
    ) -> Alert | None:
        """One piece of evidence: ``key`` (distinct keys count once per window) seen from
        ``source`` at ``ts``; ``group`` splits a source's evidence (one interface's opnums);
        ``threshold`` replaces the rule's for this evidence (a detector with two kinds).
        Returns the alert it completed, if any (also kept for :meth:`take`)."""
        rule = self.rules.get(detector)
        if rule is None or not rule.enabled:
            return None
        need = rule.threshold if threshold is None else threshold
        table = self._windows[detector]
        wkey = (source, group)
        win = table.get(wkey)
        if win is None:
            if len(table) >= self.max_sources:
                table.popitem(last=False)
            win = table[wkey] = _Window()
        else:
            table.move_to_end(wkey)
        keys = win.keys
        horizon = ts - rule.window
        while keys:  # forget what left the window
            oldest, seen = next(iter(keys.items()))
            if seen >= horizon:
                break
            del keys[oldest]
        if not keys:
            win.first, win.samples, win.destination = ts, [], None
        if key in keys:
            keys.move_to_end(key)
            keys[key] = max(keys[key], ts)
        else:
            keys[key] = ts
            if len(keys) > need:
                keys.popitem(last=False)
        if sample is not None and len(win.samples) < MAX_SAMPLES:
            sample = sample[:SAMPLE_CHARS]
            if sample not in win.samples:
                win.samples.append(sample)
        if destination is not None and win.destination is None:
            win.destination = destination
        if len(keys) < need:
            return None
        quiet = self._quiet[detector]
        until = quiet.get(source)
        if until is not None and ts < until:
            return None
        if len(quiet) >= self.max_sources:
            quiet.popitem(last=False)
        quiet.pop(source, None)
        quiet[source] = ts + rule.window
        first = win.first if win.first >= horizon else min(keys.values())
        alert = Alert(
            detector=detector,
            reason=reason,
            source=source,
            first=first,
            last=ts,
            window=rule.window,
            count=len(keys),
            threshold=need,
            samples=tuple(win.samples),
            destination=win.destination,
        )
        self.alerts.append(alert)
        self.counts[detector] = self.counts.get(detector, 0) + 1
        return alert
