"""Where our NTLM and SPNEGO acceptors answer as Windows and Samba do, and pyspnego's would not.

pyspnego (0.12) does the mechanisms; :class:`AcceptorAnswers` watches one acceptor's tokens and
changes three things, each with the smallest rewrite of the tokens exchanged (docs/pyspnego.md,
shortfalls 4 to 6, says what upstream could do instead):

1. **Anonymous NTLM.** An AUTHENTICATE with no user name, no NT response and an LM response that is
   empty or one zero octet is the anonymous logon (MS-NLMP 3.2.5.1.2; Samba's client sends both
   responses empty). pyspnego's acceptor refuses it ("Anonymous user authentication not
   implemented"); Windows and Samba accept it. We answer it ourselves, once the CHALLENGE is out: the
   context completes for nobody (``principal`` None, ``anonymous`` True), with neither integrity nor
   confidentiality. Samba's server clears NEGOTIATE_SIGN and NEGOTIATE_SEAL for an anonymous (or
   guest) logon ("not secure anyway", auth/ntlmssp/ntlmssp_server.c, ntlmssp_server_postauth), so
   an anonymous context serves auth level connect; a signed request on it fails its signature, and
   privacy is refused when the handshake completes. Raw NTLM has nothing to answer (the client's
   last leg is auth3); SPNEGO answers ``negState accept-completed`` without a mechListMIC (there is
   no key to make one with), as Samba's server does when its sub-mechanism cannot sign.
2. **No mechListMIC without integrity.** RFC 4178 section 5 uses a mechListMIC only when the chosen
   mechanism gives integrity; Samba's server makes and checks one only when its NTLM negotiated
   NEGOTIATE_SIGN (auth/gensec/spnego.c, server negTokenTarg finish). pyspnego's acceptor signs one
   with NTLM's null signature and waits for the client's, so a client whose NTLM negotiated no
   signing (Samba's at auth level connect) refuses the answer (NT_STATUS_INVALID_PARAMETER). When
   pyspnego's NTLM is complete without integrity and its answer carries a mechListMIC, we answer
   ``accept-completed`` without it, and the handshake is complete.
3. **request-mic only after a downgrade.** pyspnego's first SPNEGO answer to an NTLM client says
   ``negState request-mic`` even when NTLM was the client's own first choice. RFC 4178 4.2.2 asks
   for it when the acceptor chose another mechanism than the initiator's preferred one, and Samba's
   server sends it only then (``downgraded``). A Samba client told request-mic insists on a MIC
   exchange whenever its NTLM can sign, which an anonymous logon cannot complete. When the chosen
   mechanism is the client's first, we answer ``accept-incomplete``; nothing else changes (a client
   that wants the MIC exchange still has it: pyspnego still signs and checks one with a signing NTLM).

Pure: tokens in, tokens out; no I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["AcceptorAnswers", "der_encode_length", "der_length", "is_anonymous_authenticate"]

_NTLM = b"NTLMSSP\x00"
_CHALLENGE, _AUTHENTICATE = 2, 3
_LM, _NT, _USER = 12, 20, 36  # MS-NLMP 2.2.1.3: (length, max length, offset) fields
# RFC 4178 4.2.2 negState
_ACCEPT_COMPLETED, _ACCEPT_INCOMPLETE, _REQUEST_MIC = 0, 1, 3
_SEQUENCE, _OCTETS, _OID, _ENUMERATED = 0x30, 0x04, 0x06, 0x0A
_RESP = 0xA1  # NegotiationToken's negTokenResp [1]
_INIT_WRAPPER = 0x60  # RFC 2743 3.1 InitialContextToken [APPLICATION 0]


def der_length(data: bytes, at: int) -> tuple[int, int]:
    """A DER length at ``at``: (the length, where the content starts).

    Raises:
        ValueError: a length form we do not take (indefinite, or more than four octets).
        IndexError: the data ends first.
    """
    first = data[at]
    if first < 0x80:
        return first, at + 1
    n = first & 0x7F
    if not 1 <= n <= 4:
        raise ValueError("unsupported DER length")
    return int.from_bytes(data[at + 1 : at + 1 + n], "big"), at + 1 + n


def der_encode_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + der_encode_length(len(content)) + content


def _elements(data: bytes) -> dict[int, bytes]:
    """The contents of a run of DER elements, by tag (the last one of a tag wins).

    Raises:
        ValueError, IndexError: not DER.
    """
    out: dict[int, bytes] = {}
    at = 0
    while at < len(data):
        tag = data[at]
        length, start = der_length(data, at + 1)
        end = start + length
        if end > len(data):
            raise ValueError("DER element past its container")
        out[tag] = data[start:end]
        at = end
    return out


def _only(data: bytes, tag: int) -> bytes:
    """The content of ``data`` when it is one element with ``tag``.

    Raises:
        ValueError: it is not.
    """
    if not data or data[0] != tag:
        raise ValueError("unexpected DER tag")
    length, start = der_length(data, 1)
    if start + length != len(data):
        raise ValueError("trailing octets after a DER element")
    return data[start:]


@dataclass(frozen=True, slots=True)
class NegTokenResp:
    """RFC 4178 4.2.2 NegTokenResp: each field's DER content, None when absent."""

    neg_state: int | None = None
    supported_mech: bytes | None = None  # the OID's encoded octets
    response_token: bytes | None = None
    mech_list_mic: bytes | None = None

    @classmethod
    def parse(cls, token: bytes) -> NegTokenResp | None:
        """The negTokenResp ``token`` is, or None when it is something else."""
        try:
            fields = _elements(_only(_only(token, _RESP), _SEQUENCE))
            state = fields.get(0xA0)
            mech = fields.get(0xA1)
            response = fields.get(0xA2)
            mic = fields.get(0xA3)
            return cls(
                neg_state=_only(state, _ENUMERATED)[0] if state is not None else None,
                supported_mech=_only(mech, _OID) if mech is not None else None,
                response_token=_only(response, _OCTETS) if response is not None else None,
                mech_list_mic=_only(mic, _OCTETS) if mic is not None else None,
            )
        except (ValueError, IndexError):
            return None

    def pack(self) -> bytes:
        body = b""
        if self.neg_state is not None:
            body += _tlv(0xA0, _tlv(_ENUMERATED, bytes([self.neg_state])))
        if self.supported_mech is not None:
            body += _tlv(0xA1, _tlv(_OID, self.supported_mech))
        if self.response_token is not None:
            body += _tlv(0xA2, _tlv(_OCTETS, self.response_token))
        if self.mech_list_mic is not None:
            body += _tlv(0xA3, _tlv(_OCTETS, self.mech_list_mic))
        return _tlv(_RESP, _tlv(_SEQUENCE, body))


def _first_mech(token: bytes) -> bytes | None:
    """The encoded OID of the first mechanism a negTokenInit proposes (RFC 4178 4.2.1), or None."""
    try:
        inner = _only(token, _INIT_WRAPPER)
        oid_length, start = der_length(inner, 1)
        if inner[0] != _OID:
            return None
        init = _only(inner[start + oid_length :], 0xA0)
        mech_types = _elements(_only(init, _SEQUENCE)).get(0xA0)
        if mech_types is None:
            return None
        first = _only(mech_types, _SEQUENCE)
        length, begin = der_length(first, 1)
        return first[begin : begin + length] if first[0] == _OID else None
    except (ValueError, IndexError):
        return None


def _ntlm_kind(msg: bytes | None) -> int:
    if msg is None or len(msg) < 12 or not msg.startswith(_NTLM):
        return 0
    return int(struct.unpack_from("<I", msg, 8)[0])


def is_anonymous_authenticate(msg: bytes) -> bool:
    """True for an NTLM AUTHENTICATE that logs on as nobody (MS-NLMP 3.2.5.1.2, 3.3.1: an empty
    user name, no NT response, and an LM response that is empty or Z(1))."""
    if _ntlm_kind(msg) != _AUTHENTICATE or len(msg) < 64:
        return False
    lm_len, _, lm_off = struct.unpack_from("<HHI", msg, _LM)
    nt_len = struct.unpack_from("<H", msg, _NT)[0]
    user_len = struct.unpack_from("<H", msg, _USER)[0]
    if user_len or nt_len:
        return False
    return lm_len == 0 or (lm_len == 1 and msg[lm_off : lm_off + 1] == b"\x00")


class AcceptorAnswers:
    """Watches one NTLM (``spnego=False``) or SPNEGO acceptor's tokens; see the module's docstring."""

    __slots__ = ("_authenticated", "_challenged", "_first_mech", "_spnego", "completed")

    def __init__(self, spnego: bool) -> None:
        self._spnego = spnego
        self._challenged = False  # our CHALLENGE went out: an AUTHENTICATE may follow
        self._authenticated = False  # the token being answered carried the AUTHENTICATE
        self._first_mech: bytes | None = None
        self.completed = False  # we answered the last leg ourselves: the handshake is complete

    def anonymous(self, token: bytes) -> bool:
        """True when ``token`` is the client's anonymous AUTHENTICATE, answered by :meth:`answer`."""
        if not self._challenged:
            return False
        if not self._spnego:
            return is_anonymous_authenticate(token)
        resp = NegTokenResp.parse(token)
        return resp is not None and is_anonymous_authenticate(resp.response_token or b"")

    def answer(self) -> bytes | None:
        """Our last leg for an anonymous logon (the handshake is then complete)."""
        self.completed = True
        return NegTokenResp(neg_state=_ACCEPT_COMPLETED).pack() if self._spnego else None

    def inbound(self, token: bytes | None) -> None:
        """Notes the mechanism a SPNEGO client prefers (its first negTokenInit), and whether this
        token carries the AUTHENTICATE (pyspnego's NTLM is complete once it has taken it)."""
        self._authenticated = False
        if not self._spnego or not token:
            return
        if token[0] == _INIT_WRAPPER:
            if self._first_mech is None:
                self._first_mech = _first_mech(token)
        elif self._challenged:
            resp = NegTokenResp.parse(token)
            self._authenticated = resp is not None and _ntlm_kind(resp.response_token) == _AUTHENTICATE

    def outbound(self, out: bytes | None, integrity: bool) -> bytes | None:
        """pyspnego's answer as Windows and Samba give it (``integrity``: the context negotiated
        signing; meaningful once it is complete)."""
        if not out:
            return out
        if not self._spnego:
            self._challenged = self._challenged or _ntlm_kind(out) == _CHALLENGE
            return out
        resp = NegTokenResp.parse(out)
        if resp is None:
            return out
        if _ntlm_kind(resp.response_token) == _CHALLENGE:
            self._challenged = True
            if resp.neg_state == _REQUEST_MIC and resp.supported_mech == self._first_mech:
                return NegTokenResp(
                    _ACCEPT_INCOMPLETE, resp.supported_mech, resp.response_token, resp.mech_list_mic
                ).pack()
        elif self._authenticated and not integrity and resp.mech_list_mic is not None:
            self.completed = True
            return NegTokenResp(_ACCEPT_COMPLETED, None, resp.response_token, None).pack()
        return out
