"""Octets an association has to send, in order, with long calls produced a few fragments at a time.

A call larger than one fragment is queued as a generator of its fragments. Fragments are made (and,
at packet level and above, signed or sealed) only when the adapter asks for octets, a bounded
amount at a time: the first fragments of a 16 MiB call are on the wire, and the peer is verifying
them, while the later ones are still being made. Signing happens in the order the octets leave, so
sequence numbers stay in wire order, and one call's fragments stay together (nothing queued after
a call is sent before its last fragment).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator

from ..ndr.pieces import EncodedStub, runs
from ..pdu.constants import PFC, PType
from ..pdu.header import HEADER_SIZE, pack_header
from .budget import Account
from .security import SEC_TRAILER, AuthState, protect

__all__ = ["FLUSH_BUDGET", "Fragment", "Outbox", "call_fragments"]

# Octets an adapter takes per turn of its event loop: sixteen 64 KiB fragments that carry views of
# the caller's buffers (each costs a header and a vectored write's share: 1 MiB rather than 256 KiB
# per turn, fewer turns of the loop between writes, measured 1,576 vs 1,527 MiB/s of 16 MiB echo as
# the mean of four alternating runs), or a quarter of that of fragments made before they are
# written (signed or sealed: each costs a pass of cryptography, and the peer should start
# verifying early). Small enough that one connection's long answer does not keep the loop from
# others for long (a 1 MiB write is about 0.2 ms).
FLUSH_BUDGET = 1024 * 1024
_MADE = 4  # a made fragment's octets count this many times against the budget

Fragment = bytes | tuple[bytes | memoryview, ...]
"""A fragment as made: its octets, or its header followed by views of the stub it carries."""


class Outbox(deque[bytes | Iterator[Fragment]]):
    """A queue of ready octets (bytes) and lazily made fragment runs; true while anything waits. A
    deque underneath, so the per-call checks cost no Python call.

    A run yields each fragment as bytes, or as (header, stub views...) when the stub is the
    caller's buffers: those go out by a vectored write, the payload never copied into a fragment.
    """

    __slots__ = ()

    def append_lazily(
        self, fragments: Iterator[Fragment], held: int = 0, account: Account | None = None
    ) -> None:
        """Queue a run of fragments, made as they are taken; ``held`` octets of ``account`` (the
        stub they carry, already taken from the budget) go back once the run is sent or dropped."""
        self.append(fragments if account is None else _Held(fragments, held, account))

    def discard(self) -> None:
        """Drop everything still to send (the peer is gone: nobody will read it), and give back what
        the runs held."""
        for item in self:
            if isinstance(item, _Held):
                item.close()
        self.clear()

    def octets(self, limit: int | None = None) -> bytes:
        """What :meth:`take` takes, as one bytes (b"" when nothing waits)."""
        if not self:
            return b""
        data = self.take(limit)
        return data if isinstance(data, bytes) else b"".join(data)

    def take(self, limit: int | None = None) -> bytes | list[bytes | memoryview]:
        """Up to about ``limit`` octets (None: everything), whole fragments only, in order: one
        bytes, or a list of pieces to write one after the other (``writelines``)."""
        items = self
        if len(items) == 1 and type(items[0]) is bytes:  # made eagerly: whole, and small
            return items.popleft()  # type: ignore[return-value]
        out: list[bytes | memoryview] = []
        size = 0
        while items and (limit is None or size < limit):
            item = items[0]
            if isinstance(item, bytes):
                items.popleft()
                out.append(item)
                size += len(item)
                continue
            fragment = next(item, None)
            if fragment is None:
                items.popleft()
                continue
            if isinstance(fragment, tuple):
                out += fragment
                size += sum(map(len, fragment))
            else:
                out.append(fragment)
                size += _MADE * len(fragment)
        return out


class _Held:
    """A run of fragments whose stub is counted against a connection's memory budget until the
    run ends or is dropped (budget.py)."""

    __slots__ = ("account", "held", "run")

    def __init__(self, run: Iterator[Fragment], held: int, account: Account) -> None:
        self.run = run
        self.held = held
        self.account: Account | None = account

    def __iter__(self) -> _Held:
        return self

    def __next__(self) -> Fragment:
        try:
            return next(self.run)
        except StopIteration:
            self.close()
            raise

    def close(self) -> None:
        account = self.account
        if account is not None:
            self.account = None
            account.give(self.held)


def call_fragments(
    ptype: PType,
    call_id: int,
    stub: EncodedStub,
    max_frag: int,
    body: Callable[[int], bytes],
    auth: AuthState | None,
    flags: int = 0,
) -> Iterator[Fragment]:
    """The fragments of one request or response (C706 12.6.4.9/10; both roles), made as they are
    taken: each at most ``max_frag`` octets, its body header ``body(alloc_hint)`` (the octets of the
    stub that remain), signed or sealed when ``auth`` is given (MS-RPCE 3.3.1.5.2.2), else its stub
    the caller's own buffers. ``flags`` go on every fragment (PFC_OBJECT_UUID); the first and last
    get theirs. Stub octets per fragment are a multiple of 8 (16 when protected: the auth padding)."""
    head = HEADER_SIZE + len(body(0))
    if auth is not None:
        room = (max_frag - head - SEC_TRAILER - auth.signature_size()) & ~15
    else:
        room = (max_frag - head) & ~7
    total = len(stub)
    offset = 0
    for n, run in runs(stub, room):
        these = flags | (PFC.FIRST_FRAG if offset == 0 else 0) | (PFC.LAST_FRAG if offset + n >= total else 0)
        header = body(total - offset)
        if auth is not None:
            yield protect(auth, ptype, these, call_id, header, b"".join(run))
        else:
            yield (pack_header(ptype, these, head + n, 0, call_id) + header, *run)  # the stub as it is
        offset += n
