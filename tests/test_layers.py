"""Import arrows point down, and nothing imports in a circle.

The layers are read from the table in docs/architecture.md (between its ``layers`` markers), so the
document and this test cannot disagree. Every import in every module under src/dcerpc counts: at
module level, inside functions, and under ``if TYPE_CHECKING:`` (a type-only import still says
that this code knows that code, and a circle of them is a circle of knowledge even when Python
never runs it).

- every top-level module or package of dcerpc has a layer;
- an import from one of them to another goes to a lower layer (peers on one layer import neither
  each other);
- the sans-IO layers import no asyncio, socket, time (nor selectors, threading);
- no module imports itself through others (no circle among modules, nor so among packages).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
DOC = ROOT / "docs" / "architecture.md"
FORBIDDEN_BELOW = {"asyncio", "socket", "time", "selectors", "threading"}
# the exceptions, all locks over state the process shares (a lock is no I/O and no clock):
# auth/ntlm_users.py guards pyspnego's process-wide users-file variable (and its own cache), so
# that servers in several threads do not see each other's users (docs/pyspnego.md says why the
# variable is shared); ndr/schema.py's build_lock is held while codecs are built (a node is shared
# before it is complete); protocol/budget.py guards the process's memory budget, which servers on
# several threads' loops draw on together
ALLOWED_BELOW = {
    ("dcerpc.auth.ntlm_users", "threading"),
    ("dcerpc.ndr.schema", "threading"),
    ("dcerpc.protocol.budget", "threading"),
}


def _layers() -> tuple[list[set[str]], set[str]]:
    """The layers, lowest first (each a set of units), and the sans-IO units, from the document."""
    text = DOC.read_text()
    found = re.search(r"<!-- layers -->\s*```text\n(.*?)```\s*<!-- /layers -->", text, re.S)
    assert found, f"{DOC} has no layer table between <!-- layers --> and <!-- /layers -->"
    layers: list[set[str]] = []
    sans_io: set[str] = set()
    for line in found.group(1).splitlines():
        if not line.strip():
            continue
        names, kind, _ = (part.strip() for part in line.split("|"))
        units = set(names.split())
        layers.append(units)
        if kind == "sans-IO":
            sans_io |= units
    return layers, sans_io


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "dcerpc").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import in the file, wherever it stands; internal names
    resolve to the deepest module of ours they name, external ones to their top-level name."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield _ours(alias.name, modules), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - node.level + 1]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield (sub if sub in modules else _ours(base, modules)), node.lineno


def _ours(dotted: str, modules: dict[str, Path]) -> str:
    if not dotted.startswith("dcerpc"):
        return dotted.split(".", maxsplit=1)[0]
    parts = dotted.split(".")
    while ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts)


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _graph() -> dict[str, set[tuple[str, int]]]:
    modules = _modules()
    return {name: set(_imports(name, path, modules)) for name, path in modules.items()}


def test_every_package_has_a_layer_and_arrows_point_down() -> None:
    layers, sans_io = _layers()
    level = {unit: i for i, units in enumerate(layers) for unit in units}
    graph = _graph()
    units = {_unit(m) for m in graph}
    assert units <= set(level), f"not in the layer table of {DOC.name}: {sorted(units - set(level))}"
    wrong = []
    for module, imports in graph.items():
        here = _unit(module)
        for target, line in imports:
            if target.startswith("dcerpc"):
                there = _unit(target)
                if there != here and level[there] >= level[here]:
                    wrong.append(f"{module}:{line} imports {target} ({here} -> {there})")
            elif here in sans_io and target in FORBIDDEN_BELOW and (module, target) not in ALLOWED_BELOW:
                wrong.append(f"{module}:{line} imports {target} (sans-IO layer {here})")
    assert not wrong, "upward or sideways imports:\n" + "\n".join(sorted(wrong))


def test_no_module_imports_in_a_circle() -> None:
    graph = {
        m: {t for t, _ in imports if t.startswith("dcerpc") and t != m} for m, imports in _graph().items()
    }
    circles = [c for c in _strongly_connected(graph) if len(c) > 1]
    assert not circles, "import circles: " + "; ".join(" <-> ".join(sorted(c)) for c in circles)


def test_the_walk_sees_imports_wherever_they_stand(tmp_path: Path) -> None:
    # the walk's own check: the deferred and type-only imports it must count are counted
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ..server.server import Server\n"
        "def f():\n    from ..epm import idl\n    import asyncio\n"
    )
    modules = {"dcerpc.server.server": SRC, "dcerpc.epm.idl": SRC, "dcerpc.epm": SRC, "dcerpc.x.y": SRC}
    probe = tmp_path / "y.py"
    probe.write_text(source)
    found = {t for t, _ in _imports("dcerpc.x.y", probe, modules)}
    assert {"dcerpc.server.server", "dcerpc.epm.idl", "asyncio"} <= found


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []
    for root, children_of_root in graph.items():
        if root in index:
            continue
        work = [(root, iter(sorted(children_of_root)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    out.append(component)
    return out
