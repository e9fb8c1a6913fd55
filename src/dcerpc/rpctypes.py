"""IDL types more than one interface declares: defined once here, beneath every interface that uses
them (the endpoint mapper and the management interface both name interfaces by ``rpc_if_id_t``)."""

from __future__ import annotations

from .ndr import GUID, Struct, uint16

__all__ = ["rpc_if_id_t"]


class rpc_if_id_t(Struct):
    """An interface identifier: UUID, major and minor version (C706 Appendix N, ``rpc_if_id_t``)."""

    uuid: GUID
    vers_major: uint16
    vers_minor: uint16
