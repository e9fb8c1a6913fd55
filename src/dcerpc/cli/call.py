"""``dcerpc call BINDING Interface.Operation ARG...``: one call to any declared operation, as
rpcclient users expect.

The interface is a built-in one by name (``rpcecho``, ``epmapper``, ``mgmt``, or the class names
``Echo``, ``Epm``, ``Mgmt``) or any importable declaration, ``module:Class`` (found as ``python -m``
finds modules: the current directory first). Arguments are the [in] parameters, by position or as
``name=value``; each value is read as JSON, else as a Python literal, else as the text itself, then
shaped by the parameter's declared type:

- integers, strings and booleans as written (``41``, ``hello``, ``true``); enums by number or name;
- octets (``bytes``) as hex (``00ff10``), a Python literal (``b'ab'``) or a JSON list of numbers;
- structs as a JSON object of their fields (or a list in field order), unions as ``{"arm": value}``,
  arrays as JSON lists, a unique pointer's null as ``null``;
- a size parameter left out is the length of the array that names it (``EchoData in_data=0a0b``).

The result is printed by [out] name (``--json``: one object). Failures are ``RpcError`` messages
(a fault names its status), exit status 1; a wrong argument is a usage error, exit status 2.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import enum
import importlib
import json
import os
import sys
import types
import typing
import uuid
from typing import Annotated, Any, get_args, get_origin, get_type_hints

import click

from .._errors import RpcError
from ..connecting import connect
from ..epm.idl import Epm
from ..interface import Interface, Operation
from ..mgmt.idl import Mgmt
from ..ndr import ContextHandle
from ..ndr.declarations import Union as NdrUnion
from ..rpcecho.idl import Echo
from .options import client_auth_options, client_epm_port, credentials, epm_port_option, with_epm_port
from .output import Failure, console, emit_json

__all__ = ["BUILT_IN", "call", "find_operation", "parse_arguments", "plain"]

BUILT_IN: dict[str, type[Interface]] = {
    "rpcecho": Echo,
    "echo": Echo,
    "epmapper": Epm,
    "epm": Epm,
    "mgmt": Mgmt,
}


def find_operation(spec: str) -> tuple[type[Interface], Operation]:
    """``Interface.Operation`` or ``module:Class.Operation``.

    Raises:
        click.UsageError: no such interface or operation (naming those there are).
    """
    iface_part, dot, op_name = spec.rpartition(".")
    if not dot or not iface_part or not op_name:
        raise click.UsageError(f"{spec!r}: expected INTERFACE.OPERATION (e.g. rpcecho.AddOne)")
    iface: Any
    if ":" in iface_part:
        module, _, name = iface_part.partition(":")
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            iface = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            raise click.UsageError(f"cannot load {iface_part}: {e}") from None
        if not (isinstance(iface, type) and issubclass(iface, Interface)) or not hasattr(iface, "__syntax__"):
            raise click.UsageError(f"{iface_part} is not an interface declaration")
    else:
        iface = BUILT_IN.get(iface_part.lower())
        if iface is None:
            known = ", ".join(sorted(BUILT_IN))
            raise click.UsageError(f"{iface_part!r} is not a built-in interface ({known}); use module:Class")
    try:
        return iface, iface.operation_named(op_name)
    except KeyError:
        names = ", ".join(op.name for op in iface.__operations__.values())
        raise click.UsageError(f"{iface.__ifname__} has no operation {op_name!r} (it has {names})") from None


# -- reading arguments -----------------------------------------------------------------------------


def _literal(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def _strip(hint: Any) -> tuple[Any, tuple[Any, ...]]:
    extras: tuple[Any, ...] = ()
    while get_origin(hint) is Annotated:
        args = get_args(hint)
        hint, extras = args[0], extras + tuple(args[1:])
    return hint, extras


def _shape(value: Any, hint: Any, text: str | None, where: str) -> Any:
    """``value`` (read from ``text``, when it came from the command line) as type ``hint`` wants it."""
    hint, _ = _strip(hint)
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _shape(value, options[0], text, where)
    if hint is str:
        return text if text is not None and not isinstance(value, str) else str(value)
    if hint is bytes:
        if isinstance(value, bytes):
            return value
        if isinstance(value, list) and all(isinstance(v, int) for v in value):
            return bytes(value)
        raw = text if text is not None else value
        if isinstance(raw, int):
            raw = str(raw)
        try:
            return bytes.fromhex(str(raw))
        except ValueError:
            raise click.UsageError(
                f"{where}: octets are hex (00ff), b'...' or a JSON list, got {raw!r}"
            ) from None
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        if isinstance(value, str):
            try:
                return hint[value]
            except KeyError:
                names = ", ".join(m.name for m in hint)
                raise click.UsageError(f"{where}: {value!r} is not one of {names}") from None
        return hint(value)
    if hint is bool:
        return bool(value)
    if hint is int or (isinstance(hint, type) and issubclass(hint, int)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise click.UsageError(f"{where}: expected an integer, got {text or value!r}")
        return hint(value)
    if hint is float:
        return float(value)
    if hint is uuid.UUID:
        return uuid.UUID(str(value))
    if origin is list:
        if not isinstance(value, list):
            raise click.UsageError(f"{where}: expected a JSON list, got {text or value!r}")
        (item,) = get_args(hint) or (Any,)
        return [_shape(v, item, None, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(hint, type) and issubclass(hint, NdrUnion):
        if not (isinstance(value, dict) and len(value) == 1):
            arms = ", ".join(hint.__ndr_tag_by_arm__)
            raise click.UsageError(f'{where}: a union is {{"ARM": value}} with ARM one of {arms}')
        ((arm, inner),) = value.items()
        arm_hints = get_type_hints(hint, include_extras=True)
        if arm not in hint.__ndr_tag_by_arm__:
            raise click.UsageError(f"{where}: {hint.__name__} has no arm {arm!r}")
        return hint(**{arm: _shape(inner, arm_hints[arm], None, f"{where}.{arm}")})
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        fields = [f for f in dataclasses.fields(hint) if f.init]
        hints = get_type_hints(hint, include_extras=True)
        if isinstance(value, list):
            value = dict(zip((f.name for f in fields), value, strict=False))
        if not isinstance(value, dict):
            raise click.UsageError(
                f"{where}: a {hint.__name__} is a JSON object of {[f.name for f in fields]}"
            )
        unknown = set(value) - {f.name for f in fields}
        if unknown:
            raise click.UsageError(f"{where}: {hint.__name__} has no field {', '.join(sorted(unknown))}")
        return hint(**{k: _shape(v, hints[k], None, f"{where}.{k}") for k, v in value.items()})
    if hint is ContextHandle:
        return ContextHandle() if value in (None, "null", 0) else ContextHandle(uuid=uuid.UUID(str(value)))
    return value


def parse_arguments(op: Operation, args: tuple[str, ...]) -> list[Any]:
    """The [in] values for ``op`` from command-line words (positional, or ``name=value``).

    Raises:
        click.UsageError: a parameter missing, unknown or given twice, or a value of the wrong shape.
    """
    names = op.in_names
    hints = get_type_hints(op.function, include_extras=True)
    texts: dict[str, str] = {}
    position = 0
    for word in args:
        name, eq, rest = word.partition("=")
        if eq and name in names:
            key, text = name, rest
        else:
            if position >= len(names):
                raise click.UsageError(
                    f"{op.name} takes {len(names)} argument(s): {', '.join(names) or 'none'}"
                )
            while names[position] in texts:
                position += 1
            key, text = names[position], word
            position += 1
        if key in texts:
            raise click.UsageError(f"{op.name}: {key} given twice")
        texts[key] = text
    values: dict[str, Any] = {
        n: _shape(_literal(t), hints[n], t, f"{op.name}({n}=...)") for n, t in texts.items()
    }
    for n in names:  # a size parameter left out: the length of what it sizes
        if n in values:
            continue
        for other in names:
            _, extras = _strip(hints[other])
            if other in values and any(getattr(x, "expr", None) == n for x in extras):
                values[n] = len(values[other])
                break
        else:
            if get_origin(_strip(hints[n])[0]) in (typing.Union, types.UnionType):
                values[n] = None  # a unique pointer left out: null
            else:
                raise click.UsageError(f"{op.name}: missing argument {n} (takes {', '.join(names)})")
    return [values[n] for n in names]


def plain(value: Any) -> Any:
    """A result as JSON can carry it: structs and results as objects, octets as hex."""
    if isinstance(value, NdrUnion):
        return {value.arm_name() or str(value.tag): plain(value.value)}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return {k: plain(getattr(value, k)) for k in value._fields}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, bool | None | str | float):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return str(value)


@click.command()
@click.argument("binding")
@click.argument("operation", metavar="INTERFACE.OPERATION")
@click.argument("args", nargs=-1)
@epm_port_option()
@client_auth_options
def call(
    binding: str,
    operation: str,
    args: tuple[str, ...],
    epm_port: int | None,
    user: str | None,
    mech: str,
    level: str,
    config: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Call INTERFACE.OPERATION at BINDING with ARGS and print what it returns.

    BINDING without an endpoint (or a bare HOST) is resolved through the host's endpoint mapper.
    ARGS are the [in] parameters, by position or as name=value (JSON, Python literals or text;
    see docs/cli.md)."""
    iface, op = find_operation(operation)
    values = parse_arguments(op, args)
    target = with_epm_port(binding, client_epm_port(config, epm_port))
    auth = credentials(user, mech)

    async def go() -> Any:
        async with await connect(
            str(target), timeout=timeout, call_timeout=timeout, auth=auth, level=level
        ) as conn:
            proxy = await conn.bind(iface)
            return await getattr(proxy, op.name)(*values)

    try:
        result = asyncio.run(go())
    except (OSError, RpcError) as e:
        raise Failure(f"{iface.__ifname__}.{op.name} at {target}: {e}", type(e).__name__) from None
    outs = op.out_names
    shaped = plain(result)
    if len(outs) == 1 and not (isinstance(result, tuple) and hasattr(result, "_fields")):
        shaped = {outs[0]: shaped}
    if as_json:
        emit_json({"ok": True, "operation": f"{iface.__ifname__}.{op.name}", "result": shaped})
        return
    out = console()
    if not outs:
        out.print(f"{op.name}: done (no [out] values)")
    for name, value in shaped.items() if isinstance(shaped, dict) else [("result", shaped)]:
        if isinstance(value, dict | list):
            click.echo(f"{name}:")
            out.print_json(data=value)
        else:
            click.echo(f"{name}: {value}")
