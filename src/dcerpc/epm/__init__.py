"""The endpoint mapper: its contract (and, later, its map, service and tower codec)."""

from ..rpctypes import rpc_if_id_t
from .idl import Epm, LookupResult, MapResult, ept_entry_t, twr_t

__all__ = ["Epm", "LookupResult", "MapResult", "ept_entry_t", "rpc_if_id_t", "twr_t"]
