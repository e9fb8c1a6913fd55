"""dcerpc: DCE/RPC (Open Group C706 with Microsoft's MS-RPCE extensions) in Python.

The public API is what this module re-exports; everything else is implementation.
"""

from ._errors import (
    BindError,
    BindingError,
    BindTimeoutError,
    CallTimeoutError,
    ConnectionClosedError,
    ConnectTimeoutError,
    DeclarationError,
    EncodeError,
    EndpointNotRegisteredError,
    FaultError,
    ImplementationError,
    NdrError,
    ProtocolError,
    ResolveError,
    RpcError,
    RpcTimeoutError,
)
from .auth.base import AuthError
from .client import Binding, Connection, SyncConnection, SyncProxy, parse_binding
from .client.opening import ConnectError, ConnectRefusedError, HostNotFoundError
from .connecting import connect, connect_sync
from .interface import Interface, Operation, operation
from .pdu.syntax import SyntaxId
from .server import CallContext, Server, current_call

__all__ = [
    "AuthError",
    "BindError",
    "BindTimeoutError",
    "Binding",
    "BindingError",
    "CallContext",
    "CallTimeoutError",
    "ConnectError",
    "ConnectRefusedError",
    "ConnectTimeoutError",
    "Connection",
    "ConnectionClosedError",
    "DeclarationError",
    "EncodeError",
    "EndpointNotRegisteredError",
    "FaultError",
    "HostNotFoundError",
    "ImplementationError",
    "Interface",
    "NdrError",
    "Operation",
    "ProtocolError",
    "ResolveError",
    "RpcError",
    "RpcTimeoutError",
    "Server",
    "SyncConnection",
    "SyncProxy",
    "SyntaxId",
    "__version__",
    "connect",
    "connect_sync",
    "current_call",
    "operation",
    "parse_binding",
]

__version__ = "0.1.0"
