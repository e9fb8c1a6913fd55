"""NDR 2.0 code generation: each type becomes Python functions, built once and cached.

Theory of operation. A schema node (``schema.py``) is turned into Python source that encodes or
decodes exactly that shape, then ``exec``-ed once into a shared namespace. The hot path is therefore
straight-line code: consecutive fixed-size members of a structure become one precompiled
``struct.Struct`` call with their padding folded in, arrays of numbers go through ``array``, and
nothing parses a declaration or inspects a type per call.

NDR ordering (C706 14.3.12): a constructed type is sent as its *scalars* (members, with a referent id
in place of each embedded pointer), then its *buffers* (the referents of those pointers, in member
order, each again scalars then buffers). Structures and unions get a scalars and a buffers function of
their own, so recursive types work; everything else is emitted inline. Top-level pointers (operation
parameters and roots) send their referent right away. A conformant structure's max count is
hoisted in front of it (C706 14.3.7.2) by whoever places the structure at the top or behind a pointer.

Decoding is total: every read is bounds-checked, every count from the wire is checked against the
octets that remain *before* anything is allocated, the total number of elements per stub is capped,
and recursion through pointers is bounded. All failures raise :class:`NdrError` with the offset.

Encoding is canonical: referent ids follow marshalling order as Samba and Windows number them
(unique pointers 0x00020000, 0x00020004, ...; full pointers 1, 2, ... from the same counter), and
padding is zero.

NDR64 will be a second generator over the same schema (``Syntax``); nothing here is flag-driven.
"""

from __future__ import annotations

import array
import re
import struct
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from .._errors import NdrError
from .declarations import ContextHandle, PointerKind
from .pieces import SPLICE_MIN, Pieces, Splices
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

__all__ = ["NDR20", "DecodeContext", "EncodeContext", "Limits", "Syntax", "compile_params"]


@dataclass(frozen=True, slots=True)
class Syntax:
    """A transfer syntax's sizes. NDR20 is the only one generated today; NDR64 gets its own plan."""

    name: str
    pointer_size: int
    count_size: int


NDR20: Final = Syntax("ndr20", 4, 4)


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one decoded stub may cost, whatever the peer claims.

    Attributes:
        max_elements: total array elements and string characters across a stub. Stops a stub of a
            few bytes that declares millions of zero-size elements (empty structs, empty arms) from
            allocating millions of Python objects.
        max_depth: nesting through pointers of recursive types (linked lists, trees). Stops a chain
            of self-referencing pointers from exhausting the interpreter stack.
    """

    max_elements: int = 1 << 24
    max_depth: int = 200


DEFAULT_LIMITS: Final = Limits()


class EncodeContext:
    """Per-stub encoding state: the referent-id counter and full-pointer aliasing."""

    __slots__ = ("count", "owned", "refs", "splices")

    def __init__(self) -> None:
        # One counter for all pointers of a stub, as Samba keeps it (Windows numbers the same way):
        # a unique / ref pointer gets 0x00020000 + 4 * count, a full pointer gets count + 1 (the
        # full-pointer table's numbering), and each takes one step.
        self.count = 0
        self.refs: dict[int, int] = {}  # id(object) -> referent id, for full pointers
        self.owned: set[int] = set()  # full-pointer referents already sent
        self.splices: Splices | None = None  # long byte arrays left in place (see pieces.py)

    def splice(self, at: int, value: bytes) -> bytes:
        """Leave ``value`` (sent at offset ``at`` of ``out``) where it is; returns the filler that
        keeps ``len(out)`` aligned as if it had been appended."""
        if self.splices is None:
            self.splices = Splices()
        return self.splices.add(at, value)


def uses_context(decode: DecodeFn) -> bool:
    """Whether a compiled decoder reads its DecodeContext (those of scalars only do not)."""
    return bool(getattr(decode, "uses_context", True))


class DecodeContext:
    """Per-stub decoding state: element budget, pointer depth, full-pointer referents."""

    __slots__ = ("budget", "depth", "full", "max_depth")

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.budget = limits.max_elements
        self.depth = 0
        self.max_depth = limits.max_depth
        self.full: dict[int, Any] = {}


# --- runtime helpers the generated code calls -------------------------------------------------------

_PAD: Final = tuple(bytes(i) for i in range(8))
_GUID_CACHE_MAX: Final = 4096  # bounded: a peer sending endless distinct GUIDs cannot grow memory
_guids_le: dict[bytes, uuid.UUID] = {}
_guids_be: dict[bytes, uuid.UUID] = {}
_guid_bytes: dict[uuid.UUID, bytes] = {}
_SWAP: Final = sys.byteorder != "little"
_uuid_new = uuid.UUID.__new__
_set = object.__setattr__
_SAFE = uuid.SafeUUID.unknown


def _guid_le(raw: bytes) -> uuid.UUID:
    u = _guids_le.get(raw)
    if u is None:
        if len(_guids_le) >= _GUID_CACHE_MAX:
            _guids_le.clear()
        u = _guids_le[raw] = uuid.UUID(bytes_le=raw)
    return u


def _guid_be(raw: bytes) -> uuid.UUID:
    u = _guids_be.get(raw)
    if u is None:
        if len(_guids_be) >= _GUID_CACHE_MAX:
            _guids_be.clear()
        u = _guids_be[raw] = uuid.UUID(bytes=raw)
    return u


def _guid_out(u: uuid.UUID) -> bytes:
    raw = _guid_bytes.get(u)
    if raw is None:
        if not isinstance(u, uuid.UUID):
            raise NdrError(f"a GUID must be a uuid.UUID, not {type(u).__name__}")
        if len(_guid_bytes) >= _GUID_CACHE_MAX:
            _guid_bytes.clear()
        raw = _guid_bytes[u] = u.bytes_le
    return raw


def _short(p: int, need: int, have: int, what: str) -> NdrError:
    return NdrError(f"{what}: need {need} octets, {max(have - p, 0)} remain", p)


def _nref(c: EncodeContext) -> int:
    r = 0x00020000 + 4 * c.count
    c.count += 1
    return r


def _rref(c: EncodeContext, x: object) -> int:
    if x is None:
        raise NdrError("a [ref] pointer cannot be NULL (None)")
    return _nref(c)


def _fref(c: EncodeContext, x: object) -> int:
    if x is None:
        return 0
    r = c.refs.get(id(x))
    if r is None:
        c.count += 1
        r = c.refs[id(x)] = c.count
    return r


def _fown(c: EncodeContext, x: object) -> bool:
    if id(x) in c.owned:
        return False
    c.owned.add(id(x))
    return True


def _numbers(fmt: str, b: bytes, p: int, n: int, size: int, swap: bool) -> list[Any]:
    a = array.array(fmt)
    a.frombytes(b[p : p + n * size])
    if swap:
        a.byteswap()
    return a.tolist()


def _numbers_out(fmt: str, values: Any, swap: bool) -> bytes:
    a = array.array(fmt, values)
    if swap:
        a.byteswap()
    return a.tobytes()


def _guid_out_be(u: uuid.UUID) -> bytes:
    if not isinstance(u, uuid.UUID):
        raise NdrError(f"a GUID must be a uuid.UUID, not {type(u).__name__}")
    return u.bytes


def _check_len(x: Any, n: int, what: str) -> None:
    if len(x) != n:
        raise NdrError(f"{what}: the value has {len(x)} elements, its size/length says {n}")


def _str_out(s: str, encoding: str, width: int) -> bytes:
    try:
        return s.encode(encoding, "surrogatepass" if width == 2 else "strict") + _PAD[width]
    except UnicodeEncodeError as e:
        raise NdrError(f"string {s!r} cannot be encoded as {encoding}: {e.reason}") from None


def _str_count(s: str, encoding: str, width: int) -> int:
    if s.isascii():
        return len(s) + 1
    return len(_str_out(s, encoding, width)) // width


# Array typecodes with the same sizes as NDR's (checked once at import).
_ARRAY_CODE: Final = {
    "B": "B",
    "b": "b",
    "H": "H",
    "h": "h",
    "I": "I",
    "i": "i",
    "Q": "Q",
    "q": "q",
    "f": "f",
    "d": "d",
}
for _k, _v in _ARRAY_CODE.items():
    assert array.array(_v).itemsize == struct.calcsize(_k), "unexpected C type sizes"


_ENC_HELPERS: Final = {
    "NdrError": NdrError,
    "_PAD": _PAD,
    "_gout": _guid_out,
    "_nref": _nref,
    "_rref": _rref,
    "_fref": _fref,
    "_fown": _fown,
    "_nout": _numbers_out,
    "_chk": _check_len,
    "_sout": _str_out,
    "_scount": _str_count,
    "_Z4": b"\0\0\0\0",
}
_DEC_HELPERS: Final = {
    "NdrError": NdrError,
    "_short": _short,
    "_gle": _guid_le,
    "_gbe": _guid_be,
    "_nums": _numbers,
    "_CH": ContextHandle,
    "_new": object.__new__,
}


# --- source building ------------------------------------------------------------------------------


class _Src:
    """Lines of Python source with indentation, plus fresh local names."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.n = 0

    def __call__(self, ind: int, text: str) -> None:
        self.lines.append("    " * ind + text)

    def tmp(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"


class _Namespace:
    """The module dict generated functions live in, with named constants."""

    def __init__(self, helpers: dict[str, Any]) -> None:
        self.g: dict[str, Any] = dict(helpers)
        self.consts: dict[Any, str] = {}
        self.n = 0

    def const(self, value: Any, prefix: str = "K") -> str:
        key = (type(value), value) if _hashable(value) else id(value)
        name = self.consts.get(key)
        if name is None:
            self.n += 1
            name = f"{prefix}{self.n}"
            self.consts[key] = name
            self.g[name] = value
        return name

    def define(self, src: _Src) -> None:
        exec(compile("\n".join(src.lines), "<ndr>", "exec"), self.g)


def _hashable(v: Any) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True


_TOKEN: Final = re.compile(
    r"\s*(?:(\*?)([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"
    r"|(0x[0-9a-fA-F]+|\d+)|([-+*/()]))"
)

Env = Callable[[str], str | None]


def _translate(expr: str, env: Env) -> str:
    """An IDL attribute expression (``len``, ``*num_ents``, ``lhs.protocol``, ``x*2``) as Python."""
    out: list[str] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None or m.end() == pos:
            if expr[pos:].strip() == "":
                break
            raise TypeError(f"cannot read the attribute expression {expr!r}")
        pos = m.end()
        if m.group(2):
            head, *attrs = m.group(2).split(".")
            base = env(head)
            if base is None:
                raise TypeError(f"the expression {expr!r} names {head!r}, which is not in scope")
            out.append(".".join([base, *attrs]))
        elif m.group(3):
            out.append(m.group(3))
        else:
            out.append("//" if m.group(4) == "/" else m.group(4))
    return "(" + " ".join(out) + ")"


def _simple_name(expr: str | None) -> str | None:
    if expr is None:
        return None
    m = re.fullmatch(r"\s*\*?([A-Za-z_][A-Za-z0-9_]*)\s*", expr)
    return m.group(1) if m else None


def _run_item(node: Node) -> tuple[str, int] | None:
    """(format, size) when ``node``'s scalars fit in one struct call, else None."""
    if isinstance(node, PrimNode):
        return node.prim.fmt, node.prim.size
    if isinstance(node, GuidNode):
        return "16s", 16
    if isinstance(node, HandleNode):
        return "I16s", 20
    if isinstance(node, PointerNode):
        return "I", 4
    if isinstance(node, ArrayNode) and node.as_bytes and node.fixed is not None and not node.varying:
        return f"{node.fixed}s", node.fixed
    return None


@dataclass
class _Run:
    """Consecutive members packed by one struct call: (name, node) with padding folded in."""

    align: int
    fmt: str
    size: int
    members: list[tuple[str, Node]]


def _segments(fields: list[tuple[str, Node]]) -> list[_Run | tuple[str, Node]]:
    """Group members into runs; a run starts aligned and only holds members aligned no stricter."""
    segs: list[_Run | tuple[str, Node]] = []
    run: _Run | None = None
    for name, node in fields:
        item = _run_item(node)
        if item is None:
            run = None
            segs.append((name, node))
            continue
        fmt, size = item
        if run is None or node.align > run.align:
            run = _Run(node.align, "", 0, [])
            segs.append(run)
        pad = -run.size % node.align
        run.fmt += "x" * pad + fmt if pad else fmt
        run.size += pad + size
        run.members.append((name, node))
    return segs


# --- encoder generation ---------------------------------------------------------------------------


class _Encoder:
    """Generates encoders; output is appended to a bytearray ``out`` whose length is the offset.

    Peers are answered little-endian; the big-endian encoder exists so that decoding of the other
    byte order can be tested on every type.
    """

    def __init__(self, endian: str) -> None:
        self.e = endian
        self.swap = (endian == "<") == _SWAP
        self.ns = _Namespace(_ENC_HELPERS)
        self.ns.g["_gout"] = _guid_out if endian == "<" else _guid_out_be
        self.fns: dict[int, tuple[str, str | None]] = {}

    def _align(self, src: _Src, ind: int, a: int) -> None:
        if a > 1:
            src(ind, f"out += _PAD[-len(out) & {a - 1}]")

    def _pack(self, fmt: str) -> str:
        return self.ns.const(struct.Struct(self.e + fmt), "S") + ".pack"

    # a struct or union: its scalars and buffers functions, generated on first use
    def functions(self, node: StructNode | UnionNode) -> tuple[str, str | None]:
        got = self.fns.get(id(node))
        if got is not None:
            return got
        k = len(self.fns)
        names = (
            f"e{k}_{node.cls.__name__}_s",
            f"e{k}_{node.cls.__name__}_b" if node.deferred else None,
        )
        self.fns[id(node)] = names
        src = _Src()
        if isinstance(node, StructNode):
            self._struct(src, node, names)
        else:
            self._union(src, node, names)
        self.ns.define(src)
        return names

    def _struct(self, src: _Src, node: StructNode, names: tuple[str, str | None]) -> None:
        field_names = {n for n, _ in node.fields}

        def env(name: str) -> str | None:
            return f"v.{name}" if name in field_names else None

        src(0, f"def {names[0]}(out, v, c):")
        src(1, "pass")
        segments = _segments(node.fields)
        if not (segments and isinstance(segments[0], _Run) and segments[0].align == node.align):
            self._align(src, 1, node.align)
        for seg in segments:
            if isinstance(seg, _Run):
                self._align(src, 1, seg.align)
                values: list[str] = []
                for name, m in seg.members:
                    values.extend(self._run_values(src, 1, m, f"v.{name}"))
                src(1, f"out += {self._pack(seg.fmt)}({', '.join(values)})")
            else:
                name, m = seg
                self.scalars(src, 1, m, f"v.{name}", env)
        if names[1]:
            src(0, f"def {names[1]}(out, v, c):")
            src(1, "pass")
            for name, m in node.fields:
                if m.deferred:
                    self.buffers(src, 1, m, f"v.{name}", env)

    def _run_values(self, src: _Src, ind: int, node: Node, v: str) -> list[str]:
        if isinstance(node, PrimNode):
            return [f"ord({v})"] if node.prim.kind in ("char", "wchar") else [v]
        if isinstance(node, GuidNode):
            return [f"_gout({v})"]
        if isinstance(node, HandleNode):
            t = src.tmp("h")
            src(ind, f"{t} = {v}")
            return [f"{t}.attributes", f"_gout({t}.uuid)"]
        if isinstance(node, PointerNode):
            fn = {PointerKind.UNIQUE: "_nref", PointerKind.REF: "_rref", PointerKind.FULL: "_fref"}
            if node.kind is PointerKind.UNIQUE:
                return [f"(0 if {v} is None else _nref(c))"]
            return [f"{fn[node.kind]}(c, {v})"]
        if isinstance(node, ArrayNode):  # fixed octets
            t = src.tmp("x")
            src(ind, f"{t} = {v}")
            src(ind, f"_chk({t}, {node.fixed}, 'fixed array')")
            return [t]
        raise AssertionError(node)

    def scalars(self, src: _Src, ind: int, node: Node, v: str, env: Env, hoisted: bool = True) -> None:
        """Scalars of ``node``; a conformant node's max count is already written (hoisted)."""
        item = _run_item(node)
        if item is not None and not isinstance(node, ArrayNode):
            self._align(src, ind, node.align)
            vals = self._run_values(src, ind, node, v)
            src(ind, f"out += {self._pack(item[0])}({', '.join(vals)})")
        elif isinstance(node, StructNode | UnionNode):
            s, _ = self.functions(node)
            src(ind, f"{s}(out, {v}, c)")
        elif isinstance(node, ArrayNode):
            self._array(src, ind, node, v, env)
        elif isinstance(node, StringNode):
            self._string(src, ind, node, v, env)
        else:
            raise AssertionError(node)

    def buffers(self, src: _Src, ind: int, node: Node, v: str, env: Env) -> None:
        if not node.deferred:
            return
        if isinstance(node, PointerNode):
            t = src.tmp("p")
            src(ind, f"{t} = {v}")
            if node.kind is PointerKind.FULL:
                src(ind, f"if {t} is not None and _fown(c, {t}):")
            else:
                src(ind, f"if {t} is not None:")
            self.full(src, ind + 1, node.target, t, env)
        elif isinstance(node, StructNode | UnionNode):
            _, b = self.functions(node)
            src(ind, f"{b}(out, {v}, c)")
        elif isinstance(node, ArrayNode):
            e = src.tmp("e")
            src(ind, f"for {e} in {v}:")
            self.buffers(src, ind + 1, node.elem, e, env)
        else:
            raise AssertionError(node)

    def conformance(self, node: Node, v: str, env: Env) -> str:
        """Expression for the max count hoisted in front of a conformant ``node`` valued ``v``."""
        if isinstance(node, ArrayNode):
            assert node.size_is is not None
            return _translate(node.size_is, env)
        if isinstance(node, StringNode):
            if node.size_is is not None:
                return _translate(node.size_is, env)
            return f"_scount({v}, {node.spec.encoding!r}, {node.spec.width})"
        if isinstance(node, StructNode):
            names = {n for n, _ in node.fields}
            tail_name, tail = node.fields[-1]

            def inner(name: str) -> str | None:
                return f"{v}.{name}" if name in names else None

            return self.conformance(tail, f"{v}.{tail_name}", inner)
        raise AssertionError(node)

    def full(self, src: _Src, ind: int, node: Node, v: str, env: Env) -> None:
        """A referent or top-level value: hoisted max count, scalars, then buffers."""
        if node.conformant:
            self._align(src, ind, 4)
            src(ind, f"out += {self._pack('I')}({self.conformance(node, v, env)})")
        self.scalars(src, ind, node, v, env)
        self.buffers(src, ind, node, v, env)

    def top(self, src: _Src, ind: int, node: Node, v: str, env: Env) -> None:
        """A top-level element (parameter, root): pointers send their referent immediately."""
        if not isinstance(node, PointerNode):
            self.full(src, ind, node, v, env)
            return
        if node.kind is PointerKind.REF:
            src(ind, f"if {v} is None:")
            src(ind + 1, "raise NdrError('a [ref] pointer cannot be NULL (None)')")
            self.top(src, ind, node.target, v, env)
            return
        self._align(src, ind, 4)
        src(ind, f"if {v} is None:")
        src(ind + 1, "out += _Z4")
        if node.kind is PointerKind.FULL:
            # an alias of a referent already sent repeats its id and sends nothing more
            src(ind, "else:")
            src(ind + 1, f"out += {self._pack('I')}(_fref(c, {v}))")
            src(ind, f"if {v} is not None and _fown(c, {v}):")
        else:
            src(ind, "else:")
            src(ind + 1, f"out += {self._pack('I')}(_nref(c))")
        self.top(src, ind + 1, node.target, v, env)

    def _array(self, src: _Src, ind: int, node: ArrayNode, v: str, env: Env) -> None:
        x = src.tmp("a")
        src(ind, f"{x} = {v}")
        maxc = str(node.fixed) if node.fixed is not None else _translate(node.size_is or "", env)
        if node.varying:
            first = _translate(node.first_is, env) if node.first_is else "0"
            length = _translate(node.length_is, env) if node.length_is else f"({maxc} - {first})"
            f, n = src.tmp("f"), src.tmp("n")
            src(ind, f"{f} = {first}; {n} = {length}")
            src(ind, f"if {f} < 0 or {n} < 0 or {f} + {n} > {maxc}:")
            src(
                ind + 1,
                f"raise NdrError(f'varying array: offset {{{f}}} + length {{{n}}} exceeds {{{maxc}}}')",
            )
            self._align(src, ind, 4)
            src(ind, f"out += {self._pack('II')}({f}, {n})")
            src(ind, f"_chk({x}, {n}, 'varying array')")
        else:
            src(ind, f"_chk({x}, {maxc}, 'array')")
        elem = node.elem
        self._align(src, ind, elem.align)
        if node.as_bytes:
            # a long bytes value is sent from where it is, not copied (pieces.py)
            long = f"len({x}) >= {SPLICE_MIN} and type({x}) is bytes"
            src(ind, f"out += c.splice(len(out), {x}) if {long} else {x}")
        elif isinstance(elem, PrimNode) and elem.prim.kind in ("int", "float"):
            src(ind, f"out += _nout({_ARRAY_CODE[elem.prim.fmt]!r}, {x}, {self.swap})")
        else:
            e = src.tmp("e")
            src(ind, f"for {e} in {x}:")
            self.scalars(src, ind + 1, elem, e, env)

    def _string(self, src: _Src, ind: int, node: StringNode, v: str, env: Env) -> None:
        spec = node.spec
        enc = "utf-16-be" if spec.width == 2 and self.e == ">" else spec.encoding
        raw, n = src.tmp("s"), src.tmp("n")
        src(
            ind,
            f"{raw} = _sout({v}, {enc!r}, {spec.width}); {n} = len({raw}) // {spec.width}",
        )
        bound = str(spec.max_count) if spec.max_count is not None else None
        if node.size_is is not None:
            bound = _translate(node.size_is, env)
        if bound is not None:
            src(ind, f"if {n} > {bound}:")
            src(
                ind + 1,
                f"raise NdrError(f'string of {{{n}}} characters exceeds its bound {{{bound}}}')",
            )
        self._align(src, ind, 4)
        src(ind, f"out += {self._pack('II')}(0, {n})")
        src(ind, f"out += {raw}")

    def _union(self, src: _Src, node: UnionNode, names: tuple[str, str | None]) -> None:
        assert node.switch is not None

        def env(name: str) -> str | None:
            return None

        cls = node.cls.__name__
        src(0, f"def {names[0]}(out, v, c):")
        src(1, "t = v.tag; x = v.value")
        # NDR20: the discriminant aligns to its own type and each arm to its own; the union-wide
        # alignment of MS-RPCE 2.2.5.3.4.4 is an NDR64 rule.
        self._align(src, 1, node.switch.align)
        src(1, f"out += {self._pack(node.switch.prim.fmt)}(t)")
        self._arms(src, node, cls, lambda s, i, arm: self.scalars(s, i, arm, "x", env))
        if names[1]:
            src(0, f"def {names[1]}(out, v, c):")
            src(1, "t = v.tag; x = v.value")
            self._arms(src, node, cls, lambda s, i, arm: self.buffers(s, i, arm, "x", env))

    def _arms(self, src: _Src, node: UnionNode, cls: str, emit: Callable[[_Src, int, Node], None]) -> None:
        _arm_dispatch(src, node, cls, emit, encoding=True)


def _arm_dispatch(
    src: _Src, node: UnionNode, cls: str, emit: Callable[[_Src, int, Node], None], *, encoding: bool
) -> None:
    by_arm: dict[str, list[int]] = {}
    nodes: dict[str, Node | None] = {}
    for tag, (name, arm) in node.arms.items():
        by_arm.setdefault(name, []).append(tag)
        nodes[name] = arm
    kw = "if"
    for name, tags in by_arm.items():
        cond = f"t == {tags[0]}" if len(tags) == 1 else f"t in {tuple(tags)!r}"
        src(1, f"{kw} {cond}:")
        kw = "elif"
        arm = nodes[name]
        src(2, "pass")
        if arm is not None:
            emit(src, 2, arm)
    src(1, "else:" if by_arm else "if True:")
    if node.default is not None:
        src(2, "pass")
        if node.default[1] is not None:
            emit(src, 2, node.default[1])
    else:
        where = "" if encoding else ", p"
        src(2, f"raise NdrError(f'union {cls}: no arm for discriminant {{t}}'{where})")


# --- decoder generation ---------------------------------------------------------------------------


class _Decoder:
    """Generates decoders over ``b`` (bytes) at offset ``p``; ``n`` is ``len(b)``."""

    def __init__(self, endian: str) -> None:
        self.e = endian  # "<" or ">"
        self.swap = (endian == "<") == _SWAP
        self.ns = _Namespace(_DEC_HELPERS)
        self.fns: dict[int, tuple[str, str | None]] = {}

    def _unpack(self, fmt: str) -> str:
        return self.ns.const(struct.Struct(self.e + fmt), "S") + ".unpack_from"

    def _align(self, src: _Src, ind: int, a: int) -> None:
        if a > 1:
            src(ind, f"p = (p + {a - 1}) & {-a}")

    def _need(self, src: _Src, ind: int, size: str, what: str) -> None:
        src(ind, f"if p + {size} > n:")
        src(ind + 1, f"raise _short(p, {size}, n, {what!r})")

    def functions(self, node: StructNode | UnionNode) -> tuple[str, str | None]:
        got = self.fns.get(id(node))
        if got is not None:
            return got
        k = len(self.fns)
        cls = node.cls.__name__
        names = (f"d{k}_{cls}_s", f"d{k}_{cls}_b" if node.deferred else None)
        self.fns[id(node)] = names
        src = _Src()
        if isinstance(node, StructNode):
            self._struct(src, node, names)
        else:
            self._union(src, node, names)
        self.ns.define(src)
        return names

    def _convert(self, src: _Src, ind: int, node: Node, raw: list[str], target: str) -> None:
        """Assign ``target`` from the raw struct values of one run member."""
        if isinstance(node, PrimNode):
            r = raw[0]
            if node.wrap is not None:
                w = self.ns.const(node.wrap, "W")
                m = (
                    self.ns.const(node.wrap._value2member_map_, "M")
                    if hasattr(node.wrap, "_value2member_map_")
                    else None
                )
                if m:
                    src(ind, f"{target} = {m}[{r}] if {r} in {m} else {w}({r})")
                else:
                    src(ind, f"{target} = {w}({r})")
            elif node.prim.kind == "bool":
                src(ind, f"{target} = {r} != 0")
            elif node.prim.kind in ("char", "wchar"):
                src(ind, f"{target} = chr({r})")
            elif target != r:
                src(ind, f"{target} = {r}")
        elif isinstance(node, GuidNode):
            src(ind, f"{target} = {'_gle' if self.e == '<' else '_gbe'}({raw[0]})")
        elif isinstance(node, HandleNode):
            g = "_gle" if self.e == "<" else "_gbe"
            src(ind, f"{target} = _CH({raw[0]}, {g}({raw[1]}))")
        elif isinstance(node, PointerNode):
            if node.kind is PointerKind.REF:
                src(ind, f"if not {raw[0]}:")
                src(ind + 1, "raise NdrError('NULL embedded [ref] pointer', p)")
                src(ind, f"{target} = {raw[0]}")
            else:
                src(ind, f"{target} = {raw[0]} or None")
        elif isinstance(node, ArrayNode):
            src(ind, f"{target} = {raw[0]}")
        else:
            raise AssertionError(node)

    def _run(self, src: _Src, ind: int, run: _Run, targets: list[str], what: str) -> None:
        self._align(src, ind, run.align)
        self._need(src, ind, str(run.size), what)
        raws: list[list[str]] = []
        flat: list[str] = []
        for _, m in run.members:
            count = 2 if isinstance(m, HandleNode) else 1
            names = [src.tmp("r") for _ in range(count)]
            raws.append(names)
            flat.extend(names)
        lhs = flat[0] + "," if len(flat) == 1 else ", ".join(flat)
        src(ind, f"{lhs} = {self._unpack(run.fmt)}(b, p); p += {run.size}")
        for (_, m), r, t in zip(run.members, raws, targets, strict=True):
            self._convert(src, ind, m, r, t)

    def _struct(self, src: _Src, node: StructNode, names: tuple[str, str | None]) -> None:
        cls = self.ns.const(node.cls, "C")
        sname = node.cls.__name__
        decoded: set[str] = set()

        def env(name: str) -> str | None:
            return f"f_{name}" if name in decoded else None

        src(0, f"def {names[0]}(b, p, c{', mc' if node.conformant else ''}):")
        src(1, "n = len(b)")
        segments = _segments(node.fields)
        if not (segments and isinstance(segments[0], _Run) and segments[0].align == node.align):
            self._align(src, 1, node.align)
        last = node.fields[-1][0] if node.fields else None
        for seg in segments:
            if isinstance(seg, _Run):
                self._run(src, 1, seg, [f"f_{nm}" for nm, _ in seg.members], sname)
                decoded.update(nm for nm, _ in seg.members)
            else:
                name, m = seg
                mc = "mc" if (name == last and node.conformant) else None
                self.scalars(src, 1, m, f"f_{name}", env, mc, sname)
                decoded.add(name)
        args = ", ".join(f"f_{nm}" for nm, _ in node.fields)
        src(1, f"return {cls}({args}), p")
        if names[1]:
            fenv: Env = lambda name: None  # noqa: E731  (referents need no sibling values)
            src(0, f"def {names[1]}(b, p, v, c):")
            src(1, "n = len(b)")
            for name, m in node.fields:
                if m.deferred:
                    self.buffers(src, 1, m, f"v.{name}", fenv, sname)
            src(1, "return p")

    def scalars(
        self, src: _Src, ind: int, node: Node, target: str, env: Env, mc: str | None, what: str
    ) -> None:
        """Decode the scalars of ``node`` into local ``target``; ``mc`` holds a hoisted max count."""
        item = _run_item(node)
        if item is not None and not isinstance(node, ArrayNode):
            run = _Run(node.align, item[0], item[1], [("", node)])
            self._run(src, ind, run, [target], what)
        elif isinstance(node, StructNode | UnionNode):
            s, _ = self.functions(node)
            extra = f", {mc}" if isinstance(node, StructNode) and node.conformant else ""
            src(ind, f"{target}, p = {s}(b, p, c{extra})")
        elif isinstance(node, ArrayNode):
            self._array(src, ind, node, target, env, mc, what)
        elif isinstance(node, StringNode):
            self._string(src, ind, node, target, mc, what)
        else:
            raise AssertionError(node)

    def buffers(self, src: _Src, ind: int, node: Node, lhs: str, env: Env, what: str) -> None:
        """Decode the deferred parts of the value held in ``lhs`` (assignable), in place."""
        if not node.deferred:
            return
        if isinstance(node, PointerNode):
            ref = src.tmp("q")
            src(ind, f"{ref} = {lhs}")
            src(ind, f"if {ref} is not None:")
            i = ind + 1
            if node.kind is PointerKind.FULL:
                src(i, f"if {ref} in c.full:")
                src(i + 1, f"{lhs} = c.full[{ref}]")
                src(i, "else:")
                i += 1
            if node.cycle:
                src(i, "c.depth += 1")
                src(i, "if c.depth > c.max_depth:")
                src(i + 1, f"raise NdrError('{what}: pointers nest deeper than the limit', p)")
            val = src.tmp("y")
            self.full(src, i, node.target, val, env, what)
            if node.kind is PointerKind.FULL:
                src(i, f"c.full[{ref}] = {val}")
            src(i, f"{lhs} = {val}")
            if node.cycle:
                src(i, "c.depth -= 1")
        elif isinstance(node, StructNode | UnionNode):
            _, bf = self.functions(node)
            src(ind, f"p = {bf}(b, p, {lhs}, c)")
        elif isinstance(node, ArrayNode):
            arr, idx = src.tmp("a"), src.tmp("i")
            src(ind, f"{arr} = {lhs}")
            src(ind, f"for {idx} in range(len({arr})):")
            self.buffers(src, ind + 1, node.elem, f"{arr}[{idx}]", env, what)
        else:
            raise AssertionError(node)

    def full(self, src: _Src, ind: int, node: Node, target: str, env: Env, what: str) -> None:
        mc = None
        if node.conformant:
            mc = src.tmp("mc")
            self._align(src, ind, 4)
            self._need(src, ind, "4", what + " max count")
            src(ind, f"{mc}, = {self._unpack('I')}(b, p); p += 4")
        self.scalars(src, ind, node, target, env, mc, what)
        self.buffers(src, ind, node, target, env, what)

    def top(self, src: _Src, ind: int, node: Node, target: str, env: Env, what: str) -> None:
        if not isinstance(node, PointerNode):
            self.full(src, ind, node, target, env, what)
            return
        if node.kind is PointerKind.REF:
            self.top(src, ind, node.target, target, env, what)
            return
        r = src.tmp("r")
        self._align(src, ind, 4)
        self._need(src, ind, "4", what)
        src(ind, f"{r}, = {self._unpack('I')}(b, p); p += 4")
        src(ind, f"if {r}:")
        if node.kind is PointerKind.FULL:
            src(ind + 1, f"if {r} in c.full:")
            src(ind + 2, f"{target} = c.full[{r}]")
            src(ind + 1, "else:")
            self.top(src, ind + 2, node.target, target, env, what)
            src(ind + 2, f"c.full[{r}] = {target}")
        else:
            self.top(src, ind + 1, node.target, target, env, what)
        src(ind, "else:")
        src(ind + 1, f"{target} = None")

    def _count_check(self, src: _Src, ind: int, count: str, min_size: int, what: str) -> None:
        # Checked before anything is allocated: a count the remaining octets cannot hold is a lie.
        if min_size:
            src(ind, f"if {count} * {min_size} > n - p:")
            src(
                ind + 1,
                f"raise NdrError(f'{what}: {{{count}}} elements cannot fit in {{n - p}} octets', p)",
            )
        src(ind, f"c.budget -= {count}")
        src(ind, "if c.budget < 0:")
        src(ind + 1, f"raise NdrError('{what}: more elements than the stub limit allows', p)")

    def _array(
        self, src: _Src, ind: int, node: ArrayNode, target: str, env: Env, mc: str | None, what: str
    ) -> None:
        what = f"{what} array"
        bound = str(node.fixed) if node.fixed is not None else mc
        if node.conformant and mc is None:
            raise AssertionError("conformant array decoded without its max count")
        size_name = _simple_name(node.size_is)
        sized_by = env(size_name) if size_name else None
        if sized_by and mc:
            src(ind, f"if {mc} != {sized_by}:")
            src(
                ind + 1,
                f"raise NdrError(f'{what}: max count {{{mc}}} disagrees with size_is {{{sized_by}}}', p)",
            )
        cnt = src.tmp("k")
        if node.varying:
            off = src.tmp("o")
            self._align(src, ind, 4)
            self._need(src, ind, "8", what + " offset and length")
            src(ind, f"{off}, {cnt} = {self._unpack('II')}(b, p); p += 8")
            src(ind, f"if {off} + {cnt} > {bound}:")
            src(
                ind + 1,
                f"raise NdrError(f'{what}: offset {{{off}}} + length {{{cnt}}} exceeds {{{bound}}}', p)",
            )
            len_name = _simple_name(node.length_is)
            if len_name and env(len_name):
                src(ind, f"if {cnt} != {env(len_name)}:")
                src(
                    ind + 1,
                    f"raise NdrError(f'{what}: length {{{cnt}}} disagrees with length_is', p)",
                )
        else:
            src(ind, f"{cnt} = {bound}")
        elem = node.elem
        self._count_check(src, ind, cnt, elem.min_size, what)
        self._align(src, ind, elem.align)
        if node.as_bytes:
            self._need(src, ind, cnt, what)
            # bytes() of a slice of bytes is that slice; of a view (a reassembled stub), its one copy
            src(ind, f"{target} = bytes(b[p:p + {cnt}]); p += {cnt}")
        elif isinstance(elem, PrimNode) and elem.wrap is None and elem.prim.kind in ("int", "float"):
            size = elem.prim.size
            code = _ARRAY_CODE[elem.prim.fmt]
            src(
                ind,
                f"{target} = _nums({code!r}, b, p, {cnt}, {size}, {self.swap}); p += {cnt} * {size}",
            )
        else:
            item = _run_item(elem)
            e = src.tmp("e")
            src(ind, f"{target} = []")
            src(ind, f"for _ in range({cnt}):")
            if item is not None and not isinstance(elem, ArrayNode):
                # elements are contiguous: the array is already aligned for the first one
                self._run(src, ind + 1, _Run(1, item[0], item[1], [("", elem)]), [e], what)
            else:
                self.scalars(src, ind + 1, elem, e, env, None, what)
            src(ind + 1, f"{target}.append({e})")

    def _string(self, src: _Src, ind: int, node: StringNode, target: str, mc: str | None, what: str) -> None:
        spec = node.spec
        what = f"{what} string"
        bound = mc if node.conformant else str(spec.max_count)
        off, cnt = src.tmp("o"), src.tmp("k")
        self._align(src, ind, 4)
        self._need(src, ind, "8", what + " offset and length")
        src(ind, f"{off}, {cnt} = {self._unpack('II')}(b, p); p += 8")
        src(ind, f"if {off} != 0 or {cnt} > {bound}:")
        src(
            ind + 1,
            f"raise NdrError(f'{what}: offset {{{off}}}, length {{{cnt}}}, bound {{{bound}}}', p)",
        )
        size = f"{cnt} * {spec.width}" if spec.width > 1 else cnt
        self._need(src, ind, size, what)
        self._count_check(src, ind, cnt, spec.width, what)
        enc = spec.encoding
        if spec.width == 2 and self.e == ">":
            enc = "utf-16-be"
        errors = "surrogatepass" if spec.width == 2 else "strict"
        src(ind, f"{target} = str(b[p:p + {size}], {enc!r}, {errors!r}); p += {size}")
        src(ind, f"if {target}[-1:] == '\\0':")
        src(ind + 1, f"{target} = {target}[:-1]")

    def _union(self, src: _Src, node: UnionNode, names: tuple[str, str | None]) -> None:
        assert node.switch is not None
        cls = self.ns.const(node.cls, "U")
        name = node.cls.__name__
        env: Env = lambda _: None  # noqa: E731
        src(0, f"def {names[0]}(b, p, c):")
        src(1, "n = len(b)")
        self._align(src, 1, node.switch.align)  # NDR20: see the encoder
        sw = node.switch.prim
        self._need(src, 1, str(sw.size), name + " discriminant")
        src(1, f"t, = {self._unpack(sw.fmt)}(b, p); p += {sw.size}")
        src(1, "x = None")
        _arm_dispatch(
            src,
            node,
            name,
            lambda s, i, arm: self.scalars(s, i, arm, "x", env, None, name),
            encoding=False,
        )
        src(1, f"u = _new({cls}); u.tag = t; u.value = x")
        src(1, "return u, p")
        if names[1]:
            src(0, f"def {names[1]}(b, p, u, c):")
            src(1, "n = len(b); t = u.tag")
            _arm_dispatch(
                src,
                node,
                name,
                lambda s, i, arm: self.buffers(s, i, arm, "u.value", env, name),
                encoding=False,
            )
            src(1, "return p")


# --- entry points ---------------------------------------------------------------------------------

_ENCODERS = {"<": _Encoder("<"), ">": _Encoder(">")}
_DECODERS = {"<": _Decoder("<"), ">": _Decoder(">")}

EncodeFn = Callable[..., "bytes | bytearray | Pieces"]
DecodeFn = Callable[[bytes | memoryview, int, DecodeContext], tuple[tuple[Any, ...], int]]


def _flat_format(params: list[tuple[str, Node]]) -> str | None:
    """The struct format (without byte order) of a stub of numbers only, padding included; None if
    any element is anything else."""
    fmt, offset = "", 0
    for _, node in params:
        if not isinstance(node, PrimNode) or node.prim.kind not in ("int", "float", "bool"):
            return None
        pad = -offset % node.prim.size
        fmt += "x" * pad + node.prim.fmt
        offset += pad + node.prim.size
    return fmt


def compile_params(
    params: list[tuple[str, Node]], context: tuple[str, ...] = ()
) -> tuple[EncodeFn, DecodeFn, DecodeFn, EncodeFn]:
    """Compile a sequence of top-level elements (an operation's [in] or [out] side, or one root).

    Args:
        params: (name, node) in wire order.
        context: names of further values that size expressions may use when encoding (an [out]
            array sized by an [in] parameter); they are passed after the params.

    Returns:
        ``encode(*values, *context_values) -> bytes`` (little-endian; a bytearray unless the
        values are all scalars, or :class:`~.pieces.Pieces` when a long byte array was left in
        place: callers that hand it out make bytes of it), little- and big-endian
        ``decode(stub, offset, ctx) -> (values, end_offset)``, and a big-endian encoder.
    """
    names = [n for n, _ in params]
    local = {n: f"a_{n}" for n in [*names, *context]}

    def env(name: str) -> str | None:
        return local.get(name)

    encoders: list[EncodeFn] = []
    flat = _flat_format(params)
    for endian in ("<", ">"):
        encoder = _ENCODERS[endian]
        src = _Src()
        fname = f"enc_{len(encoder.ns.g)}"
        src(0, f"def {fname}({', '.join(local.values())}):")
        if flat is not None:
            # scalars only: their offsets are known now, so one pack makes the stub
            src(1, f"return {encoder._pack(flat)}({', '.join(f'a_{n}' for n in names)})")
        else:
            src(1, "out = bytearray(); c = _EC()")
            for n, node in params:
                encoder.top(src, 1, node, f"a_{n}", env)
            # a bytearray (a long stub is not copied again to make bytes), or Pieces when a long
            # byte array was left in place (only code that uses the context can have done so)
            if any(re.search(r"\bc\b", line) for line in src.lines[2:]):
                src(1, "return out if c.splices is None else c.splices.pieces(out)")
            else:
                src.lines[1] = src.lines[1].replace("; c = _EC()", "")  # nothing uses it
                src(1, "return out")
        encoder.ns.g["_EC"] = EncodeContext
        encoder.ns.define(src)
        encoders.append(encoder.ns.g[fname])

    decoders: list[DecodeFn] = []
    for endian in ("<", ">"):
        dec = _DECODERS[endian]
        decoded: set[str] = set()

        def denv(name: str, decoded: set[str] = decoded) -> str | None:
            return f"a_{name}" if name in decoded else None

        src = _Src()
        fname = f"dec_{len(dec.ns.g)}"
        src(0, f"def {fname}(b, p, c):")
        src(1, "n = len(b)")
        for n, node in params:
            dec.top(src, 1, node, f"a_{n}", denv, n)
            decoded.add(n)
        tail = ", ".join(f"a_{n}" for n in names)
        src(1, f"return ({tail}{',' if len(names) == 1 else ''}), p")
        dec.ns.define(src)
        fn = dec.ns.g[fname]
        # whether it reads its DecodeContext (bounded things do); callers may pass a shared one if not
        fn.uses_context = any(re.search(r"\bc\b", line) for line in src.lines[1:])
        decoders.append(fn)
    return encoders[0], decoders[0], decoders[1], encoders[1]
