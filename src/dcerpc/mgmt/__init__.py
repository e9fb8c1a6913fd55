"""The remote management interface every server endpoint offers."""

from .idl import Mgmt, mgmt_statistics, rpc_if_id_vector_t

__all__ = ["Mgmt", "mgmt_statistics", "rpc_if_id_vector_t"]
