"""Generated code can be read: tracebacks and ``inspect`` show its lines, and it says what it uses.

Each generated function is compiled under a filename of its own (``<ndr decode Outer #12>``) whose
text is registered with linecache, so an error raised inside generated code (the decoders' bounds
checks are all there) is reported with the line that raised it.
"""

from __future__ import annotations

import dis
import inspect
import linecache
import traceback
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import pytest

from dcerpc import NdrError
from dcerpc.epm.idl import Epm
from dcerpc.mgmt.idl import Mgmt
from dcerpc.ndr import (
    Case,
    Full,
    Ref,
    SizeIs,
    Struct,
    Union,
    Unique,
    WString,
    codec,
    decode,
    encode,
    uint8,
    uint16,
    uint32,
)
from dcerpc.ndr.compiler import compile_params, uses_context
from dcerpc.ndr.schema import resolve
from dcerpc.rpcecho import Echo


class Inner(Struct):
    n: uint32
    data: Annotated[list[uint16], SizeIs("n")]


class Outer(Struct):
    a: uint32
    p: Unique[Inner]


class Node(Struct):
    value: uint32
    next: Unique[Node]


class Aliased(Struct):
    x: Full[Inner]
    y: Full[Inner]


class Choice(Union, switch_type=uint16):
    small: Annotated[uint8, Case(1)]
    inner: Annotated[Unique[Inner], Case(2)]


class Named(Struct):
    name: Unique[WString]
    must: Ref[uint32]


def _text(e: BaseException) -> str:
    return "".join(traceback.format_exception(e))


def test_a_decode_error_shows_the_generated_line_that_raised_it() -> None:
    # a, a referent id, then the referent's max count and size field but no element: Inner's
    # scalars function finds the count a lie, two generated frames below the entry point
    stub = b"\x01\0\0\0" + b"\x00\0\x02\0" + b"\x01\0\0\0" + b"\x01\0\0\0"
    with pytest.raises(NdrError, match="1 elements cannot fit in 0 octets") as info:
        decode(Outer, stub)
    text = _text(info.value)
    assert 'File "<ndr decode Inner #' in text
    assert 'File "<ndr decode Outer #' in text
    # the generated line itself, not just its number
    assert "raise NdrError(f'Inner array: {k" in text
    assert "_Inner_s(b, p, c, mc" in text  # the caller's line, in Outer's buffers function
    # the simplest case: the entry point itself finds the stub short
    with pytest.raises(NdrError, match="need 4 octets") as info:
        decode(uint32, b"\x01\x02")
    assert "raise _short(p, 4, n, 'value')" in _text(info.value)


def test_an_encode_error_shows_the_generated_line_that_raised_it() -> None:
    with pytest.raises(NdrError, match=r"\[ref\] pointer cannot be NULL") as info:
        encode(Named, Named("x", None))  # type: ignore[arg-type]
    text = _text(info.value)
    assert 'File "<ndr encode Named #' in text
    assert "_rref(c, v.must)" in text


def test_an_operations_code_is_named_after_it() -> None:
    op = Echo.__operations__[1].compiled()  # EchoData
    request, response = op._req(), op._resp()
    assert request.decode_le.__code__.co_filename.startswith("<ndr decode Echo.EchoData request #")
    assert request.decode_be.__code__.co_filename.startswith("<ndr decode Echo.EchoData request big-endian #")
    assert response.encode.__code__.co_filename.startswith("<ndr encode Echo.EchoData response #")


def test_inspect_getsource_of_a_generated_decoder() -> None:
    _, decode_le, decode_be, _ = compile_params([("value", resolve(Outer))])
    linecache.checkcache()  # what tracebacks and debuggers call: the entries have no file to check
    source = inspect.getsource(decode_le)
    assert source.startswith(f"def {decode_le.__name__}(b, p, c):\n")
    assert "_Outer_s(b, p, c)" in source and source.rstrip().endswith("return (a_value,), p")
    # the structure's own functions, called from there, are as readable
    scalars = decode_le.__globals__[source.split("a_value, p = ")[1].split("(")[0]]
    assert "raise _short(p, 8, n, 'Outer')" in inspect.getsource(scalars)
    # every compile is a file of its own
    assert decode_le.__code__.co_filename != decode_be.__code__.co_filename
    again = compile_params([("value", resolve(Outer))])[1]
    assert again.__code__.co_filename != decode_le.__code__.co_filename


def _stubs() -> Iterator[tuple[str, Callable[..., Any], Callable[..., Any]]]:
    for iface in (Echo, Epm, Mgmt):
        for op in iface.__operations__.values():
            for side in (op._req(), op._resp()):
                yield f"{iface.__name__}.{op.name}", side.encode, side.decode_le
    for tp in (Inner, Outer, Node, Aliased, Choice, Named, uint32, Unique[uint32], Full[Inner], WString):
        c = codec(tp)
        yield repr(tp), c._enc, c._dec_le


def _reads(fn: Callable[..., Any], name: str) -> bool:
    return any(i.opname == "LOAD_FAST" and i.argval == name for i in dis.get_instructions(fn))


def test_uses_context_is_what_the_code_does() -> None:
    """Decoders that never read their context say so (callers then share one); encoders create one
    only when they use it. Both are known as the code is generated, not found in it afterwards."""
    seen = {True: 0, False: 0}
    for what, enc, dec in _stubs():
        assert uses_context(dec) == _reads(dec, "c"), what
        seen[uses_context(dec)] += 1
        creates = "_EC" in enc.__code__.co_names
        assert creates == ("c" in enc.__code__.co_varnames), what
    assert seen[True] and seen[False]
    assert not uses_context(codec(uint32)._dec_le) and uses_context(codec(Node)._dec_le)
    assert "_EC" not in codec(WString)._enc.__code__.co_names
    assert "_EC" in codec(Outer)._enc.__code__.co_names
