"""Codecs built by several threads at once, without warming up first: each thread gets the whole type.

A struct or union node is shared by every declaration that uses it, and recursive types resolve to a
cycle of nodes, so a node exists before its members are filled. Building is one-time work done under
one lock (``schema.build_lock``): no thread may pick up a node, or a generated function, that
another thread is still filling.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import pytest

from dcerpc.ndr import Case, Default, SizeIs, Struct, SwitchIs, Union, Unique, codec, uint16, uint32

THREADS = 4
ROUNDS = 60


@pytest.fixture(autouse=True)
def _switch_often() -> Iterator[None]:
    """Threads take turns every microsecond (instead of every 5 ms): a race shows in a few rounds."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def _fresh_types() -> tuple[type, Any]:
    """A recursive struct holding a union whose arms are structs: new classes, never built before."""

    class Leaf(Struct):
        a: uint32
        b: uint16
        c: uint32
        d: uint16

    class Other(Struct):
        n: uint32
        data: Unique[Annotated[list[uint16], SizeIs("n")]]

    class Choice(Union, switch_type=uint32):
        leaf: Annotated[Leaf, Case(1)]
        other: Annotated[Other, Case(2, 3)]
        nothing: Annotated[uint32, Default]

    class Node(Struct):
        level: uint32
        choice: Annotated[Choice, SwitchIs("level")]
        next: Unique[Node]

    value = Node(1, Choice(leaf=Leaf(1, 2, 3, 4)), Node(2, Choice(2, Other(2, [5, 6])), None))
    return Node, value


def _all_at_once(work: Callable[[], bytes]) -> list[bytes | BaseException]:
    results: list[bytes | BaseException] = [b""] * THREADS
    start = threading.Barrier(THREADS)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = work()
        except BaseException as e:
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_threads_building_the_same_recursive_union_type_agree() -> None:
    for _ in range(ROUNDS):
        tp, value = _fresh_types()

        def work(tp: type = tp, value: Any = value) -> bytes:
            c = codec(tp)
            data = c.encode(value)
            assert c.decode(data) == value
            return data

        results = _all_at_once(work)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, errors[0]
        assert len(set(results)) == 1
        # and the codec left behind is whole: a later caller gets the same octets
        assert codec(tp).encode(value) == results[0]
