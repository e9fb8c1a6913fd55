"""The remote management contract (C706 Appendix Q, ``mgmt`` afa8bd80-7d8a-11c9-bef4-08002b102989 v1.0).

``inq_stats`` follows the shape Windows and Samba use (two [in] words, a conformant statistics
structure out), which is what peers send.
"""

from __future__ import annotations

from typing import Annotated, NamedTuple

from ..interface import Interface, operation
from ..ndr import WERROR, SizeIs, String, Struct, Unique, boolean32, error_status_t, uint32
from ..rpctypes import rpc_if_id_t

# Indexes into the statistics array (C706 Appendix Q).
RPC_C_STATS_CALLS_IN = 0
RPC_C_STATS_CALLS_OUT = 1
RPC_C_STATS_PKTS_IN = 2
RPC_C_STATS_PKTS_OUT = 3
RPC_C_STATS_ARRAY_MAX_SIZE = 4


class rpc_if_id_vector_t(Struct):
    count: uint32
    if_id: Annotated[list[Unique[rpc_if_id_t]], SizeIs("count")]


class mgmt_statistics(Struct):
    count: uint32
    statistics: Annotated[list[uint32], SizeIs("count")]


class InqIfIdsResult(NamedTuple):
    if_id_vector: Unique[rpc_if_id_vector_t]
    status: error_status_t


class InqStatsResult(NamedTuple):
    statistics: mgmt_statistics
    status: error_status_t


class IsListeningResult(NamedTuple):
    status: error_status_t
    result: boolean32


class InqPrincNameResult(NamedTuple):
    princ_name: Annotated[str, String(1, None, "latin-1"), SizeIs("princ_name_size")]
    status: WERROR


class Mgmt(Interface, uuid="afa8bd80-7d8a-11c9-bef4-08002b102989", version=(1, 0), name="mgmt"):
    """Remote management: what a server offers, its statistics, whether it listens."""

    @operation(0)
    async def inq_if_ids(self) -> InqIfIdsResult:
        raise NotImplementedError

    @operation(1)
    async def inq_stats(self, max_count: uint32, unknown: uint32) -> InqStatsResult:
        raise NotImplementedError

    @operation(2)
    async def is_server_listening(self) -> IsListeningResult:
        raise NotImplementedError

    @operation(3)
    async def stop_server_listening(self) -> error_status_t:
        raise NotImplementedError

    @operation(4)
    async def inq_princ_name(self, authn_proto: uint32, princ_name_size: uint32) -> InqPrincNameResult:
        raise NotImplementedError
