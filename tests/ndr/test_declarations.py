"""Declarations are checked when they are made: each rule (docs/declarations.md) is a DeclarationError
raised by the class statement, naming the class, the member and the rule.

Each test declares a class that breaks one rule and checks the error names where and which; a
declaration that names a type declared further on is checked at first use (a codec, a proxy, a
server) instead.
"""

from __future__ import annotations

import re
from typing import Annotated, NamedTuple

import pytest

import dcerpc
from dcerpc import DeclarationError, Interface, operation
from dcerpc.ndr import (
    Case,
    ContextHandle,
    Default,
    Fixed,
    LengthIs,
    SizeIs,
    Struct,
    SwitchIs,
    Union,
    Unique,
    VaryingString,
    WString,
    codec,
    rules,
    uint8,
    uint16,
    uint32,
)


def declared(owner: str, member: str, rule: str) -> pytest.RaisesContext[DeclarationError]:
    """``pytest.raises`` for a DeclarationError at ``owner.member`` for ``rule``."""
    return pytest.raises(DeclarationError, match=rf"^{owner}\.{member}: .*; rule: {_re(rule)}$")


def _re(text: str) -> str:
    return re.escape(text)


class Arms(Union, switch_type=uint16):
    one: Annotated[uint8, Case(1)]
    two: Annotated[uint32, Case(2)]


# --- structures -------------------------------------------------------------------------------------


def test_a_conformant_member_that_is_not_last() -> None:
    with declared("Bad", "data", rules.CONFORMANT_LAST) as e:

        class Bad(Struct):
            n: uint32
            data: Annotated[list[uint16], SizeIs("n")]
            after: uint32

    assert (e.value.owner, e.value.member) == ("Bad", "data")
    assert "after is" in e.value.problem
    assert isinstance(e.value, TypeError) and isinstance(e.value, dcerpc.RpcError)


def test_a_conformant_struct_as_a_member_that_is_not_last() -> None:
    class Tail(Struct):
        n: uint32
        data: Annotated[bytes, SizeIs("n")]

    with declared("Outer", "tail", rules.CONFORMANT_LAST):

        class Outer(Struct):
            tail: Tail
            after: uint8


def test_size_is_naming_no_member() -> None:
    with declared("Bad", "data", rules.ATTRIBUTE_SCOPE) as e:

        class Bad(Struct):
            count: uint32
            data: Unique[Annotated[bytes, SizeIs("cuont")]]

    assert "'cuont'" in str(e.value) and "members: count, data" in str(e.value)


@pytest.mark.parametrize("marker", [LengthIs("m"), SizeIs("n + m * 2")])
def test_length_is_and_expressions_naming_no_member(marker: object) -> None:
    with declared("Bad", "data", rules.ATTRIBUTE_SCOPE):

        class Bad(Struct):
            n: uint32
            data: Annotated[list[uint16], Fixed(4), marker]


def test_size_is_naming_a_member_that_is_not_an_integer() -> None:
    with declared("Bad", "data", rules.ATTRIBUTE_INTEGER):

        class Bad(Struct):
            name: Unique[WString]
            data: Unique[Annotated[bytes, SizeIs("name")]]


def test_an_unreadable_attribute_expression() -> None:
    with declared("Bad", "data", rules.ATTRIBUTE_SYNTAX):

        class Bad(Struct):
            n: uint32
            data: Unique[Annotated[bytes, SizeIs("n % 2")]]


def test_size_is_on_an_integer() -> None:
    with declared("Bad", "n", rules.SIZE_ON_ARRAY):

        class Bad(Struct):
            n: Annotated[uint32, SizeIs("n")]


def test_a_fixed_array_of_no_elements() -> None:
    with declared("Bad", "data", rules.FIXED_POSITIVE):

        class Bad(Struct):
            data: Annotated[bytes, Fixed(0)]


def test_an_array_both_fixed_and_conformant() -> None:
    with declared("Bad", "data", rules.ARRAY_KIND):

        class Bad(Struct):
            n: uint32
            data: Annotated[list[uint16], Fixed(2), SizeIs("n")]


def test_an_array_of_context_handles() -> None:
    with declared("Bad", "handles", rules.ARRAY_ELEMENT):

        class Bad(Struct):
            handles: Annotated[list[ContextHandle], Fixed(2)]


def test_an_array_of_conformant_strings() -> None:
    with declared("Bad", "names", rules.ARRAY_ELEMENT):

        class Bad(Struct):
            names: Annotated[list[WString], Fixed(2)]


def test_length_is_on_a_string() -> None:
    with declared("Bad", "s", rules.STRING_VARYING):

        class Bad(Struct):
            n: uint32
            s: Annotated[str, VaryingString(16), LengthIs("n")]


def test_not_an_ndr_type() -> None:
    with declared("Bad", "n", rules.NDR_TYPE):

        class Bad(Struct):
            n: int


# --- unions -----------------------------------------------------------------------------------------


def test_a_union_member_without_switch_is() -> None:
    with declared("Bad", "arm", rules.SWITCH_REQUIRED) as e:

        class Bad(Struct):
            level: uint16
            arm: Arms

    assert "Arms" in e.value.problem


def test_a_union_behind_a_pointer_without_switch_is() -> None:
    with declared("Bad", "arm", rules.SWITCH_REQUIRED):

        class Bad(Struct):
            level: uint16
            arm: Unique[Arms]


def test_switch_is_naming_no_member() -> None:
    with declared("Bad", "arm", rules.ATTRIBUTE_SCOPE):

        class Bad(Struct):
            level: uint16
            arm: Annotated[Arms, SwitchIs("levle")]


def test_switch_is_on_what_is_not_a_union() -> None:
    with declared("Bad", "v", rules.SWITCH_ON_UNION):

        class Bad(Struct):
            level: uint16
            v: Annotated[uint32, SwitchIs("level")]


def test_switch_is_on_an_encapsulated_union() -> None:
    class Wrapped(Union, encapsulated=True):
        one: Annotated[uint8, Case(1)]

    with declared("Bad", "arm", rules.SWITCH_ON_UNION):

        class Bad(Struct):
            level: uint16
            arm: Annotated[Wrapped, SwitchIs("level")]

    class Good(Struct):  # an encapsulated union needs no switch_is
        arm: Wrapped


def test_a_union_arm_without_a_case() -> None:
    with declared("Bad", "two", rules.UNION_ARMS):

        class Bad(Union):
            one: Annotated[uint8, Case(1)]
            two: uint8


def test_a_case_value_naming_two_arms() -> None:
    with declared("Bad", "two", rules.UNION_ARMS):

        class Bad(Union):
            one: Annotated[uint8, Case(1)]
            two: Annotated[uint8, Case(1)]


def test_two_default_arms() -> None:
    with declared("Bad", "two", rules.UNION_ONE_DEFAULT):

        class Bad(Union):
            one: Annotated[uint8, Default]
            two: Annotated[uint16, Default]


def test_a_case_value_outside_the_switch_type() -> None:
    with declared("Bad", "big", rules.UNION_CASE_RANGE):

        class Bad(Union, switch_type=uint8):
            big: Annotated[uint32, Case(256)]


def test_a_union_switched_by_what_is_not_an_integer() -> None:
    with pytest.raises(DeclarationError, match=r"^Bad: .*" + _re(rules.SWITCH_TYPE)):

        class Bad(Union, switch_type=WString):
            one: Annotated[uint8, Case(1)]


def test_a_union_with_no_arms() -> None:
    with pytest.raises(DeclarationError, match=r"^Bad: .*" + _re(rules.UNION_NOT_EMPTY)):

        class Bad(Union):
            pass


def test_a_conformant_union_arm() -> None:
    class Tail(Struct):
        n: uint32
        data: Annotated[bytes, SizeIs("n")]

    with declared("Bad", "tail", rules.UNION_ARM_CONFORMANT):

        class Bad(Union):
            tail: Annotated[Tail, Case(1)]


# --- operations -------------------------------------------------------------------------------------

UUID = "12345678-1234-1234-1234-123456789abc"


def test_size_is_naming_no_parameter() -> None:
    with declared(r"Calc\.Send", "data", rules.ATTRIBUTE_SCOPE) as e:

        class Calc(Interface, uuid=UUID):
            @operation(0)
            async def Send(self, length: uint32, data: Annotated[bytes, SizeIs("len")]) -> None: ...

    assert "parameters: length, data" in str(e.value)


class Out(NamedTuple):
    count: uint32


def test_an_in_parameter_sized_by_an_out_only_one() -> None:
    with declared(r"Calc\.Send", "data", rules.ATTRIBUTE_IN):

        class Calc(Interface, uuid=UUID):
            @operation(0)
            async def Send(self, data: Annotated[bytes, SizeIs("count")]) -> Out: ...


def test_an_out_value_may_be_sized_by_an_in_parameter() -> None:
    class Calc(Interface, uuid=UUID):
        @operation(0)
        async def Get(self, n: uint32) -> Annotated[bytes, SizeIs("n")]: ...

    assert Calc.operation_named("Get").out_names == ("result",)


def test_switch_is_naming_no_parameter() -> None:
    with declared(r"Calc\.Get", "info", rules.ATTRIBUTE_SCOPE):

        class Calc(Interface, uuid=UUID):
            @operation(0)
            async def Get(self, level: uint16, info: Annotated[Arms, SwitchIs("lvl")]) -> None: ...


def test_a_union_parameter_without_switch_is() -> None:
    with declared(r"Calc\.Get", "result", rules.SWITCH_REQUIRED):

        class Calc(Interface, uuid=UUID):
            @operation(0)
            async def Get(self, level: uint16) -> Arms: ...


def test_a_parameter_without_a_type() -> None:
    with declared(r"Calc\.Get", "level", rules.NDR_TYPE):

        class Calc(Interface, uuid=UUID):
            @operation(0)
            async def Get(self, level) -> None: ...  # type: ignore[no-untyped-def]


def test_a_parameter_of_a_python_type() -> None:
    with declared(r"Calc\.Get", "level", rules.NDR_TYPE):

        class Calc(Interface, uuid=UUID):
            @operation(0)
            async def Get(self, level: int) -> None: ...


def test_two_operations_with_one_opnum() -> None:
    with pytest.raises(DeclarationError, match=r"^Calc\.Two: opnum 0 is One's already"):

        class Calc(Interface, uuid=UUID):
            @operation(0)
            async def One(self) -> None: ...

            @operation(0)
            async def Two(self) -> None: ...


# --- declared further on: checked at first use --------------------------------------------------


class Early(Struct):
    n: uint32
    later: Unique[Later]  # declared below: this class statement cannot resolve it yet


class Later(Struct):
    v: uint32


def test_a_type_declared_further_on_is_resolved_at_first_use() -> None:
    assert codec(Early).decode(codec(Early).encode(Early(1, Later(2)))) == Early(1, Later(2))


class EarlyBad(Struct):
    later: Unique[LaterBad]
    data: Unique[Annotated[bytes, SizeIs("nope")]]


class LaterBad(Struct):
    v: uint32


def test_a_broken_rule_in_a_declaration_with_a_forward_name_is_found_at_first_use() -> None:
    with declared("EarlyBad", "data", rules.ATTRIBUTE_SCOPE):
        codec(EarlyBad)


class Forward(Interface, uuid=UUID):
    @operation(0)
    async def Get(self, n: uint32) -> LaterResult: ...


class LaterResult(NamedTuple):
    data: Annotated[bytes, SizeIs("m")]


class ForwardServer(Forward):
    async def Get(self, n: int) -> LaterResult:
        return LaterResult(b"")


def test_an_interface_naming_a_type_declared_further_on_is_checked_when_served() -> None:
    with declared(r"Forward\.Get", "data", rules.ATTRIBUTE_SCOPE):
        dcerpc.Server(ForwardServer())


class HalfX(Struct):  # points to HalfA, declared below: resolved at first use
    a: Unique[HalfA]


class HalfY(Struct):  # HalfZ is not declared until the test below
    z: Unique[HalfZ]  # noqa: F821


class HalfA(Struct):
    x: Unique[HalfX]
    y: Unique[HalfY]


def test_a_resolution_that_fails_half_way_leaves_nothing_half_built() -> None:
    # resolving HalfA builds HalfX (whose pointer back to HalfA closes a cycle), then fails on HalfY:
    # HalfX must not be kept, pointing at a HalfA that was never finished
    with pytest.raises(NameError):
        codec(HalfA)

    class HalfZ(Struct):
        v: uint32

    globals()["HalfZ"] = HalfZ
    try:
        value = HalfX(HalfA(HalfX(None), HalfY(HalfZ(7))))
        assert codec(HalfX).decode(codec(HalfX).encode(value)) == value
    finally:
        del globals()["HalfZ"]
