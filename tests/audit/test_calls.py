"""A shipped chunk of call events becomes the same lines the general path would write: its numbers
filled into its sites' pieces, the answer's time made wall-clock time with the chunk's offset and
spelled as every other event's @timestamp (fields.iso_timestamp). Property-tested over times that
cross seconds, go backwards (chunks of several connections' calls are in answer order, but their
offsets differ) and need zero-padding."""

from __future__ import annotations

import json
import struct
import uuid

from hypothesis import given
from hypothesis import strategies as st

from dcerpc.audit.calls import CALL_NUMBERS, SLOT, format_calls
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
        st.integers(0, 10**12),  # answered, perf_counter_ns
        st.integers(0, len(_SITES) - 1),  # slot
    ),
    min_size=1,
    max_size=40,
)


@given(_calls, st.integers(1_600_000_000 * 10**9, 2_000_000_000 * 10**9))
def test_a_chunk_formats_as_each_call_would(calls: list[tuple[int, ...]], offset: int) -> None:
    numbers = [n for call in calls for n in call]
    chunk = (None, offset, _SITES, struct.pack(f"<{len(numbers)}q", *numbers))
    lines = format_calls(chunk).decode().splitlines(keepends=True)
    assert len(lines) == len(numbers) // CALL_NUMBERS == len(calls)
    for line, (duration, call_id, received, sent, answered, slot) in zip(lines, calls, strict=True):
        assert line.endswith("\n") and "\n" not in line[:-1]
        event = valid(json.loads(line))
        assert event["@timestamp"] == iso_timestamp(answered + offset)
        assert event["event"]["duration"] == duration
        assert event["dcerpc"]["call_id"] == call_id
        assert event["dcerpc"]["octets"] == {"in": received, "out": sent}
        assert event["dcerpc"]["opnum"] == (0, 9)[slot]
    principal = [json.loads(line)["dcerpc"]["auth"].get("principal") for line in lines]
    assert principal == [(None, 'DOM\\"%d"')[c[SLOT]] for c in calls]
