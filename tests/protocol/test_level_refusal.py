"""A handshake that completes at an auth level its context cannot give (sans-IO, server role).

Privacy on a context that negotiated no confidentiality is refused when the handshake completes:
an alter_context gets fault rpc_s_sec_pkg_error with did-not-execute and the association closes,
an auth3 is refused silently and the next request is access denied (observed Windows behaviour,
Samba's raw-PDU suite: test_spnego_privacy_bind_none/_sign). Integrity is not refused there: a
context that cannot sign fails the first request's signature.
"""

from __future__ import annotations

import pytest

from dcerpc.auth import Protection, SecurityContext, SecurityProvider
from dcerpc.pdu import (
    AlterContext,
    AlterContextResp,
    Auth3,
    AuthVerifier,
    Bind,
    BindAck,
    ContextElement,
    Fault,
    Request,
)
from dcerpc.pdu import constants as const
from dcerpc.pdu.constants import NDR20, PFC
from dcerpc.protocol.groups import GroupTable
from dcerpc.protocol.limits import Limits
from dcerpc.protocol.rules import Violation
from dcerpc.protocol.server import ServerAssociation
from tests.protocol.test_rules import ADD_ONE, ECHO, USERS, Peer, kinds, only, served
from tests.protocol.toy_auth import TOY_AUTH_TYPE, ToyContext

PRIVACY, INTEGRITY = 6, 5


class SigningOnly(ToyContext):
    """A toy context whose mechanism negotiated signing but not sealing."""

    @property
    def protections(self) -> Protection:
        return Protection.INTEGRITY


class SigningOnlyProvider(SecurityProvider):
    auth_type = TOY_AUTH_TYPE

    def server_context(self) -> SecurityContext:
        return SigningOnly(server=True, users=USERS)


def _peer() -> Peer:
    peer = Peer()
    peer.assoc = ServerAssociation(
        served, GroupTable(), Limits(max_fragment=5840), b"135", {TOY_AUTH_TYPE: SigningOnlyProvider()}
    )
    return peer


def _started(peer: Peer, level: int) -> bytes:
    """Bind with the toy's first leg; the client's last token."""
    client = ToyContext(server=False, user="alice", password="wonderland")
    verifier = AuthVerifier(auth_type=TOY_AUTH_TYPE, auth_level=level, value=client.step(None) or b"")
    (ack,), _ = peer.send(Bind(call_id=1, contexts=(ContextElement(1, ECHO, (NDR20,)),), auth=verifier))
    assert isinstance(ack, BindAck) and ack.auth is not None
    return client.step(ack.auth.value) or b""


def _alter(level: int, token: bytes) -> AlterContext:
    verifier = AuthVerifier(auth_type=TOY_AUTH_TYPE, auth_level=level, value=token)
    return AlterContext(call_id=2, contexts=(ContextElement(1, ECHO, (NDR20,)),), auth=verifier)


def test_privacy_without_sealing_is_refused_by_the_alter_context_that_completes_it() -> None:
    peer = _peer()
    pdus, events = peer.send(_alter(PRIVACY, _started(peer, PRIVACY)))
    fault = only(pdus, Fault)
    assert isinstance(fault, Fault) and fault.status == const.RPC_S_SEC_PKG_ERROR
    assert fault.flags & PFC.DID_NOT_EXECUTE and fault.context_id == 0
    assert kinds(events) == [Violation.ALTER_LEVEL_UNAVAILABLE]
    assert not peer.assoc.alive


@pytest.mark.parametrize("level", [2, 4, INTEGRITY])
def test_lower_levels_complete_on_a_context_that_cannot_seal(level: int) -> None:
    peer = _peer()
    pdus, events = peer.send(_alter(level, _started(peer, level)))
    assert isinstance(only(pdus, AlterContextResp), AlterContextResp) and not kinds(events)


def test_privacy_without_sealing_in_auth3_is_refused_silently_then_denied() -> None:
    peer = _peer()
    token = _started(peer, PRIVACY)
    pdus, events = peer.send(
        Auth3(call_id=1, auth=AuthVerifier(auth_type=TOY_AUTH_TYPE, auth_level=PRIVACY, value=token))
    )
    assert pdus == [] and kinds(events) == [Violation.AUTH3_REFUSED] and peer.assoc.alive
    verifier = AuthVerifier(auth_type=TOY_AUTH_TYPE, auth_level=PRIVACY, value=bytes(16))
    pdus, _ = peer.send(Request(call_id=2, context_id=1, stub=ADD_ONE.encode_request(1), auth=verifier))
    fault = only(pdus, Fault)
    assert isinstance(fault, Fault) and fault.status == const.RPC_S_ACCESS_DENIED


def test_a_context_that_can_seal_completes_at_privacy() -> None:
    peer = Peer()  # the plain toy: protections not stated, taken as both
    pdus, events = peer.send(_alter(PRIVACY, _started(peer, PRIVACY)))
    assert isinstance(only(pdus, AlterContextResp), AlterContextResp) and not kinds(events)
