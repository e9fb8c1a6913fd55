"""The ``dcerpc`` command: run an endpoint mapper and services, list endpoints, ping servers.

dcerpc run                      endpoint mapper on 135 plus the demo services (rpcecho)
dcerpc epm                      only the endpoint mapper and its local registration socket
dcerpc serve pkg.mod:Class ...  serve your implementations on a dynamic port, registered
dcerpc dump HOST                every endpoint HOST's endpoint mapper knows (like rpcdump)
dcerpc ping BINDING             is the server there and listening (mgmt), with round-trip time
"""

from __future__ import annotations

from .main import main

__all__ = ["main"]
