"""Audit events (JSON lines: a file, standard output, syslog), the counters metrics read, and the
server's debug lines: see observer.py, and docs/audit.md for the events."""

from .fields import peer_text
from .observer import LATENCY_BUCKETS, Audit, Connection, Site, Tally
from .sinks import FileSink, StdoutSink, SyslogSink
from .writer import Sink, Writer

__all__ = [
    "LATENCY_BUCKETS",
    "Audit",
    "Connection",
    "FileSink",
    "Sink",
    "Site",
    "StdoutSink",
    "SyslogSink",
    "Tally",
    "Writer",
    "peer_text",
]
