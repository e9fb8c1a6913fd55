"""The mgmt interface as every server endpoint answers it (C706 Appendix Q; smbtorture rpc.mgmt)."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from ..epm.idl import rpc_if_id_t
from ..ndr import WERROR
from ..pdu.constants import AuthType
from .idl import (
    InqIfIdsResult,
    InqPrincNameResult,
    InqStatsResult,
    IsListeningResult,
    Mgmt,
    mgmt_statistics,
    rpc_if_id_vector_t,
)

if TYPE_CHECKING:
    from ..server.server import Server

__all__ = ["MgmtService"]

WERR_OK = 0
WERR_ACCESS_DENIED = 5
WERR_NOT_SUPPORTED = 50
WERR_INSUFFICIENT_BUFFER = 122
# Auth types whose principal name we report (MS-RPCE 2.2.1.1.7).
_NAMED = (AuthType.GSS_NEGOTIATE, AuthType.WINNT, AuthType.GSS_KERBEROS)


class MgmtService(Mgmt):
    """Remote management for one server process (offered on every endpoint)."""

    def __init__(self, server: Server, principal: str | None = None) -> None:
        self.server = server
        self.principal = principal or f"host/{socket.gethostname()}"

    async def inq_if_ids(self) -> InqIfIdsResult:
        ids: list[rpc_if_id_t | None] = [
            rpc_if_id_t(s.uuid, s.version[0], s.version[1]) for s in self.server.registry.interfaces()
        ]
        return InqIfIdsResult(rpc_if_id_vector_t(len(ids), ids), WERR_OK)

    async def inq_stats(self, max_count: int, unknown: int) -> InqStatsResult:
        s = self.server.stats
        values = [s["calls_in"], s["calls_out"], s["pdus_in"], s["pdus_out"]][: min(max_count, 4)]
        return InqStatsResult(mgmt_statistics(len(values), values), WERR_OK)

    async def is_server_listening(self) -> IsListeningResult:
        return IsListeningResult(0, True)

    async def stop_server_listening(self) -> int:
        return WERR_ACCESS_DENIED  # never from the network

    async def inq_princ_name(self, authn_proto: int, princ_name_size: int) -> InqPrincNameResult:
        if authn_proto not in _NAMED:
            return InqPrincNameResult("", WERROR(WERR_NOT_SUPPORTED))
        if princ_name_size < len(self.principal) + 1:
            # The name and its NUL do not fit: an empty string and insufficient buffer; with a
            # size of 0 not even that fits, and the answer cannot be encoded (bad stub data).
            return InqPrincNameResult("", WERROR(WERR_INSUFFICIENT_BUFFER))
        return InqPrincNameResult(self.principal, WERROR(WERR_OK))
