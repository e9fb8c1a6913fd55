"""The rules a declaration must keep, checked when it is made (docs/declarations.md lists them).

Theory of operation. A struct, a union or an operation is checked once, from its annotations, before
any codec exists: the schema (``schema.py``) calls :func:`check_members` for a structure's members
and for an operation's parameters, and :func:`check_union` for a union's arms; the node-level rules
(a conformant member that is not last, a conformant union arm, an array that is neither fixed nor
sized) are the schema's own, raised through :func:`declaration_error`. Everything raises
:class:`~dcerpc._errors.DeclarationError` naming the declaration, the member and the rule, so that a
mistake surfaces as one line where the class is defined, not as a traceback from inside generated
code at the first call.

Sources: C706 chapter 14 (NDR); "DCE IDL" is the IDL chapter of the OSF DCE Application
Development Guide, Core Components (17.14.x: structures, unions, arrays and their rules); MIDL
where Microsoft's compiler adds a rule.

This module reads annotations only (it imports no schema): ``Annotated`` markers, pointers,
``list[T]`` and the declared classes, mirroring how the schema reads them.
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from typing import Annotated, Any, Final, Union, get_args, get_origin

from .._errors import DeclarationError
from .declarations import (
    _ARMS,
    _ONE_DEFAULT,
    Case,
    Enum8,
    Enum16,
    Enum32,
    FirstIs,
    Fixed,
    LengthIs,
    Pointer,
    Prim,
    SizeIs,
    String,
    SwitchIs,
)
from .declarations import Union as NdrUnion
from .status import _Status

__all__ = ["TOKEN", "check_members", "check_union", "declaration_error", "expression_names"]

# The rules, each with where it comes from (the messages quote them).
CONFORMANT_LAST: Final = "only a structure's last member may be conformant (C706 14.3.7.2; DCE IDL 17.14.1)"
UNION_ARM_CONFORMANT: Final = "conformant arrays are not valid in unions (DCE IDL 17.14.5.4)"
ARRAY_KIND: Final = "an array is fixed (Fixed(n)) or conformant (SizeIs(expr)): one of the two (C706 14.3.3)"
ARRAY_BASE: Final = "an array is declared as bytes or list[T] (docs/declarations.md)"
ARRAY_ELEMENT: Final = (
    "array elements cannot be context handles, conformant arrays or conformant structures (DCE IDL 17.14.5.4)"
)
FIXED_POSITIVE: Final = "a fixed array has at least one element (DCE IDL 17.14.5.1)"
SIZE_ON_ARRAY: Final = "size_is, length_is and first_is apply to arrays and strings (DCE IDL 17.14.5.3)"
STRING_VARYING: Final = "a [string] is not combined with length_is or first_is: its NUL ends it (MIDL)"
ATTRIBUTE_SCOPE: Final = (
    "an attribute names a member of the same structure, or a parameter of the same operation "
    "(DCE IDL 17.14.5.3, 17.14.2.2; MIDL field attributes)"
)
ATTRIBUTE_IN: Final = "what an [in] parameter's attribute names is an [in] parameter (DCE IDL 17.14.5.4)"
ATTRIBUTE_INTEGER: Final = "attributes reference members or parameters of integer type (DCE IDL 17.14.5.4)"
ATTRIBUTE_SYNTAX: Final = (
    "an attribute is an expression of names, integers and + - * / ( ) (MIDL limited expressions)"
)
SWITCH_REQUIRED: Final = (
    "a non-encapsulated union is used with switch_is(...) naming its discriminant (DCE IDL 17.14.2.2)"
)
SWITCH_ON_UNION: Final = "switch_is applies to a non-encapsulated union (DCE IDL 17.14.2.2)"
SWITCH_TYPE: Final = "a union's discriminant is an integer or enum type (C706 14.3.8; DCE IDL 17.14.2.1)"
UNION_ARMS: Final = _ARMS  # checked as the class is made (declarations.Union)
UNION_ONE_DEFAULT: Final = _ONE_DEFAULT
UNION_CASE_RANGE: Final = "case values are values of the switch type (DCE IDL 17.14.2)"
UNION_NOT_EMPTY: Final = "a union has at least one arm (DCE IDL grammar: union_body)"
NDR_TYPE: Final = "every member and parameter has an NDR type (uint32, Unique[...], a Struct ...)"
POINTER_TARGET: Final = "a pointer points to exactly one type"

TOKEN: Final = re.compile(
    r"\s*(?:(\*?)([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"
    r"|(0x[0-9a-fA-F]+|\d+)|([-+*/()]))"
)
"""One token of an IDL attribute expression: [*]name[.attr...], a number, or an operator."""


def declaration_error(problem: str, rule: str) -> DeclarationError:
    """An error for a rule broken in a declaration still to be placed (``.at(owner, member)``)."""
    return DeclarationError(problem, rule)


def expression_names(expr: str) -> list[tuple[str, bool, bool]]:
    """The names an attribute expression reads: (name, dereferenced with ``*``, has ``.attr``).

    Raises:
        DeclarationError: the expression is not one (unplaced).
    """
    names: list[tuple[str, bool, bool]] = []
    pos = 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if m is None or m.end() == pos:
            if expr[pos:].strip() == "":
                break
            raise declaration_error(f"cannot read the attribute expression {expr!r}", ATTRIBUTE_SYNTAX)
        pos = m.end()
        if m.group(2):
            head, *attrs = m.group(2).split(".")
            names.append((head, bool(m.group(1)), bool(attrs)))
    if not expr.strip():
        raise declaration_error("an empty attribute expression", ATTRIBUTE_SYNTAX)
    return names


def check_members(
    owner: str,
    members: list[tuple[str, Any]],
    scope: Mapping[str, Any],
    *,
    kind: str = "member",
    outside: Mapping[str, str] | None = None,
) -> None:
    """Check the members of a structure, or the parameters of one side of an operation.

    Args:
        owner: the structure's name, or ``Interface.operation``.
        members: (name, resolved annotation) in wire order.
        scope: what attribute expressions may name: name -> its annotation.
        kind: "member" or "parameter" (for messages).
        outside: names that exist but may not be named here, with why (an [out]-only parameter
            seen from the [in] side).

    Raises:
        DeclarationError: naming ``owner``, the member and the rule.
    """
    for name, tp in members:
        try:
            _Member(scope, kind, outside or {}).visit(tp, False)
        except DeclarationError as e:
            raise e.at(owner, name) from None


def check_union(cls: type[NdrUnion], arms: Mapping[str, Any]) -> None:
    """The rules of a union's arms and discriminant (duplicate cases, unmarked arms and a second
    default are found as the class is made, in ``declarations.Union``).

    Raises:
        DeclarationError: naming the union, the arm and the rule.
    """
    owner = cls.__name__
    if not arms:
        raise DeclarationError("declares no arms", UNION_NOT_EMPTY, owner)
    prim = _integer_prim(cls.__ndr_switch_type__)
    if prim is None:
        raise DeclarationError(
            f"switch_type {getattr(cls.__ndr_switch_type__, '__name__', cls.__ndr_switch_type__)!r} is not "
            "an integer type",
            SWITCH_TYPE,
            owner,
        )
    lo, hi = _int_range(prim)
    for name, tp in arms.items():
        for case in (m for m in _meta(tp) if isinstance(m, Case)):
            for v in case.values:
                if not lo <= v <= hi:
                    raise DeclarationError(
                        f"case {v} is outside the switch type {prim.name} ({lo}..{hi})",
                        UNION_CASE_RANGE,
                        owner,
                        name,
                    )


# --- one member ------------------------------------------------------------------------------------


class _Member:
    """Walks one member's annotation as the schema will resolve it (see ``schema._Resolver``)."""

    def __init__(self, scope: Mapping[str, Any], kind: str, outside: Mapping[str, str]) -> None:
        self.scope = scope
        self.kind = kind
        self.outside = outside

    def visit(self, tp: Any, switched: bool | None) -> None:
        """``switched``: a SwitchIs is on the way here (None: not asked, in an array's elements,
        each of which carries its own discriminant in our values)."""
        if get_origin(tp) is Annotated:
            base, *meta = get_args(tp)
            ptr_at = [i for i, m in enumerate(meta) if isinstance(m, Pointer)]
            if ptr_at:  # the markers besides the pointer's apply to what it points to
                k = ptr_at[-1]
                rest = meta[:k] + meta[k + 1 :]
                inner = strip_none(base) if is_optional(base) else base
                self.visit(Annotated[(inner, *rest)] if rest else inner, switched)
                return
            self._annotated(base, meta, switched)
        elif is_optional(tp):
            self.visit(strip_none(tp), switched)
        elif get_origin(tp) is list:
            self.visit(get_args(tp)[0], None)
        elif isinstance(tp, type) and issubclass(tp, NdrUnion):
            if tp.__ndr_encapsulated__ and switched:
                raise declaration_error(f"{tp.__name__} is an encapsulated union", SWITCH_ON_UNION)
            if not tp.__ndr_encapsulated__ and switched is False:
                raise declaration_error(
                    f"the union {tp.__name__} has no SwitchIs(...) naming its discriminant", SWITCH_REQUIRED
                )
        elif switched:
            raise declaration_error(
                f"SwitchIs on {getattr(tp, '__name__', tp)!r}, not a union", SWITCH_ON_UNION
            )

    def _annotated(self, base: Any, meta: list[Any], switched: bool | None) -> None:
        sizes = [m for m in meta if isinstance(m, SizeIs | LengthIs | FirstIs)]
        fixed = [m for m in meta if isinstance(m, Fixed)]
        strings = [m for m in meta if isinstance(m, String)]
        prims = [m for m in meta if isinstance(m, Prim)]
        for f in fixed:
            if f.count < 1:
                raise declaration_error(f"Fixed({f.count})", FIXED_POSITIVE)
        for m in sizes:
            self._expression(type(m).__name__, m.expr)
        switches = [m for m in meta if isinstance(m, SwitchIs)]
        for sw in switches:
            self._expression("SwitchIs", sw.expr)
        if prims:
            if sizes or fixed:
                what = ", ".join(type(m).__name__ for m in sizes + fixed)
                raise declaration_error(f"{what} on the {prims[-1].name} {prims[-1].kind}", SIZE_ON_ARRAY)
            if switches:
                raise declaration_error(f"SwitchIs on {prims[-1].name}, not a union", SWITCH_ON_UNION)
            return
        if strings:
            varying = [m for m in sizes if isinstance(m, LengthIs | FirstIs)]
            if varying:
                raise declaration_error(f"{type(varying[0]).__name__} on a [string]", STRING_VARYING)
            if switches:
                raise declaration_error("SwitchIs on a string, not a union", SWITCH_ON_UNION)
            return
        if sizes or fixed:
            if switches:
                raise declaration_error("SwitchIs on an array, not a union", SWITCH_ON_UNION)
            if fixed and any(isinstance(m, SizeIs) for m in sizes):
                raise declaration_error("both Fixed and SizeIs", ARRAY_KIND)
            if not fixed and not any(isinstance(m, SizeIs) for m in sizes):
                raise declaration_error("LengthIs / FirstIs without Fixed(n) or SizeIs(expr)", ARRAY_KIND)
            if base is bytes:
                return
            if get_origin(base) is not list:
                what = ", ".join(type(m).__name__ for m in sizes + fixed)
                raise declaration_error(f"{what} on {getattr(base, '__name__', base)!r}", ARRAY_BASE)
            self.visit(get_args(base)[0], None)
            return
        self.visit(base, True if switches else switched)

    def _expression(self, attribute: str, expr: str) -> None:
        for name, deref, attrs in expression_names(expr):
            if name not in self.scope:
                if name in self.outside:
                    raise declaration_error(
                        f"{attribute}({expr!r}) names {name!r}, {self.outside[name]}", ATTRIBUTE_IN
                    )
                known = ", ".join(self.scope) or "none"
                raise declaration_error(
                    f"{attribute}({expr!r}) names {name!r}, which is not a {self.kind} here "
                    f"({self.kind}s: {known})",
                    ATTRIBUTE_SCOPE,
                )
            if attrs:
                continue  # a member of a structure member (lhs.protocol): its type is the structure's
            target = self.scope[name]
            if _integer_prim(_strip_pointers(target)) is None:
                raise declaration_error(
                    f"{attribute}({expr!r}) names {name!r}, which is not an integer", ATTRIBUTE_INTEGER
                )
            del deref  # ``*n`` and ``n`` both read the integer (a top-level [ref] has no wire form)


# --- reading annotations ---------------------------------------------------------------------------


def _meta(tp: Any) -> list[Any]:
    return list(get_args(tp)[1:]) if get_origin(tp) is Annotated else []


def is_optional(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType) and type(None) in get_args(tp)


def strip_none(tp: Any) -> Any:
    rest = tuple(a for a in get_args(tp) if a is not type(None))
    if len(rest) != 1:
        raise declaration_error(f"{tp!r} points to {len(rest)} types", POINTER_TARGET)
    return rest[0]


def _strip_pointers(tp: Any) -> Any:
    """What a (possibly pointer-typed) annotation finally holds."""
    while True:
        if is_optional(tp):
            tp = strip_none(tp)
        elif get_origin(tp) is Annotated and any(isinstance(m, Pointer) for m in _meta(tp)):
            base = get_args(tp)[0]
            tp = strip_none(base) if is_optional(base) else base
        else:
            return tp


def _integer_prim(tp: Any) -> Prim | None:
    """The integer primitive an annotation is (enums and statuses count), or None."""
    prims = [m for m in _meta(tp) if isinstance(m, Prim)]
    if prims:
        return prims[-1] if prims[-1].kind == "int" else None
    if isinstance(tp, type):
        if issubclass(tp, Enum8 | Enum16 | Enum32):
            bits = tp.__ndr_bits__
            return Prim(tp.__name__, {8: "B", 16: "H", 32: "I"}[bits], bits // 8, "int")
        if issubclass(tp, _Status):
            return Prim(tp.__name__, "I", 4, "int")
    return None


def _int_range(prim: Prim) -> tuple[int, int]:
    bits = prim.size * 8
    if prim.fmt.islower():  # signed struct letters
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1
