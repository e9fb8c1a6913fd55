"""The detectors on the labelled corpus: recall, precision and benign alerts per detector.

Builds the corpus (tests/evaluation/corpus.py: real tools in private network namespaces; needs
root, dumpcap, nmap, smbtorture, impacket, python3-samba, samba-dcerpcd; about a minute and a half)
or reuses one (``--corpus DIR`` with a labels.json), runs ``dcerpc monitor --json`` on every file
and scores the alerts (``event.kind`` "alert", ``event.action`` "detection", ``rule.name``) against
the labels (tests/evaluation/score.py). Targets: recall >= 0.95 on the captures labelled with a
detector, zero alerts on the benign ones.

    .venv/bin/python benchmarks/evaluate.py [--corpus DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests package, from a checkout

from rich.console import Console
from rich.table import Table

from tests.evaluation.corpus import Capture, build, load
from tests.evaluation.score import TARGET_RECALL, Row, detections, monitor_events, score


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def table(rows: list[Row], caps: list[Capture]) -> Table:
    t = Table(title=f"Detectors on {len(caps)} captures ({sum(c.benign for c in caps)} benign)")
    for col in ("detector", "labelled", "detected", "recall", "fired", "precision", "benign alerts", "missed",
                "false positives"):  # fmt: skip
        t.add_column(col)
    for r in rows:
        ok = (r.recall is None or r.recall >= TARGET_RECALL) and not r.benign_alerts and not r.false_positives
        style = "green" if ok and r.fired else "red" if not ok else "dim"
        cells = [
            r.detector,
            str(r.labelled),
            str(r.detected),
            _fmt(r.recall),
            str(r.fired),
            _fmt(r.precision),
            str(r.benign_alerts),
            ", ".join(r.missed),
            ", ".join(r.wrong),
        ]
        t.add_row(*cells, style=style)
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, help="a corpus directory (built there when it has no labels.json)")
    ap.add_argument("--json", action="store_true", help="the table as JSON")
    args = ap.parse_args()
    started = time.monotonic()
    where = args.corpus or Path(tempfile.mkdtemp(prefix="dcerpc-corpus-"))
    caps = load(where) if (where / "labels.json").exists() else build(where)
    built = time.monotonic() - started
    results = [(c, detections(monitor_events(c.path))) for c in caps]
    rows = score(results)
    if args.json:
        seconds = round(time.monotonic() - started, 1)
        print(json.dumps({"corpus": str(where), "captures": len(caps), "seconds": seconds,
                          "build_seconds": round(built, 1), "detectors": [r.as_dict() for r in rows],
                          "alerts": {c.name: dict(n) for c, n in results}}, indent=2))  # fmt: skip
        return
    console = Console()
    console.width = max(console.width, 160)  # the missed and false-positive lists
    console.print(table(rows, caps))
    print(f"corpus {where}: {len(caps)} captures ({built:.1f} s to build or load), scored in "
          f"{time.monotonic() - started - built:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
