"""Authentication settings a host applies to every server it runs (flags and the TOML file).

    [auth]
    ntlm_users = "/etc/dcerpc/ntlm-users"     # DOMAIN:USER:PASSWORD lines
    keytab = "/etc/dcerpc/rpc.keytab"          # Kerberos service keys
    min_auth_level = "integrity"                # none connect call packet integrity privacy
    epm_min_auth_level = "none"                 # the endpoint mapper's own (EnableAuthEpResolution)

    [auth.interfaces]                           # a minimum per interface (name or UUID)
    rpcecho = "privacy"

The global minimum does not reach the endpoint mapper: it keeps its own setting (Windows keeps
RestrictRemoteClients and EnableAuthEpResolution apart the same way), so clients can still find
services before they authenticate to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..pdu.constants import AuthLevel
from .base import SecurityProvider
from .mechs import KerberosProvider, NegotiateProvider, NtlmProvider

__all__ = ["LEVELS", "AuthConfig", "parse_level"]

LEVELS = ("none", "connect", "call", "packet", "integrity", "privacy")


def parse_level(value: str | int) -> int:
    """An authentication level by name ("integrity") or number (5).

    Raises:
        ValueError: not a level.
    """
    if isinstance(value, int) or str(value).isdigit():
        number = int(value)
        if AuthLevel.NONE <= number <= AuthLevel.PRIVACY:
            return number
    elif str(value).lower() in LEVELS:
        return LEVELS.index(str(value).lower()) + 1
    raise ValueError(f"{value!r} is not an authentication level ({', '.join(LEVELS)})")


@dataclass
class AuthConfig:
    """Credentials servers accept with, and the levels they require."""

    ntlm_users: str | None = None
    keytab: str | None = None
    service: str = "host"  # Kerberos service name: principals service/hostname@REALM
    min_auth_level: int = AuthLevel.NONE
    epm_min_auth_level: int = AuthLevel.NONE
    interfaces: dict[str, int] = field(default_factory=dict)  # interface name or UUID -> level

    def providers(self) -> list[SecurityProvider]:
        """Security providers for the configured credentials (none: anonymous only).

        Raises:
            FileNotFoundError: a configured file does not exist.
        """
        out: list[SecurityProvider] = []
        if self.ntlm_users:
            out.append(NtlmProvider(self.ntlm_users))
        if self.keytab:
            out.append(KerberosProvider(self.keytab, service=self.service))
        if self.ntlm_users or self.keytab:
            out.append(NegotiateProvider(self.ntlm_users, self.keytab))
        return out
