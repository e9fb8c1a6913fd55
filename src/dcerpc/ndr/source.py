"""Python source for generated NDR code: lines, fresh names, constants, and compiling it.

Theory of operation. A generator appends indented lines to a :class:`Source` and takes fresh local
names from it (``tmp``). Whenever it emits code that refers to the per-stub context ``c`` it spells
the name :attr:`Source.c`, so the Source knows whether its code uses the context: an entry point
then creates a context only when it is needed, and a decoder records whether callers may share one
(``uses_context``). Nothing edits lines once emitted.

A :class:`Namespace` is the module dict of one generator (one direction and byte order). It holds
the runtime helpers, the constants the code refers to (precompiled ``struct.Struct`` objects,
classes, enum maps; one name per distinct value) and every function defined so far, so generated
functions call each other by name. :meth:`Namespace.define` compiles one Source under a filename of
its own, such as ``<ndr decode EchoInfo5 #12>``, and registers its text with :mod:`linecache`, so
tracebacks and :func:`inspect.getsource` show the generated lines. The entry's modification time is
None: ``linecache.checkcache`` keeps such entries (they stand for source that has no file, as for
source obtained from a module's ``__loader__``); only ``linecache.clearcache`` drops them.
"""

from __future__ import annotations

import itertools
import linecache
from typing import Any, Final

__all__ = ["Namespace", "Source"]

_serial: Final = itertools.count(1)  # makes every generated filename unique in the process


class Source:
    """Lines of Python source with indentation, plus fresh local names."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.n = 0
        self.uses_context = False  # whether any line refers to the per-stub context

    def __call__(self, ind: int, text: str) -> None:
        self.lines.append("    " * ind + text)

    def tmp(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    @property
    def c(self) -> str:
        """The name of the per-stub context, for code about to use it."""
        self.uses_context = True
        return "c"

    def extend(self, other: Source) -> None:
        """Append ``other``'s lines (already indented as they should be here)."""
        self.lines.extend(other.lines)
        self.uses_context |= other.uses_context


class Namespace:
    """The module dict generated functions live in, with named constants.

    ``direction`` and ``suffix`` name the generator in filenames: ``<ndr {direction} {what}{suffix}
    #{serial}>``.
    """

    def __init__(self, helpers: dict[str, Any], direction: str, suffix: str = "") -> None:
        self.g: dict[str, Any] = dict(helpers)
        self.consts: dict[Any, str] = {}
        self.n = 0
        self.direction = direction
        self.suffix = suffix

    def const(self, value: Any, prefix: str = "K") -> str:
        key = (type(value), value) if _hashable(value) else id(value)
        name = self.consts.get(key)
        if name is None:
            self.n += 1
            name = f"{prefix}{self.n}"
            self.consts[key] = name
            self.g[name] = value
        return name

    def define(self, src: Source, what: str) -> str:
        """Execute ``src`` here (its functions join the namespace); returns the filename it has in
        tracebacks, registered with linecache."""
        text = "\n".join(src.lines) + "\n"
        filename = f"<ndr {self.direction} {what:.80}{self.suffix} #{next(_serial)}>"
        code = compile(text, filename, "exec")
        linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)
        exec(code, self.g)
        return filename


def _hashable(v: Any) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True
