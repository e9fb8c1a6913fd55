"""A toy security provider for testing the seam: real enough to fail the way real ones do.

Handshake: TOY1 user -> TOY2 challenge -> TOY3 HMAC(password, challenge). Session key derived from
the password and challenge. Signatures carry a per-direction sequence number (replays and reordering
fail) and an HMAC; sealing XORs with a keystream per message. Not cryptography to use: a test double
for NTLM-shaped providers, standing where NTLM / Kerberos plug in.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from dcerpc.auth import AuthError, ClientCredentials, SecurityContext, SecurityProvider

TOY_AUTH_TYPE = 200


class ToyContext(SecurityContext):
    auth_type = TOY_AUTH_TYPE

    def __init__(
        self, server: bool, users: dict[str, str] | None = None, user: str = "", password: str = ""
    ) -> None:
        self.server = server
        self.users = users or {}
        self.user = user
        self.password = password
        self.key = b""
        self._done = False
        self.challenge = b""
        self.send_seq = 0
        self.recv_seq = 0

    @property
    def complete(self) -> bool:
        return self._done

    def step(self, token: bytes | None) -> bytes | None:
        if self.server:
            if token is None:
                raise AuthError("the server needs the client's token")
            if token.startswith(b"TOY1"):
                self.user = token[4:].decode()
                self.challenge = os.urandom(8)
                return b"TOY2" + self.challenge
            if token.startswith(b"TOY3"):
                password = self.users.get(self.user)
                if password is None:
                    raise AuthError(f"unknown user {self.user!r}")
                expect = hmac.new(password.encode(), self.challenge, hashlib.sha256).digest()
                if not hmac.compare_digest(expect, token[4:]):
                    raise AuthError("wrong password")
                self.key = hmac.new(password.encode(), self.challenge + b"key", hashlib.sha256).digest()
                self.principal = self.user
                self._done = True
                return None
            raise AuthError("not a toy token")
        if token is None:
            return b"TOY1" + self.user.encode()
        if token.startswith(b"TOY2"):
            challenge = token[4:]
            self.key = hmac.new(self.password.encode(), challenge + b"key", hashlib.sha256).digest()
            self._done = True
            return b"TOY3" + hmac.new(self.password.encode(), challenge, hashlib.sha256).digest()
        raise AuthError("not a toy token")

    def signature_size(self, seal: bool = False) -> int:
        return 16

    def _mac(self, direction: bytes, seq: int, data: bytes) -> bytes:
        return (
            seq.to_bytes(4, "little")
            + hmac.new(self.key, direction + seq.to_bytes(4, "little") + data, hashlib.sha256).digest()[:12]
        )

    def _dirs(self) -> tuple[bytes, bytes]:
        return (b"s2c", b"c2s") if self.server else (b"c2s", b"s2c")

    def _stream(self, direction: bytes, seq: int, n: int) -> bytes:
        out = b""
        block = 0
        while len(out) < n:
            out += hashlib.sha256(
                self.key + direction + seq.to_bytes(4, "little") + block.to_bytes(4, "little")
            ).digest()
            block += 1
        return out[:n]

    def sign(self, data: bytes) -> bytes:
        out, _ = self._dirs()
        sig = self._mac(out, self.send_seq, data)
        self.send_seq += 1
        return sig

    def verify(self, data: bytes, signature: bytes) -> None:
        _, inbound = self._dirs()
        seq = int.from_bytes(signature[:4], "little")
        if seq != self.recv_seq:
            raise AuthError(f"sequence number {seq}, expected {self.recv_seq} (replayed or reordered)")
        if not hmac.compare_digest(self._mac(inbound, seq, data), signature[:16]):
            raise AuthError("signature does not match")
        self.recv_seq += 1

    def seal(self, prefix: bytes, plain: bytes, suffix: bytes) -> tuple[bytes, bytes]:
        out, _ = self._dirs()
        cipher = bytes(
            a ^ b for a, b in zip(plain, self._stream(out, self.send_seq, len(plain)), strict=True)
        )
        return cipher, self.sign(prefix + plain + suffix)

    def unseal(self, prefix: bytes, cipher: bytes, suffix: bytes, signature: bytes) -> bytes:
        _, inbound = self._dirs()
        plain = bytes(
            a ^ b for a, b in zip(cipher, self._stream(inbound, self.recv_seq, len(cipher)), strict=True)
        )
        self.verify(prefix + plain + suffix, signature)
        return plain


class ToyProvider(SecurityProvider):
    auth_type = TOY_AUTH_TYPE

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def server_context(self) -> SecurityContext:
        return ToyContext(server=True, users=self.users)


class ToyCredentials(ClientCredentials):
    auth_type = TOY_AUTH_TYPE

    def __init__(self, user: str, password: str) -> None:
        self.user = user
        self.password = password

    def client_context(self, target: str, auth_level: int = 6) -> SecurityContext:
        return ToyContext(server=False, user=self.user, password=self.password)
