"""A shipped chunk of call events becomes the same lines the general path would write: each run's
numbers and its calls' ids filled into its site's form, the answer's time (microseconds into the
chunk's second) spelled as every other event's @timestamp (fields.iso_timestamp). Property-tested
over runs of one call and more, a form whose text holds a ``%``, and times within the chunk's
second and outside it: later seconds, earlier ones (calls answered on several loops),
zero-padding."""

from __future__ import annotations

import json
import struct
import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dcerpc.audit.calls import format_calls
from dcerpc.audit.fields import iso_timestamp
from dcerpc.audit.observer import call_template
from dcerpc.pdu.syntax import SyntaxId

from .helpers import valid

_SYNTAX = SyntaxId(uuid.UUID("60a15ec5-4de8-11d7-a637-005056a20182"), (1, 0))
_SITES = [
    call_template(7, ("192.0.2.7", 49999), _SYNTAX, "rpcecho", "AddOne", 0, None, 0, 1, None, 0),
    call_template(
        7, ("2001:db8::7", 1), _SYNTAX, None, None, 9, uuid.UUID(int=5), 10, 6, 'DOM\\"%d"', 0x1C010002
    ),
]  # fmt: skip

_runs = st.lists(
    st.tuples(
        st.integers(0, 10**10),  # duration
        st.integers(0, 2**31),  # octets in
        st.integers(0, 2**31),  # octets out
        st.one_of(  # answered, µs into the chunk's second: within it (the usual: six digits, fewer) or not
            st.integers(0, 999_999), st.sampled_from([0, 7, 99_999, 100_000]), st.integers(-(10**7), 10**7)
        ),
        st.integers(0, len(_SITES) - 1),  # slot
        st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=30),  # the run's call ids
    ),
    min_size=1,
    max_size=12,
)


def _chunk(second: int, runs: list[tuple[Any, ...]], sites: list[bytes] = _SITES) -> tuple[Any, ...]:
    # each run: its count, slot, duration, first call id, octets in and out, time; its other ids
    numbers = [
        n
        for duration, received, sent, answered, slot, ids in runs
        for n in (len(ids), slot, duration, ids[0], received, sent, answered, *ids[1:])
    ]
    calls = sum(len(run[-1]) for run in runs)
    return (None, second, sites, struct.pack(f"<{len(numbers)}q", *numbers), calls)


@given(_runs, st.integers(1_600_000_000, 2_000_000_000))
def test_a_chunk_formats_as_each_call_would(runs: list[tuple[Any, ...]], second: int) -> None:
    lines = format_calls(_chunk(second, runs)).decode().splitlines(keepends=True)
    calls = [(*head, call_id) for *head, ids in runs for call_id in ids]
    assert len(lines) == len(calls)
    for line, (duration, received, sent, answered, slot, call_id) in zip(lines, calls, strict=True):
        assert line.endswith("\n") and "\n" not in line[:-1]
        event = valid(json.loads(line))
        assert event["@timestamp"] == iso_timestamp(second * 10**9 + answered * 1000)
        assert event["event"]["duration"] == duration
        assert event["dcerpc"]["call_id"] == call_id
        assert event["dcerpc"]["octets"] == {"in": received, "out": sent}
        assert event["dcerpc"]["opnum"] == (0, 9)[slot]
        assert event["dcerpc"]["auth"].get("principal") == (None, 'DOM\\"%d"')[slot]
        # the same line as a run of one call's (its form's one %), whatever the run's length
        assert line.encode() == format_calls(
            _chunk(second, [(duration, received, sent, answered, slot, [call_id])])
        )


@given(
    st.lists(
        st.tuples(
            st.integers(0, 2),
            st.integers(1, 3),
            st.one_of(st.sampled_from([7, 99_999, 100_000]), st.integers(0, 999_999)),  # µs: padded or not
        ),
        min_size=2,
        max_size=6,
    )
)
def test_chunks_of_one_site_each_have_their_own_second(chunks: list[tuple[int, int, int]]) -> None:
    # one site's chunks in turn, of the same or other seconds and sizes: the writer keeps the last
    # second's text and each form's run form, and must not lend a chunk another's second
    for later, count, micros in chunks:
        second = 1_700_000_000 + later
        chunk = _chunk(second, [(1, 1, 2, micros, 0, list(range(count)))], _SITES[:1])
        lines = format_calls(chunk).decode().splitlines()
        assert [json.loads(line)["@timestamp"] for line in lines] == [
            iso_timestamp(second * 10**9 + micros * 1000)
        ] * count
        assert [json.loads(line)["dcerpc"]["call_id"] for line in lines] == list(range(count))
