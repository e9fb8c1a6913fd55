"""NTLMv2 verification over the client's blob as sent: makes pyspnego's NTLM acceptor accept Samba.

MS-NLMP 3.3.2 defines the NTLMv2 response as ``NTProofStr || temp`` where ``temp`` is the client's
blob (version, time, client challenge, AV pairs, then four reserved zero octets). A server checks
``NTProofStr == HMAC_MD5(ResponseKeyNT, ServerChallenge || temp)`` over ``temp`` *as the client sent
it*. pyspnego's acceptor instead rebuilds ``temp`` from the parsed fields and always appends the four
reserved octets; Samba's client (smbtorture, python3-samba, smbclient) leaves them out, so every
Samba client fails with "Invalid NTLM response" although its proof is right. Windows and Samba's
own server verify over the blob as sent.

:func:`client_blob` tells the acceptor's response computation, for the duration of one step, what
the client actually sent; the computation then runs over that blob (the same HMAC-MD5 formulas,
pyspnego's primitives). Outside such a step pyspnego's own function runs unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

from spnego import _ntlm
from spnego._ntlm_raw.crypto import hmac_md5
from spnego._ntlm_raw.messages import Authenticate

__all__ = ["client_blob"]

_AUTHENTICATE = b"NTLMSSP\x00\x03\x00\x00\x00"
_sent: contextvars.ContextVar[bytes | None] = contextvars.ContextVar("ntlmv2_response", default=None)
_original = _ntlm.compute_response_v2  # type: ignore[attr-defined]


def _over_sent_blob(
    nt_hash: bytes, server_challenge: bytes, client_challenge: bytes, time: Any, av_pairs: Any
) -> tuple[bytes, bytes, bytes]:
    sent = _sent.get()
    # the blob as sent starts: 01 01, Z(6), time (8), client challenge (8)
    if sent is None or len(sent) <= 24 or sent[32:40] != client_challenge:
        return _original(nt_hash, server_challenge, client_challenge, time, av_pairs)
    temp = sent[16:]
    proof = hmac_md5(nt_hash, server_challenge + temp)
    lm = hmac_md5(nt_hash, server_challenge + client_challenge) + client_challenge
    return proof + temp, lm, hmac_md5(nt_hash, proof)


_ntlm.compute_response_v2 = _over_sent_blob  # type: ignore[attr-defined]


@contextlib.contextmanager
def client_blob(token: bytes | None) -> Iterator[None]:
    """During one acceptor step: verify an NTLMv2 response in ``token`` over the blob as sent.

    ``token`` may be a bare NTLM AUTHENTICATE message or one wrapped in SPNEGO.
    """
    sent = None
    at = token.find(_AUTHENTICATE) if token else -1
    if token and at >= 0:
        try:
            sent = Authenticate.unpack(token[at:]).nt_challenge_response
        except Exception:  # malformed: pyspnego itself reports it when it parses the token
            sent = None
    mark = _sent.set(sent)
    try:
        yield
    finally:
        _sent.reset(mark)
