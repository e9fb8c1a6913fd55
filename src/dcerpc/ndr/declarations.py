"""The vocabulary for declaring NDR types in Python, so declarations read like the IDL they mirror.

Primitives are ``Annotated`` aliases: to a type checker ``uint32`` is ``int``; to the NDR compiler it
is a 4-byte unsigned integer. Constructed types are classes (:class:`Struct`, :class:`Union`,
:class:`Enum16` / :class:`Enum32`). Attributes that IDL writes in brackets are ``Annotated``
markers (:class:`SizeIs`, :class:`LengthIs`, :class:`Case` ...), and pointer kinds are generic
aliases (``Unique[T]`` is ``T | None`` carrying the unique-pointer marker).

IDL                                             Python
``[size_is(n)] uint16 data[]``                  ``Annotated[list[uint16], SizeIs("n")]``
``[size_is(n)] uint8 *data``                    ``Unique[Annotated[bytes, SizeIs("n")]]``
``[string] wchar_t *name``                      ``Unique[WString]``
``[string] char annotation[64]``                ``Annotated[str, VaryingString(64)]``
``[switch_is(level)] echo_Info *info``          ``Annotated[echo_Info, SwitchIs("level")]``

Nothing here encodes anything: the compiler (``dcerpc.ndr.compiler``) reads these declarations once per
type and builds the codec.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Final, TypeAlias, TypeVar, dataclass_transform

from .._errors import DeclarationError

__all__ = [
    "GUID",
    "CString",
    "Case",
    "ContextHandle",
    "Default",
    "Enum8",
    "Enum16",
    "Enum32",
    "FirstIs",
    "Fixed",
    "Full",
    "LengthIs",
    "Pointer",
    "PointerKind",
    "Prim",
    "Ref",
    "SizeIs",
    "String",
    "Struct",
    "SwitchIs",
    "Union",
    "Unique",
    "VaryingString",
    "WString",
    "boolean",
    "boolean32",
    "byte",
    "char",
    "double",
    "error_status_t",
    "float32",
    "hyper",
    "int8",
    "int16",
    "int32",
    "int64",
    "on_declared",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "wchar_t",
]

T = TypeVar("T")


# --- primitives ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prim:
    """An NDR primitive (C706 14.2): its ``struct`` format letter, size, and Python kind."""

    name: str
    fmt: str  # struct format letter, without byte order
    size: int
    kind: str  # "int", "bool", "float", "char", "wchar"


uint8: TypeAlias = Annotated[int, Prim("uint8", "B", 1, "int")]
int8: TypeAlias = Annotated[int, Prim("int8", "b", 1, "int")]
byte: TypeAlias = Annotated[int, Prim("byte", "B", 1, "int")]
uint16: TypeAlias = Annotated[int, Prim("uint16", "H", 2, "int")]
int16: TypeAlias = Annotated[int, Prim("int16", "h", 2, "int")]
uint32: TypeAlias = Annotated[int, Prim("uint32", "I", 4, "int")]
int32: TypeAlias = Annotated[int, Prim("int32", "i", 4, "int")]
uint64: TypeAlias = Annotated[int, Prim("uint64", "Q", 8, "int")]
int64: TypeAlias = Annotated[int, Prim("int64", "q", 8, "int")]
hyper: TypeAlias = Annotated[int, Prim("hyper", "q", 8, "int")]  # C706: hyper is signed 64-bit
float32: TypeAlias = Annotated[float, Prim("float", "f", 4, "float")]
double: TypeAlias = Annotated[float, Prim("double", "d", 8, "float")]
boolean: TypeAlias = Annotated[bool, Prim("boolean", "B", 1, "bool")]  # C706 14.2.3: one octet
boolean32: TypeAlias = Annotated[bool, Prim("boolean32", "I", 4, "bool")]  # MS BOOL
char: TypeAlias = Annotated[str, Prim("char", "B", 1, "char")]
wchar_t: TypeAlias = Annotated[str, Prim("wchar_t", "H", 2, "wchar")]
error_status_t: TypeAlias = Annotated[int, Prim("error_status_t", "I", 4, "int")]

GUID: TypeAlias = uuid.UUID
"""A GUID / uuid_t: 16 octets, the first three fields in the sender's integer byte order."""


# --- markers (IDL attributes) ------------------------------------------------------------------------


class PointerKind(enum.Enum):
    """C706 14.3.10: reference, unique and full pointers."""

    REF = "ref"
    UNIQUE = "unique"
    FULL = "full"


@dataclass(frozen=True, slots=True)
class Pointer:
    """Marks the annotated type as a pointer of the given kind to its (non-None) part."""

    kind: PointerKind


Ref: TypeAlias = Annotated[T, Pointer(PointerKind.REF)]
"""``[ref]``: never NULL. At the top level of an operation it has no wire form at all."""
Unique: TypeAlias = Annotated[T | None, Pointer(PointerKind.UNIQUE)]
"""``[unique]``: may be NULL, no aliasing. A plain ``T | None`` means the same."""
Full: TypeAlias = Annotated[T | None, Pointer(PointerKind.FULL)]
"""``[ptr]``: may be NULL and may alias another full pointer in the same stub."""


@dataclass(frozen=True, slots=True)
class SizeIs:
    """``[size_is(expr)]``: a conformant array; the max count comes from ``expr``."""

    expr: str


@dataclass(frozen=True, slots=True)
class LengthIs:
    """``[length_is(expr)]``: a varying array; ``expr`` elements are transmitted."""

    expr: str


@dataclass(frozen=True, slots=True)
class FirstIs:
    """``[first_is(expr)]``: the index of the first transmitted element of a varying array."""

    expr: str


@dataclass(frozen=True, slots=True)
class Fixed:
    """``T x[n]``: a fixed array of ``n`` elements (dimensions nest for ``x[n][m]``)."""

    count: int


@dataclass(frozen=True, slots=True)
class String:
    """A ``[string]`` array: NUL-terminated characters, 1 (char) or 2 (wchar_t) octets each.

    Args:
        width: octets per character.
        max_count: a fixed bound (``[string] char s[64]``), which makes the string varying, not
            conformant; ``None`` for a conformant-varying string (``[string] char *s``).
        encoding: the Python codec for the characters.
    """

    width: int = 2
    max_count: int | None = None
    encoding: str = "utf-16-le"


def VaryingString(max_count: int, *, width: int = 1) -> String:
    """``[string] char s[max_count]``: offset, actual count and characters; no max count."""
    return String(width, max_count, "latin-1" if width == 1 else "utf-16-le")


WString: TypeAlias = Annotated[str, String(2, None, "utf-16-le")]
"""``[string] wchar_t *``: a conformant-varying UTF-16 string (the pointer itself is separate)."""
CString: TypeAlias = Annotated[str, String(1, None, "latin-1")]
"""``[string] char *``: a conformant-varying 8-bit string (octets map 1:1 to code points 0-255)."""


@dataclass(frozen=True, slots=True)
class Case:
    """``[case(v, ...)]``: the discriminant values that select this union arm."""

    values: tuple[int, ...]

    def __init__(self, *values: int) -> None:
        object.__setattr__(self, "values", values)


@dataclass(frozen=True, slots=True)
class _DefaultMarker:
    """``[default]``: the arm for every discriminant no case names."""


Default: Final = _DefaultMarker()


@dataclass(frozen=True, slots=True)
class SwitchIs:
    """``[switch_is(expr)]`` on a non-encapsulated union: the discriminant's source field."""

    expr: str


# --- constructed types -----------------------------------------------------------------------------


@dataclass_transform()
class Struct:
    """Base of NDR structures: subclasses are dataclasses whose annotated fields are the members.

    ``class echo_info5(Struct): v1: uint8; v2: hyper`` is ``struct { uint8 v1; hyper v2; }``.
    Field order is wire order. The codec is compiled on first use and cached on the class.
    """

    __ndr_plan__: ClassVar[Any] = None
    __ndr_localns__: ClassVar[dict[str, Any] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(cls)
        cls.__ndr_plan__ = None
        cls.__ndr_localns__ = _defining_scope()
        _declared(cls)


class _Arm:
    """Class attribute giving access to one union arm's value (AttributeError when not selected)."""

    __slots__ = ("name", "tags")

    def __init__(self, name: str) -> None:
        self.name = name
        self.tags: frozenset[int] | None = None  # None: the default arm

    def __get__(self, obj: Union | None, owner: type[Union]) -> Any:
        if obj is None:
            return self
        if obj.arm_name() != self.name:
            raise AttributeError(f"{owner.__name__} holds arm {obj.arm_name()!r}, not {self.name!r}")
        return obj.value


class Union:
    """Base of NDR unions: each annotated attribute is an arm, marked with ``Case`` or ``Default``.

    A value holds the discriminant (``tag``) and the selected arm's value. Build one by arm name,
    ``echo_Info(info1=echo_info1(v=1))``, or by discriminant, ``echo_Info(1, echo_info1(v=1))``; read
    the arm back by name (``u.info1``) or as ``u.value``.

    The class keyword ``switch_type`` is the discriminant's type (``uint16`` by default, as for
    ``[switch_type(uint16)]``). Unions are non-encapsulated (the discriminant comes from a
    ``SwitchIs`` field) unless declared with ``encapsulated=True``; on the wire both carry the
    discriminant in front of the arm (C706 14.3.8).
    """

    __slots__ = ("tag", "value")
    __ndr_plan__: ClassVar[Any] = None
    __ndr_switch_type__: ClassVar[Any] = uint16
    __ndr_encapsulated__: ClassVar[bool] = False
    __ndr_arm_by_tag__: ClassVar[dict[int, str]] = {}
    __ndr_tag_by_arm__: ClassVar[dict[str, int]] = {}
    __ndr_default_arm__: ClassVar[str | None] = None
    __ndr_localns__: ClassVar[dict[str, Any] | None] = None

    def __init_subclass__(cls, *, switch_type: Any = None, encapsulated: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if switch_type is not None:
            cls.__ndr_switch_type__ = switch_type
        cls.__ndr_encapsulated__ = encapsulated
        cls.__ndr_plan__ = None
        cls.__ndr_localns__ = _defining_scope()
        by_tag: dict[int, str] = {}
        default: str | None = None
        for name, ann in inspect.get_annotations(cls).items():
            meta = getattr(ann, "__metadata__", ()) if not isinstance(ann, str) else ()
            if isinstance(ann, str):
                # Postponed annotations: markers are found when the compiler resolves them; the
                # case values are needed now, so look for them in the text.
                meta = _cases_from_text(ann)
            cases = [m for m in meta if isinstance(m, Case)]
            if any(m is Default for m in meta):
                if default is not None:
                    raise DeclarationError(
                        f"is [default], and so is {default}", _ONE_DEFAULT, cls.__name__, name
                    )
                default = name
            for c in cases:
                for v in c.values:
                    if v in by_tag:
                        raise DeclarationError(
                            f"case {v} is {by_tag[v]}'s already", _ARMS, cls.__name__, name
                        )
                    by_tag[v] = name
            if not cases and not any(m is Default for m in meta):
                raise DeclarationError("has neither Case(...) nor Default", _ARMS, cls.__name__, name)
            setattr(cls, name, _Arm(name))
        cls.__ndr_arm_by_tag__ = by_tag
        cls.__ndr_tag_by_arm__ = {}
        for tag, name in by_tag.items():
            cls.__ndr_tag_by_arm__.setdefault(name, tag)
        cls.__ndr_default_arm__ = default
        _declared(cls)

    def __init__(self, tag: int | None = None, value: Any = None, **arm: Any) -> None:
        if arm:
            if tag is not None or len(arm) != 1:
                raise TypeError(f"{type(self).__name__}: give one arm by name, or tag and value")
            ((name, value),) = arm.items()
            if name not in type(self).__ndr_tag_by_arm__:
                raise TypeError(f"{type(self).__name__} has no arm {name!r} with a case value")
            tag = type(self).__ndr_tag_by_arm__[name]
        if tag is None:
            raise TypeError(f"{type(self).__name__}: a discriminant (tag) is required")
        self.tag = tag
        self.value = value

    def arm_name(self) -> str | None:
        """The name of the arm this value's discriminant selects (None: no arm, a decode error)."""
        cls = type(self)
        return cls.__ndr_arm_by_tag__.get(self.tag, cls.__ndr_default_arm__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Union)
        return bool(self.tag == other.tag and self.value == other.value)

    def __hash__(self) -> int:
        return hash((type(self), self.tag))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.arm_name()}={self.value!r}, tag={self.tag})"


_ARMS: Final = "each arm has Case(...) or Default, no case value names two arms (DCE IDL 17.14.2)"
_ONE_DEFAULT: Final = "a union has at most one [default] arm (DCE IDL 17.14.2)"
_hooks: list[Callable[[type], None]] = []


def on_declared(hook: Callable[[type], None]) -> None:
    """Call ``hook(cls)`` as each Struct or Union class statement ends (the schema checks the
    declaration's rules then: ``rules.py``; this module knows no schema)."""
    _hooks.append(hook)


def _declared(cls: type) -> None:
    for hook in _hooks:
        hook(cls)


def _defining_scope() -> dict[str, Any] | None:
    """The local names where a type was declared inside a function (so annotations that name
    other local types resolve later); None at module level, where the module's globals serve."""
    frame = sys._getframe(2)  # 0: here, 1: __init_subclass__, 2: the class statement's scope
    if frame.f_locals is frame.f_globals:
        return None
    return frame.f_locals


def _cases_from_text(text: str) -> tuple[Any, ...]:
    """Evaluate only ``Case(...)`` / ``Default`` inside a string annotation (constants only)."""
    import ast  # noqa: PLC0415  (rarely needed: only for `from __future__ import annotations`)

    found: list[Any] = []
    for node in ast.walk(ast.parse(text, mode="eval")):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Case":
            found.append(Case(*(ast.literal_eval(a) for a in node.args)))
        elif isinstance(node, ast.Name) and node.id == "Default":
            found.append(Default)
    return tuple(found)


class _NdrEnumMixin:
    """Accept values the declaration does not name: peers send them (smbtorture sends 76 on purpose)."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            bits = getattr(cls, "__ndr_bits__", 32)
            if 0 <= value < (1 << bits):
                # A pseudo-member: not cached, so hostile peers cannot grow the class's tables.
                obj: Any = int.__new__(cls, value)  # type: ignore[type-var]
                obj._name_ = None
                obj._value_ = value
                return obj
        return None


class Enum8(_NdrEnumMixin, enum.IntEnum):
    """``[enum8bit] enum``: one octet on the wire (a Samba extension used in towers)."""

    __ndr_bits__ = 8


class Enum16(_NdrEnumMixin, enum.IntEnum):
    """A plain IDL ``enum``: a 16-bit value in NDR (C706 14.2.4)."""

    __ndr_bits__ = 16


class Enum32(_NdrEnumMixin, enum.IntEnum):
    """``[v1_enum] enum``: a 32-bit value."""

    __ndr_bits__ = 32


_NIL_UUID: Final = uuid.UUID(int=0)


@dataclass(frozen=True, slots=True)
class ContextHandle:
    """A context handle (C706 / MS-RPCE 2.2.2.x ``policy_handle``): 20 octets on the wire.

    ``attributes`` is a 32-bit word (zero in practice) and ``uuid`` names the server-side state. The
    all-zero handle is the NULL handle that opens or ends a context.
    """

    attributes: int = 0
    uuid: uuid.UUID = _NIL_UUID

    @property
    def is_null(self) -> bool:
        """True for the all-zero handle."""
        return self.attributes == 0 and self.uuid.int == 0

    @classmethod
    def new(cls) -> ContextHandle:
        """A fresh handle with a random UUID."""
        return cls(0, uuid.uuid4())


NULL_HANDLE: Final = ContextHandle()
