"""String bindings: any text parses to a Binding or raises ValueError; bindings print and re-parse."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from dcerpc.client.binding import FLAGS, Binding, parse_binding


@given(st.text(max_size=80))
def test_parse_is_total(text: str) -> None:
    try:
        b = parse_binding(text)
    except ValueError:
        return
    assert isinstance(b, Binding)
    _ = b.port  # never raises


_host = st.one_of(
    st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)


@given(
    protseq=st.sampled_from(["ncacn_ip_tcp", "ncalrpc"]),
    host=_host,
    port=st.one_of(st.none(), st.integers(1, 65535)),
    flags=st.frozensets(st.sampled_from(sorted(FLAGS)), max_size=3),
    obj=st.one_of(st.none(), st.uuids()),
)
def test_print_and_parse_round_trip(
    protseq: str, host: str, port: int | None, flags: frozenset[str], obj: uuid.UUID | None
) -> None:
    b = Binding(protseq, host if protseq == "ncacn_ip_tcp" else "", str(port or ""), obj, flags)
    again = parse_binding(str(b))
    assert again == b
