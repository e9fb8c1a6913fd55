"""The NTLM users file of a server, and how pyspnego's acceptor is made to read it, one thread at a time.

The file has the lines pyspnego documents for its acceptor: ``DOMAIN:USER:PASSWORD`` (Heimdal's
form; ``:user@REALM:PASSWORD`` for a UPN) or smbpasswd's ``USER:UID:LMHASH:NTHASH:FLAGS:LCT``,
where USER may be ``DOMAIN\\user``. Names match without regard to case; the first matching line wins.

pyspnego 0.11 and 0.12 give an NTLM acceptor no way to name its users other than the
process-wide environment variable NTLM_USER_FILE, which it reads when the context is made and again
when it checks the AUTHENTICATE message (``spnego.server(credentials=...)`` is honoured on Windows
only; see docs/pyspnego.md). Two servers in one process with different files, or a server and a
client in different threads, would each see whatever the other last set. So every call into
pyspnego that may read the variable runs inside a :class:`UsersFileGuard`: one process-wide lock,
the variable set to the caller's file (or absent) for the duration, and put back as it was before
the lock is released. The calls are short (a handshake step; signing and sealing never read it).

:class:`UsersFile` also looks users up itself (:meth:`UsersFile.nt_hash`): the NTLMv2 normaliser
(:mod:`.ntlm_v2`) needs a user's key to accept a response in the form Samba and impacket send.
"""

from __future__ import annotations

import base64
import os
import threading
from pathlib import Path

from .md4 import nt_hash

__all__ = ["AS_IS", "ENV", "UsersFile", "UsersFileGuard"]

ENV = "NTLM_USER_FILE"
_LOCK = threading.Lock()


class _AsIs:
    def __repr__(self) -> str:
        return "AS_IS"


AS_IS = _AsIs()  # see the process's own NTLM_USER_FILE


class UsersFileGuard:
    """Held around each call into one pyspnego context that may read NTLM_USER_FILE.

    ``users_file``: the path the calls must see; ``None`` for no file at all (an acceptor without
    NTLM users must not find another server's); :data:`AS_IS` for the process's own value (a client
    without explicit credentials, which pyspnego looks up in that file). One guard per context: it
    can be entered again once left, not while held.
    """

    __slots__ = ("_old", "_set", "_want")

    def __init__(self, users_file: str | _AsIs | None) -> None:
        self._want = users_file
        self._old: str | None = None
        self._set = False

    def __enter__(self) -> None:
        _LOCK.acquire()
        want = self._want
        if isinstance(want, _AsIs):
            return
        old = os.environ.get(ENV)
        if want == old:
            return
        try:
            if want is None:
                del os.environ[ENV]
            else:
                os.environ[ENV] = want
        except BaseException:
            _LOCK.release()
            raise
        self._old, self._set = old, True

    def __exit__(self, *exc: object) -> None:
        try:
            if self._set:
                self._set = False
                if self._old is None:
                    os.environ.pop(ENV, None)
                else:
                    os.environ[ENV] = self._old
        finally:
            _LOCK.release()


class UsersFile:
    """One users file: its path, and its users' NT hashes (read again when the file changes)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._users: dict[tuple[str, str], bytes] = {}

    def nt_hash(self, domain: str, user: str) -> bytes | None:
        """The NT hash of ``domain\\user`` (``domain`` empty for a UPN or a bare name), None if absent."""
        with self._lock:
            try:
                st = os.stat(self.path)
                if (st.st_mtime_ns, st.st_size) != self._stamp:
                    self._users = _parse(Path(self.path).read_text(encoding="utf-8", errors="replace"))
                    self._stamp = (st.st_mtime_ns, st.st_size)
            except OSError:  # gone or unreadable: nobody is known (pyspnego then refuses as well)
                return None
            return self._users.get((domain.upper(), user.upper()))


def _parse(text: str) -> dict[tuple[str, str], bytes]:
    users: dict[tuple[str, str], bytes] = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) == 3:  # DOMAIN:USER:PASSWORD
            key, value = (fields[0].upper(), fields[1].upper()), nt_hash(fields[2])
        elif len(fields) == 6:  # smbpasswd: USER:UID:LMHASH:NTHASH:FLAGS:LCT
            domain, _, user = fields[0].partition("\\") if "\\" in fields[0] else ("", "", fields[0])
            try:
                value = base64.b16decode(fields[3].upper())
            except ValueError:
                continue
            key = (domain.upper(), user.upper())
        else:
            continue
        users.setdefault(key, value)  # the first line for a user is the one pyspnego uses
    return users
