"""Detectors of attacks on DCE/RPC, one implementation for two streams: the monitor's records of a
capture (offline, ``dcerpc monitor``) and a server's audit events (inline, ``Audit.detect``). Both
are the same shape (ECS + ``dcerpc.*``); time is the events' own. docs/detection.md lists the
detectors, their evidence and thresholds, and the alert's fields.

    detectors = Detectors(Settings.of({"port_scan": Rule(50, 60.0)}))
    for event, ts, features in stream:
        for alert in detectors.feed(event, ts, features):
            print(alert.event())
"""

from .config import DETECTORS, Settings
from .detectors import Detectors
from .engine import Alert, Engine, Rule
from .inline import Inline
from .stubs import inspect

__all__ = ["DETECTORS", "Alert", "Detectors", "Engine", "Inline", "Rule", "Settings", "inspect"]
