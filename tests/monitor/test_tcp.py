"""TCP reassembly, sans-IO: any segmentation, reordering and duplication of a stream gives the same
octets and the same calls; conflicts, gaps and hostile segments are counted, never raised."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from dcerpc.monitor import CallRecord, Monitor, Reassembler
from dcerpc.monitor.records import Record
from dcerpc.monitor.tcp import ACK, FIN, MAX_SEGMENTS_HELD, RST, Data, Gap, Segment
from tests.monitor.streams import CLIENT, SERVER, segments, session

EXCHANGE = session(calls=3, big=9000)


def shape(recs: list[Record]) -> list[tuple[object, ...]]:
    return [
        (r.call_id, r.opnum, r.operation, r.outcome, r.request_octets, r.response_octets, r.fault_status)
        for r in recs
        if isinstance(r, CallRecord)
    ]


def run(segs: list[Segment]) -> tuple[list[Record], Monitor]:
    mon = Monitor()
    out: list[Record] = []
    for s in segs:
        out += mon.feed(s)
    return out + mon.finish(), mon


BASELINE = shape(run(segments(EXCHANGE))[0])


def test_baseline_is_the_whole_session() -> None:
    assert [c[2] for c in BASELINE] == ["AddOne", "AddOne", "AddOne", "EchoData", ""]


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(40, 3000), min_size=1, max_size=8),
    seed=st.integers(0, 2**32),
    dup=st.floats(0, 0.5),
    isn=st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
)
def test_any_segmentation_reordering_duplication_gives_the_same_calls(
    sizes: list[int], seed: int, dup: float, isn: tuple[int, int]
) -> None:
    rng = random.Random(seed)
    segs = segments(EXCHANGE, sizes, isn=isn)  # sequence numbers may wrap around 2**32
    head, body, tail = segs[:2], segs[2:-2], segs[-2:]
    # reorder within each flight (a run of one direction's segments), in windows of 12: a network
    # reorders locally, and an answer is not captured before the request it answers; duplicate some
    runs: list[list[Segment]] = []
    for seg in body:
        if runs and runs[-1][0].src == seg.src:
            runs[-1].append(seg)
        else:
            runs.append([seg])
    body = []
    for run_ in runs:
        for i in range(0, len(run_), 12):
            window = run_[i : i + 12]
            rng.shuffle(window)
            body += window
    body = [s for seg in body for s in ([seg, seg] if rng.random() < dup else [seg])]
    recs, mon = run(head + body + tail)
    assert shape(recs) == BASELINE
    assert mon.tcp.stats["gaps"] == 0 and mon.tcp.stats["conflicts"] == 0


def test_reassembled_octets_are_the_stream() -> None:
    segs = segments(EXCHANGE, (700, 13, 1460))
    rng = random.Random(5)
    body = segs[2:-2]
    rng.shuffle(body)
    tcp = Reassembler()
    got = {True: b"", False: b""}
    for s in segs[:2] + body + segs[-2:]:
        for ev in tcp.feed(s):
            if isinstance(ev, Data):
                got[ev.src == CLIENT] += ev.data
    assert got[True] == b"".join(d for c, d in EXCHANGE if c)
    assert got[False] == b"".join(d for c, d in EXCHANGE if not c)


def test_overlapping_conflicting_copy_loses_and_is_counted() -> None:
    tcp = Reassembler()
    tcp.feed(Segment(0, CLIENT, SERVER, 100, 0x02))
    out = tcp.feed(Segment(0, CLIENT, SERVER, 101, ACK, b"abcdef"))
    out += tcp.feed(Segment(0, CLIENT, SERVER, 104, ACK, b"XYZghi"))  # overlaps "def" with "XYZ"
    data = b"".join(e.data for e in out if isinstance(e, Data))
    assert data == b"abcdefghi"  # the first copy wins
    assert tcp.stats["conflicts"] == 1
    # ahead of the stream: two different copies at one position, the first is kept
    tcp.feed(Segment(0, CLIENT, SERVER, 120, ACK, b"first"))
    tcp.feed(Segment(0, CLIENT, SERVER, 120, ACK, b"other"))
    out = tcp.feed(Segment(0, CLIENT, SERVER, 110, ACK, b"0123456789"))
    assert b"".join(e.data for e in out if isinstance(e, Data)) == b"0123456789first"
    assert tcp.stats["conflicts"] == 2


def test_a_gap_is_skipped_and_the_stream_resyncs_on_the_next_pdu() -> None:
    segs = segments(EXCHANGE, (200,))
    # lose one segment in the middle of the first AddOne request's direction
    lost = next(i for i, s in enumerate(segs) if s.payload and s.payload[:1] == b"\x05" and s.payload[2] == 0)
    recs, mon = run(segs[:lost] + segs[lost + 1 :])
    assert mon.tcp.stats["gaps"] == 1
    assert [c.gap for c in recs if isinstance(c, CallRecord)][-1]  # the records after it say so
    names = [c[2] for c in shape(recs)]
    assert names.count("AddOne") >= 2 and "EchoData" in names  # later calls still named


def test_gap_event_reports_the_missing_octets_at_close() -> None:
    tcp = Reassembler()
    tcp.feed(Segment(0, CLIENT, SERVER, 1, ACK, b"aaaa"))
    tcp.feed(Segment(0, CLIENT, SERVER, 15, ACK, b"bbbb"))  # 10 octets never arrive
    out = tcp.feed(Segment(0, CLIENT, SERVER, 19, RST))
    gaps = [e for e in out if isinstance(e, Gap)]
    assert [g.missing for g in gaps] == [10]
    assert b"".join(e.data for e in out if isinstance(e, Data)) == b"bbbb"


def test_held_octets_are_bounded_per_direction_and_in_total() -> None:
    tcp = Reassembler(max_held=10_000, max_held_total=15_000)
    tcp.feed(Segment(0, CLIENT, SERVER, 1, ACK, b"x"))  # fixes the origin; then a hole forever
    for i in range(100):
        tcp.feed(Segment(0, CLIENT, SERVER, 1000 + 1000 * i, ACK, bytes(900)))
        tcp.feed(Segment(0, SERVER, CLIENT, 5 + 1000 * i, ACK, bytes(900)))  # hole at its start too
        assert all(d.held_octets <= 10_000 for c in tcp.connections.values() for d in c.dirs.values())
        assert tcp.held_total <= 15_000
    assert tcp.stats["gaps"] > 0


def test_one_octet_segments_are_bounded_in_count() -> None:
    tcp = Reassembler()
    tcp.feed(Segment(0, CLIENT, SERVER, 1, ACK, b"x"))
    for i in range(MAX_SEGMENTS_HELD + 50):
        tcp.feed(Segment(0, CLIENT, SERVER, 10 + 2 * i, ACK, b"y"))
    (conn,) = tcp.connections.values()
    assert len(conn.dirs[CLIENT].held) <= MAX_SEGMENTS_HELD


def test_connection_table_is_bounded() -> None:
    tcp = Reassembler(max_connections=100)
    for port in range(1000):
        tcp.feed(Segment(0, CLIENT.__class__("10.9.9.9", 1024 + port), SERVER, 1, ACK, b"\x05"))
    assert len(tcp.connections) <= 100 and tcp.stats["evicted"] == 900


def test_fin_both_ways_closes_and_later_acks_open_nothing() -> None:
    segs = segments(EXCHANGE)
    tcp = Reassembler()
    for s in segs:
        tcp.feed(s)
    assert not tcp.connections
    tcp.feed(Segment(9, CLIENT, SERVER, 5, ACK))
    tcp.feed(Segment(9, CLIENT, SERVER, 5, FIN | ACK))
    assert not tcp.connections


def test_a_new_syn_on_a_used_four_tuple_starts_a_new_connection() -> None:
    segs = segments(EXCHANGE)[:-2]  # no FINs captured
    again = segments(EXCHANGE, isn=(77777, 88888))
    recs, _ = run(segs + again)
    assert shape(recs) == BASELINE + BASELINE
    assert len({r.uid for r in recs}) == 2


def test_a_differing_retransmission_is_a_conflict_within_the_kept_tail_only() -> None:
    """The last 4096 delivered octets are compared with a copy seen again, whatever the sizes of
    the segments that delivered them (the tail is kept in pieces up to twice that, then cut)."""
    for size in (28, 1000, 4096, 5000, 9000):
        r = Reassembler()
        data = bytes(range(256)) * 80  # 20480 octets
        for at in range(0, len(data), size):
            r.feed(Segment(1.0, CLIENT, SERVER, 1000 + at, ACK, data[at : at + size]))
        assert r.stats["conflicts"] == 0
        near = len(data) - 100  # within the tail: the first copy wins, the second is a conflict
        r.feed(Segment(1.0, CLIENT, SERVER, 1000 + near, ACK, bytes(50)))
        assert (r.stats["conflicts"], r.stats["retransmitted"]) == (1, 1), size
        far = len(data) - 4096 - 60  # beyond it: a retransmission, not compared
        r.feed(Segment(1.0, CLIENT, SERVER, 1000 + far, ACK, bytes(50)))
        assert (r.stats["conflicts"], r.stats["retransmitted"]) == (1, 2), size
        edge = len(data) - 4096 - 10  # straddling: only the kept part is compared
        r.feed(Segment(1.0, CLIENT, SERVER, 1000 + edge, ACK, bytes(10) + data[-4096 : -4096 + 40]))
        assert (r.stats["conflicts"], r.stats["retransmitted"]) == (1, 3), size
        r.feed(Segment(1.0, CLIENT, SERVER, 1000 + edge, ACK, data[edge : edge + 10] + bytes(40)))
        assert (r.stats["conflicts"], r.stats["retransmitted"]) == (2, 4), size
