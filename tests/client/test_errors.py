"""The client's failures are RpcErrors that say what happened and what to do (docs/errors.md), and
stay catchable as the builtin exceptions they replace."""

from __future__ import annotations

import asyncio
import socket
import tempfile
from pathlib import Path

import pytest

import dcerpc
from dcerpc.client import connect as plain_connect
from dcerpc.epm.host import EpmHost, HostConfig
from dcerpc.epm.resolve import EpmResolver
from dcerpc.rpcecho import Echo
from tests.client.peers import closed_port


@pytest.mark.parametrize(
    ("text", "part", "position", "says"),
    [
        ("ncacn_ip_tcp:HOST[abc]", "endpoint", 18, "'abc' is not a port number"),
        ("ncacn_ip_tcp:HOST[70000]", "endpoint", 18, "a port, 1 to 65535"),
        ("ncacn_ip_tcp:HOST[135,sgin]", "option", 22, "'sgin' is unknown"),
        ("ncacn_ip_tcp:HOST[epm_port=x]", "epm_port option", 18, "not a port number"),
        ("ncacn_tcp:HOST[135]", "protocol sequence", 0, "'ncacn_tcp' is unknown"),
        ("ncacn_ip_tcp:HOST[135", "options", 17, "not one bracket"),
        ("ncacn_ip_tcp:HO ST[135]", "address", 15, "not allowed in a host name"),
        ("127.0.0.1", "protocol sequence", -1, "no ':'"),
    ],
)
def test_a_malformed_binding_names_the_part_the_place_and_what_is_expected(
    text: str, part: str, position: int, says: str
) -> None:
    with pytest.raises(dcerpc.BindingError) as info:
        dcerpc.parse_binding(text)
    e = info.value
    assert isinstance(e, dcerpc.RpcError) and isinstance(e, ValueError)  # old `except ValueError` holds
    assert (e.binding, e.part, e.position) == (text, part, position)
    assert says in str(e) and repr(text) in str(e) and "expected" in str(e)


def test_a_malformed_binding_fails_before_any_lookup() -> None:
    # ``HOST[abc]`` used to parse (endpoint "abc", no port) and be sent to HOST's endpoint mapper
    with pytest.raises(dcerpc.BindingError, match="endpoint"):
        asyncio.run(dcerpc.connect("ncacn_ip_tcp:no-such-host.invalid[abc]"))


def test_connection_refused_names_host_and_port_and_keeps_the_os_error() -> None:
    port = closed_port()
    with pytest.raises(dcerpc.ConnectRefusedError) as info:
        asyncio.run(dcerpc.connect(f"ncacn_ip_tcp:127.0.0.1[{port}]"))
    e = info.value
    assert isinstance(e, dcerpc.ConnectError) and isinstance(e, dcerpc.RpcError)
    assert isinstance(e, ConnectionRefusedError)  # old `except ConnectionRefusedError` holds
    assert f"127.0.0.1:{port}" in str(e) and "is the service running" in str(e)
    assert (e.host, e.port) == ("127.0.0.1", port)
    assert type(e.__cause__) is ConnectionRefusedError


def test_connection_refused_in_sync_client() -> None:
    with pytest.raises(dcerpc.ConnectRefusedError):
        dcerpc.connect_sync(f"ncacn_ip_tcp:127.0.0.1[{closed_port()}]")


def test_an_unknown_host_names_the_host() -> None:
    with pytest.raises(dcerpc.HostNotFoundError) as info:
        asyncio.run(dcerpc.connect("ncacn_ip_tcp:no-such-host.invalid[135]"))
    e = info.value
    assert isinstance(e, dcerpc.ConnectError) and isinstance(e, socket.gaierror)
    assert "no-such-host.invalid:135" in str(e) and "unknown host" in str(e)
    assert isinstance(e.__cause__, socket.gaierror)


def test_an_absent_unix_socket_is_refused() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "nobody")
        with pytest.raises(dcerpc.ConnectRefusedError, match="nobody"):
            asyncio.run(dcerpc.connect(f"ncalrpc:[{path}]"))


def test_no_endpoint_and_no_resolver_is_a_binding_error() -> None:
    async def main() -> None:
        conn = await plain_connect("ncacn_ip_tcp:127.0.0.1")
        with pytest.raises(dcerpc.BindingError, match="no resolver"):
            await conn.bind(Echo)

    asyncio.run(main())


def test_an_unregistered_interface_is_named_with_ept_s_not_registered() -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            host = EpmHost(HostConfig(epm_port=0, socket=str(Path(tmp) / "epm.sock")))
            await host.start()
            try:
                assert host.epm_address is not None
                url = f"ncacn_ip_tcp:127.0.0.1[epm_port={host.epm_address[1]}]"
                async with await dcerpc.connect(url, resolver=EpmResolver()) as conn:
                    with pytest.raises(dcerpc.EndpointNotRegisteredError) as info:
                        await conn.bind(Echo)
            finally:
                await host.close()
        e = info.value
        assert isinstance(e, dcerpc.ResolveError) and isinstance(e, dcerpc.RpcError)
        assert e.interface == "Echo (rpcecho)" and e.status == 0x16C9A0D6
        text = str(e)
        assert "Echo" in text and str(Echo.__syntax__.uuid) in text and "v1.0" in text
        assert "ept_s_not_registered" in text and "127.0.0.1" in text

    asyncio.run(main())


def test_an_unknown_level_is_an_rpc_error() -> None:
    from dcerpc.auth import NTLM

    with pytest.raises(dcerpc.RpcError, match="unknown authentication level 'sealed'"):
        asyncio.run(dcerpc.connect("ncacn_ip_tcp:127.0.0.1[1]", auth=NTLM("D", "u", "p"), level="sealed"))


def test_every_error_is_exported_and_an_rpc_error() -> None:
    names = [n for n in dcerpc.__all__ if n.endswith("Error")]
    assert {"BindingError", "ConnectError", "ConnectRefusedError", "HostNotFoundError"} <= set(names)
    assert {"EndpointNotRegisteredError", "RpcTimeoutError", "CallTimeoutError", "AuthError"} <= set(names)
    for n in names:
        assert issubclass(getattr(dcerpc, n), dcerpc.RpcError), n
