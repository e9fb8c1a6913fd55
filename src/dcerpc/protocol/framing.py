"""Where received octets land, cut into fragments: the part both association roles share.

Shaped like asyncio's BufferedProtocol, without I/O: the adapter asks :meth:`Inbox.get_buffer`
where the next read goes, the transport reads into it, and the association is told how many octets
arrived. Headers and small fragments land in a scratch buffer and are read in place. The stub of a
long unprotected call's fragment goes straight into that call's own buffer instead (``direct``), so
a 16 MiB call is written once, by the kernel, where it will be decoded.

    inbox.fill += n                        # a read into get_buffer() of n octets
    buf, pos = inbox.buf, inbox.start
    while <a whole fragment of ``length`` octets is at pos (pos + length <= inbox.fill)>:
        fragment = fragment_at(buf, pos, length)   # or read its fields in place
        pos += length
    inbox.keep(pos, length)                # the start of an incomplete fragment stays
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ..pdu.constants import PFC
from ..pdu.header import DREP_LE, HEADER_SIZE
from .budget import Account
from .limits import Limits

__all__ = [
    "CALL_HEADER",
    "DIRECT_MIN",
    "DREP_LE_INT",
    "HINT_TRUST",
    "PLAIN_HEAD",
    "SPARE_MIN",
    "Inbox",
    "Partial",
    "Receiver",
    "continuation",
    "fragment_at",
    "room_for",
]

DIRECT_MIN = 4096
"""The shortest fragment whose stub is read straight into its call's buffer (shorter ones are read
in the scratch and copied: not worth a read of their own)."""
PLAIN_HEAD = struct.Struct("<BBBBIHHIIHH")
"""A request's or response's first 24 octets read at once, as little-endian (C706 12.6.4.9/10):
version, minor version, PDU type, flags, data representation, frag_length, auth_length, call_id,
alloc_hint, p_cont_id, then a request's opnum (a response's cancel_count and a reserved octet).
What the fast paths of both roles read a one-fragment call by (one unpack costs less than the
dozen single octets it replaces)."""
DREP_LE_INT = 0x10  # DREP_LE, read as PLAIN_HEAD reads it
_AHEAD = 24  # a request's or response's header (C706 12.6.4.9/10): enough to direct its stub
_SCRATCH = 16 * 1024  # a connection's scratch to begin with; grows to its largest held fragment
_MIN_READ = 2048  # less room than this after the held octets: move them to the front first


class Inbox:
    """A connection's receive buffer (see the module docstring)."""

    __slots__ = ("ahead", "buf", "dest", "dest_end", "dest_pos", "fill", "start", "view")

    def __init__(self) -> None:
        self.buf = bytearray(_SCRATCH)
        self.view = memoryview(self.buf)
        self.start = 0  # the first octet not yet taken
        self.fill = 0  # the end of what has arrived
        self.dest: memoryview | None = None  # a call's buffer, while a fragment's stub goes there
        self.dest_pos = 0
        self.dest_end = 0
        self.ahead = 0  # octets past dest_end a read may also put in dest (the next header)

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Where the next read goes (never empty). Shaped as asyncio.BufferedProtocol.get_buffer,
        so an adapter may hand this bound method to its transport directly (the hint is not
        needed: the inbox knows what comes next)."""
        if self.dest is not None:
            return self.dest[self.dest_pos : self.dest_end + self.ahead]
        return self.view[self.fill :] if self.fill else self.view

    @property
    def missing(self) -> int:
        """Octets still to arrive before the fragment being received is whole; 0 when none is
        partly here (everything that arrived was taken). Before its frag_length has arrived
        (C706 12.6.3.1: octets 8-9), the least it may still need: the rest of a common header.

        For an adapter's deadline (a PDU whole within N seconds of its first octet), read when a
        timer fires, never per read."""
        if self.dest is not None:
            return max(self.dest_end - self.dest_pos, 1)
        start = self.start
        held = self.fill - start
        if held <= 0:
            return 0
        if held < 10:
            return HEADER_SIZE - held
        buf = self.buf
        if buf[start + 4] & DREP_LE_INT:
            length = buf[start + 8] | buf[start + 9] << 8
        else:
            length = buf[start + 8] << 8 | buf[start + 9]
        return max(length - held, 1)

    def direct(self, dest: memoryview, pos: int, end: int) -> None:
        """Send the next ``end - pos`` octets to ``dest[pos:end]``, then back to the scratch.

        The read that ends the fragment may also bring the start of the next PDU, up to a
        request's header (_AHEAD), into ``dest`` after ``end`` where there is room: the place
        the next fragment's stub goes. It is moved to the scratch when the fragment is done, so
        a call of many long fragments takes one read per fragment, not one for the stub and
        another for the next header and as much of the next stub as the scratch holds."""
        self.dest, self.dest_pos, self.dest_end = dest, pos, end
        self.ahead = min(len(dest) - end, _AHEAD)
        self.start = self.fill = 0

    def direct_into(
        self, data: bytearray, start: int, buf: bytearray, stub_at: int, end: int, n: int
    ) -> None:
        """A fragment whose ``n`` stub octets begin at ``buf[stub_at]`` and go to ``data[start:]``:
        what has arrived (up to ``end``) is copied there, the rest will be read there."""
        dest = memoryview(data)
        here = end - stub_at
        dest[start : start + here] = memoryview(buf)[stub_at:end]
        self.direct(dest, start + here, start + n)

    def direct_done(self, n: int) -> bool:
        """``n`` octets arrived in the direct destination; True when the fragment's stub is all
        there (whatever came after it is then at the start of the scratch)."""
        pos = self.dest_pos = self.dest_pos + n
        end = self.dest_end
        if pos < end:
            return False
        assert self.dest is not None
        if pos > end:
            self.buf[: pos - end] = self.dest[end:pos]
        self.fill = pos - end
        self.dest = None
        return True

    def keep(self, pos: int, need: int) -> None:
        """Octets before ``pos`` are taken; what follows is the start of a fragment of ``need``
        octets (at most the negotiated fragment size, checked by the caller), kept until the
        rest arrives, with room after it for that rest."""
        fill = self.fill
        if pos >= fill:
            self.start = self.fill = 0
            return
        size = len(self.buf)
        if pos + need <= size and size - fill >= _MIN_READ:
            self.start = pos
            return
        held = bytes(self.view[pos:fill])  # a copy: the source and destination may overlap
        if need + _MIN_READ > size:
            self.buf = bytearray(max(need + _MIN_READ, 2 * size))
            self.view = memoryview(self.buf)
        self.buf[: len(held)] = held
        self.start, self.fill = 0, len(held)

    def push(self, data: bytes | memoryview) -> int:
        """Copy up to ``len(data)`` octets into :meth:`get_buffer`; how many were taken (for
        callers that have octets rather than a transport that reads into buffers)."""
        room = self.get_buffer()
        n = min(len(room), len(data))
        room[:n] = memoryview(data)[:n]
        return n


CALL_HEADER = 24
"""A request's or response's header (C706 12.6.4.9/10): common header, alloc_hint, p_cont_id and
opnum (a response's cancel_count and a reserved octet): where its stub starts without an object."""
_CALL_HINT = struct.Struct("<II")  # call_id, then alloc_hint, at offset 12 of a request or response


@dataclass(slots=True)
class Partial:
    """A call's stub being reassembled from its fragments (a request or a response: both roles)."""

    data: bytearray = field(default_factory=bytearray)  # the stub so far, then room for the rest
    size: int = 0
    last: bool = False  # the fragment whose stub is arriving directly is the call's last
    refused: bool = False  # refused for want of memory (budget.py): its other fragments are discarded


P = TypeVar("P", bound="Partial")


class Receiver(Generic[P]):
    """What both association roles do with reads: where they go, the fragments in them, and the
    calls being reassembled from them (one piece for requests and responses, parameterized by the
    role's limits and by its hooks).

    Subclasses say whether they are :attr:`alive`, cut the scratch into fragments
    (:meth:`_fragments`), say which fragment's stub may be read straight into its call's buffer
    (:meth:`_direct_partial`, :meth:`_direct_may_continue`), refuse a call that is too large
    (:meth:`_too_large`) and take a reassembled one (:meth:`_reassembled_call`)."""

    # Slotted, as both roles are: an association is read a few dozen times per call, and an instance
    # dict of more than 30 keys (Python 3.11's shared-key limit) makes every one of those reads
    # slower (measured: 1.9k instructions per call for one attribute too many).
    __slots__ = (
        "_buffered",
        "_calls",
        "_direct",
        "_direct_call",
        "_reported",
        "_spare",
        "account",
        "backlog",
        "inbox",
        "limits",
    )

    inbox: Inbox
    limits: Limits
    _DIRECT_START: bytes = b""  # version 5.0 and the PDU type of the fragments read directly
    _DIRECT_NOT_FLAGS = 0  # flags a continuation read directly may not carry

    def _init_calls(self) -> None:
        # whole PDUs were left in the inbox for a later turn (a role's _fragments stopped at
        # Limits.pdus_per_turn): the adapter stops reading and calls buffer_updated(0) next turn
        self.backlog = False
        self._spare: bytearray | None = None  # the last long call's buffer, for the next (SPARE_MIN)
        self._calls: dict[int, P] = {}  # calls being reassembled, by call_id
        self._buffered = 0  # octets reserved for them, all together (bounded by max_buffered)
        self._direct_call = 0  # the call whose fragment's stub is arriving in its own buffer
        self._direct: P | None = None  # and its record
        # the process's memory budget (budget.py), when the owner gives one, and what of it the
        # buffers here hold (the reassembly buffers and the spare; the outbox draws on it too)
        self.account: Account | None = None
        self._reported = 0

    @property
    def alive(self) -> bool:
        raise NotImplementedError

    @property
    def buffered(self) -> int:
        """Octets held for calls still being reassembled (their buffers' room, all together)."""
        return self._buffered

    def receive_data(self, data: bytes) -> None:
        """Process received octets (for callers that have octets rather than a transport that
        reads into :meth:`get_buffer`)."""
        view = memoryview(data)
        while view and self.alive:
            n = self.inbox.push(view)
            view = view[n:]
            self.buffer_updated(n)
            while self.backlog and self.alive:  # no loop to take turns with: all of it now
                self.take_backlog()

    def take_backlog(self) -> None:
        """Handle what :attr:`backlog` left in the inbox (another turn's worth, which may leave
        a backlog again)."""
        self.backlog = False
        self.buffer_updated(0)

    def get_buffer(self) -> memoryview:
        """Where the transport's next read goes (asyncio.BufferedProtocol.get_buffer)."""
        return self.inbox.get_buffer()

    def buffer_updated(self, n: int) -> None:
        """``n`` octets were read into the last :meth:`get_buffer`: process every whole fragment."""
        inbox = self.inbox
        if inbox.dest is not None:
            if not inbox.direct_done(n):
                return
            if inbox.fill == _AHEAD and self._direct_next(inbox.buf):
                if not self.alive:  # refused (too large): the association closed
                    inbox.start = inbox.fill = 0
                return
            self._direct_fragment_done()
            if not inbox.fill:
                return
            n = 0  # the next PDU's first octets came with the stub: at the start of the scratch
        fill = inbox.fill = inbox.fill + n
        rest = self._fragments(inbox.buf, inbox.start, fill)
        if rest is not None:
            pos, need = rest
            if pos >= fill:  # all taken (or, the association closed, all discarded)
                inbox.start = inbox.fill = 0
            else:
                inbox.keep(pos, need)
        elif not self.alive:
            # a long fragment's call refused as too large at its header: the association closed,
            # nothing goes anywhere any more, and the next read needs room (an empty buffer is a
            # fatal error to the transport)
            inbox.start = inbox.fill = 0
            inbox.dest = None

    def _fragments(self, buf: bytearray, pos: int, end: int) -> tuple[int, int] | None:
        """Handle the whole fragments in ``buf[pos:end]``; where the rest starts and the length of
        the fragment it begins (None: that fragment's stub now goes to its call's buffer). Once
        the association is closed, ``(end, 0)``: whatever else arrived is discarded."""
        raise NotImplementedError

    # reassembly (both roles) ------------------------------------------------------------------

    def _reserve(self, cid: int, partial: P, n: int, hint: int) -> bool:
        """Make room for ``n`` more stub octets of call ``cid`` (False: it was refused as too large,
        by :meth:`_too_large`). ``hint`` is the peer's alloc_hint: a long call gets room for all of
        it early (within what room_for trusts and the limits allow), so it is seldom moved.

        Limits: max_call_size per call, max_buffered for all the calls being received together:
        a peer cannot make us hold more than it sends, nor more than these however it sends it."""
        limits = self.limits
        need = partial.size + n
        have = len(partial.data)
        # A fragment announcing more than a call may be (its alloc_hint counts what remains) is
        # refused as the call it announces, before its run of fragments is taken in: Samba does
        # so for more than its 4 MiB (dcesrv_core.c, "up to 4 MByte are allowed by all
        # fragments"), and CVE-2022-26809's exploit is such a run announcing ~2^32 octets.
        announced = partial.size + hint
        if need <= have and announced <= limits.max_call_size:
            return True
        if (
            need > limits.max_call_size
            or announced > limits.max_call_size
            or self._buffered + need - have > limits.max_buffered
        ):
            self._drop(cid)
            self._too_large(cid, partial)
            return False
        room = room_for(need, have, announced, limits.max_call_size)
        most = limits.max_buffered - self._buffered + have
        size = min(room, most)
        account = self.account
        if account is not None:
            # asked before the memory is committed; a new buffer is made before the old one goes
            if not account.take(size):
                if size == need or not account.take(need):  # the least it needs, then
                    self._out_of_memory(cid, partial)
                    return False
                size = need
            self._reported += size
        partial.data = self._call_buffer(partial.data, partial.size, size, most)
        self._buffered += len(partial.data) - have
        self._settle()
        return True

    def _settle(self) -> None:
        """Tell the budget what the buffers here hold now (after it was asked, or as they shrink)."""
        account = self.account
        if account is None:
            return
        spare = self._spare
        now = self._buffered + (len(spare) if spare is not None else 0)
        if now < self._reported:
            account.give(self._reported - now)
        elif now > self._reported:
            account.take(now - self._reported)  # a reused spare longer than asked: already held
        self._reported = now

    def _out_of_memory(self, cid: int, partial: P) -> None:
        """The budget refused call ``cid`` the memory it needs: its buffer goes, the fragments of it
        still to come are discarded (``refused``), and the role answers it (the connection stays)."""
        if self._calls.get(cid) is partial:
            self._buffered -= len(partial.data)
        partial.data = bytearray()
        partial.size = 0
        partial.refused = True
        self._calls[cid] = partial
        if partial is self._direct:
            self._direct = None
        self._settle()
        self._refused_call(cid, partial)

    def _append(self, cid: int, partial: P, stub: bytes | memoryview, hint: int) -> bool:
        """A fragment's stub, added to its call (False: refused as too large)."""
        n = len(stub)
        if not self._reserve(cid, partial, n, hint):
            return False
        partial.data[partial.size : partial.size + n] = stub
        partial.size += n
        return True

    def _reassembled(self, cid: int, partial: P) -> None:
        """The last fragment of a call of several has arrived: its buffer becomes the stub."""
        del self._calls[cid]
        self._buffered -= len(partial.data)
        stub = self._call_stub(partial.data, partial.size)
        self._settle()
        self._reassembled_call(cid, partial, stub)

    def _drop(self, cid: int) -> None:
        """Call ``cid`` is no longer received (abandoned, answered otherwise): what it held goes."""
        partial = self._calls.pop(cid, None)
        if partial is not None:
            self._buffered -= len(partial.data)
            if partial is self._direct:
                self._direct = None
            self._settle()

    def _forget_calls(self) -> None:
        """Every call being received is dropped, and what it held, the spare buffer too (the
        association is closing)."""
        self._calls.clear()
        self._buffered = 0
        self._direct = None
        self._spare = None
        self._settle()

    def _direct_fragment(self, buf: bytearray, pos: int, length: int, end: int) -> bool:
        """A long unprotected fragment whose header has arrived: take its stub from here on straight
        into its call's buffer (False: leave it to the general path, which finds and answers
        whatever is wrong with it). True also when the call was refused as too large."""
        cid, hint = _CALL_HINT.unpack_from(buf, pos + 12)
        flags = buf[pos + 3]
        partial = self._direct_partial(buf, pos, cid, flags)
        if partial is None:
            return False
        n = length - CALL_HEADER
        if not self._reserve(cid, partial, n, hint):
            # refused as too large, as the general path would: the association closes; or for want
            # of memory: the general path takes this fragment whole, and discards it
            return not self.alive
        self._calls[cid] = partial
        self.inbox.direct_into(partial.data, partial.size, buf, pos + CALL_HEADER, end, n)
        partial.size += n
        partial.last = bool(flags & PFC.LAST_FRAG)
        self._direct_call = cid
        self._direct = partial
        return True

    def _direct_next(self, head: bytearray) -> bool:
        """``head`` (a header's worth of octets) came in with the end of a long fragment's stub:
        when it is the same call's next long fragment, take its stub directly too (False: the
        general path looks at it, after :meth:`_direct_fragment_done`)."""
        partial = self._direct
        cid = self._direct_call
        if partial is None or partial.last or not self._direct_may_continue(cid):
            return False
        found = continuation(head, self._DIRECT_START, cid, self._fragment_limit(), self._DIRECT_NOT_FLAGS)
        if found is None:
            return False
        flags, length, hint = found
        n = length - CALL_HEADER
        if not self._reserve(cid, partial, n, hint):
            return not self.alive  # as in _direct_fragment
        self._counted()
        self.inbox.direct_into(partial.data, partial.size, head, CALL_HEADER, CALL_HEADER, n)
        partial.size += n
        partial.last = bool(flags & PFC.LAST_FRAG)
        return True

    def _direct_fragment_done(self) -> None:
        """The stub of a fragment taken by :meth:`_direct_fragment` has all arrived."""
        cid = self._direct_call
        partial = self._calls.get(cid)
        if partial is not None and partial.last and self._direct_may_continue(cid):
            self._reassembled(cid, partial)

    # the role's hooks ----------------------------------------------------------------------------

    def _direct_partial(self, buf: bytearray, pos: int, cid: int, flags: int) -> P | None:
        """The record a long fragment's stub may go to directly (a new one for a first fragment),
        or None: the general path takes it."""
        raise NotImplementedError

    def _direct_may_continue(self, cid: int) -> bool:
        """Call ``cid`` is still being received directly (not closed, not abandoned)."""
        raise NotImplementedError

    def _fragment_limit(self) -> int:
        """The longest fragment this role takes."""
        raise NotImplementedError

    def _counted(self) -> None:
        """A fragment was taken by the direct path (the server counts PDUs)."""

    def _too_large(self, cid: int, partial: P) -> None:
        """Refuse call ``cid`` as larger than the limits let it be (and close)."""
        raise NotImplementedError

    def _reassembled_call(self, cid: int, partial: P, stub: memoryview) -> None:
        """A call of several fragments is whole."""
        raise NotImplementedError

    def _refused_call(self, cid: int, partial: P) -> None:
        """Answer call ``cid``, refused for want of memory (:meth:`_out_of_memory`)."""
        raise NotImplementedError

    # buffers -----------------------------------------------------------------------------------

    def _call_buffer(self, data: bytearray, used: int, size: int, most: int) -> bytearray:
        """A call's buffer of at least ``size`` and at most ``most`` octets, holding the first
        ``used`` of ``data``: the spare if it is that large and nothing uses it any more, else a new
        one (growing ``data`` in place would zero the new part twice over, and fails while a view
        of it is about)."""
        spare = self._spare
        if spare is not None and size <= len(spare) <= most and _unviewed(spare):
            self._spare = None
            new = spare  # not zeroed: only the octets written to it are ever handed out
        else:
            new = bytearray(size)
        if used:
            new[:used] = memoryview(data)[:used]
        return new

    def _call_stub(self, data: bytearray, size: int) -> memoryview:
        """A reassembled call's stub: a view of its buffer, which is kept for the next long call
        once that view is let go."""
        if len(data) >= SPARE_MIN:
            self._spare = data
        return memoryview(data)[:size]


SPARE_MIN = 1 << 20
"""A call buffer this long is kept, once its call is done with it, for the next long call on the
connection: a new one costs a pass over its memory to zero it (about as much as the kernel's copy
into it). One per connection, at most the size the limits let a call buffer be, and it goes with
the connection; shorter buffers cost little to make."""

HINT_TRUST = 32
"""alloc_hint is taken at its word up to this many times the octets that have arrived. A call's
buffer is committed memory as soon as it is made (zeroed), so trusting the hint outright would let
a peer that sends one 4 KiB fragment claiming 32 MiB make us hold 32 MiB per call and connection;
this bounds that amplification (max_buffered still bounds the total), while an honest long call
gets its whole buffer after a few fragments (16 MiB in 64 KiB fragments: 2 MiB, then 16 MiB)."""


def room_for(need: int, have: int, hint: int, limit: int) -> int:
    """The size to give a call's buffer that holds ``have`` octets of room and must now hold
    ``need`` (> have): at least double, the peer's ``hint`` as far as it is trusted, never more
    than ``limit``."""
    return min(max(need, 2 * have, min(hint, HINT_TRUST * need)), limit)


_HEAD = struct.Struct("<3sB4sHHII")  # a request's or response's header up to its alloc_hint


def continuation(
    head: bytearray, start: bytes, call_id: int, longest: int, not_flags: int
) -> tuple[int, int, int] | None:
    """The flags, frag_length and alloc_hint of the header in ``head`` when it is the next long
    fragment of call ``call_id`` as the fragment before was (its first three octets ``start``:
    version 5.0 and the PDU type; little-endian; no verifier; not a first fragment, nor any of
    ``not_flags``; at most ``longest`` octets), else None: the general path looks at it."""
    vpt, flags, drep, length, auth_length, cid, hint = _HEAD.unpack_from(head)
    if (
        vpt != start
        or flags & (PFC.FIRST_FRAG | not_flags)
        or cid != call_id
        or drep != DREP_LE
        or auth_length
        or length < DIRECT_MIN
        or length > longest
    ):
        return None
    return flags, length, hint


def _unviewed(buf: bytearray) -> bool:
    """No view of ``buf`` is held: the stub handed out for its call (or a slice of it) is gone.
    Resizing a bytearray fails while a view of it exists; this shrinks it by one octet and grows
    it back, both within its allocation, so it costs no copy whatever its size."""
    try:
        del buf[-1:]
    except BufferError:
        return False
    buf.append(0)
    return True


def fragment_at(buf: bytes | bytearray, pos: int, length: int) -> bytes:
    """The fragment at ``pos`` as bytes of its own (the read itself when it is exactly that)."""
    if type(buf) is bytes:
        return buf if pos == 0 and length == len(buf) else buf[pos : pos + length]
    return bytes(memoryview(buf)[pos : pos + length])
