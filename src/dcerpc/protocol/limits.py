"""What one connection may cost the server, whatever the peer sends. Every number stops an attack."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ndr.compiler import Limits as NdrLimits

__all__ = ["REFUSED_OCTETS", "Limits"]

# C706 12.6.3.1 / MS-RPCE 3.3.3.5.4: every implementation must accept 1432-octet fragments.
MIN_FRAGMENT = 1432

REFUSED_OCTETS = 16 * 1024
"""The octets of a call refused as too large (over ``max_call_size`` or ``max_buffered``) that
cost its source one token of ``control_rate``: a refused 32 MiB flood takes 2,048 (20 s of the
default rate), so one source cannot make the server receive 32 MiB for nothing every half second
(CVE-2022-26809's shape, repeated on new connections: about 7% of the server's core at 50 MB/s,
measured, against 1% paced). An honest call is never refused for its size."""


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
        idle_timeout: seconds a connection may go without a whole PDU arriving while no call of it
            is running (the adapter's clock; 0: never). Stops idle sockets from holding connection
            slots; octets that never complete a PDU do not count as activity, so trickling does not
            keep a slot either.
        bind_timeout: seconds from accept within which the association must be bound (leave
            AWAIT_BIND; 0: no limit). Stops sockets that connect and never bind, or bind a few
            octets at a time, from holding connection slots: a slot is only kept by a peer that
            speaks RPC. MS-RPCE 3.3.2.7.1 leaves a transport's connection time-out to the
            implementation.
        pdu_timeout: seconds within which a PDU must be whole once its first octet has arrived
            (0: no limit). Stops slow-trickle attacks (slowloris): one octet every few seconds
            keeps a fragment forever half received, and its connection slot held, without ever
            being idle. A 64 KiB fragment in 30 s asks for about 2 KB/s.
        write_timeout: seconds our write buffer may stay full without the peer reading any of it
            (0: no limit). Stops a client that asks for answers and never reads them from holding
            its slot and those answers (drawn from the memory budget) for ever: backpressure stops
            the other deadlines from blaming it for what it does not send.
        max_connections: concurrent connections per server. Stops descriptor exhaustion.
        max_connections_per_source: concurrent connections one peer address may hold (IPv4 and
            IPv6; Unix-socket peers are local and not counted). Stops one client from taking every
            slot of max_connections and locking the others out; beyond it, its new connections are
            refused at accept.
        handshake_rate: security contexts one source address may start per second, with
            ``handshake_burst`` saved up (0: no limit; local peers are not counted). A handshake
            costs the server a provider's work (an NTLM challenge, a Kerberos ticket check), its
            messages cost the client nothing: stops one address from spending the server's CPU on
            alter_contexts that each start one. Over it: bind_nak temporary_congestion, or for an
            alter_context fault nca_s_server_too_busy (did not execute; the connection stays).
            50 a second: an NTLM server context costs about 0.6 ms of CPU (pyspnego), so one
            address takes at most about 3% of the server's core this way (200 let issue 14's
            ``ntlm_contexts`` class take 12-16%); the burst of 1,000 covers a host's start-up.
        control_rate: PDUs other than requests (bind, alter_context, auth3, co_cancel,
            orphaned) one source address may send per second, ``control_burst`` saved up (0: no
            limit; local peers are not counted). An honest client sends a few per connection;
            each costs the server more than it costs the sender (a context list to negotiate, a
            security context to look up). Over it, the connection that overdrew is not read until
            the source's bucket refills (at most 10 s at a time): one address's flood of them
            cannot take the event loop from every other client. 100 a second, 2,000 saved up:
            a control PDU costs the server 0.1-1 ms (issue 14's ``co_cancel`` class, a 40 KB call
            behind each co_cancel, took 10% of the core at 200 a second, 8% at 100 over 30 s,
            most of that the burst). Also paid from it: the octets of a call refused as too
            large (``REFUSED_OCTETS``).
        control_octets: the octets of a control PDU one token of ``control_rate`` pays for (0: a
            token per PDU whatever its length). A PDU takes a token, and one more for each
            ``control_octets`` past the first: what a control PDU costs the server grows with its
            length (an alter_context of 61 KB lists 3,000 syntaxes to parse, 3-5 ms of CPU that
            every other call waits behind, against a few µs for a short bind), its sender's cost
            does not. Stops a flood of long context lists (issue 14's ``alter_contexts`` class:
            12 contexts of 254 random transfer syntaxes each, one after another) from stalling
            the loop at the control rate's PDU count: 240 tokens each, so 8 of them exhaust the
            burst and fewer than one a second follow. An honest bind or alter_context takes one
            token (under 256 octets) or a few (an NTLM auth3: 2; a Kerberos ticket: 6-10).
        pdus_per_turn: PDUs one connection's read is handled for before the others' turn (0: no
            limit). The rest of what it read waits in its inbox, its reads stop, and they resume
            once that is handled, a turn of the event loop at a time: round-robin between
            connections. Stops one connection that pipelines thousands of short PDUs into each
            read (64 KiB of co_cancels is 4,096 of them; uvloop reads up to 32 times per
            callback) from holding every other connection's call behind them; a connection sends
            at most this many PDUs ahead of the others per turn however fast it sends.
        max_context_handles: context handles one association group may hold open (its calls
            that would open more fail with rpc_s_out_of_resources). Stops handle tables growing
            without end; groups themselves are bounded by connections (one bind makes at most one).
        ndr: bounds on decoding one stub (elements, pointer depth).

    The octets all connections hold together are bounded by the process's memory budget
    (``protocol.budget``), not here.
    """

    max_fragment: int = 65528
    max_call_size: int = 32 * 1024 * 1024
    max_buffered: int = 64 * 1024 * 1024
    max_outstanding_calls: int = 128
    max_contexts: int = 64
    idle_timeout: float = 300.0
    bind_timeout: float = 10.0
    pdu_timeout: float = 30.0
    write_timeout: float = 60.0
    max_connections: int = 1024
    max_connections_per_source: int = 64
    max_context_handles: int = 4096
    handshake_rate: float = 50.0
    handshake_burst: int = 1000
    control_rate: float = 100.0
    control_burst: int = 2000
    control_octets: int = 256
    pdus_per_turn: int = 64
    ndr: NdrLimits = field(default_factory=NdrLimits)

    def __post_init__(self) -> None:
        if not MIN_FRAGMENT <= self.max_fragment <= 0xFFFF:
            raise ValueError(f"max_fragment must be between {MIN_FRAGMENT} and 65535")
        for name in ("idle_timeout", "bind_timeout", "pdu_timeout", "write_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (no limit) or positive")
        if self.control_octets < 0 or self.pdus_per_turn < 0:
            raise ValueError("control_octets and pdus_per_turn must be 0 (no limit) or positive")
        if self.max_connections_per_source < 1:
            raise ValueError("max_connections_per_source must be at least 1")
