"""Declaring RPC interfaces: a Python class is the contract for both server and client.

    class Echo(Interface, uuid="60a15ec5-4de8-11d7-a637-005056a20182", version=(1, 0)):
        @operation(0)
        async def AddOne(self, in_data: uint32) -> uint32: ...

Parameters are the ``[in]`` side in IDL order. The return annotation is the ``[out]`` side: ``None``
for nothing, one NDR type for a single out value (an ``[out]`` parameter or the function result),
or a ``NamedTuple`` whose fields are the ``[out]`` parameters in IDL order followed by the function
result. On the wire the function result is simply the last out value, so this is exact. An
``[in,out]`` parameter appears in both places under the same name.

A server subclasses the contract and gives the methods bodies; a client gets a proxy made from the
same class. Each operation's codecs are compiled on first use and kept on the :class:`Operation`.
"""

from __future__ import annotations

import contextlib
import inspect
import struct
import uuid as _uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, get_type_hints

from ._errors import DeclarationError, EncodeError, NdrError
from .ndr.compiler import (
    DEFAULT_LIMITS,
    DecodeContext,
    DecodeFn,
    EncodeFn,
    Limits,
    compile_params,
    uses_context,
)
from .ndr.explain import misfit
from .ndr.pieces import EncodedStub
from .ndr.rules import NDR_TYPE, check_members
from .ndr.schema import HandleNode, Node, build_lock, resolve
from .pdu.syntax import SyntaxId

__all__ = ["Interface", "Operation", "SyntaxId", "operation"]

F = TypeVar("F", bound=Callable[..., Any])


def operation(opnum: int) -> Callable[[F], F]:
    """Mark a method of an :class:`Interface` as the operation with this number."""
    if not 0 <= opnum <= 0xFFFF:
        raise ValueError(f"opnum {opnum} is out of range (0..65535)")

    def mark(fn: F) -> F:
        fn.__dcerpc_opnum__ = opnum  # type: ignore[attr-defined]
        return fn

    return mark


ResultDecodeFn = Callable[[bytes | memoryview, bool, Limits], Any]
"""A client's result decoder: ``(stub, little_endian, ndr limits) -> result`` (see client_codecs)."""


@dataclass
class _Side:
    """One direction of an operation, compiled."""

    names: tuple[str, ...]
    encode: EncodeFn
    decode_le: DecodeFn
    decode_be: DecodeFn


@dataclass
class Operation:
    """One operation of an interface: its number, parameters, and compiled request/response codecs."""

    name: str
    opnum: int
    function: Callable[..., Any]
    interface: type[Interface]
    _request: _Side | None = field(default=None, repr=False)
    _response: _Side | None = field(default=None, repr=False)
    _result_type: Any = field(default=None, repr=False)
    _single: bool = field(default=False, repr=False)
    handle_params: tuple[int, ...] = field(default=(), repr=False)  # [in] context handles, by index
    _client: tuple[EncodeFn, ResultDecodeFn] | None = field(
        default=None, repr=False, compare=False
    )  # client_codecs(), once made
    _nodes: tuple[list[tuple[str, Node]], list[tuple[str, Node]]] | None = field(
        default=None, repr=False, compare=False
    )  # declared(), once made

    def declared(self) -> tuple[list[tuple[str, Node]], list[tuple[str, Node]]]:
        """The [in] and [out] elements as schema nodes, the declaration's rules checked (done as
        the interface's class statement ends, or on first use when it names a type declared later).

        Raises:
            DeclarationError: a rule is broken (docs/declarations.md), naming the operation, the
                parameter and the rule.
            NameError: an annotation names something that is not defined.
        """
        nodes = self._nodes
        if nodes is None:
            with build_lock:
                nodes = self._nodes
                if nodes is None:
                    nodes = self._nodes = self._declare()
        return nodes

    def _declare(self) -> tuple[list[tuple[str, Node]], list[tuple[str, Node]]]:
        owner = f"{self.interface.__name__}.{self.name}"
        hints = get_type_hints(self.function, include_extras=True)
        sig = inspect.signature(self.function)
        in_names = list(sig.parameters)[1:]  # drop self
        for n in in_names:
            if n not in hints:
                raise DeclarationError(
                    "has no NDR type (annotate it: uint32, WString ...)", NDR_TYPE, owner, n
                )
        in_hints = [(n, hints[n]) for n in in_names]
        ret = hints.get("return", type(None))
        single = False
        if ret is type(None) or ret is None:
            out_hints: list[tuple[str, Any]] = []
            result_type = None
        elif isinstance(ret, type) and issubclass(ret, tuple) and hasattr(ret, "_fields"):
            fields = get_type_hints(ret, include_extras=True)
            out_hints = [(n, fields[n]) for n in ret._fields]
            result_type = ret
        else:
            out_hints = [("result", ret)]
            result_type = None
            single = True
        in_scope = dict(in_hints)
        out_only = {n: "an [out]-only parameter" for n, _ in out_hints if n not in in_scope}
        check_members(owner, in_hints, in_scope, kind="parameter", outside=out_only)
        check_members(owner, out_hints, {**in_scope, **dict(out_hints)}, kind="parameter")
        in_params = [(n, _node(owner, n, tp)) for n, tp in in_hints]
        out_params = [(n, _node(owner, n, tp)) for n, tp in out_hints]
        self._result_type = result_type
        self._single = single
        return in_params, out_params

    def _compile(self) -> None:
        in_params, out_params = self.declared()
        in_names = [n for n, _ in in_params]
        self.handle_params = tuple(i for i, (_, node) in enumerate(in_params) if isinstance(node, HandleNode))
        what = f"{self.interface.__name__}.{self.name}"
        enc, dle, dbe, _ = compile_params(in_params, name=f"{what} request")
        request = _Side(tuple(in_names), enc, dle, dbe)
        out_names = tuple(n for n, _ in out_params)
        context = tuple(n for n in in_names if n not in out_names)
        enc, dle, dbe, _ = compile_params(out_params, context, name=f"{what} response")
        self._context = context
        self._request = request
        self._response = _Side(out_names, enc, dle, dbe)  # last: _build's sign that all is done

    @property
    def in_names(self) -> tuple[str, ...]:
        """The [in] parameter names in wire order."""
        return self._req().names

    @property
    def out_names(self) -> tuple[str, ...]:
        """The [out] value names in wire order (``result`` for a single return value)."""
        return self._resp().names

    def compiled(self) -> Operation:
        """Compile the codecs now (they are otherwise compiled on first use)."""
        self._req()
        return self

    def _req(self) -> _Side:
        if self._request is None:
            self._build()
        assert self._request is not None
        return self._request

    def _resp(self) -> _Side:
        if self._response is None:
            self._build()
        assert self._response is not None
        return self._response

    def _build(self) -> None:
        with build_lock:  # once, however many threads ask first
            if self._response is None:
                self._compile()

    def encode_request(self, *args: Any) -> bytes:
        """The request stub for the [in] values given in order."""
        return bytes(_guard(self._req().encode, args, self))

    def client_codecs(self) -> tuple[EncodeFn, ResultDecodeFn]:
        """For a client's hot path, made once: the request encoder (``*in_values -> stub``; raises
        whatever the encoder raises for values that do not fit, not only NdrError) and the result
        decoder (``(stub, little_endian, limits) -> result`` shaped as ``decode_response`` shapes it)."""
        if self._client is None:
            encode = self._req().encode
            side = self._resp()
            dle, dbe = side.decode_le, side.decode_be
            shape = self._result_type
            single = self._single
            shared = DecodeContext() if not uses_context(dle) else None  # never read: one for all

            def decode(stub: bytes | memoryview, little: bool, limits: Limits) -> Any:
                ctx = shared or DecodeContext(limits)
                values = (dle if little else dbe)(stub, 0, ctx)[0]
                if single:
                    return values[0]
                return None if shape is None else shape(*values)

            self._client = (encode, decode)
        return self._client

    def request_decoders(self) -> tuple[DecodeFn, DecodeFn]:
        """The compiled little- and big-endian request decoders, ``(stub, offset, ctx) -> (values,
        end)``, for a server's hot path (``decode_request`` wraps them)."""
        side = self._req()
        return side.decode_le, side.decode_be

    def decode_request(
        self, stub: bytes, *, big_endian: bool = False, limits: Limits = DEFAULT_LIMITS
    ) -> tuple[tuple[Any, ...], int]:
        """The [in] values of a request stub, and the offset where they end.

        Trailing octets are the caller's business (a security verification trailer may follow).
        """
        side = self._req()
        dec = side.decode_be if big_endian else side.decode_le
        return dec(stub, 0, DecodeContext(limits))

    def response_encoder(self) -> Callable[[Any, tuple[Any, ...]], EncodedStub]:
        """``encode_response`` for a server's hot path, shaped once for this operation; it raises
        whatever the encoder raises for values that do not fit (not only NdrError)."""
        side = self._resp()
        encode = side.encode
        if not self._single:
            return self._encode_response
        # the [in] values an [out] size may refer to, by position among the [in] values
        picks = tuple(self.in_names.index(n) for n in self._context)
        if not picks:
            return lambda result, in_values: encode(result)
        if len(picks) == 1:
            (i,) = picks
            return lambda result, in_values: encode(result, in_values[i])
        return lambda result, in_values: encode(result, *[in_values[i] for i in picks])

    def encode_response(self, result: Any, in_values: tuple[Any, ...] = ()) -> bytes:
        """The response stub for what an implementation returned.

        Args:
            result: the return value (None, one value, or the NamedTuple of outs).
            in_values: the [in] values, for [out] sizes that refer to them (``size_is(max_ents)``).
        """
        return bytes(self._encode_response(result, in_values))

    def _encode_response(self, result: Any, in_values: tuple[Any, ...] = ()) -> EncodedStub:
        # as encode_response, but the stub may be the encoder's own bytearray or Pieces (not copied)
        side = self._resp()
        if self._single:
            outs: tuple[Any, ...] = (result,)
        elif self._result_type is None:
            outs = ()
        else:
            outs = tuple(result)
        if self._context:
            by_name = dict(zip(self.in_names, in_values, strict=False))
            outs = outs + tuple(by_name.get(n) for n in self._context)
        try:
            return side.encode(*outs)
        except ENCODE_FAILURES as e:
            raise self.result_error(result, in_values, e) from None

    def request_error(self, values: tuple[Any, ...], exc: BaseException) -> EncodeError:
        """Why ``values`` did not encode as this operation's [in] side (``exc``: what the encoder
        raised), naming the parameter and the member or element within it. Found by walking the
        values again (ndr/explain.py): the encoders track no path, so success costs nothing."""
        in_params, _ = self.declared()
        if len(values) != len(in_params):
            return EncodeError(self.name, "", f"takes {len(in_params)} values, got {len(values)}")
        found = _misfit(in_params, values)
        if found is None:
            return EncodeError(self.name, "", _text(exc))
        return EncodeError(self.name, *found)

    def result_error(self, result: Any, in_values: tuple[Any, ...], exc: BaseException) -> EncodeError:
        """Why an implementation's ``result`` did not encode as the [out] side (as request_error)."""
        _, out_params = self.declared()
        context = dict(zip(self.in_names, in_values, strict=False))
        shape = self._result_type
        if self._single:
            outs: tuple[Any, ...] = (result,)
        elif shape is None:
            outs = ()
        elif not isinstance(result, tuple) or len(result) != len(out_params):
            return EncodeError(
                self.name,
                "result",
                f"expected {shape.__name__} (a tuple of {len(out_params)}), got {type(result).__name__}",
                result=True,
            )
        else:
            outs = tuple(result)
        found = _misfit(out_params, outs, context)
        if found is None:
            return EncodeError(self.name, "result", _text(exc), result=True)
        return EncodeError(self.name, *found, result=True)

    def decode_response(
        self, stub: bytes, *, big_endian: bool = False, limits: Limits = DEFAULT_LIMITS
    ) -> tuple[Any, int]:
        """The result of a response stub (shaped as the declaration returns it) and its end offset."""
        side = self._resp()
        dec = side.decode_be if big_endian else side.decode_le
        values, end = dec(stub, 0, DecodeContext(limits))
        if self._single:
            return values[0], end
        if self._result_type is None:
            return None, end
        return self._result_type(*values), end


def _misfit(
    params: list[tuple[str, Node]], values: tuple[Any, ...], context: dict[str, Any] | None = None
) -> tuple[str, str] | None:
    try:
        return misfit(params, values, context)
    except Exception:  # values odd enough to break the walk: the encoder's words stand
        return None


def _text(exc: BaseException) -> str:
    """The encoder's own words, when the walk found nothing more precise."""
    return exc.reason if isinstance(exc, NdrError) else f"cannot encode the values given: {exc}"


def _node(owner: str, name: str, tp: Any) -> Node:
    try:
        return resolve(tp)
    except DeclarationError as e:
        raise e.at(owner, name) from None


_ENCODE_ERRORS = (struct.error, TypeError, ValueError, OverflowError, AttributeError, RecursionError)
"""What a compiled encoder raises, besides NdrError, for values that do not fit their types."""
ENCODE_FAILURES = (NdrError, *_ENCODE_ERRORS)
"""Everything a compiled encoder raises for values that do not fit (``Operation.request_error``
says which value and why)."""


def _guard(fn: EncodeFn, args: tuple[Any, ...], op: Operation) -> EncodedStub:
    try:
        return fn(*args)
    except ENCODE_FAILURES as e:
        raise op.request_error(args, e) from None


class Interface:
    """Base of RPC interface declarations (and, subclassed again, of their implementations).

    Class keywords: ``uuid`` and ``version`` (major, minor) identify the interface; ``name`` is the
    display name (defaults to the class name). A subclass without ``uuid`` is an implementation of
    its parent's contract.
    """

    __syntax__: ClassVar[SyntaxId]
    __ifname__: ClassVar[str]
    __operations__: ClassVar[dict[int, Operation]] = {}

    def __init_subclass__(
        cls,
        *,
        uuid: str | None = None,
        version: tuple[int, int] = (1, 0),
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if uuid is None:
            if not hasattr(cls, "__syntax__"):
                raise DeclarationError(
                    "an interface declaration needs uuid=...",
                    "an interface is named by its UUID (DCE IDL: the interface header)",
                    cls.__name__,
                )
            return  # an implementation: the contract's operations stand
        cls.__syntax__ = SyntaxId(_uuid.UUID(uuid), (int(version[0]), int(version[1])))
        cls.__ifname__ = name or cls.__name__
        ops: dict[int, Operation] = {}
        for attr, fn in vars(cls).items():
            opnum = getattr(fn, "__dcerpc_opnum__", None)
            if opnum is None:
                continue
            if opnum in ops:
                raise DeclarationError(
                    f"opnum {opnum} is {ops[opnum].name}'s already",
                    "each operation has its own opnum",
                    cls.__name__,
                    attr,
                )
            ops[opnum] = Operation(attr, opnum, fn, cls)
        cls.__operations__ = dict(sorted(ops.items()))
        for op in ops.values():  # the rules, now (a type declared further on: at first use)
            with contextlib.suppress(NameError):
                op.declared()

    @classmethod
    def operation_named(cls, name: str) -> Operation:
        """The operation with this method name (KeyError if none)."""
        for op in cls.__operations__.values():
            if op.name == name:
                return op
        raise KeyError(f"{cls.__ifname__} has no operation {name!r}")
