"""Scoring the detectors on the labelled corpus, and the monitor's calls against tshark's.

Detections are the lines of ``dcerpc monitor --json`` with ``event.kind`` "alert", ``event.action``
"detection" and the detector's name in ``rule.name`` (protocol violations are alerts too, with
action "protocol-violation": not detections). Per detector, over the captures:

- recall: of the captures labelled with it (``expect``), the share where it fired (target >= 0.95);
- precision: of the captures where it fired, the share that expect or allow it;
- benign alerts: how many of its alerts came from benign captures (target 0).

The agreement with tshark compares, per capture, the presentation contexts (client, interface
UUID, the result its bind_ack / alter_context_resp / bind_nak gave) and the multiset of calls
(connection 4-tuple, call_id, the interface UUID its context was bound to, opnum): ours from the monitor's
call records that have an opnum (the request was captured), tshark's from the first fragment of
every request PDU it dissects, with contexts mapped from the bind and alter_context PDUs it
dissected on the same connection.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tests.evaluation.corpus import DETECTORS, Capture

TARGET_RECALL = 0.95

Call = tuple[str, int, str, int, int, str, int]  # client ip, port, server ip, port, call_id, uuid, opnum


CONFIG = Path(__file__).with_name("detect.toml")
"""The detectors' settings for the corpus: every client in it is on the capture's loopback, but
stands for a host elsewhere, so no network is local to mgmt_probe (the defaults count loopback and
the private ranges as local)."""


@functools.cache
def monitor_events(pcap: str | Path) -> list[dict[str, Any]]:
    """``dcerpc monitor --json`` on the file, one dict per line (once per file and process)."""
    argv = [sys.executable, "-m", "dcerpc", "monitor", "--json", "--config", str(CONFIG), str(pcap)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"dcerpc monitor {pcap} failed: {proc.stderr}")
    return [json.loads(line) for line in proc.stdout.splitlines()]


def detections(events: Iterable[dict[str, Any]]) -> Counter[str]:
    """Alerts per detector name."""
    return Counter(
        e["rule"]["name"]
        for e in events
        if e.get("event", {}).get("kind") == "alert"
        and e["event"].get("action") == "detection"
        and isinstance(e.get("rule"), dict)
        and "name" in e["rule"]
    )


@dataclass(frozen=True)
class Row:
    detector: str
    labelled: int  # captures that expect it
    detected: int  # of those, where it fired
    fired: int  # captures where it fired
    false_positives: int  # of those, captures that neither expect nor allow it
    benign_alerts: int  # its alerts on benign captures
    missed: list[str]  # labelled captures where it did not fire
    wrong: list[str]  # captures where it fired unexpected

    @property
    def recall(self) -> float | None:
        return self.detected / self.labelled if self.labelled else None

    @property
    def precision(self) -> float | None:
        return (self.fired - self.false_positives) / self.fired if self.fired else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "recall": self.recall, "precision": self.precision}


def score(results: Sequence[tuple[Capture, Counter[str]]], detectors: Sequence[str] = DETECTORS) -> list[Row]:
    """One row per detector from (capture, its detections) pairs."""
    rows = []
    for d in detectors:
        labelled = [c for c, _ in results if d in c.expect]
        fired = [(c, n) for c, n in results if n[d]]
        rows.append(
            Row(
                detector=d,
                labelled=len(labelled),
                detected=sum(1 for c, n in results if d in c.expect and n[d]),
                fired=len(fired),
                false_positives=sum(1 for c, _ in fired if d not in c.expect and d not in c.allow),
                benign_alerts=sum(n[d] for c, n in fired if c.benign),
                missed=[c.name for c, n in results if d in c.expect and not n[d]],
                wrong=[c.name for c, _ in fired if d not in c.expect and d not in c.allow],
            )
        )
    return rows


# tshark ------------------------------------------------------------------------------------------

_BIND, _ALTER, _REQUEST = 11, 14, 0
# Heuristic dissectors first: tshark otherwise gives a TCP port registered to another protocol to
# that protocol whatever the content (an ephemeral client port of 57000 made a DCE/RPC connection
# IRC, docs/monitor.md); the monitor knows DCE/RPC by content, on any port.
_TSHARK = ("tshark", "-o", "tcp.try_heuristic_first:TRUE", "-Y", "dcerpc", "-T", "json",
           "--no-duplicate-keys", "-J", "ip ipv6 tcp dcerpc", "-r")  # fmt: skip


def _each(value: Any) -> list[Any]:
    """tshark's JSON (with --no-duplicate-keys) gives a repeated item as a list, a single one bare."""
    return value if isinstance(value, list) else [] if value is None else [value]


@functools.lru_cache(maxsize=4)
def _tshark_pdus(pcap: str) -> tuple[tuple[str, int, str, int, dict[str, Any]], ...]:
    """Each DCE/RPC PDU tshark dissects in ``pcap``, with its source and destination address and
    port: one tshark run per file, read by both tshark_calls and tshark_binds."""
    args = [*_TSHARK, pcap]
    frames = json.loads(
        subprocess.run(args, capture_output=True, text=True, check=True, timeout=300).stdout or "[]"
    )
    out: list[tuple[str, int, str, int, dict[str, Any]]] = []
    for frame in frames:
        layers = frame["_source"]["layers"]
        ip = layers.get("ip") or layers.get("ipv6") or {}
        tcp = layers.get("tcp", {})
        src, dst = ip.get("ip.src", ip.get("ipv6.src")), ip.get("ip.dst", ip.get("ipv6.dst"))
        sport, dport = int(tcp.get("tcp.srcport", 0)), int(tcp.get("tcp.dstport", 0))
        out.extend((src, sport, dst, dport, pdu) for pdu in _each(layers.get("dcerpc")))
    return tuple(out)


def tshark_calls(pcap: str | Path) -> Counter[Call]:
    """The requests tshark dissects (first fragments), with the interface bound to their context."""
    contexts: dict[tuple[str, int, str, int], dict[int, str]] = {}
    calls: Counter[Call] = Counter()
    for src, sport, dst, dport, pdu in _tshark_pdus(str(pcap)):
        kind = int(pdu.get("dcerpc.pkt_type", -1))
        if kind in (_BIND, _ALTER):
            bound = contexts.setdefault((src, sport, dst, dport), {})
            for item in _each(pdu.get("dcerpc.cn_ctx_item")):
                syntax = item.get("dcerpc.cn_bind_abstract_syntax", {})
                bound.setdefault(int(item["dcerpc.cn_ctx_id"]), syntax.get("dcerpc.cn_bind_to_uuid", ""))
        elif kind == _REQUEST and int(pdu["dcerpc.cn_flags"], 16) & 1:  # PFC_FIRST_FRAG: one call
            cid = int(pdu["dcerpc.cn_ctx_id"])
            iface = contexts.get((src, sport, dst, dport), {}).get(cid, "")
            calls[
                (src, sport, dst, dport, int(pdu["dcerpc.cn_call_id"]), iface, int(pdu["dcerpc.opnum"]))
            ] += 1
    return calls


Bound = tuple[str, int, str, str]  # client ip, port, interface uuid, result

_RESULTS = {"0": "accepted", "1": "rejected", "2": "rejected", "3": "negotiate_ack"}


def tshark_binds(pcap: str | Path) -> Counter[Bound]:
    """Every context proposed in a bind or alter_context, with the result its answer gave it
    (``nak`` for a bind_nak, ``unanswered`` when no answer was dissected)."""
    pending: dict[tuple[str, int, str], list[str]] = {}
    out: Counter[Bound] = Counter()
    for src, sport, dst, dport, pdu in _tshark_pdus(str(pcap)):
        kind, call_id = int(pdu.get("dcerpc.pkt_type", -1)), pdu.get("dcerpc.cn_call_id", "")
        if kind in (_BIND, _ALTER):
            items = _each(pdu.get("dcerpc.cn_ctx_item"))
            if len(items) != int(pdu.get("dcerpc.cn_num_ctx_items", -1)):
                continue  # a bind cut short (tshark: malformed; the monitor: a malformed_bind violation)
            pending[(src, sport, call_id)] = [
                i.get("dcerpc.cn_bind_abstract_syntax", {}).get("dcerpc.cn_bind_to_uuid", "") for i in items
            ]
        elif kind in (12, 13, 15):  # bind_ack, bind_nak, alter_context_resp
            uuids = pending.pop((dst, dport, call_id), None)
            if uuids is None:
                continue
            if kind == 13:
                results = ["nak"] * len(uuids)
            else:  # the result items are named by their position and meaning ("Ctx Item[1]: ...")
                results = [_RESULTS.get(v.get("dcerpc.cn_ack_result"), "?") for k, v in pdu.items()
                           if k.startswith("Ctx Item")]  # fmt: skip
            for u, r in zip(uuids, results, strict=False):
                out[(dst, dport, u, r)] += 1
    for (src, sport, _), uuids in pending.items():
        for u in uuids:
            out[(src, sport, u, "unanswered")] += 1
    return out


def monitor_binds(events: Iterable[dict[str, Any]]) -> Counter[Bound]:
    out: Counter[Bound] = Counter()
    for e in events:
        if e["event"]["action"] in ("bind", "alter-context"):
            for c in e["dcerpc"]["contexts"]:
                out[(e["source"]["ip"], e["source"]["port"], c["uuid"], c["result"])] += 1
    return out


def monitor_calls(events: Iterable[dict[str, Any]]) -> Counter[Call]:
    calls: Counter[Call] = Counter()
    for e in events:
        if e["event"]["action"] != "call" or "opnum" not in e["dcerpc"]:
            continue
        d = e["dcerpc"]
        calls[(e["source"]["ip"], e["source"]["port"], e["destination"]["ip"], e["destination"]["port"],
               d["call_id"], d.get("interface", {}).get("uuid", ""), d["opnum"])] += 1  # fmt: skip
    return calls
