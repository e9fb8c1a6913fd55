"""LiveCapture.stop asks dumpcap to finish and, should it not, kills it after a grace period: the
monitor must end on Ctrl-C or SIGTERM whatever dumpcap does. A stand-in for dumpcap that ignores
SIGTERM (a shell script) plays the one that does not heed it."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from dcerpc.monitor import live


def test_a_dumpcap_that_ignores_the_stop_is_killed_after_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stubborn = tmp_path / "dumpcap"
    stubborn.write_text("#!/bin/sh\ntrap '' TERM\nwhile :; do sleep 0.1; done\n")
    stubborn.chmod(0o755)
    monkeypatch.setattr(live, "_GRACE", 0.5)
    capture = live.LiveCapture("lo", dumpcap=str(stubborn))
    with capture:
        assert capture.proc is not None
        time.sleep(0.2)  # (its trap set)
        started = time.monotonic()
        capture.stop()
        assert capture.proc.wait(10) == -signal.SIGKILL
        assert 0.4 <= time.monotonic() - started < 5
        assert capture.failure() is None  # stopped, then killed: not a failure of its own
