"""The asyncio end of one client connection: a :class:`~.stream.StreamProtocol` owned from the start
by the client connection that makes it.

    proto = ClientProtocol(assoc, on_events, on_lost)    # reads go to assoc.inbox
    await loop.create_connection(lambda: proto, host, port)

Backpressure only holds back the fragments of long requests (reading answers makes none).
"""

from __future__ import annotations

from collections.abc import Callable

from .stream import Association, StreamProtocol

__all__ = ["ClientProtocol"]


class ClientProtocol(StreamProtocol):
    """One client connection's octets; ``assoc``'s events go to ``on_events`` after each read,
    the end of the connection to ``on_lost``."""

    def __init__(
        self,
        assoc: Association,
        on_events: Callable[[], None],
        on_lost: Callable[[Exception | None], None],
    ) -> None:
        super().__init__(assoc.inbox)
        self.attach(assoc, on_events, on_lost)
