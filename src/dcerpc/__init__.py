"""dcerpc: DCE/RPC (Open Group C706 with Microsoft's MS-RPCE extensions) in Python.

The public API is what this module re-exports; everything else is implementation.
"""

from ._errors import FaultError, NdrError, ProtocolError, RpcError

__all__ = ["FaultError", "NdrError", "ProtocolError", "RpcError", "__version__"]

__version__ = "0.1.0"
