"""Security providers: the seam (``base``) and, later, NTLM, Kerberos and SPNEGO through pyspnego."""

from .base import AuthError, ClientCredentials, SecurityContext, SecurityProvider

__all__ = ["AuthError", "ClientCredentials", "SecurityContext", "SecurityProvider"]
