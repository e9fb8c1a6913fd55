"""Our NTLM and SPNEGO acceptors against Samba's own client (gensec, python3-samba), token by token.

Samba's gensec runs in the system Python and hands us each token over a pipe; our acceptor is a
real :class:`~dcerpc.auth.gss.GssContext` from the providers servers use. What is checked: the
anonymous logon completes for nobody and protects nothing; a SPNEGO client whose NTLM negotiated no
signing completes (pyspnego alone answers with a mechListMIC the client refuses); a signing client
still does the mechListMIC exchange; a context signs and verifies only what it negotiated.
"""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import pytest

from dcerpc.auth import AuthError, NegotiateProvider, NtlmProvider, Protection, SecurityContext
from dcerpc.auth.acceptor import NegTokenResp, is_anonymous_authenticate

DOMAIN, USER, PASSWORD = "DOMAIN", "alice", "Secret123!"
CONNECT, PACKET, INTEGRITY = 2, 4, 5

GENSEC_PEER = r"""
import json, sys
from samba import gensec
from samba.credentials import DONT_USE_KERBEROS, Credentials
from samba.dcerpc import dcerpc
from samba.param import LoadParm
mech, level, user = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lp = LoadParm()
creds = Credentials()
creds.guess(lp)
if user:
    creds.set_domain(sys.argv[4]); creds.set_username(user); creds.set_password(sys.argv[5])
else:
    creds.set_anonymous()
creds.set_kerberos_state(DONT_USE_KERBEROS)
g = gensec.Security.start_client({"lp_ctx": lp, "target_hostname": "127.0.0.1"})
g.set_credentials(creds)
g.want_feature(gensec.FEATURE_DCE_STYLE)
types = {"spnego": dcerpc.DCERPC_AUTH_TYPE_SPNEGO, "ntlm": dcerpc.DCERPC_AUTH_TYPE_NTLMSSP}
g.start_mech_by_authtype(types[mech], level)
token = b""
while True:
    try:
        finished, out = g.update(token)
    except Exception as e:
        print(json.dumps({"error": str(e)}), flush=True)
        sys.exit(0)
    print(json.dumps({"finished": finished, "token": out.hex()}), flush=True)
    if finished:
        break
    line = sys.stdin.readline()
    if not line:
        sys.exit(0)
    token = bytes.fromhex(line.strip())
print(json.dumps({"sign": g.have_feature(gensec.FEATURE_SIGN)}), flush=True)
"""


def handshake(
    samba_python: str, ctx: SecurityContext, mech: str, level: int, user: str = ""
) -> tuple[list[bytes], dict[str, object]]:
    """Runs Samba's client against ``ctx``; our tokens, and the client's last word."""
    args = [samba_python, "-c", GENSEC_PEER, mech, str(level), user, DOMAIN, PASSWORD]
    ours: list[bytes] = []
    with subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as peer:
        assert peer.stdin is not None and peer.stdout is not None
        try:
            for line in peer.stdout:
                said = json.loads(line)
                if "token" not in said:
                    return ours, said
                token = bytes.fromhex(str(said["token"]))
                if token:
                    out = ctx.step(token)
                    ours.append(out or b"")
                if said["finished"]:
                    continue
                peer.stdin.write((out or b"").hex() + "\n")
                peer.stdin.flush()
        finally:
            peer.stdin.close()
    return ours, {"error": "the client ended without a word"}


@pytest.fixture
def users(tmp_path: Path) -> Path:
    path = tmp_path / "ntlm-users"
    path.write_text(f"{DOMAIN}:{USER}:{PASSWORD}\n")
    return path


@pytest.mark.interop
@pytest.mark.parametrize(("mech", "level"), [("ntlm", CONNECT), ("spnego", CONNECT), ("spnego", PACKET)])
def test_anonymous_logon_completes_for_nobody(samba_python: str, users: Path, mech: str, level: int) -> None:
    provider = NtlmProvider(users) if mech == "ntlm" else NegotiateProvider(users)
    ctx = provider.server_context()
    ours, last = handshake(samba_python, ctx, mech, level)
    assert "error" not in last, last
    assert ctx.complete and ctx.anonymous and ctx.principal is None
    assert ctx.protections == Protection.NONE
    if mech == "spnego":
        first, final = NegTokenResp.parse(ours[0]), NegTokenResp.parse(ours[-1])
        assert first is not None and first.neg_state == 1  # accept-incomplete: no request-mic
        assert final == NegTokenResp(neg_state=0)  # accept-completed, no mechListMIC
    else:
        assert ours[-1] == b""  # the client's auth3 has no answer
    # nothing to sign with: even NTLM's null signature is refused
    with pytest.raises(AuthError):
        ctx.verify(b"stub", b"\x01" + b"\x00" * 15)
    with pytest.raises(AuthError):
        ctx.sign(b"stub")


@pytest.mark.interop
def test_spnego_without_ntlm_signing_completes(samba_python: str, users: Path) -> None:
    """Samba's client at auth level connect negotiates no NTLM signing: no mechListMIC either way."""
    ctx = NegotiateProvider(users).server_context()
    ours, last = handshake(samba_python, ctx, "spnego", CONNECT, USER)
    assert last == {"sign": False}
    assert ctx.complete and not ctx.anonymous and ctx.principal == f"{DOMAIN}\\{USER}"
    assert ctx.protections == Protection.NONE
    assert NegTokenResp.parse(ours[-1]) == NegTokenResp(neg_state=0)


@pytest.mark.interop
def test_spnego_with_ntlm_signing_keeps_the_mic_exchange(samba_python: str, users: Path) -> None:
    ctx = NegotiateProvider(users).server_context()
    ours, last = handshake(samba_python, ctx, "spnego", INTEGRITY, USER)
    assert last == {"sign": True}
    assert ctx.complete and ctx.principal == f"{DOMAIN}\\{USER}"
    assert Protection.INTEGRITY in ctx.protections
    assert Protection.CONFIDENTIALITY not in ctx.protections
    final = NegTokenResp.parse(ours[-1])
    assert final is not None and final.neg_state == 0 and final.mech_list_mic  # signed by us
    with pytest.raises(AuthError):  # integrity, not confidentiality
        ctx.seal(b"", b"stub", b"")


def _authenticate(user: bytes = b"", nt: bytes = b"", lm: bytes = b"") -> bytes:
    payload = 88
    fields, body = b"", b""
    for value in (lm, nt, b"", user, b"", b""):
        fields += struct.pack("<HHI", len(value), len(value), payload + len(body))
        body += value
    return b"NTLMSSP\x00" + struct.pack("<I", 3) + fields + struct.pack("<I", 0x800) + bytes(24) + body


def test_anonymous_authenticate_is_recognised() -> None:
    assert is_anonymous_authenticate(_authenticate())
    assert is_anonymous_authenticate(_authenticate(lm=b"\x00"))  # MS-NLMP 3.2.5.1.2: LM is Z(1)
    assert not is_anonymous_authenticate(_authenticate(lm=b"\x01"))
    assert not is_anonymous_authenticate(_authenticate(user="a".encode("utf-16-le")))
    assert not is_anonymous_authenticate(_authenticate(nt=bytes(24)))
    assert not is_anonymous_authenticate(_authenticate()[:40])


def test_neg_token_resp_round_trip() -> None:
    resp = NegTokenResp(1, bytes.fromhex("2b06010401823702020a"), b"x" * 200, b"m" * 16)
    assert NegTokenResp.parse(resp.pack()) == resp
    assert NegTokenResp(neg_state=0).pack() == bytes.fromhex("a1073005a0030a0100")
    assert NegTokenResp.parse(b"\xa1\x05\x30\x03") is None
