"""Shared by the audit and metrics tests: the checked-in schema, and waiting for the server's side."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "audit-event.schema.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def valid(event: dict[str, Any]) -> dict[str, Any]:
    """``event``, after checking it against docs/audit-event.schema.json."""
    errors = sorted(VALIDATOR.iter_errors(event), key=str)
    assert not errors, f"{event}\n" + "\n".join(e.message for e in errors)
    return event


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Until the server's loop (another thread) has done what ``condition`` looks for."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the server"
        time.sleep(0.005)


def read_events(path: Path) -> list[dict[str, Any]]:
    return [valid(json.loads(line)) for line in path.read_text().splitlines()]


def by_action(events: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"]["action"] == action]
