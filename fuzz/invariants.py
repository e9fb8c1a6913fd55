"""What the state-machine harnesses check after every step, whichever role they drive.

- What an association sends is a sequence of whole PDUs that our own parser reads, none longer
  than the fragment size it agreed to send (binds and their answers may be as long as frag_length
  allows).
- Once it has closed and what it said last has been sent, it says nothing more and reports no
  event, whatever it is fed or asked (C706 12.4: a closed association takes nothing).
- Octets held for calls being reassembled stay within ``Limits.max_buffered`` and are released
  when the connection is lost (protocol/limits.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import engine

with engine.instrumented():
    from dcerpc.pdu import PduError, PType, parse
    from dcerpc.pdu.header import HEADER_SIZE, frame_length
    from dcerpc.protocol.limits import Limits

__all__ = ["Closure", "check_buffered", "check_output"]

_CALL_PDUS = frozenset({PType.REQUEST, PType.RESPONSE, PType.FAULT})


def check_output(octets: bytes, max_frag: int) -> None:
    """``octets`` are whole PDUs that parse; request / response / fault fragments fit ``max_frag``."""
    pos = 0
    while pos < len(octets):
        length = frame_length(octets, pos, len(octets))
        if length is None or length < HEADER_SIZE or pos + length > len(octets):
            raise engine.Finding(f"output at {pos} is not a whole PDU: {octets[pos : pos + 16].hex()}")
        try:
            parsed = parse(octets[pos : pos + length])
        except PduError as e:
            raise engine.Finding(f"output PDU at {pos} does not parse: {e}") from e
        if parsed.pdu.ptype in _CALL_PDUS and length > max_frag:
            raise engine.Finding(f"a {length}-octet {parsed.pdu.ptype.name} fragment, {max_frag} agreed")
        pos += length


def check_buffered(buffered: int, limits: Limits) -> None:
    if not 0 <= buffered <= limits.max_buffered:
        raise engine.Finding(f"{buffered} octets buffered, the limit is {limits.max_buffered}")


@dataclass
class Closure:
    """Tracks one association's end: once closed and drained, nothing more may come out."""

    drained: bool = False

    def step(self, alive: bool, pending: bool, output: bytes, events: Sequence[object]) -> None:
        """After each step: what the association sent and reported, whether it is alive, and
        whether output is still waiting (has_output)."""
        if self.drained and (output or events):
            raise engine.Finding(f"after closing: {len(output)} octets and events {events!r}")
        if not alive and not pending:
            self.drained = True
