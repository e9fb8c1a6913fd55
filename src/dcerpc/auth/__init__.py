"""Security: the provider seam (``base``) and NTLM, Kerberos and SPNEGO through pyspnego (``mechs``)."""

from .base import AuthError, ClientCredentials, Protection, SecurityContext, SecurityProvider
from .mechs import NTLM, Kerberos, KerberosProvider, Negotiate, NegotiateProvider, NtlmProvider

__all__ = [
    "NTLM",
    "AuthError",
    "ClientCredentials",
    "Kerberos",
    "KerberosProvider",
    "Negotiate",
    "NegotiateProvider",
    "NtlmProvider",
    "Protection",
    "SecurityContext",
    "SecurityProvider",
]
