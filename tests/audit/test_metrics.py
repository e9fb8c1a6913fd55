"""Prometheus metrics of a real server after real calls, scraped over HTTP, checked by value and by
``promtool check metrics`` (Debian's prometheus package)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

import dcerpc
from dcerpc import FaultError
from dcerpc.epm.map import EndpointMap, Entry
from dcerpc.epm.register import towers_for
from dcerpc.metrics import start_metrics
from dcerpc.protocol.limits import Limits
from dcerpc.rpcecho import Echo
from dcerpc.testing import ServerThread

from .helpers import wait_until
from .test_events import Failing


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_a_scrape_after_real_calls() -> None:
    limits = Limits(max_connections_per_source=2)
    with ServerThread(Failing(), metrics=True, limits=limits) as srv:
        endpoint_map = EndpointMap()
        towers = towers_for([Echo.__syntax__], srv.server.addresses)
        endpoint_map.insert([Entry.make(uuid.UUID(int=0), t, "echo") for t in towers])
        listener = start_metrics(srv.server, "127.0.0.1", 0, endpoint_map=endpoint_map)
        try:
            with dcerpc.connect_sync(f"ncacn_ip_tcp:127.0.0.1[{srv.port}]") as conn:
                echo = conn.bind(Echo)
                for i in range(3):
                    assert echo.AddOne(i) == i + 1
                with pytest.raises(FaultError):
                    echo.AddOne(13)
                assert echo.EchoData(3, b"abc") == b"abc"
                held = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(2)]
                wait_until(lambda: srv.server.refusals["source_limit"] >= 1)
                during = _samples(_scrape(listener.port))
                for s in held:
                    s.close()
            wait_until(lambda: srv.server.open_connections == 0)
            text = _scrape(listener.port)
        finally:
            listener.close()
    got = _samples(text)
    call = "dcerpc_calls_total"
    assert got[(call, (("interface", "rpcecho"), ("operation", "AddOne"), ("outcome", "success")))] == 3
    assert got[(call, (("interface", "rpcecho"), ("operation", "AddOne"), ("outcome", "fault")))] == 1
    assert got[(call, (("interface", "rpcecho"), ("operation", "EchoData"), ("outcome", "success")))] == 1
    assert got[("dcerpc_faults_total", (("status", "nca_s_op_rng_error"),))] == 1
    assert got[("dcerpc_binds_total", (("kind", "bind"), ("result", "accepted")))] == 1
    assert got[("dcerpc_connections_refused_total", (("kind", "source_limit"),))] >= 1
    assert got[("dcerpc_call_duration_seconds_count", ())] == 5
    assert got[("dcerpc_call_duration_seconds_bucket", (("le", "+Inf"),))] == 5
    assert 0 < got[("dcerpc_call_duration_seconds_sum", ())] < 5
    assert got[("dcerpc_requests_received_total", ())] == 5
    assert got[("dcerpc_endpoint_map_entries", ())] == 1
    assert got[("dcerpc_associations_open", ())] == 0
    assert during[("dcerpc_associations_open", ())] == 2  # ours and one held (the other refused)
    assert got[("dcerpc_audit_events_dropped_total", ())] == 0

    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true" or os.geteuid() == 0:
            pytest.fail(
                "promtool missing: `make peers` (scripts/install-peers.sh) installs Debian's prometheus"
            )
        pytest.skip("promtool missing and not root to install it (Debian's prometheus package)")
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_violations_by_kind() -> None:
    with ServerThread(Failing(), metrics=True) as srv:
        listener = start_metrics(srv.server, "127.0.0.1", 0)
        try:
            with socket.create_connection(("127.0.0.1", srv.port)) as s:
                s.sendall(b"\x05\x00\x00\x03\x10\x00\x00\x00" + bytes(8))  # frag_length 0
                s.recv(1024)
            wait_until(lambda: srv.server.open_connections == 0)
            got = _samples(_scrape(listener.port))
        finally:
            listener.close()
    kinds = {
        dict(labels)["kind"]: v
        for (name, labels), v in got.items()
        if name == "dcerpc_protocol_violations_total"
    }
    assert kinds == {"malformed_bind": 1}
