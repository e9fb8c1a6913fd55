"""The capture reader on a stream that cannot seek (what a live capture is: dumpcap's pipe), sans
namespace: a pcap and a pcapng file written into a pipe by a thread, read through /dev/fd/N, give
the same calls as the same file on disk."""

from __future__ import annotations

import os
import threading
from collections import Counter
from pathlib import Path

import pytest

from tests.monitor.test_capture_files import EXPECTED, SEGS, frame, names, write


@pytest.mark.parametrize("ng", [False, True])
def test_reader_reads_a_pipe(tmp_path: Path, ng: bool) -> None:
    data = write(tmp_path / "f", [frame(s) for s in SEGS], ng=ng).read_bytes()
    assert names(tmp_path / "f") == EXPECTED
    r, w = os.pipe()

    def feed() -> None:
        with os.fdopen(w, "wb") as f:
            for i in range(0, len(data), 1000):  # in pieces, as a capture arrives
                f.write(data[i : i + 1000])
                f.flush()

    t = threading.Thread(target=feed)
    t.start()
    try:
        stats: Counter[str] = Counter()
        assert names(Path(f"/dev/fd/{r}"), stats) == EXPECTED
        assert stats["packets"] == len(SEGS)
    finally:
        t.join()
        os.close(r)
