"""Rate limits per source address over real sockets (a policy's [rate_limit]): connections over
their rate are refused at accept (or read later, tarpit), calls over theirs get
nca_s_server_too_busy marked did-not-execute (or are answered late), a source that keeps failing
to authenticate is shut out until its bucket refills, and contexts proposed too fast are rejected
as not served. Other sources are served throughout."""

from __future__ import annotations

import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import dcerpc
from dcerpc.auth import NTLM, NtlmProvider
from dcerpc.pdu import (
    AlterContext,
    AuthVerifier,
    Bind,
    BindAck,
    BindNak,
    CoCancel,
    ContextElement,
    ContextResult,
    Fault,
    Request,
    Response,
    SyntaxId,
)
from dcerpc.pdu import constants as const
from dcerpc.pdu.constants import PFC, RejectReason
from dcerpc.policy import parse
from dcerpc.protocol.limits import Limits
from dcerpc.rpcecho import Echo
from dcerpc.rpcecho.server import EchoServer
from dcerpc.testing import ServerThread
from tests.server.test_bad_input import Raw
from tests.server.test_slots import WAIT, bind_pdu, connect, server_closed

ADD_ONE = Echo.operation_named("AddOne").encode_request


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServerThread]:
    users = tmp_path / "users"
    users.write_text("TESTDOM:alice:wonderland\n")
    with ServerThread(EchoServer(), security=[NtlmProvider(users)]) as srv:
        yield srv


def use(srv: ServerThread, table: str) -> None:
    srv.server.policy = parse("[rate_limit]\n" + table)


def bound_from(srv: ServerThread, source: str) -> Raw:
    raw = Raw.__new__(Raw)
    raw.sock = connect(srv.port, source=source)
    raw.buf = b""
    assert isinstance(raw.bind(), BindAck)
    return raw


def test_connections_over_their_rate_are_refused_at_accept(served: ServerThread) -> None:
    use(served, 'connections = "2/m"\n')
    for _ in range(2):
        bound_from(served, "127.0.0.2").sock.close()
    over = connect(served.port, source="127.0.0.2")
    assert server_closed(over, WAIT)  # refused before any PDU is read
    assert served.server.refusals["rate_connections"] == 1
    bound_from(served, "127.0.0.3").sock.close()  # another source: its own bucket


def test_calls_over_their_rate_are_too_busy_and_did_not_execute(served: ServerThread) -> None:
    use(served, 'calls = "3/m"\n')
    raw = bound_from(served, "127.0.0.2")
    answers = []
    for cid in range(2, 6):
        raw.send(Request(call_id=cid, opnum=0, stub=ADD_ONE(cid)))
        answers.append(raw.recv())
    assert [type(a) for a in answers] == [Response, Response, Response, Fault]
    busy = answers[-1]
    assert isinstance(busy, Fault) and busy.status == const.NCA_S_SERVER_TOO_BUSY
    assert busy.flags & PFC.DID_NOT_EXECUTE
    other = bound_from(served, "127.0.0.3")
    other.send(Request(call_id=2, opnum=0, stub=ADD_ONE(1)))
    assert isinstance(other.recv(), Response)


def test_tarpit_answers_calls_over_their_rate_late(served: ServerThread) -> None:
    use(served, 'calls = "1/m"\naction = "tarpit"\ntarpit_seconds = 0.5\n')
    raw = bound_from(served, "127.0.0.2")
    raw.send(Request(call_id=2, opnum=0, stub=ADD_ONE(1)))
    assert isinstance(raw.recv(), Response)
    start = time.monotonic()
    raw.send(Request(call_id=3, opnum=0, stub=ADD_ONE(41)))
    late = raw.recv()
    assert isinstance(late, Response) and struct.unpack("<I", late.stub[:4]) == (42,)
    assert time.monotonic() - start >= 0.45


def test_a_source_that_keeps_failing_to_authenticate_is_shut_out(served: ServerThread) -> None:
    use(served, 'auth_failures = "2/h"\nexempt = "127.0.0.1"\n')
    binding = f"ncacn_ip_tcp:127.0.0.1[{served.port}]"
    # our client connects from 127.0.0.1, exempt at first: its failures are not counted
    for _ in range(3):
        with (
            pytest.raises((dcerpc.FaultError, dcerpc.BindError)),
            dcerpc.connect_sync(binding, auth=NTLM("TESTDOM", "alice", "wrong")) as conn,
        ):
            conn.bind(Echo).AddOne(1)
    assert served.server.refusals["rate_auth_failures"] == 0
    use(served, 'auth_failures = "2/h"\n')  # now counted
    for _ in range(2):
        with (
            pytest.raises((dcerpc.FaultError, dcerpc.BindError)),
            dcerpc.connect_sync(binding, auth=NTLM("TESTDOM", "alice", "wrong")) as conn,
        ):
            conn.bind(Echo).AddOne(1)
    shut = connect(served.port)
    assert server_closed(shut, WAIT)  # the right password would not help now
    assert served.server.refusals["rate_auth_failures"] == 1
    other = bound_from(served, "127.0.0.3")  # another source is served
    other.sock.close()


def test_contexts_proposed_too_fast_are_rejected_as_not_served(served: ServerThread) -> None:
    """An interface scan: one alter_context per guessed UUID; beyond the rate every context is
    answered as an interface not served, even one that is."""
    use(served, 'contexts = "3/m"\n')
    sock = connect(served.port, source="127.0.0.2")
    sock.sendall(bind_pdu())  # one context: one token
    raw = Raw.__new__(Raw)
    raw.sock, raw.buf = sock, b""
    assert isinstance(raw.recv(), BindAck)
    guesses = [SyntaxId(uuid.UUID(int=i + 1), (1, 0)) for i in range(2)]
    for i, guess in enumerate([*guesses, Echo.__syntax__]):
        raw.send(AlterContext(call_id=10 + i, contexts=(ContextElement(1 + i, guess, (const.NDR20,)),)))
        answer = raw.recv()
        assert answer is not None
        (result,) = answer.results  # type: ignore[attr-defined]
        if i < 2:
            assert result.result == ContextResult.PROVIDER_REJECTION  # not served anyway
    assert result.result == ContextResult.PROVIDER_REJECTION  # rpcecho, but over the rate
    assert served.server.enforcer.throttle is not None
    assert served.server.enforcer.throttle.limited["contexts"] == 1


NTLM_NEGOTIATE = b"NTLMSSP\x00" + struct.pack("<II", 1, 0xE2088297) + bytes(16) + bytes(8)


def test_handshakes_over_the_sources_rate_are_turned_away(tmp_path: Path) -> None:
    """Limits.handshake_rate (on by default): each bind or alter_context that starts NTLM costs
    the server a challenge; beyond the source's rate a bind gets bind_nak temporary_congestion and
    an alter_context fault nca_s_server_too_busy, did-not-execute, its connection kept."""
    users = tmp_path / "users"
    users.write_text("TESTDOM:alice:wonderland\n")
    limits = Limits(handshake_rate=0.01, handshake_burst=2)
    with ServerThread(EchoServer(), security=[NtlmProvider(users)], limits=limits) as srv:

        def ntlm(context_id: int) -> AuthVerifier:
            return AuthVerifier(auth_type=10, auth_level=5, context_id=context_id, value=NTLM_NEGOTIATE)

        verifier = ntlm(1)
        echo = (ContextElement(0, Echo.__syntax__, (const.NDR20,)),)
        first = bound_from(srv, "127.0.0.2")  # no handshake: not counted
        answers = []
        for cid in (2, 3):  # two handshakes by alter_context: the burst
            first.send(AlterContext(call_id=cid, contexts=echo, auth=ntlm(cid)))
            answers.append(first.recv())
        assert all(a is not None and not isinstance(a, Fault) for a in answers), answers
        first.send(AlterContext(call_id=4, contexts=echo, auth=ntlm(9)))
        busy = first.recv()
        assert isinstance(busy, Fault) and busy.status == const.NCA_S_SERVER_TOO_BUSY
        assert busy.flags & PFC.DID_NOT_EXECUTE
        first.send(Request(call_id=5, opnum=0, stub=ADD_ONE(1)))  # the connection stays
        assert isinstance(first.recv(), Response)
        late = Raw.__new__(Raw)
        late.sock, late.buf = connect(srv.port, source="127.0.0.2"), b""
        late.send(Bind(call_id=1, contexts=echo, auth=verifier))
        nak = late.recv()
        assert isinstance(nak, BindNak) and nak.reason == RejectReason.TEMPORARY_CONGESTION
        other = Raw.__new__(Raw)  # another source has its own rate
        other.sock, other.buf = connect(srv.port, source="127.0.0.3"), b""
        other.send(Bind(call_id=1, contexts=echo, auth=verifier))
        assert isinstance(other.recv(), BindAck)
        assert srv.server.violations["handshake_rate"] == 1
        assert srv.server.violations["alter_handshake_rate"] == 1


def test_a_flood_of_control_pdus_holds_its_connection_back() -> None:
    """Limits.control_rate (on by default): 200 co_cancels at once from one source overdraw its
    bucket; that connection is not read again until the bucket refills (its next call waits),
    while another source is served at once."""
    limits = Limits(control_rate=400, control_burst=10)
    with ServerThread(EchoServer(), limits=limits) as srv:
        flood = bound_from(srv, "127.0.0.2")  # the bind: one token
        flood.sock.sendall(b"".join(CoCancel(call_id=1000 + i).encode() for i in range(200)))
        deadline = time.monotonic() + WAIT
        while not srv.server.refusals["control_rate"]:  # taken, and overdrawn (polled)
            assert time.monotonic() < deadline
            time.sleep(0.005)
        start = time.monotonic()
        flood.send(Request(call_id=2, opnum=0, stub=ADD_ONE(1)))  # a read it will have to wait for
        other = bound_from(srv, "127.0.0.3")
        other.send(Request(call_id=2, opnum=0, stub=ADD_ONE(5)))
        assert isinstance(other.recv(), Response)
        assert time.monotonic() - start < 0.3  # the other source: at once
        late = flood.recv()
        assert isinstance(late, Response) and struct.unpack("<I", late.stub[:4]) == (2,)
        assert time.monotonic() - start >= 0.35  # about (200 - 10) / 400 s: held back, not refused
        # held again after each turn's worth it is let read (Limits.pdus_per_turn: 64 of the 200)
        assert 1 <= srv.server.refusals["control_rate"] <= 4
