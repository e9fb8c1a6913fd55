"""The endpoint mapper service (C706 Appendix O, MS-RPCE 3.1.3), answered from an :class:`EndpointMap`.

Who may change the map: a process on this host over the local socket (ncalrpc) whose peer
credentials (SO_PEERCRED) name root or the mapper's own user (or the users the ``register_users``
setting names); over the network, only peers inside the networks the operator opened with
``--epm-allow-insert``. Everything registered over a connection is tied to its association group and
removed when the last connection of that group closes, so a server that crashes leaves nothing
behind. A refusal is logged with the uid (or address) it refused and the setting that decides.

ept_lookup paging. Peers disagree on how the last page is marked (see the team's protocol notes):
impacket raises on any non-zero status and stops at a zero handle; smbtorture keeps paging while it
gets full pages with status 0 and then wants 0x16c9a0d6 with a zero handle. We answer:

- a first page (zero input handle) that holds the whole set: status 0, zero handle;
- an empty first page: ept_s_not_registered (0x16c9a0d6), zero handle;
- a page that leaves more behind: status 0 and a live handle;
- a continuation page that exhausts the set: ept_s_not_registered with its entries, zero handle.

Both peers pass whenever the map holds more entries than smbtorture's page (10) and fewer than
impacket's (500); larger maps make impacket raise on the last page, smaller ones fail smbtorture's
Lookup_simple: there is no answer that satisfies both there.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .._errors import FaultError
from ..ndr import ContextHandle
from ..pdu.constants import NCA_S_FAULT_CONTEXT_MISMATCH
from ..pdu.syntax import SyntaxId
from ..rpctypes import rpc_if_id_t
from ..server.context import CallContext, current_call
from .idl import (
    EPT_MAX_ANNOTATION_SIZE,
    EPT_S_CANT_PERFORM_OP,
    EPT_S_INVALID_ENTRY,
    EPT_S_NOT_REGISTERED,
    Epm,
    HandleResult,
    InqObjectResult,
    LookupResult,
    MapResult,
    ept_entry_t,
    twr_t,
)
from .map import EndpointMap, Entry
from .towers import Tower, TowerError

__all__ = ["EpmService"]

log = logging.getLogger("dcerpc.epm")

RPC_S_ACCESS_DENIED = 5
NULL_HANDLE = ContextHandle()
# A lookup handle pins a snapshot of the matching entries; cap how many one association group may
# hold open at once so that a client looping on fresh lookups cannot pin the map many times over.
MAX_LOOKUP_HANDLES = 64
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


CACHE_MAX = 4096


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= CACHE_MAX:
        cache.clear()
    cache[key] = value


@dataclass(slots=True)
class _Paging:
    """An ept_lookup in progress: the matching entries (a snapshot) and how far the client got."""

    results: list[Entry]
    pos: int = 0


class EpmService(Epm):
    """ept_* over an endpoint map."""

    def __init__(
        self,
        endpoint_map: EndpointMap,
        *,
        allow_insert: Iterable[str | Network] = (),
        local_uids: Iterable[int] | None = None,
        object: uuid.UUID | None = None,
    ) -> None:
        self.map = endpoint_map
        self.allow_insert: list[Network] = []
        self.local_uids: set[int] = set()
        self.set_policy(allow_insert, local_uids)
        self.object = object or uuid.UUID(int=0)
        self._owners: set[int] = set()
        # Caches for ept_map, the hot operation: decoded probe towers by their octets, and answer
        # towers per (entry, address). Bounded: a client sending endless distinct towers cannot grow
        # them past CACHE_MAX entries each.
        self._probes: dict[bytes, Tower] = {}
        self._answers: dict[tuple[bytes, str], bytes] = {}

    # who may change the map ---------------------------------------------------------------------

    def set_policy(self, allow_insert: Iterable[str | Network], local_uids: Iterable[int] | None) -> None:
        """Who may change the map: the networks (remote ept_insert / ept_delete) and the local users
        (by uid, over the registration socket; None: root and the mapper's own user)."""
        self.allow_insert = [
            ipaddress.ip_network(n, strict=False) if isinstance(n, str) else n for n in allow_insert
        ]
        self.local_uids = set(local_uids) if local_uids is not None else {0, os.getuid()}

    def _refuse(self, op: str, call: CallContext) -> int:
        if call.transport == "ncalrpc":
            creds = call.peer_credentials
            who = f"uid {creds[1]} (pid {creds[0]})" if creds else "a peer without credentials"
            allowed = ", ".join(str(u) for u in sorted(self.local_uids))
            log.warning(
                "%s refused for %s over the local socket: register_users allows uids %s", op, who, allowed
            )
        else:
            log.warning("%s refused for %s over %s: not in epm_allow_insert", op, call.peer, call.transport)
        return RPC_S_ACCESS_DENIED

    def _may_change(self, call: CallContext) -> bool:
        if call.transport == "ncalrpc":
            creds = call.peer_credentials
            return creds is not None and creds[1] in self.local_uids
        host = call.peer[0] if isinstance(call.peer, tuple) else None
        if host is None:
            return False
        try:
            address = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return False
        return any(address in net for net in self.allow_insert)

    def _owner(self, call: CallContext) -> int:
        """The owner key for registrations over this association group (removed when it dies)."""
        owner = call.group.id
        if owner not in self._owners:
            self._owners.add(owner)

            def rundown(_: Any) -> None:
                self._owners.discard(owner)
                gone = self.map.remove_owner(owner)
                log.info("association group 0x%08x closed: %d endpoint(s) removed", owner, gone)

            call.open_handle(None, rundown)  # held by the group, never given out
        return owner

    def _entries(self, raw: list[ept_entry_t], owner: int) -> list[Entry]:
        out = []
        for e in raw:
            if e.tower is None:
                raise TowerError("an entry without a tower")
            # char annotation[64] holds 63 characters and the NUL; the decoder takes 64 without one,
            # which no ept_lookup answer could then encode (one such entry made every lookup that
            # reached it fault; found by fuzz_ndr)
            annotation = e.annotation[: EPT_MAX_ANNOTATION_SIZE - 1]
            out.append(Entry.make(e.object, Tower.decode(e.tower.tower_octet_string), annotation, owner))
        return out

    # operations -----------------------------------------------------------------------------------

    async def ept_insert(self, num_ents: int, entries: list[ept_entry_t], replace: bool) -> int:
        call = current_call()
        if not self._may_change(call):
            return self._refuse("ept_insert", call)
        try:
            new = self._entries(entries, self._owner(call))
        except TowerError as e:
            log.info("ept_insert from %s: %s", call.peer, e)
            return EPT_S_INVALID_ENTRY
        self.map.insert(new, replace=bool(replace))
        return 0

    async def ept_delete(self, num_ents: int, entries: list[ept_entry_t]) -> int:
        call = current_call()
        if not self._may_change(call):
            return self._refuse("ept_delete", call)
        try:
            gone = self._entries(entries, 0)
        except TowerError:
            return EPT_S_INVALID_ENTRY
        return 0 if self.map.delete(gone) == len(gone) else EPT_S_NOT_REGISTERED

    async def ept_lookup(
        self,
        inquiry_type: int,
        object: uuid.UUID | None,
        interface_id: rpc_if_id_t | None,
        vers_option: int,
        entry_handle: ContextHandle,
        max_ents: int,
    ) -> LookupResult:
        call = current_call()
        if entry_handle.is_null:
            iface = None
            if interface_id is not None:
                iface = SyntaxId(interface_id.uuid, (interface_id.vers_major, interface_id.vers_minor))
            found = self.map.lookup(inquiry_type, object, iface, vers_option)
            # what the policy hides from this caller is not there for it (docs/policy.md)
            state = _Paging([e for e in found if call.may_see(e.tower.interface.uuid)])
            first = True
        else:
            state = call.handle_value(entry_handle)  # FaultError context mismatch for another group
            if not isinstance(state, _Paging):
                raise FaultError(NCA_S_FAULT_CONTEXT_MISMATCH, "not an ept_lookup handle")
            first = False
        page = state.results[state.pos : state.pos + max_ents]
        state.pos += len(page)
        out_handle = NULL_HANDLE
        if state.pos >= len(state.results):
            status = 0 if first and page else EPT_S_NOT_REGISTERED
            if not first:
                call.close_handle(entry_handle)
        else:
            status = 0
            if first:
                if len(call.group.handles) >= MAX_LOOKUP_HANDLES:
                    return LookupResult(NULL_HANDLE, 0, [], EPT_S_CANT_PERFORM_OP)
                out_handle = call.open_handle(state)
            else:
                out_handle = entry_handle
        entries = [ept_entry_t(e.object, twr_t.of(e.octets), e.annotation) for e in page]
        return LookupResult(out_handle, len(entries), entries, status)

    async def ept_map(
        self, object: uuid.UUID | None, map_tower: twr_t | None, entry_handle: ContextHandle, max_towers: int
    ) -> MapResult:
        call = current_call()
        if map_tower is None:
            return MapResult(NULL_HANDLE, 0, [], EPT_S_NOT_REGISTERED)
        octets = map_tower.tower_octet_string
        wanted = self._probes.get(octets)
        if wanted is None:
            try:
                wanted = Tower.decode(octets)
            except TowerError as e:
                log.info("ept_map from %s: %s", call.peer, e)
                return MapResult(NULL_HANDLE, 0, [], EPT_S_NOT_REGISTERED)
            _remember(self._probes, octets, wanted)
        if not call.may_see(wanted.interface.uuid):  # hidden from this caller: as if not registered
            return MapResult(NULL_HANDLE, 0, [], EPT_S_NOT_REGISTERED)
        found = self.map.map(object, wanted)[:max_towers]
        here = call.local[0] if isinstance(call.local, tuple) else ""
        towers: list[twr_t | None] = [twr_t.of(self._answer(entry, here)) for entry in found]
        status = 0 if towers else EPT_S_NOT_REGISTERED
        return MapResult(NULL_HANDLE, len(towers), towers, status)

    def _answer(self, entry: Entry, here: str) -> bytes:
        """The entry's tower as ept_map answers it to a client that reached us at ``here``."""
        if not here or entry.tower.protseq not in ("ncacn_ip_tcp", "ncadg_ip_udp", "ncacn_http"):
            return entry.octets
        key = (entry.octets, here)
        octets = self._answers.get(key)
        if octets is None:
            # MS-RPCE 3.1.3.5.3: the address registered means nothing; answer with the address the
            # client reached us on, which is where the service listens too.
            octets = entry.tower.with_address(here).encode()
            _remember(self._answers, key, octets)
        return octets

    async def ept_lookup_handle_free(self, entry_handle: ContextHandle) -> HandleResult:
        if not entry_handle.is_null:
            current_call().close_handle(entry_handle)
        return HandleResult(NULL_HANDLE, 0)

    async def ept_inq_object(self) -> InqObjectResult:
        return InqObjectResult(self.object, 0)

    async def ept_mgmt_delete(
        self, object_speced: bool, object: uuid.UUID | None, tower: twr_t | None
    ) -> int:
        call = current_call()
        if not self._may_change(call):
            return self._refuse("ept_mgmt_delete", call)
        if tower is None:
            return EPT_S_NOT_REGISTERED
        try:
            octets = Tower.decode(tower.tower_octet_string).encode()  # either may refuse it
        except TowerError:
            return EPT_S_INVALID_ENTRY
        victims = [e for e in self.map if e.octets == octets and (not object_speced or e.object == object)]
        return 0 if self.map.delete(victims) else EPT_S_NOT_REGISTERED
