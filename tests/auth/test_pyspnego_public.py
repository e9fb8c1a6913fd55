"""dcerpc uses pyspnego through its public API only: no private module, no patched attribute.

pyspnego's underscore modules (``spnego._ntlm``, ``spnego._ntlm_raw``...) change without notice
between releases, and an attribute assigned on any spnego module changes pyspnego for the whole
process. Both are found in the source of every module under src/dcerpc, by its syntax tree.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "dcerpc"


def _private(module: str) -> bool:
    parts = module.split(".")
    return parts[0] == "spnego" and any(p.startswith("_") for p in parts[1:])


def offences(source: str, name: str = "<string>") -> list[str]:
    """Each private pyspnego import, and each assignment to or deletion of a spnego module's attribute."""
    tree = ast.parse(source, name)
    spnego_names: set[str] = set()  # local names bound to spnego or anything imported from it
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "spnego":
                    spnego_names.add(alias.asname or alias.name.split(".")[0])
                    if _private(alias.name):
                        found.append(f"{name}:{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "spnego":
            for alias in node.names:
                spnego_names.add(alias.asname or alias.name)
                if _private(f"{node.module}.{alias.name}"):
                    found.append(f"{name}:{node.lineno}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _private(node.value):
            found.append(f"{name}:{node.lineno}: names {node.value!r}")  # importlib.import_module(...)

    def root(expr: ast.expr) -> str | None:
        while isinstance(expr, ast.Attribute | ast.Subscript):
            expr = expr.value
        return expr.id if isinstance(expr, ast.Name) else None

    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign | ast.Delete):
            targets = list(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("setattr", "delattr")
            and node.args
            and root(node.args[0]) in spnego_names
        ):
            found.append(f"{name}:{node.lineno}: {node.func.id} on a spnego object")
        for target in targets:
            for t in target.elts if isinstance(target, ast.Tuple | ast.List) else [target]:
                if isinstance(t, ast.Attribute) and root(t) in spnego_names:
                    found.append(f"{name}:{node.lineno}: assigns {ast.unparse(t)}")
    return found


def test_no_module_uses_pyspnego_privately() -> None:
    modules = sorted(SRC.rglob("*.py"))
    assert len(modules) > 20
    found = [o for path in modules for o in offences(path.read_text(), str(path.relative_to(SRC)))]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "from spnego import _ntlm\n_ntlm.compute_response_v2 = f\n",  # what auth/_ntlm_compat.py did
        "from spnego._ntlm_raw.crypto import ntowfv1\n",  # what auth/mechs.py did
        "import spnego._ntlm_raw.messages as m\n",
        "import spnego\nspnego.server = f\n",
        "import spnego.iov\nsetattr(spnego.iov, 'IOVBuffer', f)\n",
        "import importlib\nimportlib.import_module('spnego._ntlm')\n",
        "from spnego import ContextProxy\nContextProxy.step = f\n",
    ],
)
def test_the_check_finds_private_use(source: str) -> None:
    assert offences(source)


def test_the_check_passes_public_use() -> None:
    assert not offences(
        "import spnego\nimport spnego.iov\nfrom spnego import ContextProxy\nx = spnego.client()\n"
    )
