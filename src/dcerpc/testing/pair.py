"""A client and a server association wired in memory: the protocol, sans-IO, with no loop at all.

    pair = AssociationPair(interfaces=[Echo])
    pair.bind(Echo)                                  # bind, bind_ack (and any auth legs)
    call_id = pair.client.request(0, 0, Echo.operation_named("AddOne").encode_request(41))
    moved = pair.to_server(chunks=[7])               # the request, in reads of 7 octets
    (call,) = moved.server_events_of(CallReceived)
    pair.server.respond(call.call_id, b"*\\0\\0\\0")
    (answer,) = pair.to_client().client_events_of(ResponseReceived)

    events = pair.feed_client(hostile_octets)        # as if the server had sent them

Theory of operation. The two are a :class:`~dcerpc.protocol.client.ClientAssociation` and a
:class:`~dcerpc.protocol.server.ServerAssociation` (made here, or given). A move takes what one side
has queued (``data_to_send()``), hands it to the other's ``receive_data`` (all at once, or in reads
of the chosen sizes, cycling), and returns the octets with the events both sides produced since they
were last asked (:class:`Moved`). Nothing is scheduled and nothing waits: each move is one
deterministic step, which is what protocol tests and hostile-input tests need.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ..interface import Interface
from ..pdu.co import Pdu, parse
from ..pdu.header import frame_length
from ..pdu.syntax import SyntaxId
from ..protocol.client import ClientAssociation
from ..protocol.events import BindAccepted, Event
from ..protocol.groups import GroupTable
from ..protocol.limits import Limits
from ..protocol.server import ServerAssociation

__all__ = ["AssociationPair", "Moved"]

E = TypeVar("E", bound=Event)

_ROUNDS = 16  # moves each way :meth:`AssociationPair.settle` makes before it gives up


@dataclass(frozen=True, slots=True)
class Moved:
    """What one move carried, and the events each side produced since they were last asked."""

    octets: bytes
    client_events: list[Event]
    server_events: list[Event]

    @property
    def pdus(self) -> list[Pdu]:
        """The octets parsed as PDUs (a partial one at the end, or garbage, ends the list)."""
        out: list[Pdu] = []
        pos = 0
        while (n := frame_length(self.octets, pos)) is not None and 16 <= n <= len(self.octets) - pos:
            out.append(parse(self.octets[pos : pos + n]).pdu)
            pos += n
        return out

    def client_events_of(self, kind: type[E]) -> list[E]:
        """The client's events of one kind."""
        return [e for e in self.client_events if isinstance(e, kind)]

    def server_events_of(self, kind: type[E]) -> list[E]:
        """The server's events of one kind."""
        return [e for e in self.server_events if isinstance(e, kind)]


def _pieces(data: bytes, chunks: Sequence[int] | None) -> Iterator[bytes]:
    if chunks is None:
        if data:
            yield data
        return
    if not chunks or any(n < 1 for n in chunks):
        raise ValueError(f"chunk sizes must be positive, and at least one: {chunks!r}")
    pos = i = 0
    while pos < len(data):
        n = chunks[i % len(chunks)]
        yield data[pos : pos + n]
        pos += n
        i += 1


def _syntax(interface: SyntaxId | type[Interface]) -> SyntaxId:
    return interface if isinstance(interface, SyntaxId) else interface.__syntax__


class AssociationPair:
    """A :class:`ClientAssociation` and a :class:`ServerAssociation` joined in memory.

    Args:
        client: the client role (default: a new one with ``limits``).
        server: the server role (default: a new one with ``limits`` and a group table of its own,
            serving ``interfaces``).
        interfaces: what the default server accepts in a bind, matched by UUID and version
            exactly (None: every proposal).
        limits: for the associations made here.
    """

    def __init__(
        self,
        client: ClientAssociation | None = None,
        server: ServerAssociation | None = None,
        *,
        interfaces: Iterable[SyntaxId | type[Interface]] | None = None,
        limits: Limits | None = None,
    ) -> None:
        if server is None:
            served = None if interfaces is None else frozenset(_syntax(i) for i in interfaces)

            def match(proposed: SyntaxId) -> SyntaxId | None:
                return proposed if served is None or proposed in served else None

            server = ServerAssociation(match, GroupTable(), limits)
        self.client = client if client is not None else ClientAssociation(limits)
        self.server = server

    # moving what each side sends ----------------------------------------------------------------

    def to_server(self, chunks: Sequence[int] | None = None) -> Moved:
        """Move everything the client has queued to the server (in reads of ``chunks`` sizes)."""
        data = self.client.data_to_send()
        for piece in _pieces(data, chunks):
            self.server.receive_data(piece)
        return self._moved(data)

    def to_client(self, chunks: Sequence[int] | None = None) -> Moved:
        """Move everything the server has queued to the client (in reads of ``chunks`` sizes)."""
        data = self.server.data_to_send()
        for piece in _pieces(data, chunks):
            self.client.receive_data(piece)
        return self._moved(data)

    def settle(self) -> Moved:
        """Move both ways until neither side has anything to send; everything moved and produced
        (client octets and server octets together, in the order they went)."""
        octets, client_events, server_events = b"", [], []
        for _ in range(_ROUNDS):
            if not (self.client.has_output or self.server.has_output):
                break
            for moved in (self.to_server(), self.to_client()):
                octets += moved.octets
                client_events += moved.client_events
                server_events += moved.server_events
        else:
            raise RuntimeError(f"still talking after {_ROUNDS} rounds")
        return Moved(octets, client_events + self.client.events(), server_events + self.server.events())

    def bind(self, *interfaces: SyntaxId | type[Interface]) -> BindAccepted:
        """Bind the client (context ids 0, 1, ... in order) and settle; the BindAccepted event.

        Raises:
            AssertionError: the bind did not complete (the events are in the message).
        """
        self.client.bind({i: _syntax(s) for i, s in enumerate(interfaces)})
        moved = self.settle()
        accepted = moved.client_events_of(BindAccepted)
        if not accepted:
            raise AssertionError(f"bind not accepted: {moved.client_events} / {moved.server_events}")
        return accepted[0]

    # injecting octets -----------------------------------------------------------------------------

    def feed_server(self, data: bytes, chunks: Sequence[int] | None = None) -> list[Event]:
        """Octets to the server as if the client had sent them; the server's events."""
        for piece in _pieces(data, chunks):
            self.server.receive_data(piece)
        return self.server.events()

    def feed_client(self, data: bytes, chunks: Sequence[int] | None = None) -> list[Event]:
        """Octets to the client as if the server had sent them; the client's events."""
        for piece in _pieces(data, chunks):
            self.client.receive_data(piece)
        return self.client.events()

    def _moved(self, data: bytes) -> Moved:
        return Moved(data, self.client.events(), self.server.events())
