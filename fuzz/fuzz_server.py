"""Fuzz target ``server``: the server association as a state machine, alone or with our client.

The input's first octet chooses the setup (:data:`MODES`): the server alone, fed octets as a
client would send them (the seeds are real clients' TCP segments: impacket, smbtorture); or the
server joined to our :class:`ClientAssociation`, unauthenticated or after a real NTLM / SPNEGO
handshake through the server's providers, so that signed and sealed calls reach the verify and
unseal paths. The rest is a script of records (records.py), each one action of :data:`ACTIONS`:
octets from the wire, calls the client makes (intact or with one octet changed), answers and faults
the server's implementation gives, alter_contexts, cancels, partial writes, the connection lost.

Nothing may raise out of the sans-IO core, and after every action (invariants.py, and here): the
output parses and fits the agreed fragment size; buffered octets stay within Limits.max_buffered;
no more than MAX_AUTH_CONTEXTS security contexts (scaled down to 4 here), max_contexts
presentation contexts, max_outstanding_calls calls; every call reported names an accepted context;
after close nothing more comes out; after the connection is lost nothing is buffered and its
association group is gone.

    python fuzz/fuzz_server.py -max_total_time=300
"""

from __future__ import annotations

import atexit
import shutil
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import engine
import invariants
import records

with engine.instrumented("spnego"):
    from dcerpc.auth import NTLM, Negotiate, NegotiateProvider, NtlmProvider, SecurityProvider
    from dcerpc.epm.idl import Epm
    from dcerpc.mgmt.idl import Mgmt
    from dcerpc.pdu import SyntaxId
    from dcerpc.protocol import server_auth
    from dcerpc.protocol.client import ClientAssociation
    from dcerpc.protocol.events import CallReceived, Event
    from dcerpc.protocol.groups import GroupTable
    from dcerpc.protocol.limits import Limits
    from dcerpc.protocol.security import AuthState
    from dcerpc.protocol.server import ServerAssociation
    from dcerpc.rpcecho import Echo

NAME = "server"
SERVED = (Echo.__syntax__, Epm.__syntax__, Mgmt.__syntax__)
# Small enough that inputs of a few KB reach every bound.
LIMITS = Limits(
    max_fragment=8192, max_call_size=32768, max_buffered=49152, max_outstanding_calls=8, max_contexts=8
)

_USERS_DIR = tempfile.mkdtemp(prefix="dcerpc-fuzz-")
atexit.register(shutil.rmtree, _USERS_DIR, True)
USERS = Path(_USERS_DIR) / "ntlm-users"
USERS.write_text("FUZZ:alice:wonderland\n")
# The cap on security contexts (rules.MAX_AUTH_CONTEXTS, 2049) scaled down, as the Limits are, so
# that inputs reach it: server_auth reads it from its own namespace.
MAX_AUTH_CONTEXTS = server_auth.MAX_AUTH_CONTEXTS = 4
PROVIDERS: dict[int, SecurityProvider] = {10: NtlmProvider(USERS), 9: NegotiateProvider(USERS)}

# (name, credentials, auth level): None credentials, no client; the server alone.
MODES = [
    ("server", None, 0),
    ("pair", "none", 1),
    ("ntlm-connect", NTLM("FUZZ", "alice", "wonderland"), 2),
    ("ntlm-integrity", NTLM("FUZZ", "alice", "wonderland"), 5),
    ("ntlm-privacy", NTLM("FUZZ", "alice", "wonderland"), 6),
    ("spnego-privacy", Negotiate("FUZZ", "alice", "wonderland", kerberos=False), 6),
]
ACTIONS = ("feed", "call", "corrupt", "respond", "fault", "alter", "cancel", "write", "lost")
FEED, CALL, CORRUPT, RESPOND, FAULT, ALTER, CANCEL, WRITE, LOST = range(len(ACTIONS))


def match(proposed: SyntaxId) -> SyntaxId | None:
    for served in SERVED:
        if proposed.uuid == served.uuid and proposed.version[0] == served.version[0]:
            return served
    return None


@dataclass
class Session:
    """One input's association(s) and what the harness knows of them."""

    server: ServerAssociation
    groups: GroupTable
    client: ClientAssociation | None = None
    calls: list[CallReceived] = field(default_factory=list)  # reported, not yet answered by us
    closure: invariants.Closure = field(default_factory=invariants.Closure)

    def to_server(self, octets: bytes) -> None:
        self.server.receive_data(octets)
        self.server_step()

    def server_step(self, limit: int | None = None) -> None:
        """Drain the server's events and (up to ``limit`` of) its output, checking both; the output
        goes to the client, if there is one."""
        sa = self.server
        events = sa.events()
        out = sa.data_to_send(limit) if limit is not None else sa.data_to_send()
        self.closure.step(sa.alive, sa.has_output, out, events)
        self._check(events)
        invariants.check_output(out, sa.max_xmit_frag)  # whole fragments, even when limited
        if self.client is not None and out:
            self.client.receive_data(out)
            self.client.events()
            invariants.check_buffered(self.client.buffered, LIMITS)
            if self.client.alive:
                self.to_server(self.client.data_to_send())

    def _check(self, events: list[Event]) -> None:
        sa = self.server
        for event in events:
            if isinstance(event, CallReceived):
                if event.context_id not in sa.contexts:
                    raise engine.Finding(f"call {event.call_id} on context {event.context_id}, not accepted")
                self.calls.append(event)
        invariants.check_buffered(sa.buffered, LIMITS)
        if len(sa.auth) > MAX_AUTH_CONTEXTS:
            raise engine.Finding(f"{len(sa.auth)} security contexts")
        if len(sa.contexts) > LIMITS.max_contexts:
            raise engine.Finding(f"{len(sa.contexts)} presentation contexts, {LIMITS.max_contexts} allowed")
        if len(sa.outstanding) > LIMITS.max_outstanding_calls:
            raise engine.Finding(f"{len(sa.outstanding)} outstanding calls")

    def client_sends(self, corrupt: tuple[int, int] | None = None) -> None:
        assert self.client is not None
        out = bytearray(self.client.data_to_send())
        if corrupt is not None and out:
            out[corrupt[0] % len(out)] ^= corrupt[1] or 1
        self.to_server(bytes(out))

    def lost(self) -> None:
        self.server.connection_lost()
        if self.client is not None:
            self.client.connection_lost()
        self.server_step()
        if self.server.buffered or len(self.groups):
            raise engine.Finding(
                f"after connection_lost: {self.server.buffered} octets, {len(self.groups)} groups"
            )


def start(mode: int) -> Session:
    _, creds, level = MODES[mode % len(MODES)]
    groups = GroupTable()
    session = Session(ServerAssociation(match, groups, LIMITS, b"49152", PROVIDERS), groups)
    if creds is None:
        return session
    auth = None
    if not isinstance(creds, str):
        auth = AuthState(creds.client_context("fuzz", level), creds.auth_type, level, 0, header_sign=True)
    session.client = ClientAssociation(LIMITS, auth)
    session.client.bind({0: SERVED[0], 1: SERVED[2]})
    session.client_sends()  # bind, bind_ack and the handshake's legs: to_server follows them through
    return session


def act(s: Session, tag: int, p: bytes) -> None:
    action = tag % len(ACTIONS)
    client = s.client if s.client is not None and s.client.alive else None
    if action == FEED or (client is None and action in (CALL, CORRUPT)):
        s.to_server(p)
    elif action in (CALL, CORRUPT) and client is not None:
        head = 5 if action == CORRUPT else 2
        q = p.ljust(head, b"\0")
        client.request(q[head - 2] % 3, q[head - 1], p[head:])
        s.client_sends((int.from_bytes(q[:2], "little"), q[2]) if action == CORRUPT else None)
    elif action in (RESPOND, FAULT):
        live = [c for c in s.calls if c.call_id in s.server.outstanding]
        s.calls = live
        if not live:
            return
        call = live.pop(0)
        if action == RESPOND:
            s.server.respond(call.call_id, p, call.context_id)
        else:
            status = struct.unpack("<I", p[:4].ljust(4, b"\0"))[0]
            s.server.fault(call.call_id, status, call.context_id, bool(p[4:5]) and bool(p[4] & 1))
        s.server_step()
    elif action == ALTER and client is not None:
        q = p.ljust(2, b"\0")
        client.alter_context({8 + q[0] % 8: SERVED[q[1] % len(SERVED)]})
        s.client_sends()
    elif action == CANCEL and client is not None and client.pending:
        cid = max(client.pending)
        (client.orphan if p[:1] and p[0] & 1 else client.cancel)(cid)
        s.client_sends()
    elif action == WRITE:
        s.server_step(int.from_bytes(p[:2].ljust(2, b"\0"), "little"))
    elif action == LOST:
        s.lost()


def test_one(data: bytes) -> None:
    if not data:
        return
    session = start(data[0])
    for tag, payload in records.decode(data[1:]):
        act(session, tag, payload)
    session.lost()


if __name__ == "__main__":
    engine.main(test_one, NAME)
