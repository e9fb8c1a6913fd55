"""What one connection may cost the server, whatever the peer sends. Every number stops an attack."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ndr.compiler import Limits as NdrLimits

__all__ = ["Limits"]

# C706 12.6.3.1 / MS-RPCE 3.3.3.5.4: every implementation must accept 1432-octet fragments.
MIN_FRAGMENT = 1432


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-connection bounds, with safe defaults (all configurable).

    Attributes:
        max_fragment: the largest fragment we receive and offer (max_recv_frag / max_xmit_frag).
            A peer announcing a larger frag_length is cut off before we buffer it: stops a client
            from making us hold gigabytes waiting for one "fragment". We offer 65528 (the largest
            8-aligned size the 16-bit frag_length allows) and take whatever smaller size the peer
            announces (Windows and Samba: 5840); fewer fragments mean fewer signatures at privacy.
        max_call_size: the largest reassembled request stub. Stops CVE-2022-26809-shaped floods,
            endless fragments of one call without PFC_LAST_FRAG.
        max_buffered: octets of partially reassembled calls held per connection, all calls together.
            Stops many concurrent half-sent calls from adding up past max_call_size.
        max_outstanding_calls: calls received but not yet answered on one connection. Stops a client
            from queueing unbounded work with pipelined requests; the excess gets server_too_busy.
        max_contexts: presentation contexts per association (bind + alter_context). Stops
            table growth from alter_context loops.
        idle_timeout: seconds a connection may stay silent with no call outstanding (the adapter's
            clock). Stops idle sockets from holding connection slots.
        max_connections: concurrent connections per server. Stops descriptor exhaustion.
        ndr: bounds on decoding one stub (elements, pointer depth).
    """

    max_fragment: int = 65528
    max_call_size: int = 32 * 1024 * 1024
    max_buffered: int = 64 * 1024 * 1024
    max_outstanding_calls: int = 128
    max_contexts: int = 64
    idle_timeout: float = 300.0
    max_connections: int = 1024
    ndr: NdrLimits = field(default_factory=NdrLimits)

    def __post_init__(self) -> None:
        if not MIN_FRAGMENT <= self.max_fragment <= 0xFFFF:
            raise ValueError(f"max_fragment must be between {MIN_FRAGMENT} and 65535")
