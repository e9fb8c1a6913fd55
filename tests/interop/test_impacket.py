"""impacket (the client most security tooling is built on) binds and calls our rpcecho over TCP."""

from __future__ import annotations

import struct

import pytest

from dcerpc.rpcecho import Echo, echo_Surrounding
from dcerpc.testing import ServerThread

pytest.importorskip("impacket", reason="impacket is a dev dependency (pip install -e '.[dev]')")

from impacket.dcerpc.v5 import transport
from impacket.dcerpc.v5.rpcrt import DCERPCException
from impacket.uuid import uuidtup_to_bin


def bound(port: int, max_frag: int | None = None) -> transport.DCERPCTransport:
    rpc = transport.DCERPCTransportFactory(f"ncacn_ip_tcp:127.0.0.1[{port}]")
    dce = rpc.get_dce_rpc()
    if max_frag is not None:
        dce.set_max_fragment_size(max_frag)
    dce.connect()
    dce.bind(uuidtup_to_bin(("60a15ec5-4de8-11d7-a637-005056a20182", "1.0")))
    return dce


def call(dce: transport.DCERPCTransport, name: str, *args: object) -> bytes:
    op = Echo.operation_named(name)
    dce.call(op.opnum, op.encode_request(*args))
    return dce.recv()  # type: ignore[no-any-return]


@pytest.mark.interop
def test_impacket_binds_and_calls(echo_server: ServerThread) -> None:
    dce = bound(echo_server.port)
    try:
        assert call(dce, "AddOne", 41) == struct.pack("<I", 42)
        data = bytes(range(256)) * 40  # larger than one fragment both ways
        reply = call(dce, "EchoData", len(data), data)
        assert Echo.operation_named("EchoData").decode_response(reply)[0] == data
        reply = call(dce, "TestCall", "impacket")
        assert Echo.operation_named("TestCall").decode_response(reply)[0] == "impacket"
        reply = call(dce, "TestSurrounding", echo_Surrounding(2, [5, 6]))
        assert Echo.operation_named("TestSurrounding").decode_response(reply)[0] == echo_Surrounding(
            4, [0] * 4
        )
    finally:
        dce.disconnect()


@pytest.mark.interop
def test_impacket_fragmented_requests(echo_server: ServerThread) -> None:
    """impacket splits requests at its own fragment size; the server reassembles them."""
    dce = bound(echo_server.port, max_frag=1500)
    try:
        data = b"\xa5" * 20000
        reply = call(dce, "EchoData", len(data), data)
        assert Echo.operation_named("EchoData").decode_response(reply)[0] == data
    finally:
        dce.disconnect()


@pytest.mark.interop
@pytest.mark.parametrize("max_frag", [None, 5840])
def test_impacket_long_calls(echo_server: ServerThread, max_frag: int | None) -> None:
    """A call long enough that our server reads its fragments straight into the call's buffer and
    answers from the decoded bytes where they lie (pieces): impacket gets it back intact, at its
    own fragment size and at Windows'."""
    dce = bound(echo_server.port, max_frag=max_frag)
    try:
        data = bytes((i * 7 + 3) & 0xFF for i in range(256)) * 4800 + b"tail"  # 1.2 MB: past SPARE_MIN
        for _ in range(2):  # the second call takes the first one's buffer
            reply = call(dce, "EchoData", len(data), data)
            assert Echo.operation_named("EchoData").decode_response(reply)[0] == data
    finally:
        dce.disconnect()


@pytest.mark.interop
def test_impacket_sees_faults(echo_server: ServerThread) -> None:
    dce = bound(echo_server.port)
    try:
        dce.call(200, b"")  # no such operation
        with pytest.raises(DCERPCException, match="nca_s_op_rng_error"):
            dce.recv()
    finally:
        dce.disconnect()
