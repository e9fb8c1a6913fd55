"""Connection slots: a peer holds one only while it speaks RPC at a useful pace, and one address
cannot take them all (protocol.limits: bind_timeout, pdu_timeout, idle_timeout,
max_connections_per_source; enforced by aio.deadlines and Server.accept).

Real TCP sockets against a real server thread. A trickling client sends one octet at a time with
TCP_NODELAY; the wait between octets is a wait for the server to close (select on the socket), so
the test ends as soon as it does. Deadlines are fractions of a second; each test checks that the
connection closed well before the attack would have ended by itself (on code without the deadline,
the bind is answered or the call served instead).
"""

from __future__ import annotations

import logging
import select
import socket
import time
from collections.abc import Callable, Iterator

import pytest

import dcerpc
from dcerpc.pdu import NDR20, AuthVerifier, Bind, BindAck, ContextElement, Request, Response
from dcerpc.protocol.limits import Limits
from dcerpc.rpcecho import Echo
from dcerpc.rpcecho.server import EchoServer
from dcerpc.testing import ServerThread
from tests.protocol.toy_auth import ToyCredentials, ToyProvider
from tests.server.test_bad_input import Raw, logged

PACE = 0.05  # seconds between two trickled octets
WAIT = 5.0


@pytest.fixture(autouse=True)
def _log_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dcerpc.server")


@pytest.fixture
def serve(request: pytest.FixtureRequest) -> Iterator[ServerThread]:
    with ServerThread(EchoServer(), limits=request.param) as srv:
        yield srv


def limits(**kw: float) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("serve", [Limits(**kw)], indirect=True)  # type: ignore[arg-type]


def bind_pdu() -> bytes:
    return Bind(call_id=1, contexts=(ContextElement(0, Echo.__syntax__, (NDR20,)),)).encode()


def request_pdu(size: int = 400) -> bytes:
    stub = Echo.operation_named("EchoData").encode_request(size, bytes(size))
    return Request(call_id=2, opnum=1, stub=stub).encode()


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT, source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def server_closed(sock: socket.socket, timeout: float) -> bool:
    """True when the server closed the connection within ``timeout`` (what it sent before is read
    and dropped); False when the time passed first."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            return False
        try:
            if not sock.recv(65536):
                return True
        except ConnectionResetError:
            return True
    return False


def trickle(sock: socket.socket, data: bytes) -> int:
    """Send ``data`` an octet every PACE seconds until the server closes; how many were sent."""
    for i in range(len(data)):
        try:
            sock.send(data[i : i + 1])
        except (BrokenPipeError, ConnectionResetError):
            return i
        if server_closed(sock, PACE):
            return i + 1
    return len(data)


def still_serving(srv: ServerThread) -> None:
    with dcerpc.connect_sync(f"ncacn_ip_tcp:127.0.0.1[{srv.port}]") as conn:
        assert conn.bind(Echo).AddOne(1) == 2


# bind deadline --------------------------------------------------------------------------------------


@limits(bind_timeout=0.3)
def test_a_client_that_never_binds_is_closed(serve: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    sock = connect(serve.port)
    start = time.monotonic()
    assert server_closed(sock, WAIT)
    assert 0.25 < time.monotonic() - start < 2.0
    assert serve.server.refusals["bind_timeout"] == 1
    assert logged(caplog, "no bind within the bind deadline")
    still_serving(serve)  # binds in time


@limits(bind_timeout=0.3)
def test_the_bind_deadline_spares_a_bound_connection(serve: ServerThread) -> None:
    raw = Raw(serve.port)
    assert isinstance(raw.bind(), BindAck)
    assert not server_closed(raw.sock, 0.6)  # twice the deadline: still open
    raw.send(Request(call_id=2, opnum=0, stub=Echo.operation_named("AddOne").encode_request(1)))
    assert isinstance(raw.recv(), Response)
    assert serve.server.refusals["bind_timeout"] == 0


# PDU deadline ---------------------------------------------------------------------------------------


@limits(bind_timeout=0, pdu_timeout=0.3)
def test_a_bind_trickled_slower_than_the_pdu_deadline_is_closed(
    serve: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    bind = bind_pdu()  # 72 octets: 3.6 s at PACE
    sock = connect(serve.port)
    start = time.monotonic()
    sent = trickle(sock, bind)
    assert sent < len(bind) // 2  # closed about 0.3-0.6 s in: not served once whole
    assert 0.25 < time.monotonic() - start < 2.0
    assert serve.server.refusals["pdu_timeout"] == 1
    assert logged(caplog, "PDU not whole within the PDU deadline")
    still_serving(serve)


@limits(pdu_timeout=0.3, idle_timeout=60)
def test_a_request_trickled_after_the_bind_is_closed(serve: ServerThread) -> None:
    raw = Raw(serve.port)
    raw.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    assert isinstance(raw.bind(), BindAck)
    request = request_pdu()
    raw.send(request[:40])  # a partial request at once, its header included
    start = time.monotonic()
    sent = trickle(raw.sock, request[40:])  # then an octet at a time: never idle
    assert sent < 40  # of about 390: 20 s at PACE
    assert 0.25 < time.monotonic() - start < 2.0
    assert serve.server.refusals["pdu_timeout"] == 1


@limits(pdu_timeout=0.3, idle_timeout=0.3)
def test_whole_pdus_in_time_are_never_cut(serve: ServerThread) -> None:
    """A client whose every PDU is whole in time is not closed however long it goes on, even when
    each one arrives in pieces (the deadlines measure PDUs, not reads)."""
    raw = Raw(serve.port)
    raw.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    assert isinstance(raw.bind(), BindAck)
    add_one = Echo.operation_named("AddOne").encode_request
    start = time.monotonic()
    cid = 2
    while time.monotonic() - start < 1.2:  # four times either deadline
        pdu = Request(call_id=cid, opnum=0, stub=add_one(cid)).encode()
        for piece in (pdu[:5], pdu[5:20]):  # each piece a segment of its own
            raw.send(piece)
            assert not server_closed(raw.sock, 0.03)  # nothing is answered yet: nothing is read
        raw.send(pdu[20:])
        answer = raw.recv()
        assert isinstance(answer, Response) and answer.call_id == cid
        cid += 1
    assert not serve.server.refusals


# idle deadline --------------------------------------------------------------------------------------


@limits(pdu_timeout=0, idle_timeout=0.5)
def test_trickled_octets_do_not_restart_the_idle_deadline(
    serve: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    raw = Raw(serve.port)
    raw.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    assert isinstance(raw.bind(), BindAck)
    request = request_pdu()
    start = time.monotonic()
    sent = trickle(raw.sock, request)  # no PDU deadline here: the idle one must see through it
    assert sent < 60
    assert 0.45 < time.monotonic() - start < 2.5
    assert serve.server.refusals["idle_timeout"] == 1
    assert logged(caplog, "idle")


# per-source cap -------------------------------------------------------------------------------------


@limits(max_connections_per_source=2, max_connections=8)
def test_one_address_cannot_take_every_slot(serve: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    held = [Raw(serve.port) for _ in range(2)]
    for raw in held:
        assert isinstance(raw.bind(), BindAck)
    extra = connect(serve.port)
    assert server_closed(extra, WAIT)  # refused at accept: closed before any PDU is read
    assert serve.server.refusals["source_limit"] == 1
    assert logged(caplog, "connections from one address is the limit")
    other = connect(serve.port, source="127.0.0.2")  # Linux routes all of 127/8 to lo
    other.sendall(bind_pdu())
    other.settimeout(WAIT)
    assert other.recv(65536)[2] == 12  # bind_ack (C706 12.6.4.4): served
    other.close()
    held[0].close()  # a slot of the first address comes free once the server has seen it go
    deadline = time.monotonic() + WAIT
    while True:
        again = Raw(serve.port)
        answer = again.bind()
        if isinstance(answer, BindAck):
            break
        assert answer is None and time.monotonic() < deadline
        again.close()
    again.close()
    held[1].close()


# write deadline -------------------------------------------------------------------------------------


def _ask_and_never_read(
    srv: ServerThread, size: int, window: int = 4096, send_buffer: int = 0
) -> socket.socket:
    """A bound client with a small receive window that asks SourceData for ``size`` octets twice,
    and reads none of it. ``send_buffer``: the server's kernel send buffer for the connection, made
    that small (a real socket option on its real socket) so that its own buffer fills sooner."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, window)  # before connect: the window
    sock.settimeout(WAIT)
    sock.connect(("127.0.0.1", srv.port))
    sock.sendall(bind_pdu())
    head = sock.recv(16, socket.MSG_WAITALL)
    sock.recv(int.from_bytes(head[8:10], "little") - 16, socket.MSG_WAITALL)  # the bind_ack
    if send_buffer:
        (conn,) = srv.server._connections
        transport = conn.proto.transport
        assert transport is not None
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    source = Echo.operation_named("SourceData").encode_request
    for cid in (2, 3):
        sock.sendall(Request(call_id=cid, opnum=3, stub=source(size)).encode())
    return sock


def _until(condition: Callable[[], bool], seconds: float = WAIT) -> float:
    """Poll until ``condition`` holds (a deadline, not an ordering sleep); the seconds it took."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < seconds, "condition not reached"
        time.sleep(0.01)
    return time.monotonic() - start


@limits(write_timeout=0.4, idle_timeout=60)
def test_a_client_that_never_reads_its_answers_is_cut(
    serve: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    """Backpressure stops the idle deadline from blaming a peer that does not read (we stopped
    reading it); the write deadline does not: the connection, and the answers it held, go."""
    sock = _ask_and_never_read(serve, 4 * 1024 * 1024)
    took = _until(lambda: serve.server.refusals["write_timeout"] == 1)
    assert took < 3.0
    assert logged(caplog, "read none of our answers")
    _until(lambda: not serve.server._connections)
    assert serve.server.budget.source_held("127.0.0.1") == 0
    sock.close()
    still_serving(serve)


@limits(write_timeout=0.4, idle_timeout=60)
def test_a_slow_reader_is_not_cut(serve: ServerThread) -> None:
    """A client that reads its large answer slowly, but reads, keeps its connection."""
    size = 256 * 1024
    sock = _ask_and_never_read(serve, size, window=16384, send_buffer=8192)
    got, start = 0, time.monotonic()
    while got < 2 * (size + 8):  # both answers: stubs and fragment headers
        time.sleep(0.02)
        chunk = sock.recv(256 * 1024)
        assert chunk, "closed by the server"
        got += len(chunk)
    assert time.monotonic() - start > 0.4  # slower than the deadline, all told
    assert serve.server.refusals["write_timeout"] == 0
    (conn,) = serve.server._connections
    assert conn.proto.resumed  # the write buffer did fill: the deadline was watching
    sock.close()


@limits(bind_timeout=0.3)
def test_a_handshake_never_finished_is_closed_by_the_bind_deadline(serve: ServerThread) -> None:
    """A bind that starts a three-leg handshake and never sends its auth3 (nor a call) is held to
    the bind deadline; it had only kept its slot by the idle one before."""
    provider = ToyProvider({"alice": "pw"})
    serve.server.security[provider.auth_type] = provider
    context = ToyCredentials("alice", "pw").client_context("", 6)
    token = context.step(None)
    assert token is not None
    raw = Raw(serve.port)
    verifier = AuthVerifier(
        auth_type=provider.auth_type, auth_level=6, pad_length=0, context_id=1, value=token
    )
    answer = raw.bind(auth=verifier)
    assert isinstance(answer, BindAck) and answer.auth is not None  # the second leg: now auth3 is due
    assert server_closed(raw.sock, WAIT)
    assert serve.server.refusals["bind_timeout"] == 1
    still_serving(serve)
