"""A server that takes signing or sealing out of the handshake gets no call (found by fuzz_client).

NTLM's CHALLENGE travels unprotected in the bind_ack: a server, or anyone in its path, can clear
NEGOTIATE_SIGN / NEGOTIATE_SEAL, and pyspnego's client completes a context that can do neither. The
client association must refuse such a bind at the level it asked for (a Closing, no BindAccepted),
not report it bound and then raise AuthError out of data_to_send at the first call.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from dcerpc.auth import NTLM, NtlmProvider
from dcerpc.pdu.constants import AuthLevel
from dcerpc.protocol.client import ClientAssociation
from dcerpc.protocol.events import BindAccepted, Closing, ProtocolViolation
from dcerpc.protocol.groups import GroupTable
from dcerpc.protocol.security import AuthState
from dcerpc.protocol.server import ServerAssociation
from dcerpc.rpcecho import Echo

NEGOTIATE_SIGN = 0x10
NEGOTIATE_SEAL = 0x20


def bind_with_challenge_flags(tmp_path: Path, level: int, clear: int) -> ClientAssociation:
    """Our client's NTLM bind, answered by a real server whose CHALLENGE loses ``clear``."""
    users = tmp_path / "ntlm-users"
    users.write_text("DOM:alice:wonderland\n")
    creds = NTLM("DOM", "alice", "wonderland")
    client = ClientAssociation(auth=AuthState(creds.client_context("host", level), creds.auth_type, level, 0))
    server = ServerAssociation(lambda s: s, GroupTable(), security={10: NtlmProvider(users)})
    client.bind({0: Echo.__syntax__})
    server.receive_data(client.data_to_send())
    ack = bytearray(server.data_to_send())
    at = ack.find(b"NTLMSSP\0\x02\0\0\0")
    assert at > 0
    (flags,) = struct.unpack_from("<I", ack, at + 20)
    struct.pack_into("<I", ack, at + 20, flags & ~clear)
    client.receive_data(bytes(ack))
    return client


@pytest.mark.parametrize(
    ("level", "clear"),
    [
        (AuthLevel.INTEGRITY, NEGOTIATE_SIGN | NEGOTIATE_SEAL),
        (AuthLevel.PACKET, NEGOTIATE_SIGN | NEGOTIATE_SEAL),
        (AuthLevel.PRIVACY, NEGOTIATE_SEAL),
    ],
)
def test_bind_without_the_protection_the_level_needs_is_refused(
    tmp_path: Path, level: int, clear: int
) -> None:
    client = bind_with_challenge_flags(tmp_path, level, clear)
    events = client.events()
    assert not any(isinstance(e, BindAccepted) for e in events)
    assert any(isinstance(e, ProtocolViolation) and e.fatal for e in events)
    assert isinstance(events[-1], Closing)
    assert not client.alive


def test_bind_with_the_protection_it_asked_for_is_accepted(tmp_path: Path) -> None:
    client = bind_with_challenge_flags(tmp_path, AuthLevel.INTEGRITY, 0)
    assert any(isinstance(e, BindAccepted) for e in client.events())
    client.request(0, 0, b"\0\0\0\0")
    assert client.data_to_send()  # signed, no AuthError
