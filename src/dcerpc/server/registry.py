"""Which interfaces a server serves, and which of them a proposed abstract syntax binds to.

What is served is checked as it is added (:func:`check_implementation`): every operation of the
interface has a body of the implementation's own, and every declaration is sound
(docs/declarations.md). An operation the implementation does not define would run the contract's
placeholder (``...``, which would answer every call with nothing, or ``raise
NotImplementedError``): a server refuses it at registration instead of answering a client with
``None``. A declaration whose method has a real body is served as it is.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import uuid
from collections.abc import Callable
from typing import Any

from .._errors import DeclarationError, ImplementationError
from ..interface import Interface
from ..pdu.syntax import SyntaxId

__all__ = ["Registry", "check_implementation", "refusal", "unimplemented"]


def unimplemented(cls: type[Interface]) -> tuple[str, ...]:
    """The operations of ``cls``'s interface that ``cls`` leaves unimplemented, in opnum order: the
    method it would run is the declaration's own, and that is a placeholder (a body of ``...``,
    ``pass`` or ``raise NotImplementedError`` only; a declaration with a real body serves it)."""
    return tuple(
        op.name
        for op in cls.__operations__.values()
        if getattr(cls, op.name, None) is op.function and _placeholder(op.function)
    )


def _placeholder(fn: Callable[..., Any]) -> bool:
    """Whether a function's body does nothing but return None or raise NotImplementedError."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return False  # no source to read (made at run time): take it as implemented
    node = tree.body[0] if tree.body else None
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return False
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring, or a lone ``...``
    if not body:
        return True
    if len(body) != 1:
        return False
    stmt = body[0]
    if isinstance(stmt, ast.Pass):
        return True
    if isinstance(stmt, ast.Raise) and stmt.exc is not None:
        exc = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
        return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"
    return False


def check_implementation(cls: type[Interface]) -> None:
    """Refuse what cannot be served: a contract class itself, or a class that leaves operations
    unimplemented; and check every operation's declaration now (one that names a type declared
    later in its module is checked here, not at the first call).

    Raises:
        ImplementationError: naming the class, its interface and each unimplemented operation.
        DeclarationError: an operation's declaration breaks a rule.
    """
    missing = unimplemented(cls)
    if missing:
        contract = "__syntax__" in vars(cls)
        raise ImplementationError(cls.__name__, cls.__ifname__, missing, contract)
    for op in cls.__operations__.values():
        op.compiled()


def refusal(cls: type[Interface]) -> str | None:
    """Why ``cls`` cannot be served (:func:`check_implementation`'s error, as text), or None."""
    try:
        check_implementation(cls)
    except (ImplementationError, DeclarationError) as e:
        return str(e)
    return None


class Registry:
    """Implementations by interface UUID and major version."""

    def __init__(self) -> None:
        self._impls: dict[tuple[uuid.UUID, int], Interface] = {}

    def add(self, impl: Interface) -> None:
        """Serve ``impl`` (an instance of a subclass of an interface declaration).

        Raises:
            ImplementationError, DeclarationError: see :func:`check_implementation`.
            ValueError: the interface is served already.
        """
        check_implementation(type(impl))
        syntax = type(impl).__syntax__
        key = (syntax.uuid, syntax.version[0])
        if key in self._impls:
            raise ValueError(f"{syntax} is already served by {type(self._impls[key]).__name__}")
        self._impls[key] = impl

    def match(self, proposed: SyntaxId) -> SyntaxId | None:
        """C706 12.6.3.1 / 6.2.4: same UUID and major version, the client's minor at most ours."""
        impl = self._impls.get((proposed.uuid, proposed.version[0]))
        if impl is None:
            return None
        ours = type(impl).__syntax__
        return ours if proposed.version[1] <= ours.version[1] else None

    def get(self, syntax: SyntaxId) -> Interface | None:
        """The implementation serving this (matched) interface."""
        return self._impls.get((syntax.uuid, syntax.version[0]))

    def interfaces(self) -> list[SyntaxId]:
        """Every served interface."""
        return [type(i).__syntax__ for i in self._impls.values()]
