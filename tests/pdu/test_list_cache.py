"""The bind/alter_context context-list cache (pdu/co.py) is bounded in octets, not only in entries."""

from __future__ import annotations

import os
import uuid

from dcerpc.pdu import NDR20, AlterContext, ContextElement, SyntaxId, co, parse


def _alter(n_contexts: int) -> bytes:
    contexts = tuple(
        ContextElement(i, SyntaxId(uuid.UUID(bytes=os.urandom(16)), (1, 0)), (NDR20,))
        for i in range(n_contexts)
    )
    return AlterContext(call_id=1, contexts=contexts).encode()


def test_long_made_up_context_lists_are_not_kept() -> None:
    co._context_lists.clear()
    for _ in range(300):
        parse(_alter(250))  # 250 contexts: about 11 KB of context list each, every one new
    held = sum(len(key[0]) for key in co._context_lists)
    assert held <= 1024 * 1024, f"{held} octets of made-up context lists kept"


def test_real_context_lists_are_kept() -> None:
    co._context_lists.clear()
    wire = _alter(2)
    first = parse(wire).pdu
    again = parse(wire).pdu
    assert isinstance(first, AlterContext) and isinstance(again, AlterContext)
    assert first.contexts is again.contexts  # the second parse took the cached list
