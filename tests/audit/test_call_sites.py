"""A call event is its site's template and the call's numbers (audit/observer.py): the site a
connection keeps per operation must never stand in for a call whose caller differs (another
security context, level, interface version or object), and the metrics count by the same sites.
Sans-IO: the observer's hooks called with protocol events, formatted by the writer thread into a
sink in memory, each event checked against the schema."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from types import SimpleNamespace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dcerpc.audit import Audit
from dcerpc.audit.observer import LATENCY_SHIFT, Site, Tally
from dcerpc.pdu.syntax import SyntaxId
from dcerpc.protocol.events import CallReceived
from dcerpc.rpcecho import Echo

from .helpers import valid


class _Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, lines: bytes) -> None:
        self.lines += lines.decode().splitlines()

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        pass


class _Conn:
    def __init__(self) -> None:
        self.number = 0
        self.calls = 0
        self.opened = 0
        self.sites: dict[Any, Site] = {}
        self.peer = ("192.0.2.7", 49999)
        self.local = ("192.0.2.1", 135)
        self.transport = "ncacn_ip_tcp"


class _Target:
    ifname = "rpcecho"
    operation = "AddOne"
    key = ("rpcecho", "AddOne")


def _call(call_id: int, **kw: Any) -> CallReceived:
    fields: dict[str, Any] = {"interface": Echo.__syntax__, "object": None, "auth_type": 0, "auth_level": 1}
    fields.update(kw)
    return CallReceived(call_id=call_id, context_id=0, opnum=0, stub=b"\0" * 4, little_endian=True, **fields)


def test_a_connections_calls_of_one_operation_by_different_callers() -> None:
    sink = _Lines()
    audit = Audit([sink], metrics=True, process=False)
    conn, target = _Conn(), _Target()
    audit.opened(conn)
    other_version = SyntaxId(Echo.__syntax__.uuid, (1, 1))
    obj = uuid.UUID("6e1f8f62-0d6b-4f9e-9c39-5b0f7c3c2a11")
    calls = [
        _call(1),
        _call(2, auth_type=10, auth_level=6, principal="DOM\\alice"),
        _call(3, auth_type=10, auth_level=5, principal="DOM\\alice"),
        _call(4, auth_type=10, auth_level=6, principal="DOM\\bob"),
        _call(5, interface=other_version),
        _call(6, object=obj),
        _call(7),  # the first caller again
        _call(8, auth_type=10, auth_level=6, principal="DOM\\alice"),
    ]
    for ev in calls:
        audit.answered(conn, ev, audit.site(conn, ev, target), 1, 4)
    audit.faulted(conn, _call(9), target, 0x1C010002, 0)
    assert audit.flush()
    events = [valid(json.loads(line)) for line in sink.lines if '"action":"call"' in line]
    assert [e["dcerpc"]["call_id"] for e in events] == list(range(1, 10))
    auths = [e["dcerpc"]["auth"] for e in events]
    assert auths[0] == auths[4] == auths[5] == auths[6] == auths[8] == {"type": "none", "level": "none"}
    assert auths[1] == auths[7] == {"type": "ntlm", "level": "privacy", "principal": "DOM\\alice"}
    assert auths[2] == {"type": "ntlm", "level": "integrity", "principal": "DOM\\alice"}
    assert auths[3] == {"type": "ntlm", "level": "privacy", "principal": "DOM\\bob"}
    versions = [e["dcerpc"]["interface"]["version"] for e in events]
    assert versions == ["1.0"] * 4 + ["1.1"] + ["1.0"] * 4
    assert [e["dcerpc"].get("object") for e in events] == [None] * 5 + [str(obj)] + [None] * 3
    assert [e["event"]["outcome"] for e in events] == ["success"] * 8 + ["failure"]
    assert events[8]["dcerpc"]["fault"] == {"status": "nca_s_op_rng_error", "code": 0x1C010002}
    assert all(e["dcerpc"]["association"]["id"] == conn.number for e in events)
    assert audit.counts() == {(("rpcecho", "AddOne"), 0): 8, (("rpcecho", "AddOne"), 0x1C010002): 1}
    assert conn.calls == 9
    audit.close()


def test_sites_are_bounded_and_counts_survive_them() -> None:
    """However many connections and callers, the sites kept stay bounded; the tallies (the metrics'
    counts) do not start over when the sites do."""
    audit = Audit(metrics=True)
    target = _Target()
    for n in range(5000):
        conn = _Conn()
        conn.number = n
        ev = _call(n, auth_type=10, auth_level=6, principal=f"DOM\\user{n}")
        audit.answered(conn, ev, audit.site(conn, ev, target), 1, 4)
    assert len(audit._sites) <= 4096
    assert audit.counts() == {(("rpcecho", "AddOne"), 0): 5000}


def test_metrics_counted_from_shipped_chunks_equal_counting_per_call() -> None:
    """With a writer, the metrics are counted from each chunk of call events as it is shipped
    (Audit._fold); without one, per call. The same calls give the same counts and histogram, on a
    loop where one chunk holds several sites, answered and faulted calls, and durations in several
    buckets; a scrape (counts()) sees the calls of the chunk still open."""

    async def feed(audit: Audit) -> None:
        conn, target = _Conn(), _Target()
        audit.opened(conn)
        now = time.perf_counter_ns()
        for n in range(600):  # more than a chunk: two shipped when full, the rest open
            ev = _call(n, principal=f"DOM\\user{n % 3}", auth_type=10, auth_level=6) if n % 4 else _call(n)
            if n % 7 == 0:
                audit.faulted(conn, ev, target, 0x1C010002, now - (n << 12))
            else:
                audit.answered(conn, ev, audit.site(conn, ev, target), now - (n << 14), 4)

    per_call, from_chunks = Audit(metrics=True), Audit([_Lines()], metrics=True, process=False)
    for audit in (per_call, from_chunks):
        asyncio.run(feed(audit))
    assert from_chunks.writer is not None and from_chunks.writer.numbers  # a chunk still open
    counts = from_chunks.counts()
    assert counts == per_call.counts()
    assert sum(counts.values()) == 600
    # the durations differ by when each audit read the clock: the buckets' total and spread agree
    assert sum(from_chunks.latency) == sum(per_call.latency) == 600
    assert len([b for b in from_chunks.latency if b]) >= 3
    from_chunks.close()


_bounds = st.builds(lambda k, e: (1 << (LATENCY_SHIFT + k)) + e, st.integers(0, 25), st.integers(-1, 0))


@given(
    st.lists(st.tuples(st.integers(0, 2**40) | _bounds, st.integers(1, 40)), min_size=1, max_size=60),
    st.integers(1, 3),
    st.booleans(),
)
def test_a_chunk_counts_each_duration_in_the_bucket_its_rule_gives(
    runs: list[tuple[int, int]], sites: int, singles: bool
) -> None:
    """Audit._fold counts a chunk's latencies a run at a time, or by sorting and bisecting at the
    buckets' bounds when every run is one call: each call lands where the per-call rule,
    ``(d >> LATENCY_SHIFT).bit_length()``, puts it (durations from 0, in every bucket to 2**40
    ns, on and under the bounds, in any order), and each site's tally gets its calls."""
    if singles:
        runs = [(d, 1) for d, _ in runs]
    audit = Audit(metrics=True)
    tallies = [SimpleNamespace(tally=Tally()) for _ in range(sites)]
    numbers = [x for i, (d, n) in enumerate(runs) for x in (n, i % sites, d, 0, 4, 4, 0, *range(1, n))]
    calls = sum(n for _, n in runs)
    audit._fold(tallies, numbers, calls)  # type: ignore[arg-type]  # (what a fold reads of a site)
    durations = [d for d, n in runs for _ in range(n)]
    expected = [0] * len(audit.latency)
    for d in durations:
        expected[(d >> LATENCY_SHIFT).bit_length()] += 1
    assert audit.latency == expected
    assert audit.latency_sum == sum(durations)
    assert [t.tally.n for t in tallies] == [sum(n for _, n in runs[s::sites]) for s in range(sites)]


def test_a_turns_answers_are_runs_of_one_read_site_and_octets() -> None:
    """The calls a connection answered in one turn go into the open chunk as runs (calls.py): one
    run for consecutive calls of the same read, site and octets in and out, a new one where any of
    them changes; each call's line has its own id and octets, the duration of its read (0 for a
    call refused before it ran), and the turn's one time."""

    async def turn(audit: Audit) -> list[int]:
        conn, target = _Conn(), _Target()
        audit.opened(conn)
        now = time.perf_counter_ns()
        first, second = now - 5_000_000, now - 1_000_000  # two reads' clocks (distinct objects)
        alice = {"auth_type": 10, "auth_level": 6, "principal": "DOM\\alice"}
        calls = [_call(n, **(alice if n in (3, 4, 5) else {})) for n in range(1, 10)]
        sites = [audit.site(conn, ev, target) for ev in calls]
        reads = [first, first, first, first, second, second, second, 0, 0]
        out = [4, 4, 4, 8, 8, 8, 8, 0, 0]
        audit.answered_all(conn, list(zip(calls, sites, reads, out, strict=True)))
        assert audit.writer is not None
        return list(audit.writer.numbers)

    sink = _Lines()
    audit = Audit([sink], process=False)
    numbers = asyncio.run(turn(audit))
    # runs: ids 1-2 (first read, no auth, 4 out), 3 (alice), 4 (alice, 8 out), 5 (second read),
    # 6-7 (no auth), 8-9 (refused: started 0, their site is the no-auth one, 0 out)
    counts, at = [], 0
    while at < len(numbers):  # (calls.py: a run's count first, and its numbers are 6 + count)
        counts.append(numbers[at])
        at += 6 + numbers[at]
    assert counts == [2, 1, 1, 1, 2, 2]
    assert audit.flush()
    events = [valid(json.loads(line)) for line in sink.lines if '"action":"call"' in line]
    assert [e["dcerpc"]["call_id"] for e in events] == list(range(1, 10))
    assert [e["dcerpc"]["octets"]["out"] for e in events] == [4, 4, 4, 8, 8, 8, 8, 0, 0]
    assert all(e["dcerpc"]["octets"]["in"] == 4 for e in events)
    durations = [e["event"]["duration"] for e in events]
    assert len(set(durations[:4])) == len(set(durations[4:7])) == 1 and durations[7:] == [0, 0]
    assert durations[0] - durations[4] == 4_000_000  # the reads' clocks, 4 ms apart
    assert len({e["@timestamp"] for e in events}) == 1
    assert [e["dcerpc"]["auth"].get("principal") for e in events] == [None] * 2 + ["DOM\\alice"] * 3 + [
        None
    ] * 4
    audit.close()


def test_a_turn_past_its_chunks_second_begins_a_chunk_of_its_own() -> None:
    """A chunk's times are microseconds into the second it began in: a turn answered after that
    second ships the open chunk and begins another, whose second is the turn's (so the writer's
    runs stay within their chunk's second)."""

    async def turns(audit: Audit) -> tuple[list[int], list[int]]:
        conn, target = _Conn(), _Target()
        audit.opened(conn)
        first, second = _call(1), _call(2)
        audit.answered(conn, first, audit.site(conn, first, target), time.perf_counter_ns(), 4)
        w = audit.writer
        assert w is not None
        w.base -= 3_000_000_000  # as if the chunk had begun three seconds ago
        w.second -= 3
        before = list(w.numbers)
        audit.answered(conn, second, audit.site(conn, second, target), time.perf_counter_ns(), 4)
        return before, list(w.numbers)

    sink = _Lines()
    audit = Audit([sink], process=False)
    before, after = asyncio.run(turns(audit))
    assert before[0] == 1 and before[3] == 1 and len(before) == 7  # the first call's run
    assert len(after) == 7 and after[3] == 2 and 0 <= after[6] < 1_000_000  # the second's, alone
    assert audit.flush()
    events = [valid(json.loads(line)) for line in sink.lines if '"action":"call"' in line]
    assert [e["dcerpc"]["call_id"] for e in events] == [1, 2]
    stamps = [e["@timestamp"] for e in events]
    assert stamps[0] < stamps[1]  # the first in the chunk's (moved) second, three seconds before
    audit.close()
