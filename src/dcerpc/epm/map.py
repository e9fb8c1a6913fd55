"""The endpoint map: who listens where, answered from indexes (C706 Appendix O semantics).

Entries are kept in insertion order and indexed by interface (UUID, major version), by object UUID and
by owner (the registration that made them, so that a server's entries go when it goes). Lookups by
interface or object read an index, not the whole map; only ``RPC_C_EP_ALL_ELTS`` walks everything.
No I/O here.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..pdu.syntax import SyntaxId
from .idl import (
    RPC_C_EP_ALL_ELTS,
    RPC_C_EP_MATCH_BY_BOTH,
    RPC_C_EP_MATCH_BY_IF,
    RPC_C_EP_MATCH_BY_OBJ,
    RPC_C_VERS_ALL,
    RPC_C_VERS_COMPATIBLE,
    RPC_C_VERS_EXACT,
    RPC_C_VERS_MAJOR_ONLY,
    RPC_C_VERS_UPTO,
)
from .towers import Tower

__all__ = ["EndpointMap", "Entry"]

NIL = uuid.UUID(int=0)


@dataclass(frozen=True, slots=True)
class Entry:
    """One registration: an object UUID, a tower, an annotation (and who made it)."""

    object: uuid.UUID
    tower: Tower
    annotation: str = ""
    owner: int = 0
    octets: bytes = field(default=b"", compare=False)  # the encoded tower, made once

    @classmethod
    def make(cls, object: uuid.UUID, tower: Tower, annotation: str = "", owner: int = 0) -> Entry:
        return cls(object, tower, annotation, owner, tower.encode())

    @property
    def key(self) -> tuple[uuid.UUID, bytes]:
        """Identity in the map: object and tower (ept_delete matches by tower, not annotation)."""
        return self.object, self.octets


class EndpointMap:
    """All registered endpoints of this host."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._entries: dict[int, Entry] = {}
        self._by_key: dict[tuple[uuid.UUID, bytes], int] = {}
        self._by_if: dict[tuple[uuid.UUID, int], dict[int, Entry]] = {}
        self._by_obj: dict[uuid.UUID, dict[int, Entry]] = {}
        self._by_owner: dict[int, set[int]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self._entries.values()))

    def insert(self, entries: Iterable[Entry], replace: bool = False) -> None:
        """Add entries; an entry with the same object and tower replaces the old one.

        ``replace`` also removes entries for the same interface, object and protocol sequence
        (C706: the server restarted on a new endpoint).
        """
        for e in entries:
            if replace:
                for old in list(self._by_if.get(_if_key(e.tower.interface), {}).values()):
                    if old.object == e.object and old.tower.protseq == e.tower.protseq:
                        self._remove(old)
            old_id = self._by_key.get(e.key)
            if old_id is not None:
                self._remove(self._entries[old_id])
            eid = next(self._ids)
            self._entries[eid] = e
            self._by_key[e.key] = eid
            self._by_if.setdefault(_if_key(e.tower.interface), {})[eid] = e
            self._by_obj.setdefault(e.object, {})[eid] = e
            self._by_owner.setdefault(e.owner, set()).add(eid)

    def delete(self, entries: Iterable[Entry]) -> int:
        """Remove entries matching by object and tower; returns how many were found."""
        found = 0
        for e in entries:
            eid = self._by_key.get(e.key)
            if eid is not None:
                self._remove(self._entries[eid])
                found += 1
        return found

    def remove_owner(self, owner: int) -> int:
        """Remove everything one registration made (its server went away)."""
        ids = self._by_owner.pop(owner, set())
        for eid in list(ids):
            e = self._entries.get(eid)
            if e is not None:
                self._remove(e)
        return len(ids)

    def _remove(self, e: Entry) -> None:
        eid = self._by_key.pop(e.key)
        del self._entries[eid]
        idx = self._by_if.get(_if_key(e.tower.interface))
        if idx is not None:
            idx.pop(eid, None)
            if not idx:
                del self._by_if[_if_key(e.tower.interface)]
        obj = self._by_obj.get(e.object)
        if obj is not None:
            obj.pop(eid, None)
            if not obj:
                del self._by_obj[e.object]
        owned = self._by_owner.get(e.owner)
        if owned is not None:
            owned.discard(eid)

    def lookup(
        self,
        inquiry_type: int,
        object: uuid.UUID | None,
        interface: SyntaxId | None,
        vers_option: int,
    ) -> list[Entry]:
        """Entries matching an ept_lookup inquiry (C706 Appendix O), in registration order."""
        if inquiry_type == RPC_C_EP_ALL_ELTS:
            return list(self._entries.values())
        by_if = inquiry_type in (RPC_C_EP_MATCH_BY_IF, RPC_C_EP_MATCH_BY_BOTH)
        by_obj = inquiry_type in (RPC_C_EP_MATCH_BY_OBJ, RPC_C_EP_MATCH_BY_BOTH)
        if (by_if and interface is None) or (by_obj and object is None):
            return []
        if by_if:
            assert interface is not None
            if vers_option in (RPC_C_VERS_ALL, RPC_C_VERS_UPTO):
                pool: Iterable[Entry] = (
                    e for key, idx in self._by_if.items() if key[0] == interface.uuid for e in idx.values()
                )
            else:
                pool = list(self._by_if.get(_if_key(interface), {}).values())
            pool = [e for e in pool if _version_ok(e.tower.interface, interface, vers_option)]
        else:
            assert object is not None
            pool = list(self._by_obj.get(object, {}).values())
        if by_obj:
            pool = [e for e in pool if e.object == object]
        return sorted(pool, key=lambda e: self._by_key[e.key])  # registration order

    def map(self, object: uuid.UUID | None, tower: Tower) -> list[Entry]:
        """ept_map: entries for the tower's interface (same major, minor at least the client's) and
        protocol sequence; those registered for the object first, then the nil object's."""
        wanted = tower.interface
        candidates = [
            e
            for e in self._by_if.get(_if_key(wanted), {}).values()
            if e.tower.protseq == tower.protseq
            and e.tower.interface.version[1] >= wanted.version[1]
            and e.tower.transfer_syntax == tower.transfer_syntax
        ]
        obj = object or NIL
        exact = [e for e in candidates if e.object == obj]
        if obj != NIL and not exact:
            exact = [e for e in candidates if e.object == NIL]
        return exact


def _if_key(s: SyntaxId) -> tuple[uuid.UUID, int]:
    return s.uuid, s.version[0]


def _version_ok(have: SyntaxId, want: SyntaxId, option: int) -> bool:
    """C706 Appendix O vers_option semantics."""
    (hmaj, hmin), (wmaj, wmin) = have.version, want.version
    if option == RPC_C_VERS_ALL:
        return True
    if option == RPC_C_VERS_COMPATIBLE:
        return hmaj == wmaj and hmin >= wmin
    if option == RPC_C_VERS_EXACT:
        return (hmaj, hmin) == (wmaj, wmin)
    if option == RPC_C_VERS_MAJOR_ONLY:
        return hmaj == wmaj
    if option == RPC_C_VERS_UPTO:
        return (hmaj, hmin) <= (wmaj, wmin)
    return False
