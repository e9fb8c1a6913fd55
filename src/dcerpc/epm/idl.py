"""The endpoint mapper contract (C706 Appendix O, ``ept`` e1af8308-5d1f-11c9-91a4-08002b14a0fa v3.0).

Declared in the DCE IDL's shapes. Samba's epmapper.idl spells some of them differently (a tower
as a structured ``epm_tower`` inside a subcontext, the annotation as offset/length/octets, the
towers of ``ept_map`` as a struct around a pointer); the octets on the wire are the same. The
tower octets stay opaque here; ``dcerpc.epm.towers`` reads and builds them.
"""

from __future__ import annotations

from typing import Annotated, NamedTuple

from ..interface import Interface, operation
from ..ndr import (
    GUID,
    ContextHandle,
    Full,
    LengthIs,
    SizeIs,
    Struct,
    VaryingString,
    boolean32,
    error_status_t,
    uint32,
)
from ..rpctypes import rpc_if_id_t

# C706 Appendix O: ept_max_annotation_size, including the terminating NUL.
EPT_MAX_ANNOTATION_SIZE = 64

# Status values (C706 Appendix E / MS-RPCE 2.2.1.2).
EPT_S_NOT_REGISTERED = 0x16C9A0D6  # no (more) entries
EPT_S_CANT_PERFORM_OP = 0x000006D8
EPT_S_INVALID_ENTRY = 0x16C9A0D5

# ept_lookup inquiry types and version options (C706 Appendix O).
RPC_C_EP_ALL_ELTS = 0
RPC_C_EP_MATCH_BY_IF = 1
RPC_C_EP_MATCH_BY_OBJ = 2
RPC_C_EP_MATCH_BY_BOTH = 3
RPC_C_VERS_ALL = 1
RPC_C_VERS_COMPATIBLE = 2
RPC_C_VERS_EXACT = 3
RPC_C_VERS_MAJOR_ONLY = 4
RPC_C_VERS_UPTO = 5


class twr_t(Struct):
    """A protocol tower: its octets, floors and all (C706 Appendix L)."""

    tower_length: uint32
    tower_octet_string: Annotated[bytes, SizeIs("tower_length")]

    @classmethod
    def of(cls, octets: bytes) -> twr_t:
        """A tower holding these octets."""
        return cls(len(octets), octets)


class ept_entry_t(Struct):
    """One endpoint-map entry: object UUID, tower (``twr_p_t``: a full pointer), annotation."""

    object: GUID
    tower: Full[twr_t]
    annotation: Annotated[str, VaryingString(EPT_MAX_ANNOTATION_SIZE)]


class LookupResult(NamedTuple):
    entry_handle: ContextHandle
    num_ents: uint32
    entries: Annotated[list[ept_entry_t], SizeIs("max_ents"), LengthIs("num_ents")]
    status: error_status_t


class MapResult(NamedTuple):
    entry_handle: ContextHandle
    num_towers: uint32
    towers: Annotated[list[Full[twr_t]], SizeIs("max_towers"), LengthIs("num_towers")]
    status: error_status_t


class HandleResult(NamedTuple):
    entry_handle: ContextHandle
    status: error_status_t


class InqObjectResult(NamedTuple):
    ept_object: GUID
    status: error_status_t


class Epm(Interface, uuid="e1af8308-5d1f-11c9-91a4-08002b14a0fa", version=(3, 0), name="epmapper"):
    """The endpoint mapper: where each interface listens (C706 Appendix O)."""

    @operation(0)
    async def ept_insert(
        self,
        num_ents: uint32,
        entries: Annotated[list[ept_entry_t], SizeIs("num_ents")],
        replace: boolean32,
    ) -> error_status_t:
        raise NotImplementedError

    @operation(1)
    async def ept_delete(
        self, num_ents: uint32, entries: Annotated[list[ept_entry_t], SizeIs("num_ents")]
    ) -> error_status_t:
        raise NotImplementedError

    @operation(2)
    async def ept_lookup(
        self,
        inquiry_type: uint32,
        object: Full[GUID],
        interface_id: Full[rpc_if_id_t],
        vers_option: uint32,
        entry_handle: ContextHandle,
        max_ents: uint32,
    ) -> LookupResult:
        raise NotImplementedError

    @operation(3)
    async def ept_map(
        self,
        object: Full[GUID],
        map_tower: Full[twr_t],
        entry_handle: ContextHandle,
        max_towers: uint32,
    ) -> MapResult:
        raise NotImplementedError

    @operation(4)
    async def ept_lookup_handle_free(self, entry_handle: ContextHandle) -> HandleResult:
        raise NotImplementedError

    @operation(5)
    async def ept_inq_object(self) -> InqObjectResult:
        raise NotImplementedError

    @operation(6)
    async def ept_mgmt_delete(
        self, object_speced: boolean32, object: Full[GUID], tower: Full[twr_t]
    ) -> error_status_t:
        raise NotImplementedError
