"""``dcerpc run`` / ``serve``: audit events and metrics, from the flags and the config file.

    # /etc/dcerpc.toml
    metrics = "127.0.0.1:9464"      # Prometheus exposition (HOST:PORT; off unless given)

    [audit]
    file = "/var/log/dcerpc/audit.json"   # JSON lines; reopened on SIGHUP (logrotate)
    stdout = false
    syslog = "/dev/log"                   # or HOST:PORT (UDP), RFC 5424
    syslog_facility = "authpriv"

    [detect]                              # the detectors, inline (docs/detection.md)
    enabled = true                        # alerts: audit events, dcerpc_alerts_total, a log line

Flags override the file: ``--metrics HOST:PORT``, ``--audit-file PATH``, ``--audit-stdout``,
``--audit-syslog ADDRESS``. One :class:`~dcerpc.audit.Audit` serves every server of the process.
SIGHUP reopens the audit file, and the serving commands hand the ``[detect]`` section they read
again to :meth:`Observing.reload_detect` (a file that does not read keeps the detectors as they
are); :func:`on_sighup` lets other parts of the command (a policy reload) add theirs to the same
signal.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from ..audit import Audit, FileSink, StdoutSink, SyslogSink
from ..audit.writer import Sink
from ..detect import Detectors, Inline
from ..detect import Settings as DetectSettings
from ..epm.map import EndpointMap
from ..metrics import MetricsListener, start_metrics
from ..server import Server
from .config import ConfigError, detect_settings, read

__all__ = ["KEYS", "Observing", "hangup", "observe_options", "observing", "on_sighup"]

KEYS = frozenset({"audit", "metrics", "detect"})
"""The config file's top-level keys this module reads."""
_AUDIT_KEYS = frozenset({"file", "stdout", "syslog", "syslog_facility", "queue"})
_FLAGS = ("metrics", "audit_file", "audit_stdout", "audit_syslog")

_sighup: list[Callable[[], None]] = []
log = logging.getLogger("dcerpc.cli")


def on_sighup(callback: Callable[[], None]) -> None:
    """Run ``callback`` on SIGHUP, after the settings are read again (the serving commands' one
    SIGHUP handler, ``hosting._until_stopped``, calls :func:`hangup`)."""
    if callback not in _sighup:
        _sighup.append(callback)


def hangup() -> None:
    """What SIGHUP does here: every callback :func:`on_sighup` registered (the audit file reopens)."""
    for callback in list(_sighup):
        callback()


def observe_options(f: Any) -> Any:
    """The flags: ``--metrics``, ``--audit-file``, ``--audit-stdout``, ``--audit-syslog``."""
    options = [
        click.option("--metrics", default=None, metavar="HOST:PORT", help="Serve Prometheus metrics here."),
        click.option(
            "--audit-file", default=None, metavar="PATH", help="Audit events as JSON lines (SIGHUP reopens)."
        ),
        click.option("--audit-stdout", is_flag=True, default=None, help="Audit events on standard output."),
        click.option(
            "--audit-syslog",
            default=None,
            metavar="ADDRESS",
            help="Audit events to syslog (/dev/log, HOST:PORT).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _address(text: str) -> tuple[str, int]:
    host, sep, port = str(text).rpartition(":")
    if not sep or not port.isdigit():
        raise click.UsageError(f"metrics address {text!r}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


@dataclass
class Observing:
    """What the command observes with: the shared audit, and the metrics listener once started."""

    audit: Audit | None
    metrics: tuple[str, int] | None
    listener: MetricsListener | None = None
    _servers: list[Server] = field(default_factory=list)
    _hangup: bool = False  # the SIGHUP handler is installed

    def attach(self, servers: Iterable[Server], endpoint_map: EndpointMap | None = None) -> None:
        """Observe ``servers`` (call again with servers added later); starts the metrics listener
        the first time, and the SIGHUP handler that reopens the audit file."""
        for s in servers:
            if s not in self._servers:
                self._servers.append(s)
                if self.audit is not None:
                    s.audit = self.audit
        if self.metrics is not None and self.listener is None:
            self.listener = start_metrics(
                lambda: list(self._servers), *self.metrics, endpoint_map=endpoint_map
            )
            click.echo(f"metrics on http://{self.listener.host}:{self.listener.port}/metrics", err=True)
        if self.audit is not None and self.audit.writer is not None and not self._hangup:
            self._hangup = True
            on_sighup(self.audit.reopen)

    def reload_detect(self, new: DetectSettings | None) -> None:
        """SIGHUP: the ``[detect]`` settings read again (None: detection off). Changed settings
        start the detectors over (the evidence in their windows is dropped); the same settings
        keep them as they are. Turning detection on in a process that started with no audit sink,
        no metrics and no detection needs a restart (there is no observer to feed them)."""
        audit = self.audit
        inline = audit.detect if audit is not None else None
        old = inline.detectors.settings if isinstance(inline, Inline) else None
        if new == old:
            return
        if audit is None:
            log.warning("SIGHUP: [detect] enabled; it takes effect when the service restarts")
            return
        if new is None:
            audit.detect = None
            log.info("SIGHUP: inline detection off")
        elif isinstance(inline, Inline):
            inline.detectors = Detectors(new)  # the connections it knows bound stay known
            log.info("SIGHUP: detector settings reloaded; their windows start over")
        else:
            audit.detect = Inline(Detectors(new))
            log.info("SIGHUP: inline detection on")

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
        if self.audit is not None:
            self.audit.close()


def observing(config: str | None, flags: dict[str, Any]) -> Observing:
    """The audit and metrics settings of the file and the flags (removed from ``flags``).

    Raises:
        click.UsageError: a bad key or value, named.
    """
    given = {k: flags.pop(k, None) for k in _FLAGS}
    data: dict[str, Any] = {}
    if config:
        with Path(config).open("rb") as f:
            data = tomllib.load(f)
    section = data.get("audit", {})
    if not isinstance(section, dict) or set(section) - _AUDIT_KEYS:
        extra = sorted(set(section) - _AUDIT_KEYS) if isinstance(section, dict) else ["(not a table)"]
        raise click.UsageError(f"{config}: unknown [audit] settings {', '.join(extra)}")
    file = given["audit_file"] or section.get("file")
    stdout = bool(given["audit_stdout"] or section.get("stdout", False))
    syslog = given["audit_syslog"] or section.get("syslog")
    metrics_at = given["metrics"] or data.get("metrics")
    sinks: list[Sink] = []
    try:
        if file:
            sinks.append(FileSink(str(file)))
        if stdout:
            sinks.append(StdoutSink())
        if syslog:
            sinks.append(SyslogSink(str(syslog), facility=str(section.get("syslog_facility", "authpriv"))))
    except (OSError, ValueError) as e:
        raise click.UsageError(f"audit: {e}") from None
    metrics = _address(metrics_at) if metrics_at else None
    detect = None
    if config and isinstance(data.get("detect"), dict) and data["detect"].get("enabled"):
        try:
            detect = detect_settings(read(config).detect, config)
        except ConfigError as e:
            raise click.UsageError(str(e)) from None
    audit = None
    if sinks or metrics or detect:
        audit = Audit(sinks, metrics=metrics is not None, capacity=int(section.get("queue", 65536)))
        if detect is not None:
            audit.detect = Inline(Detectors(detect))
    return Observing(audit, metrics)
