"""Fuzz target ``monitor``: TCP segments through the capture monitor's sans-IO core (reassembly,
then the passive association), as a script of records (records.py).

Each record is one segment of one TCP connection between two fixed endpoints: the tag's low bit
says the direction, the next bits its flags (SYN, FIN, RST, none) and how its sequence number
relates to what that direction sent before (in order, a little back to overlap or retransmit, a
jump ahead to leave a gap, a wild one); the payload is the segment's octets. The monitor may raise
nothing: every input ends in records (calls, binds, violations, the detectors' alerts) that make
audit-shaped events.

    python fuzz/fuzz_monitor.py -max_total_time=300
"""

from __future__ import annotations

import engine
import records

with engine.instrumented():
    from dcerpc.detect import Detectors
    from dcerpc.monitor import Monitor, Reassembler, to_event
    from dcerpc.monitor.tcp import ACK, FIN, RST, SYN, Endpoint, Segment

NAME = "monitor"
_ENDS = (Endpoint("10.1.0.1", 40000), Endpoint("10.1.0.2", 135))
_FLAGS = (ACK, SYN | ACK, FIN | ACK, RST)


def test_one(data: bytes) -> None:
    mon = Monitor(Reassembler(max_held=64, max_connections=4), Detectors())  # the detectors too
    sent = [0x10000, 0xFFFFF000]  # the second wraps within a few KiB: sequence arithmetic
    out = []
    for i, (tag, payload) in enumerate(records.decode(data)):
        side = tag & 1
        flags = _FLAGS[(tag >> 1) & 3]
        how = (tag >> 3) & 3
        seq = sent[side]
        if how == 1:
            seq -= min(len(payload) // 2 + 1, 1500)  # overlap / retransmission
        elif how == 2:
            seq += 1 + (tag >> 5) * 700  # a gap
        elif how == 3:
            seq = int.from_bytes(payload[:4].ljust(4, b"\0"), "little")
        seq %= 1 << 32
        src, dst = _ENDS[side], _ENDS[1 - side]
        out += mon.feed(Segment(float(i), src, dst, seq, flags, payload))
        sent[side] = (seq + len(payload) + (1 if flags & (SYN | FIN) else 0)) % (1 << 32)
    out += mon.finish()
    for record in out:
        to_event(record)


if __name__ == "__main__":
    engine.main(test_one, NAME)
