"""``dcerpc monitor FILE``: the DCE/RPC calls in a pcap / pcapng capture (docs/monitor.md).

A summary table by default (talkers, interfaces, operations, outcomes, binds, violations, users);
``--json``: one ECS-shaped JSON object per record on its own line, then nothing else. The
detectors (docs/detection.md) run over the records unless ``--no-detect``: their alerts are lines
of their own (``event.kind`` alert, ``event.action`` detection) and a table of the summary; a
config file's ``[detect]`` section (``--config``) sets their thresholds. A progress
bar on standard error while a long file is read, only when standard error is a terminal.
``--interface IF``: a live capture through dumpcap (monitor/live.py) until Ctrl-C or SIGTERM, the
JSON lines flushed as calls complete, the summary at the end.
"""

from __future__ import annotations

import gc
import signal
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

from ..detect import Detectors
from ..monitor import CaptureError, Monitor, json_line, monitor_file
from ..monitor.live import LiveCapture, LiveError, monitor_live
from ..monitor.run import Summary
from .config import ConfigError, detect_settings, read
from .output import Failure, console, err_console, table

__all__ = ["monitor"]

_TOP = 20  # rows per table


@click.command()
@click.argument("capture", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON record per line (docs/monitor.md).")
@click.option("--top", type=int, default=_TOP, show_default=True, help="Rows in each summary table.")
@click.option("--no-detect", is_flag=True, help="Do not run the detectors (docs/detection.md).")
@click.option(
    "--config", "config", type=click.Path(exists=True, dir_okay=False), default=None,
    help="The detectors' thresholds from this file's [detect] section.",
)  # fmt: skip
@click.option("-i", "--interface", help="Capture live on this interface (through dumpcap) instead of a file.")
@click.option("-f", "--filter", "capture_filter", help="With --interface: dumpcap's capture filter (BPF).")
def monitor(
    capture: Path | None,
    as_json: bool,
    top: int,
    no_detect: bool,
    config: str | None,
    interface: str | None,
    capture_filter: str | None,
) -> None:
    """Name every DCE/RPC call in a pcap or pcapng capture (or live on an interface), on any port;
    run the detectors."""
    stats: Counter[str] = Counter()
    if (capture is None) == (interface is None):
        raise click.UsageError("give a CAPTURE file or --interface IF (one of them)")
    detectors = None
    if not no_detect:
        try:
            detectors = Detectors(detect_settings(read(config).detect, config) if config else None)
        except ConfigError as e:
            raise Failure(str(e), "config") from None
    mon = Monitor(detectors=detectors)
    # What the imports made lives as long as the process: out of the collector's sight, a full
    # collection does not walk it again each time the records' garbage triggers one (the 108 MB
    # benchmark capture: about 0.2 s of 1.9 s CPU, docs/monitor.md).
    gc.freeze()
    if interface is not None:
        _live(interface, capture_filter, mon, stats, as_json, top)
        return
    assert capture is not None
    size = capture.stat().st_size
    show = sys.stderr.isatty() and size > 8 << 20
    progress = Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TimeRemainingColumn(),
        console=err_console(), transient=True, disable=not show,
    )  # fmt: skip
    task = progress.add_task(capture.name, total=size)
    write = _writer()
    try:
        with progress:
            for rec in monitor_file(capture, stats, lambda pos: progress.update(task, completed=pos), mon):
                if as_json:
                    write(json_line(mon.event(rec)))
    except CaptureError as e:
        raise Failure(f"{capture}: {e}", "capture") from None
    if not as_json:
        _summary(mon, stats, top)


def _live(interface: str, capture_filter: str | None, mon: Monitor, stats: Counter[str], as_json: bool,
          top: int) -> None:  # fmt: skip
    """Records as their calls complete (flushed), until Ctrl-C or SIGTERM; then the summary."""
    write = _writer()
    try:
        with LiveCapture(interface, capture_filter) as live:
            previous = {s: signal.signal(s, lambda *_: live.stop()) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                for rec in monitor_live(live, stats, mon):
                    if as_json:
                        write(json_line(mon.event(rec)))
                        sys.stdout.flush()
            finally:
                for s, handler in previous.items():
                    signal.signal(s, handler)
    except LiveError as e:
        raise Failure(str(e), "capture") from None
    if not as_json:
        _summary(mon, stats, top)


def _writer() -> Callable[[bytes], object]:
    """Where the JSON lines go: standard output's bytes (UTF-8 lines, monitor.json_line)."""
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is not None:
        return buffer.write  # type: ignore[no-any-return]
    return lambda line: sys.stdout.write(line.decode())


def _summary(mon: Monitor, stats: Counter[str], top: int) -> None:
    s: Summary = mon.summary
    c = console()
    t = mon.tcp.stats
    c.print(
        f"{stats['packets']} packets, {t['segments']} TCP segments, {s.connections} connections, "
        f"{s.dcerpc_connections} DCE/RPC, {s.calls} calls; {t['retransmitted']} retransmitted, "
        f"{t['conflicts']} conflicting, {t['gaps']} gaps, {stats['undecodable']} undecodable, "
        f"{stats['truncated']} truncated"
    )
    if mon.smb2:  # named pipes (docs/monitor.md, SMB2)
        b = mon.smb2
        c.print(
            f"SMB2: {b['smb2_messages']} messages, {b['smb2_pipes']} pipes opened; {b['smb2_encrypted']} "
            f"encrypted (unreadable), {b['smb2_compressed']} compressed, {b['smb1']} SMB1, "
            f"{b['smb2_malformed']} malformed, {b['smb2_bad_frames']} bad frames, "
            f"{b['smb2_oversize']} oversize"
        )
    u = mon.cl.stats
    if stats["udp"]:
        c.print(f"{stats['udp']} UDP datagrams, {u['pdus']} connectionless PDUs, {len(mon.cl.flows)} flows")
    c.print(
        table(
            "Talkers", ["client", "server", "calls"], [(a, b, n) for (a, b), n in s.talkers.most_common(top)]
        )
    )
    c.print(table("Interfaces", ["interface", "calls"], s.interfaces.most_common(top)))
    c.print(table("Operations", ["interface", "operation", "calls"],
                  [(i, o, n) for (i, o), n in s.operations.most_common(top)]))  # fmt: skip
    c.print(table("Outcomes", ["outcome", "calls"], s.outcomes.most_common()))
    if s.faults:
        c.print(table("Faults", ["status", "calls"], s.faults.most_common(top)))
    if s.binds:
        c.print(table("Presentation contexts", ["result", "count"], s.binds.most_common()))
    if s.users:
        c.print(table("NTLM users", ["user", "calls"], s.users.most_common(top)))
    notes = [(k, u[k]) for k in ("retransmitted", "late", "ping", "working", "nocall", "fack", "ack",
                                 "cancel", "cancel_ack") if u[k]]  # fmt: skip
    if notes:
        c.print(table("Connectionless datagrams", ["kind", "count"], notes))
    c.print(
        table("Malformed / violations", ["violation", "count"], s.violations.most_common() or [("none", 0)])
    )
    if mon.detectors is not None:
        rows = [(d, src, n) for (d, src), n in s.alerts.most_common(top)] or [("none", "", 0)]
        c.print(table("Alerts", ["detector", "source", "alerts"], rows))
