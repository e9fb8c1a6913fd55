"""The asyncio adapters: the only code that touches transports (see ``stream``)."""

from .client import ClientProtocol
from .server import ServerProtocol
from .stream import StreamProtocol

__all__ = ["ClientProtocol", "ServerProtocol", "StreamProtocol"]
