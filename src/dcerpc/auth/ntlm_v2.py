"""NTLMv2 responses as Samba and impacket send them, put in the form pyspnego's acceptor checks.

MS-NLMP 3.3.2 defines the NTLMv2 response as ``NTProofStr || temp``, ``temp`` being the client's blob
(version, time, client challenge, AV pairs, then four reserved zero octets), and
``NTProofStr = HMAC_MD5(ResponseKeyNT, ServerChallenge || temp)``. A server checks the proof over
``temp`` *as the client sent it*; Windows and Samba's server do. Samba's client (smbtorture,
python3-samba, smbclient) and impacket leave the last four octets out. pyspnego's acceptor (0.11,
0.12) rebuilds ``temp`` from the parsed fields, always with the four octets, and compares the whole
response, so it refuses every such client although its proof is right (docs/pyspnego.md).

pyspnego has no public hook for this, so :class:`ResponseNormaliser` rewrites the client's
AUTHENTICATE message, before pyspnego sees it, into the one the client would have sent with the
four octets. That needs the user's key, which the server has (:class:`~.ntlm_users.UsersFile`):

1. the proof is checked over the blob as sent (a wrong one is passed on untouched, so pyspnego
   refuses it with its own error);
2. the MIC, when there is one, is checked over NEGOTIATE, CHALLENGE and AUTHENTICATE as they were
   exchanged, with the client's exported session key (a tampered message is passed on untouched);
3. the response becomes ``NTProofStr' || temp || Z(4)``, the later payload fields move four octets;
4. the encrypted random session key is re-encrypted under the new key-exchange key, so pyspnego
   recovers the client's exported session key and both sides sign and seal alike; the MIC is
   computed again over the new message.

A response already in the canonical form (pyspnego's own client, Windows) is not touched; tokens
are found inside SPNEGO's DER, which is rebuilt with the new lengths. Only an authenticated client's
message is ever rewritten: the rewrite adds no trust the client had not earned.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable

from .acceptor import der_encode_length, der_length
from .ntlm_users import UsersFile

__all__ = ["ResponseNormaliser"]

_SIGNATURE = b"NTLMSSP\x00"
_NEGOTIATE, _CHALLENGE, _AUTHENTICATE = 1, 2, 3
_Z4 = b"\x00" * 4
# MS-NLMP 2.2.2.5 NEGOTIATE flags
_UNICODE, _SIGN, _SEAL, _KEY_EXCH = 0x00000001, 0x00000010, 0x00000020, 0x40000000
# MS-NLMP 2.2.1.3: the AUTHENTICATE message's six (length, max length, offset) fields
_LM, _NT, _DOMAIN, _USER, _WORKSTATION, _KEY = 12, 20, 28, 36, 44, 52
_FIELDS = (_LM, _NT, _DOMAIN, _USER, _WORKSTATION, _KEY)
_AV_EOL, _AV_FLAGS, _AV_FLAG_MIC = 0, 6, 0x2  # MS-NLMP 2.2.2.1
_BLOB_HEADER = 28  # RespType, HiRespType, Reserved1, Reserved2, TimeStamp, ChallengeFromClient, Reserved3


def _hmac_md5(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.md5).digest()


def _rc4(key: bytes, data: bytes) -> bytes:
    """RC4 of 16 octets (a session key), once per handshake: plain Python is enough."""
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) & 0xFF
        s[i], s[j] = s[j], s[i]
    out = bytearray()
    i = j = 0
    for byte in data:
        i = (i + 1) & 0xFF
        j = (j + s[i]) & 0xFF
        s[i], s[j] = s[j], s[i]
        out.append(byte ^ s[(s[i] + s[j]) & 0xFF])
    return bytes(out)


class ResponseNormaliser:
    """Watches one acceptor's NTLM messages; rewrites the AUTHENTICATE when it needs the four octets."""

    def __init__(self, users: UsersFile) -> None:
        self._users = users
        self._negotiate: bytes | None = None
        self._challenge: bytes | None = None
        self.user: str | None = None  # the AUTHENTICATE's user and domain (the audit trail's)
        self.domain: str | None = None

    def inbound(self, token: bytes | None) -> bytes | None:
        """The client's token as pyspnego should see it."""
        if not token or _SIGNATURE not in token:
            return token
        return _rewrite(token, self._client_message)

    def outbound(self, token: bytes | None) -> None:
        """Notes the CHALLENGE in the acceptor's answer (the MIC covers it)."""
        if token and _SIGNATURE in token:
            _rewrite(token, self._server_message)

    def _server_message(self, msg: bytes) -> bytes:
        if _kind(msg) == _CHALLENGE:
            self._challenge = msg
        return msg

    def _client_message(self, msg: bytes) -> bytes:
        kind = _kind(msg)
        if kind == _NEGOTIATE:
            self._negotiate = msg
        elif kind == _AUTHENTICATE:
            try:
                fields = {at: struct.unpack_from("<HHI", msg, at) for at in _FIELDS}
                self.domain, self.user = _names(msg, fields)
                if self._negotiate is not None and self._challenge is not None:
                    return self._canonical(msg, fields) or msg
            except (struct.error, IndexError, ValueError):  # malformed: pyspnego reports it
                return msg
        return msg

    def _canonical(self, msg: bytes, fields: dict[int, tuple[int, int, int]]) -> bytes | None:
        """``msg`` with its NTLMv2 blob ending in Z(4), or None to pass it on as it is."""
        assert self._negotiate is not None and self._challenge is not None
        flags = struct.unpack_from("<I", msg, 60)[0]
        nt_len, _, nt_off = fields[_NT]
        if nt_len <= 24 or nt_off + nt_len > len(msg):  # NTLMv1, or no response: not ours to mend
            return None
        proof, blob = msg[nt_off : nt_off + 16], msg[nt_off + 16 : nt_off + nt_len]
        end, av_flags = _av_pairs(blob)
        if blob[end:] == _Z4:
            return None  # already what pyspnego computes
        domain, user = _names(msg, fields)
        # pyspnego looks the user up as DOMAIN\user, or as the bare name (a UPN) without a domain
        look_domain, look_user = (domain, user) if domain or "\\" not in user else user.split("\\", 1)
        nt_hash = self._users.nt_hash(look_domain, look_user)
        if nt_hash is None:
            return None
        response_key = _hmac_md5(nt_hash, (user.upper() + domain).encode("utf-16-le"))
        server_challenge = self._challenge[24:32]
        if not hmac.compare_digest(_hmac_md5(response_key, server_challenge + blob), proof):
            return None
        temp = blob[:end] + _Z4
        new_proof = _hmac_md5(response_key, server_challenge + temp)
        kek, new_kek = _hmac_md5(response_key, proof), _hmac_md5(response_key, new_proof)
        exchange = bool(flags & _KEY_EXCH and flags & (_SIGN | _SEAL))  # as MS-NLMP 3.2.5.1.2 and pyspnego
        key_len, _, key_off = fields[_KEY]
        if exchange and key_len != 16:
            return None
        exported = _rc4(kek, msg[key_off : key_off + 16]) if exchange else kek
        mic_at = _mic_offset(fields) if av_flags & _AV_FLAG_MIC else 0
        if mic_at:
            zeroed = msg[:mic_at] + bytes(16) + msg[mic_at + 16 :]
            expected = _hmac_md5(exported, self._negotiate + self._challenge + zeroed)
            if not hmac.compare_digest(expected, msg[mic_at : mic_at + 16]):
                return None

        cut = nt_off + nt_len
        out = bytearray(msg[:nt_off] + new_proof + temp + msg[cut:])
        struct.pack_into("<HHI", out, _NT, nt_len + 4, nt_len + 4, nt_off)
        for at in _FIELDS:
            length, maximum, offset = fields[at]
            if at != _NT and offset >= cut:
                struct.pack_into("<HHI", out, at, length, maximum, offset + 4)
        if exchange:
            moved = key_off + 4 if key_off >= cut else key_off
            out[moved : moved + 16] = _rc4(new_kek, exported)
        if mic_at:
            out[mic_at : mic_at + 16] = bytes(16)
            session_key = exported if exchange else new_kek
            out[mic_at : mic_at + 16] = _hmac_md5(session_key, self._negotiate + self._challenge + bytes(out))
        return bytes(out)


def _names(msg: bytes, fields: dict[int, tuple[int, int, int]]) -> tuple[str, str]:
    """An AUTHENTICATE's domain and user name (MS-NLMP 2.2.1.3), in the charset its flags say."""
    flags = struct.unpack_from("<I", msg, 60)[0]
    text = "utf-16-le" if flags & _UNICODE else "windows-1252"
    domain = _payload(msg, fields[_DOMAIN]).decode(text, "replace")
    user = _payload(msg, fields[_USER]).decode(text, "replace")
    return domain, user


def _kind(msg: bytes) -> int:
    return struct.unpack_from("<I", msg, 8)[0] if len(msg) >= 12 else 0


def _payload(msg: bytes, field: tuple[int, int, int]) -> bytes:
    length, _, offset = field
    return msg[offset : offset + length]


def _mic_offset(fields: dict[int, tuple[int, int, int]]) -> int:
    """Where the MIC is: after the Version when the payload starts at 88 or later (pyspnego's rule)."""
    payload = min((offset for length, _, offset in fields.values() if length), default=0)
    return 72 if payload >= 88 else 64 if payload >= 80 else 0


def _av_pairs(blob: bytes) -> tuple[int, int]:
    """Where the blob's AV pairs end (after MsvAvEOL), and the MsvAvFlags value.

    Raises:
        ValueError: the pairs run past the blob.
    """
    at, flags = _BLOB_HEADER, 0
    while True:
        av_id, length = struct.unpack_from("<HH", blob, at)
        if at + 4 + length > len(blob):
            raise ValueError("AV pair past the end of the NTLMv2 blob")
        if av_id == _AV_EOL:
            return at + 4, flags
        if av_id == _AV_FLAGS and length >= 4:
            flags = struct.unpack_from("<I", blob, at + 4)[0]
        at += 4 + length


def _rewrite(data: bytes, each: Callable[[bytes], bytes]) -> bytes:
    """``data`` (a bare NTLM message, or SPNEGO's DER around one) with ``each`` applied to its NTLM messages.

    DER lengths are recomputed around a message that changed size; data that does not parse as DER
    comes back unchanged (pyspnego reports it).
    """
    if data.startswith(_SIGNATURE):
        return each(data)
    try:
        return _der(data, each)
    except (IndexError, ValueError):
        return data


def _der(data: bytes, each: Callable[[bytes], bytes]) -> bytes:
    out, at = [], 0
    while at < len(data):
        tag = data[at]
        length, start = der_length(data, at + 1)
        end = start + length
        if end > len(data):
            raise ValueError("DER element past its container")
        content = data[start:end]
        if tag & 0x20:  # constructed: SPNEGO's [APPLICATION 0], SEQUENCE and context tags
            new = _der(content, each)
        elif tag == 0x04 and content.startswith(_SIGNATURE):  # OCTET STRING holding an NTLM message
            new = each(content)
        else:
            new = content
        out.append(data[at:end] if new == content else bytes([tag]) + der_encode_length(len(new)) + new)
        at = end
    return b"".join(out)
