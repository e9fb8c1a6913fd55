"""The endpoint map: C706 lookup and map semantics, owners, and load."""

from __future__ import annotations

import uuid

from dcerpc.epm.idl import (
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
from dcerpc.epm.map import EndpointMap, Entry
from dcerpc.epm.towers import Tower, tcp_tower
from dcerpc.pdu import NDR20, SyntaxId

A = uuid.UUID("11111111-0000-0000-0000-000000000001")
OBJ = uuid.UUID("22222222-0000-0000-0000-000000000002")
NIL = uuid.UUID(int=0)


def entry(version: tuple[int, int], port: int, obj: uuid.UUID = NIL, owner: int = 0) -> Entry:
    return Entry.make(obj, tcp_tower(SyntaxId(A, version), port, "127.0.0.1"), f"v{version}", owner)


def filled() -> EndpointMap:
    m = EndpointMap()
    m.insert([entry((1, 0), 1), entry((1, 2), 2), entry((2, 0), 3), entry((1, 2), 4, OBJ)])
    return m


def ports(entries: list[Entry]) -> list[int | None]:
    return [e.tower.port for e in entries]


def test_version_options() -> None:
    m = filled()
    want = SyntaxId(A, (1, 1))
    assert ports(m.lookup(RPC_C_EP_MATCH_BY_IF, None, want, RPC_C_VERS_ALL)) == [1, 2, 3, 4]
    assert ports(m.lookup(RPC_C_EP_MATCH_BY_IF, None, want, RPC_C_VERS_COMPATIBLE)) == [2, 4]
    assert ports(m.lookup(RPC_C_EP_MATCH_BY_IF, None, SyntaxId(A, (1, 2)), RPC_C_VERS_EXACT)) == [2, 4]
    assert ports(m.lookup(RPC_C_EP_MATCH_BY_IF, None, want, RPC_C_VERS_MAJOR_ONLY)) == [1, 2, 4]
    assert ports(m.lookup(RPC_C_EP_MATCH_BY_IF, None, want, RPC_C_VERS_UPTO)) == [1]


def test_inquiry_types() -> None:
    m = filled()
    assert len(m.lookup(RPC_C_EP_ALL_ELTS, None, None, RPC_C_VERS_ALL)) == 4
    assert ports(m.lookup(RPC_C_EP_MATCH_BY_OBJ, OBJ, None, RPC_C_VERS_ALL)) == [4]
    assert ports(m.lookup(RPC_C_EP_MATCH_BY_BOTH, OBJ, SyntaxId(A, (1, 0)), RPC_C_VERS_COMPATIBLE)) == [4]
    assert m.lookup(RPC_C_EP_MATCH_BY_IF, None, None, RPC_C_VERS_ALL) == []


def test_map_matches_major_compatible_minor_object_and_protseq() -> None:
    m = filled()
    assert ports(m.map(None, tcp_tower(SyntaxId(A, (1, 1))))) == [2]  # nil object, minor >= 1
    assert ports(m.map(OBJ, tcp_tower(SyntaxId(A, (1, 0))))) == [4]  # the object's own entry first
    assert ports(m.map(uuid.uuid4(), tcp_tower(SyntaxId(A, (1, 0))))) == [1, 2]  # unknown object: nil ones
    assert m.map(None, tcp_tower(SyntaxId(A, (3, 0)))) == []
    lrpc = Tower(SyntaxId(A, (1, 0)), NDR20, "ncalrpc", "x")
    assert m.map(None, lrpc) == []


def test_insert_replaces_same_tower_and_delete_matches_by_tower() -> None:
    m = EndpointMap()
    m.insert([entry((1, 0), 1)])
    m.insert([Entry.make(NIL, tcp_tower(SyntaxId(A, (1, 0)), 1, "127.0.0.1"), "renamed")])
    assert [e.annotation for e in m] == ["renamed"]
    assert m.delete([Entry.make(NIL, tcp_tower(SyntaxId(A, (1, 0)), 1, "127.0.0.1"), "whatever")]) == 1
    assert len(m) == 0


def test_remove_owner() -> None:
    m = EndpointMap()
    m.insert([entry((1, 0), 1, owner=7), entry((1, 0), 2, owner=7), entry((1, 0), 3, owner=8)])
    assert m.remove_owner(7) == 2
    assert ports(list(m)) == [3]


def test_thousands_of_entries_answer_from_the_index() -> None:
    m = EndpointMap()
    m.insert(
        Entry.make(NIL, tcp_tower(SyntaxId(uuid.UUID(int=i + 1), (1, 0)), 1000 + i % 60000), "", i % 50)
        for i in range(5000)
    )
    assert len(m) == 5000
    for i in range(0, 5000, 7):
        assert len(m.map(None, tcp_tower(SyntaxId(uuid.UUID(int=i + 1), (1, 0))))) == 1
    assert m.remove_owner(3) == 100
    assert len(m) == 4900
