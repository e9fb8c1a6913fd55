"""What the NDR encoder and decoder generators share: the layout of members and of union arms.

Theory of operation. Both directions walk the same schema and must agree on where each octet is, so
the decisions that fix it live here once:

- :func:`group_members` groups a structure's consecutive fixed-size members into :class:`Run` s: one
  ``struct`` format each, the NDR alignment padding between members (C706 14.2.2) folded in as
  ``x`` pad bytes. A run starts aligned and only holds members aligned no stricter than its first, so
  the padding inside it does not depend on where the run starts.
- :func:`arm_dispatch` emits the ``if t == ...`` chain that selects a union's arm by its
  discriminant (C706 14.3.8), with the default arm or an error for an unknown tag.
- :func:`translate` reads an IDL attribute expression (``size_is(len)``, ``length_is(*n)``,
  ``x*2``) as Python over the names in scope.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from .schema import ArrayNode, GuidNode, HandleNode, Node, PointerNode, PrimNode, UnionNode
from .source import Source

__all__ = ["Env", "Run", "arm_dispatch", "group_members", "run_item", "simple_name", "translate"]

_TOKEN: Final = re.compile(
    r"\s*(?:(\*?)([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"
    r"|(0x[0-9a-fA-F]+|\d+)|([-+*/()]))"
)


# Where a name of an IDL expression lives in the generated code (None: not in scope).
Env = Callable[[str], str | None]


def translate(expr: str, env: Env) -> str:
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


def simple_name(expr: str | None) -> str | None:
    """The one name an expression such as ``n`` or ``*n`` reads, or None if it is anything else."""
    if expr is None:
        return None
    m = re.fullmatch(r"\s*\*?([A-Za-z_][A-Za-z0-9_]*)\s*", expr)
    return m.group(1) if m else None


def run_item(node: Node) -> tuple[str, int] | None:
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
class Run:
    """Consecutive members packed by one struct call: (name, node) with padding folded in."""

    align: int
    fmt: str
    size: int
    members: list[tuple[str, Node]]


def group_members(fields: list[tuple[str, Node]]) -> list[Run | tuple[str, Node]]:
    """Group members into runs; a run starts aligned and only holds members aligned no stricter."""
    segs: list[Run | tuple[str, Node]] = []
    run: Run | None = None
    for name, node in fields:
        item = run_item(node)
        if item is None:
            run = None
            segs.append((name, node))
            continue
        fmt, size = item
        if run is None or node.align > run.align:
            run = Run(node.align, "", 0, [])
            segs.append(run)
        pad = -run.size % node.align
        run.fmt += "x" * pad + fmt if pad else fmt
        run.size += pad + size
        run.members.append((name, node))
    return segs


def arm_dispatch(
    src: Source, node: UnionNode, cls: str, emit: Callable[[Source, int, Node], None], *, encoding: bool
) -> None:
    """The arm selection of a union function whose discriminant is in ``t``: ``emit`` writes each
    arm's code (arms sharing a member share one branch). Decoders' errors carry the offset ``p``."""
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
