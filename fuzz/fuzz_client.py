"""Fuzz target ``client``: the client association as a state machine, fed what a server sends.

The input's first octet chooses the client (:data:`MODES`): unauthenticated, or starting an NTLM /
SPNEGO handshake (a bind_ack's token then reaches pyspnego through our client context). The client
has sent its bind (Echo, Mgmt); the rest is a script of records (records.py), each one action of
:data:`ACTIONS`: octets from the server (the seeds are real answers of a server to real clients,
renumbered to this client's call_ids by make_corpus.py), calls, alter_contexts, cancels and
orphans, partial writes, the connection lost.

Nothing may raise out of the sans-IO core, and after every action (invariants.py, and here): the
output parses and fits the agreed fragment size; buffered octets stay within Limits.max_buffered;
every answer reported is for a call (or an alter_context: a fault may answer one) this client
made and had not had answered (or a fault for the association or the bind); after close nothing
more comes out; after the connection is lost nothing is buffered.

    python fuzz/fuzz_client.py -max_total_time=300
"""

from __future__ import annotations

from dataclasses import dataclass, field

import engine
import invariants
import records

with engine.instrumented("spnego"):
    from dcerpc.auth import NTLM, Negotiate
    from dcerpc.epm.idl import Epm
    from dcerpc.mgmt.idl import Mgmt
    from dcerpc.protocol.client import ClientAssociation
    from dcerpc.protocol.events import BindAccepted, FaultReceived, ResponseReceived
    from dcerpc.protocol.limits import Limits
    from dcerpc.protocol.security import AuthState
    from dcerpc.rpcecho import Echo

NAME = "client"
SERVED = (Echo.__syntax__, Epm.__syntax__, Mgmt.__syntax__)
BIND = {0: SERVED[0], 1: SERVED[2]}  # what every input's client has proposed (and BTFN, context 2)
LIMITS = Limits(max_fragment=8192, max_call_size=32768, max_buffered=49152)
MODES = [
    ("none", None, 1),
    ("ntlm-integrity", NTLM("FUZZ", "alice", "wonderland"), 5),
    ("spnego-privacy", Negotiate("FUZZ", "alice", "wonderland", kerberos=False), 6),
]
ACTIONS = ("feed", "call", "alter", "cancel", "orphan", "write", "lost")
FEED, CALL, ALTER, CANCEL, ORPHAN, WRITE, LOST = range(len(ACTIONS))


@dataclass
class Session:
    client: ClientAssociation
    made: set[int] = field(default_factory=set)  # call_ids of calls (and alter_contexts) not yet answered
    bound: bool = False  # BindAccepted was reported (an adapter makes calls only then)
    closure: invariants.Closure = field(default_factory=invariants.Closure)

    def step(self, limit: int | None = None) -> None:
        ca = self.client
        events = ca.events()
        out = ca.data_to_send(limit) if limit is not None else ca.data_to_send()
        self.closure.step(ca.alive, ca.has_output, out, events)
        invariants.check_output(out, ca.max_xmit_frag)  # whole fragments, even when limited
        invariants.check_buffered(ca.buffered, LIMITS)
        for event in events:
            self.bound = self.bound or isinstance(event, BindAccepted)
            if isinstance(event, ResponseReceived | FaultReceived):
                # a fault may also be for the association (call_id 0, as Windows sends one for a
                # protocol error) or for the bind (1) when its handshake's alter_context is refused
                anyway = (0, 1) if isinstance(event, FaultReceived) else ()
                if event.call_id not in self.made and event.call_id not in anyway:
                    raise engine.Finding(f"an answer to call {event.call_id}, not one of ours in progress")
                self.made.discard(event.call_id)


def start(mode: int) -> Session:
    _, creds, level = MODES[mode % len(MODES)]
    auth = None
    if creds is not None:
        auth = AuthState(creds.client_context("fuzz", level), creds.auth_type, level, 0, header_sign=True)
    session = Session(ClientAssociation(LIMITS, auth))
    session.client.bind(BIND)
    session.step()
    return session


def act(s: Session, tag: int, p: bytes) -> None:
    action = tag % len(ACTIONS)
    ca = s.client
    if action == FEED:
        ca.receive_data(p)
    elif action == WRITE:
        s.step(int.from_bytes(p[:2].ljust(2, b"\0"), "little"))
        return
    elif action == LOST:
        ca.connection_lost()
        s.step()
        if ca.buffered:
            raise engine.Finding(f"after connection_lost: {ca.buffered} octets buffered")
        return
    elif not ca.alive or not s.bound:
        pass  # an adapter makes calls only on a bound association, and none once it has closed
    elif action == CALL:
        q = p.ljust(2, b"\0")
        s.made.add(ca.request(q[0] % 3, q[1], p[2:]))
    elif action == ALTER:
        q = p.ljust(2, b"\0")
        s.made.add(ca.alter_context({8 + q[0] % 8: SERVED[q[1] % len(SERVED)]}))  # a fault may answer it
    elif action in (CANCEL, ORPHAN) and ca.pending:
        cid = max(ca.pending)
        if action == CANCEL:
            ca.cancel(cid)
        else:
            ca.orphan(cid)
            s.made.discard(cid)
    s.step()


def test_one(data: bytes) -> None:
    if not data:
        return
    session = start(data[0])
    for tag, payload in records.decode(data[1:]):
        act(session, tag, payload)
    act(session, LOST, b"")


if __name__ == "__main__":
    engine.main(test_one, NAME)
