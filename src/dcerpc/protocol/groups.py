"""Association groups (MS-RPCE 3.3.1.5.2 / C706 context handles): connections that share state.

A group is made by a bind with assoc_group_id 0 and joined by later binds that name its id. Context
handles live in their group: a handle is valid on every connection of the group and foreign
everywhere else. When the last connection leaves, every handle still open is run down (its
rundown callback runs) and the group's memory is released.

Pure bookkeeping: no I/O, no clock. Group ids are random 32-bit numbers so that one client cannot
guess another's group and join it to reach its handles.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._errors import FaultError
from ..ndr.declarations import ContextHandle
from ..pdu.constants import RPC_S_OUT_OF_RESOURCES

__all__ = ["Group", "GroupTable", "HandleEntry"]

Rundown = Callable[[Any], None]

MAX_HANDLES = 4096
"""Context handles one association group may hold open (``Limits.max_context_handles``): stops a
client from opening handles without end (an ept_lookup with a null handle opens one each time)
and making every one of them cost the server memory until its group ends."""


@dataclass(slots=True)
class HandleEntry:
    """A live context handle: the object it stands for and what to do if the client vanishes."""

    value: Any
    rundown: Rundown | None = None


@dataclass(slots=True)
class Group:
    """One association group: its id, its connections count, its context handles."""

    id: int
    connections: int = 0
    handles: dict[uuid.UUID, HandleEntry] = field(default_factory=dict)
    max_handles: int = MAX_HANDLES

    def open_handle(self, value: Any, rundown: Rundown | None = None) -> ContextHandle:
        """A new handle for ``value``; ``rundown(value)`` runs if the group dies with it open.

        Raises:
            FaultError: rpc_s_out_of_resources, the group holds ``max_handles`` already (the call
                that asked fails with it, as a Windows server's does when it cannot allocate one).
        """
        if len(self.handles) >= self.max_handles:
            raise FaultError(
                RPC_S_OUT_OF_RESOURCES,
                f"association group {self.id:#x} holds {self.max_handles} context handles",
            )
        handle = ContextHandle.new()
        self.handles[handle.uuid] = HandleEntry(value, rundown)
        return handle

    def lookup(self, handle: ContextHandle) -> HandleEntry | None:
        """The entry for a handle of this group (None: unknown here)."""
        return self.handles.get(handle.uuid)

    def close_handle(self, handle: ContextHandle) -> Any:
        """Forget a handle the client closed; returns its value (KeyError if unknown)."""
        return self.handles.pop(handle.uuid).value


class GroupTable:
    """All association groups of one server."""

    def __init__(
        self, on_rundown_error: Callable[[BaseException], None] | None = None, max_handles: int = MAX_HANDLES
    ) -> None:
        self._groups: dict[int, Group] = {}
        self.max_handles = max_handles
        self._entropy = bytearray()
        self._on_error = on_rundown_error

    def __len__(self) -> int:
        return len(self._groups)

    def create(self) -> Group:
        """A new group with one connection."""
        while True:
            gid = self._random_id()
            if gid and gid not in self._groups:
                break
        group = self._groups[gid] = Group(gid, connections=1, max_handles=self.max_handles)
        return group

    def _random_id(self) -> int:
        """32 unpredictable bits (a guessed id would join another client's group and reach its
        context handles), from the OS's generator a kilobyte at a time rather than a call each."""
        if len(self._entropy) < 4:
            self._entropy = bytearray(secrets.token_bytes(1024))
        gid = int.from_bytes(self._entropy[-4:], "little")
        del self._entropy[-4:]
        return gid

    def join(self, gid: int) -> Group | None:
        """Add a connection to an existing group (None: no such group)."""
        group = self._groups.get(gid)
        if group is not None:
            group.connections += 1
        return group

    def leave(self, group: Group) -> int:
        """A connection of ``group`` closed; the last one runs down its handles. Returns how many."""
        group.connections -= 1
        if group.connections > 0:
            return 0
        self._groups.pop(group.id, None)
        entries = list(group.handles.values())
        group.handles.clear()
        for entry in entries:
            if entry.rundown is not None:
                try:
                    entry.rundown(entry.value)
                except Exception as e:  # a faulty rundown must not stop the others
                    if self._on_error is not None:
                        self._on_error(e)
        return len(entries)
