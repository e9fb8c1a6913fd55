"""How the audit trail and the log lines spell what a server knows: peers as ``ip:port``, auth types
and levels by name, an interface's version as ``major.minor``. Pure functions, used by the writer
thread (events) and by the server's log lines."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

__all__ = [
    "AUTH_LEVELS",
    "AUTH_TYPES",
    "TRANSPORTS",
    "address",
    "auth_level_name",
    "auth_type_name",
    "peer_text",
]

AUTH_TYPES: Final = {0: "none", 9: "spnego", 10: "ntlm", 14: "schannel", 16: "kerberos", 68: "netlogon"}
"""sec_trailer auth_type values by name (MS-RPCE 2.2.1.1.7)."""

AUTH_LEVELS: Final = {
    0: "default",
    1: "none",
    2: "connect",
    3: "call",
    4: "packet",
    5: "integrity",
    6: "privacy",
}
"""Authentication levels by name (MS-RPCE 2.2.1.1.8)."""

TRANSPORTS: Final = {"ncacn_ip_tcp": "tcp", "ncalrpc": "unix"}
"""Protocol sequence -> ECS ``network.transport``."""


def auth_type_name(auth_type: int) -> str:
    return AUTH_TYPES.get(auth_type, str(auth_type))


def auth_level_name(level: int) -> str:
    return AUTH_LEVELS.get(level, str(level))


def address(peer: Any) -> tuple[str | None, int | None]:
    """A socket address as (ip, port): a TCP peer's, with an IPv4 address mapped into IPv6 as
    itself; (path or None, None) for a Unix socket's."""
    if isinstance(peer, tuple) and len(peer) >= 2 and isinstance(peer[0], str):
        host = peer[0]
        return (host[7:] if host.startswith("::ffff:") else host), int(peer[1])
    if isinstance(peer, str | bytes) and peer:
        return (peer.decode(errors="replace") if isinstance(peer, bytes) else peer), None
    return None, None


def peer_text(peer: Any) -> str:
    """``ip:port`` (``[ip]:port`` for IPv6) for a TCP peer; the path, or ``local``, for a Unix one."""
    host, port = address(peer)
    if host is None:
        return "local"
    if port is None:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_second: tuple[int, str] = (-1, "")  # the last second formatted, and its text (one object: threads)


def iso_timestamp(ns: int) -> str:
    """``@timestamp`` of an event at ``ns`` nanoseconds since the epoch: UTC, microseconds
    (``2026-12-01T15:04:05.123456Z``)."""
    seconds, rest = divmod(ns, 1_000_000_000)
    return f"{iso_second(seconds)}.{rest // 1000:06d}Z"


def iso_second(seconds: int) -> str:
    """The date and time of ``@timestamp`` to the second (``2026-12-01T15:04:05``), ``seconds``
    since the epoch. The last second's is kept: events come many to a second, and strftime costs
    more than the rest of the line."""
    global _second  # noqa: PLW0603
    cached = _second
    if cached[0] != seconds:
        cached = _second = (seconds, datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return cached[1]
