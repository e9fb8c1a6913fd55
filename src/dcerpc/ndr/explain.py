"""Which value did not fit: the path to it and what is wrong, found after an encoder failed.

Theory of operation. The generated encoders (``encoder.py``) are straight-line code tuned for the
values that fit; they track no path, so when one fails (``struct.error``, a ``TypeError`` from
Python, an :class:`~dcerpc._errors.NdrError` of the runtime) the failure says what but not where.
:func:`misfit` then walks the same values again, against the same schema nodes, checking each one
the way the encoder would use it, and returns the first that does not fit: ``("s.items[3].name",
"expected str, got bytes")``. It runs only after a failure, so naming costs nothing on success.

The walk is a second reading of the encoder's rules, not the encoder itself: when it finds nothing
(a rule it does not know), the caller keeps the encoder's own message.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final

from .declarations import ContextHandle, PointerKind
from .declarations import Union as NdrUnion
from .layout import translate
from .schema import (
    ArrayNode,
    GuidNode,
    HandleNode,
    Node,
    PointerNode,
    PrimNode,
    StringNode,
    StructNode,
    UnionNode,
)

__all__ = ["misfit"]

_DEPTH: Final = 200  # how deep through pointers the walk looks (a long list: the encoder's problem)


def misfit(
    params: Sequence[tuple[str, Node]], values: Sequence[Any], context: Mapping[str, Any] | None = None
) -> tuple[str, str] | None:
    """The first of ``values`` (top-level elements ``params``, in order) that does not fit: (path,
    problem), or None. ``context``: further values size expressions may read, by name."""
    scope = {**(context or {}), **{name: v for (name, _), v in zip(params, values, strict=False)}}
    for (name, node), value in zip(params, values, strict=False):
        found = _Walk(scope).check(node, value, name, 0, top=True)
        if found is not None:
            return found
    return None


def _kind(v: object) -> str:
    return type(v).__name__


class _Walk:
    def __init__(self, scope: Mapping[str, Any]) -> None:
        self.scope = scope

    def check(self, node: Node, v: Any, path: str, depth: int, top: bool = False) -> tuple[str, str] | None:
        if isinstance(node, PrimNode):
            problem = _prim(node, v)
            return (path, problem) if problem else None
        if isinstance(node, GuidNode):
            return None if isinstance(v, uuid.UUID) else (path, f"expected uuid.UUID, got {_kind(v)}")
        if isinstance(node, HandleNode):
            return None if isinstance(v, ContextHandle) else (path, f"expected ContextHandle, got {_kind(v)}")
        if isinstance(node, PointerNode):
            if v is None:
                ref = node.kind is PointerKind.REF
                return (path, "a [ref] pointer cannot be NULL (None)") if ref else None
            if depth >= _DEPTH:
                return None
            return self.check(node.target, v, path, depth + 1)
        if isinstance(node, StructNode):
            if not isinstance(v, node.cls):
                return path, f"expected {node.cls.__name__}, got {_kind(v)}"
            inner = _Walk({name: getattr(v, name, None) for name, _ in node.fields})
            for name, member in node.fields:
                found = inner.check(member, getattr(v, name, None), f"{path}.{name}", depth)
                if found is not None:
                    return found
            return None
        if isinstance(node, UnionNode):
            return self._union(node, v, path, depth)
        if isinstance(node, ArrayNode):
            return self._array(node, v, path, depth)
        if isinstance(node, StringNode):
            return self._string(node, v, path)
        return None

    def _union(self, node: UnionNode, v: Any, path: str, depth: int) -> tuple[str, str] | None:
        if not isinstance(v, node.cls):
            return path, f"expected {node.cls.__name__}, got {_kind(v)}"
        assert isinstance(v, NdrUnion) and node.switch is not None
        problem = _prim(node.switch, v.tag)
        if problem:
            return f"{path}.tag", problem
        arm = node.arms.get(v.tag, node.default)
        if arm is None:
            return f"{path}.tag", f"{v.tag} selects no arm of {node.cls.__name__}"
        name, arm_node = arm
        if arm_node is None:
            return None
        return _Walk({}).check(arm_node, v.value, f"{path}.{name}", depth)

    def _array(self, node: ArrayNode, v: Any, path: str, depth: int) -> tuple[str, str] | None:
        if node.as_bytes:
            if not isinstance(v, bytes | bytearray | memoryview):
                return path, f"expected bytes, got {_kind(v)}"
        elif not isinstance(v, list | tuple):
            return path, f"expected a list, got {_kind(v)}"
        want, said = self._count(node)
        if want is not None and len(v) != want:
            return path, f"has {len(v)} elements, {said} = {want}"
        if node.as_bytes:
            return None
        for i, e in enumerate(v):
            found = self.check(node.elem, e, f"{path}[{i}]", depth)
            if found is not None:
                return found
        return None

    def _count(self, node: ArrayNode) -> tuple[int | None, str]:
        """How many elements the value must have, and which attribute says so."""
        if node.length_is is not None:
            return self._eval(node.length_is), f"length_is({node.length_is})"
        if node.first_is is not None:
            return None, ""  # length = max - first: left to the encoder
        if node.fixed is not None:
            return node.fixed, f"Fixed({node.fixed})"
        if node.size_is is not None:
            return self._eval(node.size_is), f"size_is({node.size_is})"
        return None, ""

    def _eval(self, expr: str) -> int | None:
        """An attribute expression over the values in scope (None when it cannot be read)."""
        try:
            code = translate(expr, lambda n: f"_v[{n!r}]" if n in self.scope else None)
            n = eval(code, {"__builtins__": {}}, {"_v": self.scope})  # our own translation of the IDL
        except Exception:  # a size that does not compute: the encoder's words stand
            return None
        return n if isinstance(n, int) else None

    def _string(self, node: StringNode, v: Any, path: str) -> tuple[str, str] | None:
        if not isinstance(v, str):
            return path, f"expected str, got {_kind(v)}"
        try:
            v.encode(node.spec.encoding, "surrogatepass" if node.spec.width == 2 else "strict")
        except UnicodeEncodeError as e:
            return path, f"cannot be encoded as {node.spec.encoding}: {e.reason}"
        return None


def _prim(node: PrimNode, v: Any) -> str | None:
    prim = node.prim
    if prim.kind == "int":
        if not isinstance(v, int):
            return f"expected int, got {_kind(v)}"
        bits = prim.size * 8
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if prim.fmt.islower() else (0, (1 << bits) - 1)
        if not lo <= v <= hi:
            return f"{v} is out of range for {prim.name} ({lo}..{hi})"
        return None
    if prim.kind == "bool":
        return None if isinstance(v, bool | int) else f"expected bool, got {_kind(v)}"
    if prim.kind == "float":
        return None if isinstance(v, float | int) else f"expected float, got {_kind(v)}"
    # char, wchar: one character of the width
    if not isinstance(v, str) or len(v) != 1:
        return f"expected a one-character str, got {v!r:.40}"
    if ord(v) >= 1 << (8 * prim.size):
        return f"{v!r} does not fit {prim.name}"
    return None
