"""NDR 2.0 encoder generation: Python source that appends one type's octets to a bytearray.

Theory of operation. :class:`Encoder` walks a schema node and emits code that appends to ``out``,
whose length is the current offset, so alignment is ``out += _PAD[-len(out) & (a - 1)]`` and the
padding is zero. Structures and unions get a scalars and (when they have deferred parts) a buffers
function of their own, ``e{k}_{Name}_s`` / ``e{k}_{Name}_b``, generated on first use and cached per
node, so recursive types work; everything else is emitted inline. A run of fixed-size members (see
``layout.py``) is one precompiled ``struct.Struct.pack``.

Ordering (C706 14.3.12): scalars, a referent id in place of each embedded pointer, then the buffers:
referents in member order, each again scalars then buffers. A conformant type's max count is
hoisted in front of it (C706 14.3.7.2) by whoever places it: :meth:`Encoder.full` for a referent or
a top-level element. Top-level pointers send their referent at once (:meth:`Encoder.top`).

Referent ids follow marshalling order as Samba and Windows number them (unique pointers 0x00020000,
0x00020004, ...; full pointers 1, 2, ... from the same counter, an alias repeating its id and sending
nothing more), kept in the stub's :class:`~.runtime.EncodeContext`. :meth:`Encoder.entry` makes the
function for one sequence of top-level elements; a stub of numbers only is one ``pack``.

Peers are answered little-endian; the big-endian encoder exists so that decoding of the other byte
order can be tested on every type.
"""

from __future__ import annotations

import struct

from .declarations import PointerKind
from .layout import Env, Run, arm_dispatch, group_members, run_item, translate
from .pieces import SPLICE_MIN
from .runtime import ARRAY_CODE, SWAP, EncodeFn, encode_helpers
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
from .source import Namespace, Source

__all__ = ["Encoder"]


class Encoder:
    """Generates encoders; output is appended to a bytearray ``out`` whose length is the offset.

    One per byte order (``endian`` is ``"<"`` or ``">"``); the functions it generates live in its
    namespace, ``ns``.
    """

    def __init__(self, endian: str) -> None:
        self.e = endian
        self.swap = (endian == "<") == SWAP
        self.ns = Namespace(encode_helpers(endian), "encode", "" if endian == "<" else " big-endian")
        self.fns: dict[int, tuple[str, str | None]] = {}

    def _align(self, src: Source, ind: int, a: int) -> None:
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
        src = Source()
        if isinstance(node, StructNode):
            self._struct(src, node, names)
        else:
            self._union(src, node, names)
        self.ns.define(src, node.cls.__name__)
        return names

    def _struct(self, src: Source, node: StructNode, names: tuple[str, str | None]) -> None:
        field_names = {n for n, _ in node.fields}

        def env(name: str) -> str | None:
            return f"v.{name}" if name in field_names else None

        src(0, f"def {names[0]}(out, v, c):")
        src(1, "pass")
        segments = group_members(node.fields)
        if not (segments and isinstance(segments[0], Run) and segments[0].align == node.align):
            self._align(src, 1, node.align)
        for seg in segments:
            if isinstance(seg, Run):
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

    def _run_values(self, src: Source, ind: int, node: Node, v: str) -> list[str]:
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
                return [f"(0 if {v} is None else _nref({src.c}))"]
            return [f"{fn[node.kind]}({src.c}, {v})"]
        if isinstance(node, ArrayNode):  # fixed octets
            t = src.tmp("x")
            src(ind, f"{t} = {v}")
            src(ind, f"_chk({t}, {node.fixed}, 'fixed array')")
            return [t]
        raise AssertionError(node)

    def scalars(self, src: Source, ind: int, node: Node, v: str, env: Env, hoisted: bool = True) -> None:
        """Scalars of ``node``; a conformant node's max count is already written (hoisted)."""
        item = run_item(node)
        if item is not None and not isinstance(node, ArrayNode):
            self._align(src, ind, node.align)
            vals = self._run_values(src, ind, node, v)
            src(ind, f"out += {self._pack(item[0])}({', '.join(vals)})")
        elif isinstance(node, StructNode | UnionNode):
            s, _ = self.functions(node)
            src(ind, f"{s}(out, {v}, {src.c})")
        elif isinstance(node, ArrayNode):
            self._array(src, ind, node, v, env)
        elif isinstance(node, StringNode):
            self._string(src, ind, node, v, env)
        else:
            raise AssertionError(node)

    def buffers(self, src: Source, ind: int, node: Node, v: str, env: Env) -> None:
        if not node.deferred:
            return
        if isinstance(node, PointerNode):
            t = src.tmp("p")
            src(ind, f"{t} = {v}")
            if node.kind is PointerKind.FULL:
                src(ind, f"if {t} is not None and _fown({src.c}, {t}):")
            else:
                src(ind, f"if {t} is not None:")
            self.full(src, ind + 1, node.target, t, env)
        elif isinstance(node, StructNode | UnionNode):
            _, b = self.functions(node)
            src(ind, f"{b}(out, {v}, {src.c})")
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
            return translate(node.size_is, env)
        if isinstance(node, StringNode):
            if node.size_is is not None:
                return translate(node.size_is, env)
            return f"_scount({v}, {node.spec.encoding!r}, {node.spec.width})"
        if isinstance(node, StructNode):
            names = {n for n, _ in node.fields}
            tail_name, tail = node.fields[-1]

            def inner(name: str) -> str | None:
                return f"{v}.{name}" if name in names else None

            return self.conformance(tail, f"{v}.{tail_name}", inner)
        raise AssertionError(node)

    def full(self, src: Source, ind: int, node: Node, v: str, env: Env) -> None:
        """A referent or top-level value: hoisted max count, scalars, then buffers."""
        if node.conformant:
            self._align(src, ind, 4)
            src(ind, f"out += {self._pack('I')}({self.conformance(node, v, env)})")
        self.scalars(src, ind, node, v, env)
        self.buffers(src, ind, node, v, env)

    def top(self, src: Source, ind: int, node: Node, v: str, env: Env) -> None:
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
            src(ind + 1, f"out += {self._pack('I')}(_fref({src.c}, {v}))")
            src(ind, f"if {v} is not None and _fown({src.c}, {v}):")
        else:
            src(ind, "else:")
            src(ind + 1, f"out += {self._pack('I')}(_nref({src.c}))")
        self.top(src, ind + 1, node.target, v, env)

    def _array(self, src: Source, ind: int, node: ArrayNode, v: str, env: Env) -> None:
        x = src.tmp("a")
        src(ind, f"{x} = {v}")
        maxc = str(node.fixed) if node.fixed is not None else translate(node.size_is or "", env)
        if node.varying:
            first = translate(node.first_is, env) if node.first_is else "0"
            length = translate(node.length_is, env) if node.length_is else f"({maxc} - {first})"
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
            src(ind, f"out += {src.c}.splice(len(out), {x}) if {long} else {x}")
        elif isinstance(elem, PrimNode) and elem.prim.kind in ("int", "float"):
            src(ind, f"out += _nout({ARRAY_CODE[elem.prim.fmt]!r}, {x}, {self.swap})")
        else:
            e = src.tmp("e")
            src(ind, f"for {e} in {x}:")
            self.scalars(src, ind + 1, elem, e, env)

    def _string(self, src: Source, ind: int, node: StringNode, v: str, env: Env) -> None:
        spec = node.spec
        enc = "utf-16-be" if spec.width == 2 and self.e == ">" else spec.encoding
        raw, n = src.tmp("s"), src.tmp("n")
        src(
            ind,
            f"{raw} = _sout({v}, {enc!r}, {spec.width}); {n} = len({raw}) // {spec.width}",
        )
        bound = str(spec.max_count) if spec.max_count is not None else None
        if node.size_is is not None:
            bound = translate(node.size_is, env)
        if bound is not None:
            src(ind, f"if {n} > {bound}:")
            src(
                ind + 1,
                f"raise NdrError(f'string of {{{n}}} characters exceeds its bound {{{bound}}}')",
            )
        self._align(src, ind, 4)
        src(ind, f"out += {self._pack('II')}(0, {n})")
        src(ind, f"out += {raw}")

    def _union(self, src: Source, node: UnionNode, names: tuple[str, str | None]) -> None:
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
        arm_dispatch(src, node, cls, lambda s, i, arm: self.scalars(s, i, arm, "x", env), encoding=True)
        if names[1]:
            src(0, f"def {names[1]}(out, v, c):")
            src(1, "t = v.tag; x = v.value")
            arm_dispatch(src, node, cls, lambda s, i, arm: self.buffers(s, i, arm, "x", env), encoding=True)

    def entry(self, params: list[tuple[str, Node]], context: tuple[str, ...], what: str) -> EncodeFn:
        """The encoder of top-level elements ``params`` (name, node; in wire order), called as
        ``f(*values, *context_values)``: ``context`` names further values that size expressions may
        use (an [out] array sized by an [in] parameter). ``what`` names it in tracebacks."""
        names = [n for n, _ in params]
        local = {n: f"a_{n}" for n in [*names, *context]}

        def env(name: str) -> str | None:
            return local.get(name)

        src = Source()
        fname = f"enc_{len(self.ns.g)}"
        src(0, f"def {fname}({', '.join(local.values())}):")
        flat = _flat_format(params)
        if flat is not None:
            # scalars only: their offsets are known now, so one pack makes the stub
            src(1, f"return {self._pack(flat)}({', '.join(f'a_{n}' for n in names)})")
        else:
            body = Source()
            for n, node in params:
                self.top(body, 1, node, f"a_{n}", env)
            if body.uses_context:
                src(1, "out = bytearray(); c = _EC()")
                src.extend(body)
                # Pieces when a long byte array was left in place (only code that uses the
                # context can have done so)
                src(1, "return out if c.splices is None else c.splices.pieces(out)")
            else:
                src(1, "out = bytearray()")
                src.extend(body)
                # a bytearray: a long stub is not copied again to make bytes
                src(1, "return out")
        self.ns.define(src, what)
        fn: EncodeFn = self.ns.g[fname]
        return fn


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
