"""From Python declarations to an NDR schema: a small tree of nodes the compiler walks.

``resolve(annotation)`` reads a declaration (``uint32``, ``Unique[WString]``, a ``Struct`` subclass,
``Annotated[list[T], SizeIs("n")]`` ...) and returns the node that describes its NDR representation:
alignment, minimum wire size, whether it has deferred parts (embedded pointers, C706 14.3.12.3) and
whether it is conformant (its max count is hoisted in front, C706 14.3.7.2). Struct and union nodes
are built once per class and shared, so recursive types (a struct pointing to itself) resolve to a
cycle of nodes; the pointer that closes a cycle is marked so that decoding can bound its depth.

Building is one-time work and is not done in parallel: a struct's node exists before its members
are filled (that is how a cycle closes), and the compilers cache generated functions before their
source is run, so a second thread could pick up half of either. Everything that builds, here and in
the compilers, holds :data:`build_lock`; the nodes one resolution makes are shared (``_memo``) only
once all of it succeeded, so a failure (a name not defined yet) leaves nothing half-built behind.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any, get_args, get_origin, get_type_hints

from .._errors import DeclarationError
from .declarations import (
    Case,
    ContextHandle,
    Default,
    Enum8,
    Enum16,
    Enum32,
    FirstIs,
    Fixed,
    LengthIs,
    Pointer,
    PointerKind,
    Prim,
    SizeIs,
    String,
    Struct,
    SwitchIs,
    on_declared,
)
from .declarations import Union as NdrUnion
from .rules import (
    ARRAY_BASE,
    ARRAY_ELEMENT,
    ARRAY_KIND,
    CONFORMANT_LAST,
    NDR_TYPE,
    SWITCH_TYPE,
    UNION_ARM_CONFORMANT,
    check_members,
    check_union,
    declaration_error,
    is_optional,
    strip_none,
)
from .status import _Status

__all__ = [
    "ArrayNode",
    "GuidNode",
    "HandleNode",
    "Node",
    "PointerNode",
    "PrimNode",
    "StringNode",
    "StructNode",
    "UnionNode",
    "build_lock",
    "resolve",
]

build_lock = threading.RLock()
"""Held while anything is built: schema nodes, generated codecs (see the module docstring)."""


class Node:
    """The NDR shape of one type. Subclasses fill in the layout facts the compiler needs."""

    align: int = 1
    min_size: int = 0  # the fewest octets a value can take on the wire (for count checks)
    deferred: bool = False  # has embedded pointers whose referents come after the scalars
    conformant: bool = False  # needs a max count hoisted in front of it


@dataclass(eq=False)
class PrimNode(Node):
    """An integer, float, boolean or character; ``wrap`` turns the raw number into its Python type."""

    prim: Prim
    wrap: Any = None  # an enum or status class, or None

    def __post_init__(self) -> None:
        self.align = self.prim.size
        self.min_size = self.prim.size


@dataclass(eq=False)
class GuidNode(Node):
    """A GUID: u32, u16, u16 in the sender's byte order, then 8 octets (C706 Appendix A)."""

    def __post_init__(self) -> None:
        self.align = 4
        self.min_size = 16


@dataclass(eq=False)
class HandleNode(Node):
    """A context handle: u32 attributes and a GUID (C706 / MS-RPCE policy_handle)."""

    def __post_init__(self) -> None:
        self.align = 4
        self.min_size = 20


@dataclass(eq=False)
class PointerNode(Node):
    """A pointer of some kind to ``target``; ``cycle`` marks the pointer that closes a recursive type."""

    kind: PointerKind
    target: Node
    cycle: bool = False

    def __post_init__(self) -> None:
        self.align = 4
        self.min_size = 4  # embedded, every kind sends a referent id
        self.deferred = True


@dataclass(eq=False)
class ArrayNode(Node):
    """Fixed, conformant, varying or conformant-varying array (C706 14.3.3).

    ``fixed`` is the element count of a fixed array; ``size_is`` the max-count expression of a
    conformant one; ``length_is`` / ``first_is`` make it varying. ``as_bytes`` means the Python value
    is ``bytes`` rather than a list (octet elements only).
    """

    elem: Node
    fixed: int | None = None
    size_is: str | None = None
    length_is: str | None = None
    first_is: str | None = None
    as_bytes: bool = False

    def __post_init__(self) -> None:
        self.conformant = self.size_is is not None
        self.varying = self.length_is is not None or self.first_is is not None
        self.align = max(self.elem.align, 4 if self.varying else 1)
        self.deferred = self.elem.deferred
        fixed_part = (self.fixed or 0) * self.elem.min_size
        self.min_size = fixed_part if not self.varying else 8
        if self.fixed is not None and self.conformant:
            raise declaration_error("an array both fixed (Fixed) and conformant (SizeIs)", ARRAY_KIND)
        if self.fixed is None and not self.conformant:
            raise declaration_error("an array without Fixed(n) or SizeIs(expr)", ARRAY_KIND)
        if self.elem.conformant or isinstance(self.elem, HandleNode):
            raise declaration_error(
                "an array of context handles, conformant arrays or structures", ARRAY_ELEMENT
            )


@dataclass(eq=False)
class StringNode(Node):
    """A ``[string]`` array: [max count], offset, actual count, then NUL-terminated characters."""

    spec: String
    size_is: str | None = None

    def __post_init__(self) -> None:
        self.align = 4
        self.min_size = 8
        self.conformant = self.spec.max_count is None


@dataclass(eq=False)
class StructNode(Node):
    """A structure; ``fields`` is filled after creation so recursive declarations can refer back."""

    cls: type
    fields: list[tuple[str, Node]] = field(default_factory=list)

    def finish(self) -> None:
        for name, node in self.fields[:-1]:
            if node.conformant:
                last = self.fields[-1][0]
                raise declaration_error(
                    f"is conformant but is not the last member ({last} is)", CONFORMANT_LAST
                ).at(self.cls.__name__, name)
        self.align = max((n.align for _, n in self.fields), default=1)
        self.min_size = sum(n.min_size for _, n in self.fields)
        self.deferred = any(n.deferred for _, n in self.fields)
        self.conformant = bool(self.fields) and self.fields[-1][1].conformant


@dataclass(eq=False)
class UnionNode(Node):
    """A union: discriminant of ``switch`` type, then the arm its value selects (C706 14.3.8)."""

    cls: type
    switch: PrimNode | None = None
    arms: dict[int, tuple[str, Node | None]] = field(default_factory=dict)
    default: tuple[str, Node | None] | None = None

    def finish(self) -> None:
        assert self.switch is not None
        nodes = [n for _, n in self.arms.values() if n is not None]
        if self.default is not None and self.default[1] is not None:
            nodes.append(self.default[1])
        for name, n in [*self.arms.values(), *([self.default] if self.default else [])]:
            if n is not None and n.conformant:
                raise declaration_error("a conformant arm", UNION_ARM_CONFORMANT).at(self.cls.__name__, name)
        self.arm_align = max((n.align for n in nodes), default=1)
        self.align = max(self.switch.align, self.arm_align)
        self.min_size = self.switch.min_size
        self.deferred = any(n.deferred for n in nodes)


_MARKERS = (SizeIs, LengthIs, FirstIs, Fixed, String, Pointer, SwitchIs, Case)


class _Resolver:
    """Resolves one annotation, sharing struct/union nodes through a per-class memo."""

    def __init__(self) -> None:
        self.stack: list[Node] = []  # struct/union nodes being resolved (to detect cycles)
        # nodes made by this resolution: published to _memo only when all of it succeeded, so that
        # a failure (a name not defined yet) leaves no node pointing at a half-built one
        self.made: dict[type, Node] = {}

    def publish(self) -> None:
        _memo.update(self.made)

    def resolve(self, tp: Any) -> Node:
        if get_origin(tp) is Annotated:
            base, *meta = get_args(tp)
            return self._annotated(base, meta)
        if is_optional(tp):
            return self._pointer(PointerKind.UNIQUE, strip_none(tp))
        if isinstance(tp, type):
            return self._class(tp)
        raise declaration_error(f"{tp!r} is not an NDR type", NDR_TYPE)

    def _annotated(self, base: Any, meta: list[Any]) -> Node:
        ptr_at = [i for i, m in enumerate(meta) if isinstance(m, Pointer)]
        if ptr_at:
            k = ptr_at[-1]
            rest = meta[:k] + meta[k + 1 :]
            inner = strip_none(base) if is_optional(base) else base
            target_tp = Annotated[(inner, *rest)] if rest else inner
            return self._pointer(meta[k].kind, target_tp)
        prims = [m for m in meta if isinstance(m, Prim)]
        if prims:
            return PrimNode(prims[-1])
        strings = [m for m in meta if isinstance(m, String)]
        size = next((m.expr for m in meta if isinstance(m, SizeIs)), None)
        if strings:
            return StringNode(strings[-1], size_is=size)
        fixed = [m.count for m in meta if isinstance(m, Fixed)]
        length = next((m.expr for m in meta if isinstance(m, LengthIs)), None)
        first = next((m.expr for m in meta if isinstance(m, FirstIs)), None)
        if fixed or size is not None or length is not None:
            return self._array(base, fixed[0] if fixed else None, size, length, first)
        if any(isinstance(m, SwitchIs) for m in meta):
            return self.resolve(base)  # the discriminant travels with the union value itself
        if any(isinstance(m, Case) or m is Default for m in meta):
            return self.resolve(base)
        return self.resolve(base)

    def _array(
        self, base: Any, fixed: int | None, size: str | None, length: str | None, first: str | None
    ) -> Node:
        if base is bytes:
            elem: Node = PrimNode(Prim("uint8", "B", 1, "int"))
            as_bytes = True
        elif get_origin(base) is list:
            (elem_tp,) = get_args(base)
            elem = self.resolve(elem_tp)
            as_bytes = False
        else:
            raise declaration_error(f"an array of {getattr(base, '__name__', base)!r}", ARRAY_BASE)
        return ArrayNode(elem, fixed, size, length, first, as_bytes)

    def _pointer(self, kind: PointerKind, target_tp: Any) -> Node:
        target = self.resolve(target_tp)
        return PointerNode(kind, target, cycle=target in self.stack)

    def _class(self, tp: type) -> Node:
        if tp is uuid.UUID:
            return GuidNode()
        if tp is ContextHandle:
            return HandleNode()
        if issubclass(tp, (Enum8, Enum16, Enum32)):
            bits = tp.__ndr_bits__
            fmt = {8: "B", 16: "H", 32: "I"}[bits]
            return PrimNode(Prim(tp.__name__, fmt, bits // 8, "int"), wrap=tp)
        if issubclass(tp, _Status):
            return PrimNode(Prim(tp.__name__, "I", 4, "int"), wrap=tp)
        if issubclass(tp, Struct):
            return self._struct(tp)
        if issubclass(tp, NdrUnion):
            return self._union(tp)
        raise declaration_error(
            f"{tp.__name__} is not an NDR type (say uint32, not int; bytes need a size)", NDR_TYPE
        )

    def _struct(self, cls: type) -> Node:
        node = _memo.get(cls) or self.made.get(cls)
        if node is not None:
            return node
        snode = self.made[cls] = StructNode(cls)
        self.stack.append(snode)
        try:
            hints = get_type_hints(cls, localns=_localns(cls), include_extras=True)
            names = [f.name for f in cls.__dataclass_fields__.values()]  # type: ignore[attr-defined]
            members = [(n, hints[n]) for n in names]
            check_members(cls.__name__, members, dict(members))
            snode.fields = [(n, self._member(cls, n, tp)) for n, tp in members]
            snode.finish()
        finally:
            self.stack.pop()
        return snode

    def _union(self, cls: type[NdrUnion]) -> Node:
        node = _memo.get(cls) or self.made.get(cls)
        if node is not None:
            return node
        unode = self.made[cls] = UnionNode(cls)
        self.stack.append(unode)
        try:
            hints = get_type_hints(cls, localns=_localns(cls), include_extras=True)
            check_union(cls, {n: hints[n] for n in _arms(cls)})
            sw = self.resolve(cls.__ndr_switch_type__)
            if not isinstance(sw, PrimNode) or sw.prim.kind != "int":
                raise declaration_error("switch_type is not an integer type", SWITCH_TYPE).at(cls.__name__)
            unode.switch = sw
            resolved: dict[str, Node | None] = {}
            for name in cls.__ndr_tag_by_arm__.keys() | (
                {cls.__ndr_default_arm__} if cls.__ndr_default_arm__ else set()
            ):
                hint = hints[name]
                base = get_args(hint)[0] if get_origin(hint) is Annotated else hint
                resolved[name] = None if base is type(None) else self._member(cls, name, hint)
            unode.arms = {tag: (n, resolved[n]) for tag, n in cls.__ndr_arm_by_tag__.items()}
            if cls.__ndr_default_arm__:
                unode.default = (cls.__ndr_default_arm__, resolved[cls.__ndr_default_arm__])
            unode.finish()
        finally:
            self.stack.pop()
        return unode

    def _member(self, cls: type, name: str, tp: Any) -> Node:
        try:
            return self.resolve(tp)
        except DeclarationError as e:
            raise e.at(cls.__name__, name) from None


def _arms(cls: type[NdrUnion]) -> list[str]:
    """A union's arm names, in declaration order."""
    return list(inspect.get_annotations(cls))


# One node per struct/union class, shared by every declaration that uses it.
_memo: dict[type, Node] = {}


def _localns(cls: type) -> dict[str, Any]:
    """Names visible where ``cls`` was declared: its scope's locals and the class itself."""
    scope = getattr(cls, "__ndr_localns__", None) or {}
    return {**scope, cls.__name__: cls}


def resolve(tp: Any) -> Node:
    """The NDR node for a declaration; struct and union nodes are cached per class.

    Raises:
        DeclarationError: the declaration is not an NDR type, or breaks a rule (``rules.py``: a
            conformant member that is not last, an attribute naming no member ...).
        NameError: an annotation names something not defined (yet).
    """
    with build_lock:
        resolver = _Resolver()
        node = resolver.resolve(tp)
        resolver.publish()  # built fully, then published
        return node


def _check_declared(cls: type) -> None:
    """Resolve a struct or union as its class statement ends, so that a broken rule is an error
    there; one that names a type declared further on is checked when first used instead."""
    with contextlib.suppress(NameError):
        resolve(cls)


on_declared(_check_declared)
