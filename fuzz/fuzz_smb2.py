"""Fuzz target ``smb2``: one TCP connection's octets through the monitor's SMB2 reader
(monitor/smb2.py: NetBIOS framing, SMB2 messages and compounds, pipes) and the passive DCE/RPC
associations it feeds, as a script of records (records.py).

Each record is one in-order chunk of one direction: the tag's low bit says which (client or
server), the next two bits whether a gap (octets never captured) comes before it. The reader may
raise nothing, and keeps its bounds: a framer holds at most one message (MAX_MESSAGE and its
4-octet frame header), at most MAX_PIPES pipes and MAX_PENDING requests awaiting an answer; every
record makes an audit-shaped event.

    python fuzz/fuzz_smb2.py -max_total_time=300
"""

from __future__ import annotations

import engine
import records

with engine.instrumented():
    from dcerpc.monitor import to_event
    from dcerpc.monitor.records import Record
    from dcerpc.monitor.smb2 import MAX_MESSAGE, MAX_PENDING, MAX_PIPES, Smb2Connection
    from dcerpc.monitor.tcp import Endpoint

NAME = "smb2"
_ENDS = (Endpoint("10.1.0.1", 40000), Endpoint("10.1.0.2", 445))


def test_one(data: bytes) -> None:
    conn = Smb2Connection("C1", _ENDS[0], _ENDS[1], _ENDS[0], True)
    out: list[Record] = []
    for i, (tag, payload) in enumerate(records.decode(data)):
        src = _ENDS[tag & 1]
        if (tag >> 1) & 3 == 3:
            out += conn.gap(src, float(i), 1 + (tag >> 3))
        out += conn.data(src, float(i), payload)
        if any(len(f.buf) > 4 + MAX_MESSAGE for f in conn.framers.values()):
            raise engine.Finding("a framer holds more than one message")
        if len(conn.pipes) > MAX_PIPES or len(conn.pending) > MAX_PENDING:
            raise engine.Finding(f"{len(conn.pipes)} pipes, {len(conn.pending)} pending: past the bounds")
    out += conn.close(float(len(data)))
    for record in out:
        to_event(record)


if __name__ == "__main__":
    engine.main(test_one, NAME)
