"""Fuzz target ``cl``: connectionless DCE/RPC (C706 chapter 12) through the codec and the monitor's
connectionless reader.

The first octet chooses. Even: the rest is one datagram for ``dcerpc.pdu.cl.parse_cl``, which
returns a ``Datagram`` or raises ``ClError`` (with a violation kind the server knows) and nothing
else; a datagram it returns must encode to octets that parse back to the same datagram (every
header field, body and verifier is kept; only padding, the fack body's pad octet, is written as
zero). Odd: the rest is a script of records (records.py), each one UDP datagram between two fixed
endpoints (the tag's low bit says the direction) fed to ``dcerpc.monitor.cl.ClReader``, which may
raise nothing; every record it completes must make an audit-shaped event.

    python fuzz/fuzz_cl.py -max_total_time=300
"""

from __future__ import annotations

import engine
import records

with engine.instrumented():
    from dcerpc.monitor import to_event
    from dcerpc.monitor.cl import ClReader, UdpDatagram
    from dcerpc.monitor.tcp import Endpoint
    from dcerpc.pdu.cl import ClError, parse_cl
    from dcerpc.protocol.rules import Violation

NAME = "cl"
_ENDS = (Endpoint("10.1.0.1", 40000), Endpoint("10.1.0.2", 135))


def test_one(data: bytes) -> None:
    if not data:
        return
    if data[0] & 1 == 0:
        raw = data[1:]
        try:
            d = parse_cl(raw)
        except ClError as e:
            Violation(e.kind)
            return
        try:
            again = parse_cl(d.encode())
        except ClError as e:
            raise engine.Finding(f"{d!r} encodes to octets that do not parse: {e}") from e
        if again != d:
            raise engine.Finding(f"{d!r} parses back as {again!r}")
        return
    reader = ClReader()
    out = []
    for i, (tag, payload) in enumerate(records.decode(data[1:])):
        side = tag & 1
        out += reader.feed(UdpDatagram(float(i), _ENDS[side], _ENDS[1 - side], payload))
    out += reader.finish()
    for record in out:
        to_event(record)


if __name__ == "__main__":
    engine.main(test_one, NAME)
