"""Fuzz target ``pdu``: one fragment through the connection-oriented PDU parser.

``dcerpc.pdu.parse`` takes any octets and returns a PDU or raises ``PduError`` (pdu/co.py's
contract); anything else escaping it is a finding. A PDU it returns must encode again (the PDU
classes' ``encode``), and that encoding must parse back to a PDU of the same type, call_id and
flags: what we read we can also write.

    python fuzz/fuzz_pdu.py -max_total_time=300
"""

from __future__ import annotations

import engine

with engine.instrumented():
    from dcerpc.pdu import PduError, parse

NAME = "pdu"


def test_one(data: bytes) -> None:
    try:
        parsed = parse(data)
    except PduError:
        return
    pdu = parsed.pdu
    try:
        again = parse(pdu.encode()).pdu
    except PduError as e:
        raise engine.Finding(f"{pdu!r} encodes to octets that do not parse: {e}") from e
    if (type(again), again.call_id, again.flags) != (type(pdu), pdu.call_id, pdu.flags):
        raise engine.Finding(f"{pdu!r} parses back as {again!r}")


if __name__ == "__main__":
    engine.main(test_one, NAME)
