"""The mgmt interface as every server endpoint answers it (C706 Appendix Q; smbtorture rpc.mgmt)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterable, Mapping

from ..ndr import WERROR
from ..pdu.constants import AuthType
from ..pdu.syntax import SyntaxId
from ..rpctypes import rpc_if_id_t
from .idl import (
    InqIfIdsResult,
    InqPrincNameResult,
    InqStatsResult,
    IsListeningResult,
    Mgmt,
    mgmt_statistics,
    rpc_if_id_vector_t,
)

__all__ = ["MgmtService"]

WERR_OK = 0
WERR_ACCESS_DENIED = 5
WERR_NOT_SUPPORTED = 50
WERR_INSUFFICIENT_BUFFER = 122
# Auth types whose principal name we report (MS-RPCE 2.2.1.1.7).
_NAMED = (AuthType.GSS_NEGOTIATE, AuthType.WINNT, AuthType.GSS_KERBEROS)


class MgmtService(Mgmt):
    """Remote management for one server process (offered on every endpoint).

    Args:
        interfaces: what the server serves, asked at each inq_if_ids.
        stats: the server's counters (calls_in, calls_out, pdus_in, pdus_out).
        principal: the name inq_princ_name answers (host/HOSTNAME by default).
        visible: whether the caller of inq_if_ids may see an interface (the server's policy asks;
            default: every one).
    """

    def __init__(
        self,
        interfaces: Callable[[], Iterable[SyntaxId]],
        stats: Mapping[str, int],
        principal: str | None = None,
        visible: Callable[[uuid.UUID], bool] | None = None,
    ) -> None:
        self._interfaces = interfaces
        self._visible = visible or _everything
        self._stats = stats
        self.principal = principal or f"host/{socket.gethostname()}"

    async def inq_if_ids(self) -> InqIfIdsResult:
        visible = self._visible
        ids: list[rpc_if_id_t | None] = [
            rpc_if_id_t(s.uuid, s.version[0], s.version[1]) for s in self._interfaces() if visible(s.uuid)
        ]
        return InqIfIdsResult(rpc_if_id_vector_t(len(ids), ids), WERR_OK)

    async def inq_stats(self, max_count: int, unknown: int) -> InqStatsResult:
        s = self._stats
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


def _everything(interface: uuid.UUID) -> bool:
    return True
