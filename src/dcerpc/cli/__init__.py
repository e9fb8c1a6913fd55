"""The ``dcerpc`` command: run an endpoint mapper and services, list endpoints, ping servers.

dcerpc run                      endpoint mapper on 135 plus the demo services (rpcecho)
dcerpc epm                      only the endpoint mapper and its local registration socket
dcerpc serve pkg.mod:Class ...  serve your implementations on a dynamic port, registered
dcerpc dump HOST                every endpoint HOST's endpoint mapper knows (like rpcdump)
dcerpc ping BINDING|HOST        is the server (or HOST's mapper) there and listening, how fast
dcerpc call BINDING Iface.Op A  one call to any declared operation, its result printed
dcerpc config check             the effective settings, or the wrong one named

docs/cli.md is the reference of every command and option, docs/configuration.md of every key.
"""

from __future__ import annotations

from .main import main

__all__ = ["main"]
