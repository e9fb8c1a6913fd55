"""Prometheus exposition of servers' counters: read when scraped, never per call.

The per-call path increments plain dicts (``audit.Audit``'s, ``Server.stats``,
``Server.violations``, ``Server.refusals``); :class:`DcerpcCollector` copies them when Prometheus
scrapes (``dict.copy`` is one step under the GIL, so the copy is consistent while the event loop
goes on counting) and turns them into metric families. :func:`start_metrics` serves them, with the
process's own (CPU, memory, file descriptors), on an HTTP listener of its own thread
(prometheus_client's). docs/metrics.md lists every metric and label.

    server = Server(EchoServer(), metrics=True)
    listener = start_metrics(server, "127.0.0.1", 9464)
    ...
    listener.close()
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ._errors import status_name
from .audit import LATENCY_BUCKETS, Audit
from .epm.map import EndpointMap
from .server import Server

__all__ = ["DcerpcCollector", "MetricsListener", "start_metrics"]

_STATS = {  # Server.stats -> (metric, help)
    "calls_in": ("dcerpc_requests_received", "Requests received (whole calls)."),
    "pdus_in": ("dcerpc_pdus_received", "PDUs received."),
    "pdus_out": ("dcerpc_pdus_sent", "PDUs sent."),
}


def _snapshot(d: dict[Any, int]) -> dict[Any, int]:
    return dict.copy(d)  # a Counter's own copy() runs Python code, while the loop may be counting


class DcerpcCollector(Collector):
    """Metric families of ``servers`` (summed: an endpoint-mapper host runs several).

    Args:
        servers: the servers, or a callable returning them (a host that adds servers later).
        endpoint_map: the endpoint mapper's map, for ``dcerpc_endpoint_map_entries``.
    """

    def __init__(
        self,
        servers: Iterable[Server] | Callable[[], Iterable[Server]],
        endpoint_map: EndpointMap | None = None,
    ) -> None:
        self._servers = servers
        self.endpoint_map = endpoint_map

    def servers(self) -> list[Server]:
        got = self._servers() if callable(self._servers) else self._servers
        return list(got)

    def collect(self) -> Iterator[Metric]:
        servers = self.servers()
        audits: dict[int, Audit] = {}
        for s in servers:
            if s.audit is not None:
                audits[id(s.audit)] = s.audit
        yield from self._calls(list(audits.values()))
        yield from self._servers_families(servers)
        for name, doc, labels, attr in (
            ("dcerpc_binds", "Binds and alter_contexts, by result.", ["kind", "result"], "binds"),
            ("dcerpc_authentications", "Security handshakes ended, by auth type and outcome.",
             ["auth_type", "outcome"], "auth"),
            ("dcerpc_policy_decisions", "Policy decisions, by decision and stage.", ["decision", "stage"],
             "policy"),
            ("dcerpc_alerts", "Alerts of the detectors (docs/detection.md), by detector.", ["detector"],
             "alerts"),
        ):  # fmt: skip
            family = CounterMetricFamily(name, doc, labels=labels)
            total: dict[tuple[str, str], int] = {}
            for a in audits.values():
                for key, n in _snapshot(getattr(a, attr)).items():
                    total[key] = total.get(key, 0) + n
            for key, n in sorted(total.items()):
                family.add_metric(list(key), n)
            yield family
        dropped = CounterMetricFamily(
            "dcerpc_audit_events_dropped",
            "Audit events dropped: the writer's queue was full, or its process died.",
        )
        dropped.add_metric([], sum(a.dropped for a in audits.values()))
        yield dropped
        written = CounterMetricFamily("dcerpc_audit_events_written", "Audit events written.")
        written.add_metric([], sum(a.writer.written for a in audits.values() if a.writer is not None))
        yield written
        if self.endpoint_map is not None:
            entries = GaugeMetricFamily("dcerpc_endpoint_map_entries", "Entries in the endpoint map.")
            entries.add_metric([], len(self.endpoint_map))
            yield entries

    @staticmethod
    def _calls(audits: list[Audit]) -> Iterator[Metric]:
        calls = CounterMetricFamily(
            "dcerpc_calls",
            "Calls answered, by interface, operation and outcome.",
            labels=["interface", "operation", "outcome"],
        )
        faults = CounterMetricFamily(
            "dcerpc_faults", "Calls answered with a fault, by status.", labels=["status"]
        )
        by_call: dict[tuple[str, str, str], int] = {}
        by_status: dict[str, int] = {}
        buckets = [0] * 64
        total_ns = 0
        for a in audits:
            for ((interface, operation), status), n in a.counts().items():
                key = (interface, operation, "fault" if status else "success")
                by_call[key] = by_call.get(key, 0) + n
                if status:
                    name = status_name(status)
                    by_status[name] = by_status.get(name, 0) + n
            for i, n in enumerate(list(a.latency)):
                buckets[i] += n
            total_ns += a.latency_sum
        for key, n in sorted(by_call.items()):
            calls.add_metric(list(key), n)
        for name, n in sorted(by_status.items()):
            faults.add_metric([name], n)
        yield calls
        yield faults
        latency = HistogramMetricFamily(
            "dcerpc_call_duration_seconds", "Time from a call's request to its answer."
        )
        cumulative: list[tuple[str, float]] = []
        running = 0
        for i, bound in enumerate(LATENCY_BUCKETS):  # bucket i: under LATENCY_BUCKETS[i] ns
            running += buckets[i]
            cumulative.append((repr(bound / 1e9), running))
        cumulative.append(("+Inf", sum(buckets)))
        latency.add_metric([], cumulative, sum_value=total_ns / 1e9)
        yield latency

    @staticmethod
    def _servers_families(servers: list[Server]) -> Iterator[Metric]:
        violations = CounterMetricFamily(
            "dcerpc_protocol_violations", "Protocol violations, by kind.", labels=["kind"]
        )
        refusals = CounterMetricFamily(
            "dcerpc_connections_refused", "Connections refused at accept or closed by a deadline, by kind.",
            labels=["kind"],
        )  # fmt: skip
        v_total: dict[str, int] = {}
        r_total: dict[str, int] = {}
        stats: dict[str, int] = dict.fromkeys(_STATS, 0)
        open_now = 0
        for s in servers:
            for kind, n in _snapshot(s.violations).items():
                v_total[kind] = v_total.get(kind, 0) + n
            for kind, n in _snapshot(s.refusals).items():
                r_total[kind] = r_total.get(kind, 0) + n
            snap = _snapshot(s.stats)
            for key in _STATS:
                stats[key] += snap.get(key, 0)
            open_now += s.open_connections
        for kind, n in sorted(v_total.items()):
            violations.add_metric([kind], n)
        for kind, n in sorted(r_total.items()):
            refusals.add_metric([kind], n)
        yield violations
        yield refusals
        for key, (name, doc) in _STATS.items():
            family = CounterMetricFamily(name, doc)
            family.add_metric([], stats[key])
            yield family
        gauge = GaugeMetricFamily("dcerpc_associations_open", "Connections (associations) being served.")
        gauge.add_metric([], open_now)
        yield gauge


@dataclass
class MetricsListener:
    """A running metrics endpoint: its address, and :meth:`close` to stop it."""

    host: str
    port: int
    registry: CollectorRegistry
    _server: WSGIServer
    _thread: threading.Thread

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def start_metrics(
    servers: Server | Iterable[Server] | Callable[[], Iterable[Server]],
    host: str = "127.0.0.1",
    port: int = 9464,
    *,
    endpoint_map: EndpointMap | None = None,
) -> MetricsListener:
    """Serve ``servers``' metrics at ``http://host:port/metrics`` (port 0: a free one).

    Turns the per-call counters on (``Audit.metrics``) for every server that has an audit, and
    gives one (without sinks) to a server that has none: connections accepted from then on count.
    """
    if isinstance(servers, Server):
        servers = [servers]
    if not callable(servers):
        servers = list(servers)
        for s in servers:
            if s.audit is None:
                s.audit = Audit(metrics=True)
            s.audit.metrics = True
    registry = CollectorRegistry()
    registry.register(DcerpcCollector(servers, endpoint_map))
    ProcessCollector(registry=registry)
    server, thread = start_http_server(port, host, registry)
    bound = cast(tuple[str, int], server.server_address[:2])
    return MetricsListener(bound[0], bound[1], registry, server, thread)
