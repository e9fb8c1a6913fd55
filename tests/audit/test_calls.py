"""A shipped chunk of call events becomes the same lines the general path would write: its numbers
filled into its sites' forms, the answer's time (microseconds into the chunk's second) spelled as
every other event's @timestamp (fields.iso_timestamp). Property-tested over times within the
chunk's second (the loop's usual chunk, taken whole) and outside it: later seconds, earlier ones
(calls answered on several loops), zero-padding."""

from __future__ import annotations

import json
import struct
import uuid

from hypothesis import given
from hypothesis import strategies as st

from dcerpc.audit.calls import AT, CALL_NUMBERS, SLOT, format_calls
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

_calls = st.lists(
    st.tuples(
        st.integers(0, 10**10),  # duration
        st.integers(0, 2**32 - 1),  # call id
        st.integers(0, 2**31),  # octets in
        st.integers(0, 2**31),  # octets out
        st.integers(-(10**7), 10**7),  # answered, µs into the chunk's second
        st.integers(0, len(_SITES) - 1),  # slot
    ),
    min_size=1,
    max_size=40,
)


@given(_calls, st.integers(1_600_000_000, 2_000_000_000), st.booleans())
def test_a_chunk_formats_as_each_call_would(calls: list[tuple[int, ...]], second: int, spill: bool) -> None:
    numbers = [n for call in calls for n in call]
    # the loop tells a chunk whose calls all fell in its second (spilled False) from one whose did
    # not; either way, the writer may be told it spilled
    spilled = spill or not all(0 <= c[AT] < 1_000_000 for c in calls)
    chunk = (None, second, _SITES, struct.pack(f"<{len(numbers)}q", *numbers), spilled)
    lines = format_calls(chunk).decode().splitlines(keepends=True)
    assert len(lines) == len(numbers) // CALL_NUMBERS == len(calls)
    for line, (duration, call_id, received, sent, answered, slot) in zip(lines, calls, strict=True):
        assert line.endswith("\n") and "\n" not in line[:-1]
        event = valid(json.loads(line))
        assert event["@timestamp"] == iso_timestamp(second * 10**9 + answered * 1000)
        assert event["event"]["duration"] == duration
        assert event["dcerpc"]["call_id"] == call_id
        assert event["dcerpc"]["octets"] == {"in": received, "out": sent}
        assert event["dcerpc"]["opnum"] == (0, 9)[slot]
    principal = [json.loads(line)["dcerpc"]["auth"].get("principal") for line in lines]
    assert principal == [(None, 'DOM\\"%d"')[c[SLOT]] for c in calls]


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
    # one site's chunks in turn, of the same or other seconds and sizes: the writer keeps the
    # format of the last, and must not lend it to a chunk of another second or size, or to one
    # whose microseconds need their zeros where the last's did not (or the reverse)
    for later, count, micros in chunks:
        second = 1_700_000_000 + later
        numbers = [n for k in range(count) for n in (k, k, 1, 2, micros, 0)]
        chunk = (None, second, _SITES[:1], struct.pack(f"<{len(numbers)}q", *numbers), False)
        lines = format_calls(chunk).decode().splitlines()
        assert [json.loads(line)["@timestamp"] for line in lines] == [
            iso_timestamp(second * 10**9 + micros * 1000)
        ] * count
        assert [json.loads(line)["dcerpc"]["call_id"] for line in lines] == list(range(count))
