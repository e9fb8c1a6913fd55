"""dcerpc: DCE/RPC (Open Group C706 with Microsoft's MS-RPCE extensions) in Python.

The public API is what this module re-exports; everything else is implementation.
"""

from ._errors import BindError, ConnectionClosedError, FaultError, NdrError, ProtocolError, RpcError
from .client import Binding, Connection, SyncConnection, parse_binding
from .connecting import connect, connect_sync
from .interface import Interface, Operation, operation
from .pdu.syntax import SyntaxId
from .server import CallContext, Server, current_call

__all__ = [
    "BindError",
    "Binding",
    "CallContext",
    "Connection",
    "ConnectionClosedError",
    "FaultError",
    "Interface",
    "NdrError",
    "Operation",
    "ProtocolError",
    "RpcError",
    "Server",
    "SyncConnection",
    "SyntaxId",
    "__version__",
    "connect",
    "connect_sync",
    "current_call",
    "operation",
    "parse_binding",
]

__version__ = "0.1.0"
