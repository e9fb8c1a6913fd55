"""The mechanisms a user names: client credentials and server providers for NTLM, Kerberos and SPNEGO.

Client side (``dcerpc.connect(binding, auth=NTLM("DOM", "user", "pass"), level="privacy")``):
:class:`NTLM`, :class:`Kerberos`, :class:`Negotiate`. Server side (``Server(security=[...])``):
:class:`NtlmProvider` (a users file), :class:`KerberosProvider` (a keytab), :class:`NegotiateProvider`
(either or both behind SPNEGO). All of them make :class:`~dcerpc.auth.gss.GssContext` objects over
pyspnego.

Auth types (MS-RPCE 2.2.1.1.7): 9 SPNEGO, 10 NTLM, 16 Kerberos. Legs: NTLM is bind / bind_ack /
auth3. SPNEGO carrying NTLM has a fourth token (the mechListMIC answer), so its last client token
goes in an alter_context. Kerberos in DCE style (MS-KILE 3.4.5.1) is bind (AP-REQ) / bind_ack
(AP-REP) / auth3 (the client's AP-REP).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import spnego

from .acceptor import AcceptorAnswers
from .base import ClientCredentials as _Credentials
from .base import SecurityContext, SecurityProvider
from .gss import GssContext, context_flags
from .md4 import nt_hash
from .ntlm_users import UsersFile

__all__ = [
    "AUTH_KERBEROS",
    "AUTH_NTLM",
    "AUTH_SPNEGO",
    "NTLM",
    "Kerberos",
    "KerberosProvider",
    "Negotiate",
    "NegotiateProvider",
    "NtlmProvider",
]

AUTH_SPNEGO = 9
AUTH_NTLM = 10
AUTH_KERBEROS = 16


def _user(domain: str, user: str) -> str:
    return f"{domain}\\{user}" if domain and "@" not in user and "\\" not in user else user


@dataclass(frozen=True)
class NTLM(_Credentials):
    """NTLM (auth type 10) with a user name and password."""

    domain: str
    user: str
    password: str = field(repr=False)
    auth_type: int = AUTH_NTLM

    def client_context(self, target: str, auth_level: int = 6) -> SecurityContext:
        return GssContext(
            lambda: spnego.client(
                _user(self.domain, self.user),
                self.password,
                hostname=target,
                protocol="ntlm",
                context_req=context_flags(auth_level),
            ),
            AUTH_NTLM,
        )


@dataclass(frozen=True)
class Negotiate(_Credentials):
    """SPNEGO (auth type 9): Kerberos when a ticket can be had, NTLM otherwise.

    ``kerberos=False`` offers NTLM alone (no ticket request, so no wait for a KDC that is not there).
    """

    domain: str = ""
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    service: str = "host"
    kerberos: bool = True
    auth_type: int = AUTH_SPNEGO

    def client_context(self, target: str, auth_level: int = 6) -> SecurityContext:
        user = _user(self.domain, self.user) if self.user else None
        credential: Any = user
        if not self.kerberos and user is not None:
            # an NT-hash credential is one only NTLM can use: SPNEGO then offers NTLM alone
            credential = spnego.NTLMHash(username=user, nt_hash=nt_hash(self.password or "").hex())
        return GssContext(
            lambda: spnego.client(
                credential,
                None if credential is not user else self.password,
                hostname=target,
                service=self.service,
                protocol="negotiate",
                context_req=context_flags(auth_level, dce_style=False),
            ),
            AUTH_SPNEGO,
            # without a user pyspnego finds NTLM credentials in the process's NTLM_USER_FILE
            reads_users="client" if user is None else None,
            third_leg="alter_context",
        )


@dataclass(frozen=True)
class Kerberos(_Credentials):
    """Kerberos (auth type 16) in DCE style, to the service principal ``service/target``.

    With ``user`` and ``password`` a ticket is requested with them; without, the default
    credential cache (KRB5CCNAME) is used.
    """

    user: str | None = None
    password: str | None = field(default=None, repr=False)
    service: str = "host"
    auth_type: int = AUTH_KERBEROS

    def client_context(self, target: str, auth_level: int = 6) -> SecurityContext:
        return GssContext(
            lambda: spnego.client(
                self.user,
                self.password,
                hostname=target,
                service=self.service,
                protocol="kerberos",
                context_req=context_flags(auth_level, dce_style=True),
            ),
            AUTH_KERBEROS,
        )


class NtlmProvider(SecurityProvider):
    """Accepts NTLM (auth type 10) for the users in a file, and the anonymous logon.

    The file has lines ``DOMAIN:USER:PASSWORD`` (or smbpasswd lines with hashes), as pyspnego's
    NTLM acceptor reads them. An anonymous logon (no user, no response: MS-NLMP 3.2.5.1.2) is
    accepted as Windows and Samba accept it: the context's principal is None, ``anonymous`` is
    True, and it can neither sign nor seal (so it serves auth level connect; see acceptor.py).
    """

    auth_type = AUTH_NTLM

    def __init__(self, users_file: str | os.PathLike[str]) -> None:
        self.users_file = os.fspath(users_file)
        if not os.path.isfile(self.users_file):
            raise FileNotFoundError(f"NTLM users file {self.users_file} does not exist")
        self._users = UsersFile(self.users_file)

    def server_context(self) -> SecurityContext:
        return GssContext(
            lambda: spnego.server(protocol="ntlm"),
            AUTH_NTLM,
            reads_users="acceptor",
            users=self._users,
            answers=AcceptorAnswers(spnego=False),
        )


class KerberosProvider(SecurityProvider):
    """Accepts Kerberos (auth type 16) with the keys of a keytab."""

    auth_type = AUTH_KERBEROS

    def __init__(self, keytab: str | os.PathLike[str], service: str = "host", hostname: str | None = None):
        self.keytab = os.fspath(keytab)
        self.service = service
        self.hostname = hostname
        # GSSAPI acceptors find their keys through KRB5_KTNAME (the process's one keytab)
        os.environ["KRB5_KTNAME"] = f"FILE:{os.path.abspath(self.keytab)}"

    def server_context(self) -> SecurityContext:
        return GssContext(
            lambda: spnego.server(
                hostname=self.hostname or "unspecified",
                service=self.service,
                protocol="kerberos",
                context_req=context_flags(6, dce_style=True),
            ),
            AUTH_KERBEROS,
        )


class NegotiateProvider(SecurityProvider):
    """Accepts SPNEGO (auth type 9) carrying NTLM (users file, and the anonymous logon as
    :class:`NtlmProvider` does) and, with a keytab, Kerberos."""

    auth_type = AUTH_SPNEGO

    def __init__(self, users_file: str | os.PathLike[str] | None = None, keytab: str | None = None):
        self.users_file = os.fspath(users_file) if users_file is not None else None
        self._users = UsersFile(self.users_file) if self.users_file is not None else None
        if keytab is not None:
            os.environ["KRB5_KTNAME"] = f"FILE:{os.path.abspath(keytab)}"

    def server_context(self) -> SecurityContext:
        return GssContext(
            lambda: spnego.server(protocol="negotiate"),
            AUTH_SPNEGO,
            reads_users="acceptor",  # NTLM inside SPNEGO: this provider's users, or none at all
            users=self._users,
            third_leg="alter_context",
            answers=AcceptorAnswers(spnego=True),
        )
