"""What implementations and callers get wrong, and what each side hears of it.

- a FaultError an implementation raises: the peer gets its status alone (the octets on a real
  socket), the server's log one rate-limited line with the interface, operation, status and message;
- a value that does not fit its declaration: the caller's EncodeError names the operation and the
  parameter, down to the member; a result that does not fit: the peer gets rpc_x_bad_stub_data (as
  Samba's stubs answer a failed push) and the log names the operation and the result field;
- what does not implement its interface is refused at registration (Server, Server.add and
  ``dcerpc serve``), naming each operation left out.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import dcerpc
from dcerpc import EncodeError, FaultError, ImplementationError, NdrError, RpcError
from dcerpc.pdu import NDR20, Bind, ContextElement, Fault, Request, frame_length, parse
from dcerpc.pdu import constants as const
from dcerpc.server import dispatch
from dcerpc.testing import ServerThread
from tests.epm.services import SERVICES
from tests.server.contracts import Bag, Calc, CalcServer, HalfCalc, Item

ROOT = Path(__file__).resolve().parents[2]
BURST = dispatch._limited.burst


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(CalcServer()) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh_log_windows(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Each test starts with no lines of its kinds held back, and leaves none behind."""
    caplog.set_level(logging.INFO, logger="dcerpc.server")
    for kind in ("fault", "bad_result"):
        dispatch._limited._windows.pop(kind, None)
    yield
    for kind in ("fault", "bad_result"):
        dispatch._limited._windows.pop(kind, None)


def binding(srv: ServerThread) -> str:
    return f"ncacn_ip_tcp:127.0.0.1[{srv.port}]"


def lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "dcerpc.server" and text in r.getMessage()]


def frames(sock: socket.socket, buf: bytearray) -> bytes:
    """The next whole PDU's octets from a real socket."""
    while (n := frame_length(bytes(buf))) is None or len(buf) < n:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        buf += chunk
    pdu = bytes(buf[:n])
    del buf[:n]
    return pdu


# --- faults with a message ---------------------------------------------------------------------------


def test_a_fault_with_a_message_sends_the_status_alone_and_logs_the_message(
    server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    stub = Calc.operation_named("Store").encode_request(Bag(0, None))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        buf = bytearray()
        sock.sendall(Bind(call_id=1, contexts=(ContextElement(0, Calc.__syntax__, (NDR20,)),)).encode())
        frames(sock, buf)
        sock.sendall(Request(call_id=2, context_id=0, opnum=1, stub=stub).encode())
        octets = frames(sock, buf)
    fault = parse(octets).pdu
    assert isinstance(fault, Fault) and fault.status == 5
    assert len(octets) == 32  # header, alloc hint, context, cancel count, status, reserved: no text
    assert b"nope" not in octets and "nope".encode("utf-16-le") not in octets
    (line,) = lines(caplog, "faulted")
    assert line.startswith("calc.Store (CalcServer) faulted rpc_s_access_denied (0x00000005) to ")
    assert line.endswith(": nope")


def test_the_client_gets_the_status_of_a_fault_with_a_message(server: ServerThread) -> None:
    with dcerpc.connect_sync(binding(server)) as conn, pytest.raises(FaultError) as e:
        conn.bind(Calc).Store(Bag(0, None))
    assert e.value.status == 5 and e.value.name == "rpc_s_access_denied"
    assert "nope" not in str(e.value)


def test_fault_lines_are_rate_limited(server: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    with dcerpc.connect_sync(binding(server)) as conn:
        calc = conn.bind(Calc)
        for _ in range(BURST + 20):
            with pytest.raises(FaultError):
                calc.Store(Bag(0, None))
    assert len(lines(caplog, ": nope")) == BURST


# --- values that do not fit --------------------------------------------------------------------------


def test_an_argument_of_the_wrong_type_names_the_operation_and_the_parameter(server: ServerThread) -> None:
    with dcerpc.connect_sync(binding(server)) as conn:
        calc = conn.bind(Calc)
        with pytest.raises(EncodeError) as e:
            calc.Add(1, "x")  # type: ignore[arg-type]
        assert str(e.value) == "Add(b=...): expected int, got str"
        assert isinstance(e.value, NdrError) and isinstance(e.value, RpcError)
        assert (e.value.operation, e.value.path) == ("Add", "b")
        with pytest.raises(EncodeError, match=r"^Add\(a=\.\.\.\): 4294967296 is out of range for uint32"):
            calc.Add(1 << 32, 1)
        with pytest.raises(EncodeError) as e:
            calc.Store(Bag(2, [Item(1, None), Item(2, b"x")]))  # type: ignore[arg-type]
        assert str(e.value) == "Store(s.items[1].name=...): expected str, got bytes"
        with pytest.raises(EncodeError) as e:
            calc.Store(Bag(3, [Item(1, None)]))
        assert str(e.value) == "Store(s.items=...): has 1 elements, size_is(n) = 3"
        assert calc.Add(1, 2) == 3  # nothing was sent for the calls that did not encode


def test_a_result_of_the_wrong_type_faults_bad_stub_data_and_names_the_field(
    server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    with dcerpc.connect_sync(binding(server)) as conn:
        calc = conn.bind(Calc)
        with pytest.raises(FaultError) as e:
            calc.Add(13, 1)
        assert e.value.status == const.RPC_X_BAD_STUB_DATA == 0x6F7
        with pytest.raises(FaultError):
            calc.Get(3)
        assert calc.Get(1).bag.items == [Item(0, "item 0")]
    (first,) = lines(caplog, "Add -> ")
    assert first == (
        "calc.Add (CalcServer) returned a value that does not encode, answered rpc_x_bad_stub_data: "
        "Add -> result: expected int, got str"
    )
    (second,) = lines(caplog, "Get -> ")
    assert second.endswith("Get -> bag.items[1].id: expected int, got str")


# --- what does not implement its interface ---------------------------------------------------------


def test_the_contract_itself_is_refused_naming_every_operation() -> None:
    with pytest.raises(ImplementationError) as e:
        dcerpc.Server(Calc())
    assert e.value.missing == ("Add", "Store", "Get", "Reset")
    assert str(e.value).startswith("Calc is the declaration of calc, not an implementation")
    assert isinstance(e.value, TypeError)


def test_an_implementation_leaving_operations_out_is_refused_naming_them() -> None:
    with pytest.raises(ImplementationError, match=r"^HalfCalc does not implement calc's Store, Get, Reset: "):
        dcerpc.Server(HalfCalc())
    server = dcerpc.Server()
    with pytest.raises(ImplementationError):
        server.add(HalfCalc())
    assert server.registry.get(Calc.__syntax__) is None


def test_an_operation_not_served_on_purpose_answers_op_rng_error(server: ServerThread) -> None:
    with dcerpc.connect_sync(binding(server)) as conn, pytest.raises(FaultError) as e:
        conn.bind(Calc).Reset()
    assert e.value.status == const.NCA_S_OP_RNG_ERROR


def test_a_declaration_with_bodies_of_its_own_is_served() -> None:
    dcerpc.Server(SERVICES[0]())  # its contract's method has a body of its own


def _serve(spec: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "dcerpc", "serve", spec, "--socket", "/nonexistent/epm.sock"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("tests.server.contracts:Calc", "Calc is the declaration of calc, not an implementation"),
        ("tests.server.contracts:HalfCalc", "HalfCalc does not implement calc's Store, Get, Reset"),
        ("tests.server.broken_declaration:BrokenServer", "Broken.Send.data: SizeIs('len') names 'len'"),
    ],
)
def test_serve_refuses_what_it_cannot_serve(spec: str, says: str) -> None:
    done = _serve(spec)
    assert done.returncode == 2, done.stderr
    assert says in " ".join(done.stderr.split()), done.stderr
    assert "Traceback" not in done.stderr
