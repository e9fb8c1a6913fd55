"""The corpus itself: every scenario made its file, and the traffic in each is what the scenario
says (so a label is about something that is on the wire), and the monitor's calls agree with
tshark's dissection of the same file, file by file (docs/monitor.md, "Agreement with tshark")."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.evaluation.corpus import DETECTORS, SCENARIOS, Capture
from tests.evaluation.score import monitor_binds, monitor_calls, monitor_events, tshark_binds, tshark_calls

pytestmark = pytest.mark.interop


def _ops(events: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter(
        (e["dcerpc"].get("interface", {}).get("name", ""), e["dcerpc"].get("operation", ""))
        for e in events
        if e["event"]["action"] == "call"
    )


def test_every_scenario_has_its_labelled_file(corpus: list[Capture]) -> None:
    assert [c.name for c in corpus] == [s.name for s in SCENARIOS]
    for c in corpus:
        assert set(c.expect) | set(c.allow) <= set(DETECTORS), c.name
        assert not (c.benign and c.expect)
    assert {d for c in corpus for d in c.expect} == set(DETECTORS)
    assert sum(c.benign for c in corpus) >= 6  # our client, impacket, Samba's client, smbtorture


@pytest.mark.parametrize("name", [s.name for s in SCENARIOS])
def test_monitor_agrees_with_tshark(by_name: dict[str, Capture], name: str) -> None:
    """Same calls (4-tuple, call_id, interface UUID, opnum) and the same presentation contexts
    (interface UUID, result) as Wireshark's dissector sees."""
    c = by_name[name]
    events = monitor_events(c.path)
    ours, theirs = monitor_calls(events), tshark_calls(c.path)
    assert ours == theirs, (ours - theirs, theirs - ours)
    bound, dissected = monitor_binds(events), tshark_binds(c.path)
    assert bound == dissected, (bound - dissected, dissected - bound)


def test_the_traffic_is_what_the_labels_say(by_name: dict[str, Capture]) -> None:
    """A few facts per attack, read from the monitor's records: the tools did what they do."""
    ev = {n: monitor_events(c.path) for n, c in by_name.items()}
    assert _ops(ev["ours-rpcdump"])[("epmapper", "ept_lookup")] >= 1
    uuids = [e for e in ev["ours-rpcmap-uuids"] if e["event"]["action"] == "bind"]
    assert len({e["dcerpc"]["contexts"][0]["uuid"] for e in uuids}) > 100  # a brute force of UUIDs
    opnums = {e["dcerpc"]["opnum"] for e in ev["ours-rpcmap-opnums"] if e["event"]["action"] == "call"
              and e["dcerpc"].get("interface", {}).get("name") == "rpcecho"}  # fmt: skip
    assert len(opnums) >= 60
    versions = {e["dcerpc"]["contexts"][0]["version"] for e in ev["ours-rpcmap-versions"]
                if e["event"]["action"] == "bind"}  # fmt: skip
    assert len(versions) >= 16
    assert _ops(ev["ours-blaster"]) == {("IActivation", "RemoteActivation"): 1,
                                        ("ISystemActivator", "RemoteCreateInstance"): 1}  # fmt: skip
    frags = [e for e in ev["ours-fragments"] if e["event"]["action"] == "call"]
    # each run announces ~2^32 octets in its first fragment: the server refuses the call at once
    # (access denied, and hangs up); what the client had sent before it read that is the call's
    assert len(frags) == 2 and all(f["event"]["outcome"] == "failure" for f in frags), frags
    assert all(1 <= f["dcerpc"]["fragments"]["in"] <= 48 for f in frags)
    for n in ("ours-spray", "samba-spray"):
        users = {e["user"]["name"] for e in ev[n] if e["event"]["action"] == "call" and "user" in e}
        assert len(users) == 12, (n, users)
    assert _ops(ev["ours-svcctl"])[("svcctl", "RCreateServiceW")] == 1
    assert _ops(ev["ours-atsvc"])[("atsvc", "NetrJobAdd")] == 1
    for n in ("ours-zerologon", "samba-zerologon"):
        assert _ops(ev[n])[("netlogon", "NetrServerAuthenticate3")] == 16
    levels = {e["dcerpc"]["auth"]["level"] for e in ev["ours-impacket-levels"]
              if e["event"]["action"] == "call" and e["destination"]["port"] != 135}  # fmt: skip
    assert levels == {"none", "connect", "packet", "integrity", "privacy"}
    assert _ops(ev["ours-smbtorture-echo"])[("rpcecho", "TestEnum")] >= 1
    assert _ops(ev["ours-rpcmap-mgmt"])[("mgmt", "inq_if_ids")] == 2
    scan = [e for e in ev["samba-smbtorture-scanner"] if e["event"]["action"] == "call"]
    assert _ops(scan)[("epmapper", "ept_map")] > 50 and _ops(scan)[("mgmt", "inq_if_ids")] > 5
    swept = {e["dcerpc"]["opnum"] for e in scan if e["dcerpc"].get("interface", {}).get("name") == "srvsvc"
             and e["dcerpc"].get("fault", {}).get("status") == "rpc_x_bad_stub_data"}  # fmt: skip
    assert len(swept) > 20  # every srvsvc opnum, one 0xFF stub
    assert all(c["result"] in ("accepted", "negotiate_ack") for e in ev["samba-smbtorture-scanner"]
               if e["event"]["action"] == "bind" for c in e["dcerpc"]["contexts"])  # fmt: skip
    kinds = {
        e["dcerpc"]["violation"] for e in ev["ours-malformed"] if e["event"]["action"] == "protocol-violation"
    }
    assert {"bad_version", "bad_fragment_length", "server_pdu"} <= kinds, kinds
