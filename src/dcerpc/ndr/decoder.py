"""NDR 2.0 decoder generation: Python source that reads one type from a stub at an offset.

Theory of operation. :class:`Decoder` walks a schema node and emits code over ``b`` (the stub,
bytes or a memoryview) at offset ``p``, with ``n = len(b)``; each generated function returns the
value and the new offset. Structures and unions get a scalars and (when they have deferred parts) a
buffers function of their own, ``d{k}_{Name}_s`` / ``d{k}_{Name}_b``, generated on first use and
cached per node; a structure's scalars function builds the instance, its buffers function fills in
the referents in place. A run of fixed-size members (see ``layout.py``) is one precompiled
``struct.Struct.unpack_from``; arrays of numbers go through ``array``; byte order is chosen per
generator (one for each), so a big-endian stub costs no more than a little-endian one.

Decoding is total: every read is bounds-checked (``_need``), every count from the wire is checked
against the octets that remain *before* anything is allocated and charged to the stub's element
budget (``_count_check``), recursion through pointers is bounded, and full-pointer referents are
shared by id (C706 14.3.10). All failures raise :class:`~dcerpc.NdrError` with the offset, from the
generated line that found them. The stub's state is a :class:`~.runtime.DecodeContext`; a decoder
whose code never reads it says so (``uses_context`` False), and callers may pass a shared one.
"""

from __future__ import annotations

import struct

from .declarations import PointerKind
from .layout import Env, Run, arm_dispatch, group_members, run_item, simple_name
from .runtime import ARRAY_CODE, DEC_HELPERS, SWAP, DecodeFn
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

__all__ = ["Decoder"]


class Decoder:
    """Generates decoders over ``b`` (bytes) at offset ``p``; ``n`` is ``len(b)``."""

    def __init__(self, endian: str) -> None:
        self.e = endian  # "<" or ">"
        self.swap = (endian == "<") == SWAP
        self.ns = Namespace(DEC_HELPERS, "decode", "" if endian == "<" else " big-endian")
        self.fns: dict[int, tuple[str, str | None]] = {}

    def _unpack(self, fmt: str) -> str:
        return self.ns.const(struct.Struct(self.e + fmt), "S") + ".unpack_from"

    def _align(self, src: Source, ind: int, a: int) -> None:
        if a > 1:
            src(ind, f"p = (p + {a - 1}) & {-a}")

    def _need(self, src: Source, ind: int, size: str, what: str) -> None:
        src(ind, f"if p + {size} > n:")
        src(ind + 1, f"raise _short(p, {size}, n, {what!r})")

    def functions(self, node: StructNode | UnionNode) -> tuple[str, str | None]:
        """The names of a struct's or union's scalars and buffers functions, generated on first use."""
        got = self.fns.get(id(node))
        if got is not None:
            return got
        k = len(self.fns)
        cls = node.cls.__name__
        names = (f"d{k}_{cls}_s", f"d{k}_{cls}_b" if node.deferred else None)
        self.fns[id(node)] = names
        src = Source()
        if isinstance(node, StructNode):
            self._struct(src, node, names)
        else:
            self._union(src, node, names)
        self.ns.define(src, cls)
        return names

    def _convert(self, src: Source, ind: int, node: Node, raw: list[str], target: str) -> None:
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

    def _run(self, src: Source, ind: int, run: Run, targets: list[str], what: str) -> None:
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

    def _struct(self, src: Source, node: StructNode, names: tuple[str, str | None]) -> None:
        cls = self.ns.const(node.cls, "C")
        sname = node.cls.__name__
        decoded: set[str] = set()

        def env(name: str) -> str | None:
            return f"f_{name}" if name in decoded else None

        src(0, f"def {names[0]}(b, p, c{', mc' if node.conformant else ''}):")
        src(1, "n = len(b)")
        segments = group_members(node.fields)
        if not (segments and isinstance(segments[0], Run) and segments[0].align == node.align):
            self._align(src, 1, node.align)
        last = node.fields[-1][0] if node.fields else None
        for seg in segments:
            if isinstance(seg, Run):
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
        self, src: Source, ind: int, node: Node, target: str, env: Env, mc: str | None, what: str
    ) -> None:
        """Decode the scalars of ``node`` into local ``target``; ``mc`` holds a hoisted max count."""
        item = run_item(node)
        if item is not None and not isinstance(node, ArrayNode):
            run = Run(node.align, item[0], item[1], [("", node)])
            self._run(src, ind, run, [target], what)
        elif isinstance(node, StructNode | UnionNode):
            s, _ = self.functions(node)
            extra = f", {mc}" if isinstance(node, StructNode) and node.conformant else ""
            src(ind, f"{target}, p = {s}(b, p, {src.c}{extra})")
        elif isinstance(node, ArrayNode):
            self._array(src, ind, node, target, env, mc, what)
        elif isinstance(node, StringNode):
            self._string(src, ind, node, target, mc, what)
        else:
            raise AssertionError(node)

    def buffers(self, src: Source, ind: int, node: Node, lhs: str, env: Env, what: str) -> None:
        """Decode the deferred parts of the value held in ``lhs`` (assignable), in place."""
        if not node.deferred:
            return
        if isinstance(node, PointerNode):
            ref = src.tmp("q")
            src(ind, f"{ref} = {lhs}")
            src(ind, f"if {ref} is not None:")
            i = ind + 1
            if node.kind is PointerKind.FULL:
                src(i, f"if {ref} in {src.c}.full:")
                src(i + 1, f"{lhs} = {src.c}.full[{ref}]")
                src(i, "else:")
                i += 1
            if node.cycle:
                src(i, f"{src.c}.depth += 1")
                src(i, f"if {src.c}.depth > {src.c}.max_depth:")
                src(i + 1, f"raise NdrError('{what}: pointers nest deeper than the limit', p)")
            val = src.tmp("y")
            self.full(src, i, node.target, val, env, what)
            if node.kind is PointerKind.FULL:
                src(i, f"{src.c}.full[{ref}] = {val}")
            src(i, f"{lhs} = {val}")
            if node.cycle:
                src(i, f"{src.c}.depth -= 1")
        elif isinstance(node, StructNode | UnionNode):
            _, bf = self.functions(node)
            src(ind, f"p = {bf}(b, p, {lhs}, {src.c})")
        elif isinstance(node, ArrayNode):
            arr, idx = src.tmp("a"), src.tmp("i")
            src(ind, f"{arr} = {lhs}")
            src(ind, f"for {idx} in range(len({arr})):")
            self.buffers(src, ind + 1, node.elem, f"{arr}[{idx}]", env, what)
        else:
            raise AssertionError(node)

    def full(self, src: Source, ind: int, node: Node, target: str, env: Env, what: str) -> None:
        mc = None
        if node.conformant:
            mc = src.tmp("mc")
            self._align(src, ind, 4)
            self._need(src, ind, "4", what + " max count")
            src(ind, f"{mc}, = {self._unpack('I')}(b, p); p += 4")
        self.scalars(src, ind, node, target, env, mc, what)
        self.buffers(src, ind, node, target, env, what)

    def top(self, src: Source, ind: int, node: Node, target: str, env: Env, what: str) -> None:
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
            src(ind + 1, f"if {r} in {src.c}.full:")
            src(ind + 2, f"{target} = {src.c}.full[{r}]")
            src(ind + 1, "else:")
            self.top(src, ind + 2, node.target, target, env, what)
            src(ind + 2, f"{src.c}.full[{r}] = {target}")
        else:
            self.top(src, ind + 1, node.target, target, env, what)
        src(ind, "else:")
        src(ind + 1, f"{target} = None")

    def _count_check(self, src: Source, ind: int, count: str, min_size: int, what: str) -> None:
        # Checked before anything is allocated: a count the remaining octets cannot hold is a lie.
        if min_size:
            src(ind, f"if {count} * {min_size} > n - p:")
            src(
                ind + 1,
                f"raise NdrError(f'{what}: {{{count}}} elements cannot fit in {{n - p}} octets', p)",
            )
        src(ind, f"{src.c}.budget -= {count}")
        src(ind, f"if {src.c}.budget < 0:")
        src(ind + 1, f"raise NdrError('{what}: more elements than the stub limit allows', p)")

    def _array(
        self, src: Source, ind: int, node: ArrayNode, target: str, env: Env, mc: str | None, what: str
    ) -> None:
        what = f"{what} array"
        bound = str(node.fixed) if node.fixed is not None else mc
        if node.conformant and mc is None:
            raise AssertionError("conformant array decoded without its max count")
        size_name = simple_name(node.size_is)
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
            len_name = simple_name(node.length_is)
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
            code = ARRAY_CODE[elem.prim.fmt]
            src(
                ind,
                f"{target} = _nums({code!r}, b, p, {cnt}, {size}, {self.swap}); p += {cnt} * {size}",
            )
        else:
            item = run_item(elem)
            e = src.tmp("e")
            src(ind, f"{target} = []")
            src(ind, f"for _ in range({cnt}):")
            if item is not None and not isinstance(elem, ArrayNode):
                # elements are contiguous: the array is already aligned for the first one
                self._run(src, ind + 1, Run(1, item[0], item[1], [("", elem)]), [e], what)
            else:
                self.scalars(src, ind + 1, elem, e, env, None, what)
            src(ind + 1, f"{target}.append({e})")

    def _string(
        self, src: Source, ind: int, node: StringNode, target: str, mc: str | None, what: str
    ) -> None:
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

    def _union(self, src: Source, node: UnionNode, names: tuple[str, str | None]) -> None:
        assert node.switch is not None
        cls = self.ns.const(node.cls, "U")
        name = node.cls.__name__
        env: Env = lambda _: None  # noqa: E731
        src(0, f"def {names[0]}(b, p, c):")
        src(1, "n = len(b)")
        self._align(src, 1, node.switch.align)  # NDR20: see Encoder._union
        sw = node.switch.prim
        self._need(src, 1, str(sw.size), name + " discriminant")
        src(1, f"t, = {self._unpack(sw.fmt)}(b, p); p += {sw.size}")
        src(1, "x = None")
        arm_dispatch(
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
            arm_dispatch(
                src,
                node,
                name,
                lambda s, i, arm: self.buffers(s, i, arm, "u.value", env, name),
                encoding=False,
            )
            src(1, "return p")

    def entry(self, params: list[tuple[str, Node]], what: str) -> DecodeFn:
        """The decoder of top-level elements ``params`` (name, node; in wire order):
        ``f(stub, offset, ctx) -> (values, end_offset)``. ``what`` names it in tracebacks."""
        decoded: set[str] = set()

        def env(name: str) -> str | None:
            return f"a_{name}" if name in decoded else None

        src = Source()
        fname = f"dec_{len(self.ns.g)}"
        src(0, f"def {fname}(b, p, c):")
        src(1, "n = len(b)")
        for n, node in params:
            self.top(src, 1, node, f"a_{n}", env, n)
            decoded.add(n)
        names = [n for n, _ in params]
        tail = ", ".join(f"a_{n}" for n in names)
        src(1, f"return ({tail}{',' if len(names) == 1 else ''}), p")
        self.ns.define(src, what)
        fn = self.ns.g[fname]
        # whether it reads its DecodeContext (bounded things do); callers may pass a shared one if not
        fn.uses_context = src.uses_context
        decode: DecodeFn = fn
        return decode
