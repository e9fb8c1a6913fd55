"""NTLM pieces of our own, in memory: MD4 and the NT hash, the users file, and the NTLMv2 normaliser.

The normaliser is driven through a real acceptor (NtlmProvider's context over pyspnego) by an
NTLMv2 client written here from MS-NLMP 3.1.5.1.2 / 3.3.2 the way Samba's and impacket's behave:
the blob ends at MsvAvEOL, without the four reserved octets. Its RC4 is pycryptodome's (an
independent implementation). A right response is accepted with the client's exported session key;
a wrong proof, a tampered MIC or a tampered flag is refused: the rewrite never vouches for a
message the client did not authenticate.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from Cryptodome.Cipher import ARC4

from dcerpc.auth import AuthError, NtlmProvider
from dcerpc.auth.gss import GssContext
from dcerpc.auth.md4 import md4, nt_hash
from dcerpc.auth.ntlm_users import UsersFile
from dcerpc.auth.ntlm_v2 import _rewrite

DOMAIN, USER, PASSWORD = "TESTDOM", "alice", "wonderland"


def test_md4_rfc1320_vectors() -> None:
    assert md4(b"").hex() == "31d6cfe0d16ae931b73c59d7e0c089c0"
    assert md4(b"abc").hex() == "a448017aaf21d8525fc10ae87aa6729d"
    assert md4(b"message digest").hex() == "d9130a8164549fe818874806e1c7014b"
    assert md4(b"1234567890" * 8).hex() == "e33b4ddc9c38f2199c3e7b164fcc0536"


def test_nt_hash_ms_nlmp_vector() -> None:
    assert nt_hash("Password").hex() == "a4f49c406510bdcab6824ee7c30fd852"  # MS-NLMP 4.2.2.1.2


def test_users_file_formats_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text(
        "TESTDOM:alice:wonderland\n"
        "testdom:ALICE:second-line-ignored\n"
        ":bob@REALM.TEST:builder\n"
        "OTHER\\carol:1000:00000000000000000000000000000000:" + nt_hash("c").hex().upper() + ":[U]:LCT-0\n"
        "not a user line\n"
    )
    users = UsersFile(path)
    assert users.nt_hash("testdom", "Alice") == nt_hash("wonderland")
    assert users.nt_hash("", "bob@realm.test") == nt_hash("builder")
    assert users.nt_hash("OTHER", "carol") == nt_hash("c")
    assert users.nt_hash("", "alice") is None
    path.write_text("TESTDOM:alice:changed\n")
    os.utime(path, ns=(1, 1))  # a different stamp even within the file system's time resolution
    assert users.nt_hash("TESTDOM", "alice") == nt_hash("changed")


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.md5).digest()


NEGOTIATE_FLAGS = (
    0xE2088297  # unicode, OEM, request target, sign, seal, NTLM, always sign, ESS, version, 128, key exch, 56
)


def negotiate_message() -> bytes:
    return b"NTLMSSP\x00" + struct.pack("<II", 1, NEGOTIATE_FLAGS) + bytes(16) + bytes(8)


def authenticate_message(
    challenge: bytes, negotiate: bytes, password: str, mic: bool = True
) -> tuple[bytes, bytes]:
    """A Samba-style AUTHENTICATE (blob without trailing Z(4); with a MIC, or without as impacket
    sends it) and its exported session key."""
    flags = struct.unpack_from("<I", challenge, 20)[0]
    server_challenge = challenge[24:32]
    _, _, ti_off = struct.unpack_from("<HHI", challenge, 40)
    pairs, at = b"", ti_off
    while True:  # the server's AV pairs, MsvAvFlags (MIC present) added before MsvAvEOL
        av_id, length = struct.unpack_from("<HH", challenge, at)
        if av_id == 0:
            break
        pairs += challenge[at : at + 4 + length]
        at += 4 + length
    pairs += (struct.pack("<HHI", 6, 4, 2) if mic else b"") + struct.pack("<HH", 0, 0)
    blob = (
        b"\x01\x01" + bytes(6) + struct.pack("<Q", 133_000_000_000_000_000) + os.urandom(8) + bytes(4) + pairs
    )
    response_key = _hmac(nt_hash(password), (USER.upper() + DOMAIN).encode("utf-16-le"))
    proof = _hmac(response_key, server_challenge + blob)
    exported = os.urandom(16)
    encrypted = ARC4.new(_hmac(response_key, proof)).encrypt(exported)
    payload = [bytes(24), proof + blob, DOMAIN.encode("utf-16-le"), USER.encode("utf-16-le"), b"", encrypted]
    header, body, offset = bytearray(b"NTLMSSP\x00" + struct.pack("<I", 3)), b"", 88
    for part in payload:
        header += struct.pack("<HHI", len(part), len(part), offset)
        body += part
        offset += len(part)
    header += struct.pack("<I", flags) + bytes(8) + bytes(16)  # flags, version, MIC (zero for now)
    message = bytearray(header + body)
    if mic:
        message[72:88] = _hmac(exported, negotiate + challenge + bytes(message))
    return bytes(message), exported


@pytest.fixture
def acceptor(tmp_path: Path) -> tuple[GssContext, bytes, bytes]:
    users = tmp_path / "users"
    users.write_text(f"{DOMAIN}:{USER}:{PASSWORD}\n")
    ctx = NtlmProvider(users).server_context()
    assert isinstance(ctx, GssContext)
    negotiate = negotiate_message()
    challenge = ctx.step(negotiate)
    assert challenge is not None
    return ctx, negotiate, challenge


@pytest.mark.parametrize("mic", [True, False], ids=["mic", "no-mic"])
def test_samba_style_response_is_accepted_with_the_clients_session_key(
    acceptor: tuple[GssContext, bytes, bytes], mic: bool
) -> None:
    ctx, negotiate, challenge = acceptor
    message, exported = authenticate_message(challenge, negotiate, PASSWORD, mic)
    assert ctx.step(message) is None
    assert ctx.complete and ctx.principal == f"{DOMAIN}\\{USER}"
    assert ctx._ctx.session_key == exported  # sign and seal keys derive from it on both sides


def _flip(at: int, bit: int = 1) -> Callable[[bytes], bytes]:
    return lambda m: m[:at] + bytes([m[at] ^ bit]) + m[at + 1 :]


@pytest.mark.parametrize(
    ("password", "tamper", "mic"),
    [
        pytest.param("wrong", lambda m: m, True, id="wrong-password"),
        pytest.param("wrong", lambda m: m, False, id="wrong-password-no-mic"),
        pytest.param(PASSWORD, _flip(-1), False, id="encrypted-session-key-no-mic"),
        pytest.param(PASSWORD, _flip(72), True, id="mic"),
        pytest.param(PASSWORD, _flip(60, 0x20), True, id="flags-under-the-mic"),
        pytest.param(PASSWORD, _flip(-1), True, id="encrypted-session-key"),
    ],
)
def test_unauthenticated_messages_are_refused(
    acceptor: tuple[GssContext, bytes, bytes], password: str, tamper: Callable[[bytes], bytes], mic: bool
) -> None:
    ctx, negotiate, challenge = acceptor
    message, exported = authenticate_message(challenge, negotiate, password, mic)
    try:
        ctx.step(tamper(message))
    except AuthError:
        return
    # without a MIC nothing covers the encrypted session key: the handshake completes, but with a
    # key the client does not have, so its first signed request will not verify
    assert not mic and password == PASSWORD and ctx._ctx.session_key != exported


def test_der_lengths_are_rebuilt_across_the_long_form_boundary() -> None:
    def wrap(tag: int, content: bytes) -> bytes:
        n = len(content)
        length = (
            bytes([n])
            if n < 0x80
            else bytes([0x81, n])
            if n < 0x100
            else bytes([0x82]) + n.to_bytes(2, "big")
        )
        return bytes([tag]) + length + content

    inner = b"NTLMSSP\x00" + bytes(240)  # 248 octets: 0x81 form; 252 after growing by four: still 0x81
    for size in (inner, inner + bytes(4)):  # 252 -> 256 crosses into the 0x82 form
        token = wrap(0xA1, wrap(0x30, wrap(0xA2, wrap(0x04, size)) + wrap(0xA3, wrap(0x04, bytes(16)))))
        grown = _rewrite(token, lambda m: m + b"\xee" * 4)
        assert grown == wrap(
            0xA1, wrap(0x30, wrap(0xA2, wrap(0x04, size + b"\xee" * 4)) + wrap(0xA3, wrap(0x04, bytes(16))))
        )
    assert _rewrite(b"\xa1\x85garbage", lambda m: m + b"x") == b"\xa1\x85garbage"  # not DER: untouched
