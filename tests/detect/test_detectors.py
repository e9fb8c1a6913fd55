"""Each detector over event sequences (the shape of the monitor's records and the server's audit
events): it fires above its threshold, not below it, and not on what benign clients do."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from dcerpc.detect import Detectors, Rule, Settings
from dcerpc.detect.detectors import ATSVC, MGMT, SASEC, TASK_SCHEDULER
from dcerpc.detect.engine import Alert
from dcerpc.detect.stubs import ACTIVATION, NETLOGON, REMOTE_ACTIVATION, SVCCTL
from tests.detect.events import (
    ATTACKER,
    ECHO,
    EPM,
    SERVER,
    auth_failed,
    bind,
    call,
    closed,
    context,
    violation,
)  # fmt: skip

Fed = tuple[dict[str, Any], Mapping[str, Any] | None]


def run(events: Iterable[dict[str, Any] | Fed], settings: Settings | None = None) -> list[Alert]:
    d = Detectors(settings)
    out: list[Alert] = []
    for i, item in enumerate(events):
        ev, f = item if isinstance(item, tuple) else (item, None)
        out += d.feed(ev, 1000.0 + i * 0.1, f)
    return out


def names(alerts: list[Alert]) -> list[str]:
    return [a.detector for a in alerts]


def test_epm_enumeration_lookup_of_all_entries() -> None:
    lookup = call(EPM, 2)
    alerts = run([(lookup, {"epm.inquiry_type": 0, "epm.handle": False, "epm.max_ents": 500})])
    assert names(alerts) == ["epm_enumeration"] and alerts[0].destination == (SERVER, 135)
    assert run([(lookup, {"epm.inquiry_type": 1, "epm.handle": False, "epm.max_ents": 1})])  # max_ents 1
    assert not run([(lookup, {"epm.inquiry_type": 1, "epm.handle": False, "epm.max_ents": 20})])


def test_epm_enumeration_maps_of_many_interfaces() -> None:
    maps = [(call(EPM, 3), {"epm.map_interface": f"00000000-0000-0000-0000-{i:012x} 1.0"}) for i in range(10)]
    assert names(run(maps)) == ["epm_enumeration"]
    assert not run(maps[:9])
    assert not run([maps[0]] * 30)  # one interface mapped again and again: a client reconnecting


def test_mgmt_probe() -> None:
    assert names(run([call(str(MGMT), 0)])) == ["mgmt_probe"]  # from outside the local networks
    assert not run([call(str(MGMT), 0, src="192.168.1.5")])
    assert names(run([call(str(MGMT), 3, src="192.168.1.5")])) == ["mgmt_probe"]  # stop_server_listening


def test_interface_brute_force() -> None:
    rejected = [
        bind([context(f"00000000-0000-0000-0000-{i:012x}", result="rejected", reason=1)]) for i in range(10)
    ]
    assert names(run(rejected)) == ["interface_brute_force"]
    assert not run(rejected[:9])
    inline = [
        bind([{"id": i, "result": "rejected", "reason": "abstract_syntax_not_supported"}]) for i in range(10)
    ]
    assert names(run(inline)) == ["interface_brute_force"]
    ndr64 = [bind([context(ECHO, result="rejected", reason=2), context(ECHO)]) for _ in range(30)]
    assert not run(ndr64)  # a transfer syntax refused (NDR64) is what Windows clients see every bind


def test_opnum_sweep() -> None:
    sweep = [call(ECHO, n, "nca_s_op_rng_error") for n in range(10, 20)]
    alerts = run(sweep)
    assert names(alerts) == ["opnum_sweep"] and "opnum" in alerts[0].samples[0]
    assert not run(sweep[:9])
    assert not run([call(ECHO, 10, "nca_s_op_rng_error")] * 30)  # one opnum: a client's old table
    empty = [call(ECHO, n, "rpc_x_bad_stub_data", octets=0) for n in range(10)]
    assert names(run(empty)) == ["opnum_sweep"]
    # smbtorture rpc.scanner: one 1000-octet stub to each opnum served, each answered bad stub data
    scanned = [call(ECHO, n, "rpc_x_bad_stub_data", octets=1000) for n in range(10)]
    assert names(run(scanned)) == ["opnum_sweep"]
    assert not run(scanned[:9])
    spread = [call(f"00000000-0000-0000-0000-{n:012x}", 1, "nca_s_op_rng_error") for n in range(20)]
    assert not run(spread)  # counted per interface


def test_version_sweep() -> None:
    sweep = [bind([context(ECHO, f"{v}.0", "rejected", 1)], uid=f"C{v}") for v in range(5)]
    assert "version_sweep" in names(run(sweep))
    assert not run(sweep[:4])


def test_port_scan() -> None:
    scan = [closed(port=135) for _ in range(20)]
    assert names(run(scan)) == ["port_scan"]
    assert not run(scan[:19])
    assert not run([closed(port=135, bound=True)] * 40)
    assert not run([closed(port=8080)] * 40)  # not an RPC port, nothing DCE/RPC on it
    assert not run([closed(port=50000)] * 40)  # nor a dynamic one nothing DCE/RPC was seen on
    assert names(run([closed(port=8080, rpc=True)] * 20)) == ["port_scan"]  # DCE/RPC on that connection
    assert names(run([call(port=50000), *[closed(port=50000)] * 20])) == ["port_scan"]  # a server seen
    # across a host's ports (nmap -sT: one connection to 135, the rest elsewhere): by distinct port
    assert names(run([closed(port=p) for p in range(1000, 1020)])) == ["port_scan"]
    assert not run([closed(port=p) for p in range(1000, 1019)])


def test_auth_spraying() -> None:
    spray = [auth_failed(f"user{i}") for i in range(5)]
    alerts = run(spray)
    assert names(alerts) == ["auth_spraying"] and "DOM\\user0" in alerts[0].samples[0]
    assert not run(spray[:4])
    assert not run([auth_failed("alice")] * 30)  # one user's typos are not a spray
    faults = [
        {**call(ECHO, 0, "rpc_s_access_denied"), "user": {"name": f"u{i}", "domain": "D"}} for i in range(5)
    ]
    assert names(run(faults)) == ["auth_spraying"]
    # Samba answers the request after a refused logon with nca_s_proto_error (and hangs up)
    refused = call(ECHO, 0, "nca_s_proto_error")
    samba = [{**refused, "user": {"name": f"u{i}", "domain": "D"}} for i in range(6)]
    assert names(run(samba)) == ["auth_spraying"]  # a failed logon each, not a malformed PDU
    assert not run([{**call(ECHO, 0, "nca_s_op_rng_error"), "user": {"name": f"u{i}"}} for i in range(5)])
    naks = [bind([context(ECHO, result="nak")], user=f"u{i}") for i in range(5)]
    assert names(run(naks)) == ["auth_spraying"]


def test_malformed_pdus() -> None:
    assert names(run([violation("malformed")] * 6)) == ["malformed_pdus"]
    assert not run([violation("malformed")] * 5)
    # the server's nca_s_proto_error faults (no logon named) are its word on PDUs it found malformed
    answered = [call(ECHO, 0, "nca_s_proto_error")] * 3
    assert names(run([violation("malformed")] * 3 + answered)) == ["malformed_pdus"]
    assert not run([violation("malformed", sender="server")] * 30)
    assert not run([violation("handshake_rate")] * 30)  # the server's limit, not a bad PDU


def test_blaster_activation() -> None:
    unc = {"activation.names": [("\\\\" + "A" * 40 + "\\c$", 45)]}
    assert names(run([(call(str(REMOTE_ACTIVATION), 0), unc)])) == ["blaster_activation"]
    long = {"activation.names": [("x" * 300, 300)]}
    assert names(run([(call(str(ACTIVATION), 4), long)])) == ["blaster_activation"]
    benign = {"activation.names": [("C:\\Users\\me\\doc.txt", 20)]}
    assert not run([(call(str(ACTIVATION), 4), benign)] * 5)


def test_fragment_overflow() -> None:
    assert names(run([call(ECHO, 1, alloc_hint=0xFFFFFFF0)])) == ["fragment_overflow"]
    assert names(run([call(ECHO, 1, alloc_hint=100, alloc_hint_grew=True)])) == ["fragment_overflow"]
    small = call(ECHO, 1, fragments={"in": 600, "out": 1}, octets=600 * 24)
    assert names(run([small])) == ["fragment_overflow"]
    big = call(ECHO, 1, fragments={"in": 600, "out": 1}, octets=600 * 5840, alloc_hint=600 * 5840)
    assert not run([big])  # a long call in full-size fragments
    huge = call(ECHO, 1, fragments={"in": 1 << 20, "out": 1}, octets=(1 << 20) * 4096)  # 4 GiB: a 32-bit wrap
    assert names(run([huge])) == ["fragment_overflow"]
    assert names(run([violation("call_too_large")])) == ["fragment_overflow"]


def test_service_creation_and_task_registration() -> None:
    created = run([(call(str(SVCCTL), 12), {"svcctl.service": "evil"})])
    assert names(created) == ["service_creation"] and created[0].samples == ("RCreateServiceW evil",)
    assert not run([call(str(SVCCTL), 15)] * 10)  # ROpenSCManagerW
    for iface, opnum in ((ATSVC, 0), (TASK_SCHEDULER, 1), (SASEC, 0)):
        assert names(run([call(str(iface), opnum)])) == ["task_registration"]
    assert not run([call(str(TASK_SCHEDULER), 7)] * 10)  # SchRpcEnumTasks


def test_zerologon() -> None:
    zero = {"netlogon.zero_credential": True, "netlogon.computer": "DC"}
    tries = [(call(str(NETLOGON), op), zero) for op in (4, 26) * 2]
    assert names(run(tries)) == ["zerologon"]
    assert not run(tries[:3])
    random = {"netlogon.zero_credential": False, "netlogon.computer": "WS1"}
    assert not run([(call(str(NETLOGON), op), random) for op in (4, 26) * 20])


def test_unmapped_dynamic_port() -> None:
    mapped = (call(EPM, 3), {"epm.ports": [("", 49700)]})
    on_mapped = bind([context(ECHO)], port=49700, uid="C2")
    on_other = bind([context(ECHO)], port=49800, uid="C3")
    assert not run([mapped, on_mapped])
    assert names(run([mapped, on_other])) == ["unmapped_dynamic_port"]
    assert not run([bind([context(ECHO)], port=4999, uid="C4")])  # not in the dynamic range
    oxid = (call("99fcfec4-5260-101b-bbcb-00aa0021347a", 5), {"epm.ports": [("", 49800)]})
    assert not run([oxid, on_other])  # DCOM's OXID resolution named the port


@pytest.mark.parametrize("name", ["port_scan", "opnum_sweep"])
def test_thresholds_and_switches_come_from_the_settings(name: str) -> None:
    events = [closed() for _ in range(5)] if name == "port_scan" else [
        call(ECHO, n, "nca_s_op_rng_error") for n in range(5)
    ]  # fmt: skip
    assert not run(events)
    assert names(run(events, Settings.of({name: Rule(5, 60.0)}))) == [name]
    assert not run(events * 10, Settings.of({name: Rule(5, 60.0, enabled=False)}))


def test_the_samples_name_the_evidence_and_alerts_reach_the_source() -> None:
    alerts = run([bind([context(f"00000000-0000-0000-0000-{i:012x}", result="rejected", reason=1)])
                  for i in range(12)])  # fmt: skip
    assert len(alerts) == 1 and alerts[0].source == ATTACKER and len(alerts[0].samples) == 8
