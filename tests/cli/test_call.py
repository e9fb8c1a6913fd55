"""``dcerpc call``: any built-in or importable operation, arguments shaped by their declared types."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from dcerpc.cli import main
from dcerpc.cli.call import find_operation, parse_arguments

from .conftest import Host
from .procs import echo_binding


def call(*args: str) -> tuple[int, dict[str, object]]:
    result = CliRunner().invoke(main, ["call", *args, "--json"], catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout)


def test_built_in_operations_by_position_and_name(host: Host) -> None:
    echo = echo_binding(host.ready)
    assert call(echo, "rpcecho.AddOne", "41") == (0, {"ok": True, "operation": "rpcecho.AddOne",
                                                       "result": {"result": 42}})  # fmt: skip
    assert call(echo, "Echo.AddOne", "in_data=1")[1]["result"] == {"result": 2}
    # a size parameter left out is the length of the array it sizes; octets are hex
    assert call(echo, "rpcecho.EchoData", "in_data=00ff10")[1]["result"] == {"result": "00ff10"}
    assert call(echo, "rpcecho.TestCall", "hello")[1]["result"] == {"result": "hello"}
    assert call(echo, "rpcecho.TestCall", "123")[1]["result"] == {"result": "123"}  # a string stays one
    # a struct from a JSON object; a union comes back as {arm: value}
    _, doc = call(echo, "rpcecho.TestSurrounding", '{"x": 2, "surrounding": [1, 2]}')
    assert doc["result"] == {"result": {"x": 4, "surrounding": [0, 0, 0, 0]}}
    _, doc = call(echo, "rpcecho.TestCall2", "level=1")
    assert doc["result"] == {"info": {"info1": {"v": 10}}, "result": 0}


def test_through_the_endpoint_mapper_and_to_the_mapper_itself(host: Host) -> None:
    code, doc = call(f"ncacn_ip_tcp:127.0.0.1[epm_port={host.port}]", "rpcecho.AddOne", "1")
    assert code == 0 and doc["result"] == {"result": 2}
    code, doc = call(f"ncacn_ip_tcp:127.0.0.1[{host.port}]", "mgmt.is_server_listening")
    assert code == 0 and doc["result"] == {"result": True, "status": 0}  # type: ignore[comparison-overlap]
    code, doc = call("127.0.0.1", "epmapper.ept_inq_object", "--epm-port", str(host.port))
    assert code == 0 and doc["result"] == {"ept_object": "00000000-0000-0000-0000-000000000000", "status": 0}


def test_an_importable_interface_from_the_current_directory(
    host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_echo_contract.py").write_text(
        textwrap.dedent("""
        from dcerpc.interface import Interface, operation
        from dcerpc.ndr import uint32

        class MyEcho(Interface, uuid="60a15ec5-4de8-11d7-a637-005056a20182", version=(1, 0)):
            @operation(0)
            async def AddOne(self, in_data: uint32) -> uint32: ...
    """)
    )
    monkeypatch.chdir(tmp_path)
    code, doc = call(echo_binding(host.ready), "my_echo_contract:MyEcho.AddOne", "9")
    assert code == 0 and doc["result"] == {"result": 10}


def test_wrong_arguments_are_usage_errors_naming_the_parameter() -> None:
    _, op = find_operation("rpcecho.AddOne")
    for args, needle in [
        (("x",), "AddOne(in_data=...): expected an integer"),
        (("1", "2"), "takes 1 argument"),
        (("in_data=1", "in_data=2"), "given twice"),
        ((), "missing argument in_data"),
    ]:
        with pytest.raises(Exception, match=needle.replace("(", r"\(").replace(")", r"\)")):
            parse_arguments(op, args)
    code, doc = call("ncacn_ip_tcp:127.0.0.1[1]", "rpcecho.Nope")
    assert code == 2 and "has no operation 'Nope'" in str(doc["error"]) and "AddOne" in str(doc["error"])
    code, doc = call("ncacn_ip_tcp:127.0.0.1[1]", "samr.Connect")
    assert code == 2 and "not a built-in interface" in str(doc["error"])


def test_failures_are_rpc_errors(host: Host) -> None:
    code, doc = call(f"ncacn_ip_tcp:127.0.0.1[epm_port={host.port}]", "mgmt.is_server_listening")
    assert code == 1  # mgmt is not in the map: the mapper says so, by name
    assert doc["kind"] == "EndpointNotRegisteredError" and "mgmt" in str(doc["error"])
