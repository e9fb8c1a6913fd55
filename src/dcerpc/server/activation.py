"""Sockets handed over by systemd socket activation (sd_listen_fds(3)), and the readiness
notifications of ``Type=notify`` services (sd_notify(3)), both without libsystemd.

The protocol: the service manager binds and listens on the sockets a ``.socket`` unit names, then
starts the service with them open at file descriptors 3, 4, ... and three variables set:
``LISTEN_PID`` (the process they are for: a child that inherits the environment must not take them
too), ``LISTEN_FDS`` (how many) and, optionally, ``LISTEN_FDNAMES`` (their ``FileDescriptorName=``,
colon-separated). The variables are removed once read, as ``sd_listen_fds(unset_environment=1)``
does, so that processes this one starts do not see them.

``dcerpc epm`` / ``dcerpc run`` serve the endpoint mapper on the stream sockets they are given: the
TCP ones are its port (135), the Unix one its registration socket (contrib/systemd/dcerpc-epm.socket).

Notifications: when ``NOTIFY_SOCKET`` names a datagram socket (a path, or ``@name`` in the abstract
namespace), :func:`notify` sends it newline-separated ``KEY=VALUE`` states: ``READY=1`` once the
service listens, ``RELOADING=1`` then ``READY=1`` around a reload, ``STOPPING=1`` when it begins to
drain. Without the variable it does nothing, so the commands call it unconditionally.
"""

from __future__ import annotations

import os
import socket
import stat

__all__ = ["FIRST_FD", "listen_fds", "notify"]

FIRST_FD = 3  # SD_LISTEN_FDS_START


def listen_fds(unset_environment: bool = True) -> list[socket.socket]:
    """The listening sockets systemd passed to this process (empty when it passed none).

    Raises:
        ValueError: the variables are set for this process but malformed, or a descriptor is not a
            socket (a unit that passes FIFOs or files to a service that cannot use them).
    """
    pid, count = os.environ.get("LISTEN_PID"), os.environ.get("LISTEN_FDS")
    names = os.environ.get("LISTEN_FDNAMES")
    if unset_environment:
        for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(var, None)
    if pid is None or count is None:
        return []
    if not pid.isdigit() or int(pid) != os.getpid():
        return []  # meant for another process (the parent that started us)
    if not count.isdigit():
        raise ValueError(f"LISTEN_FDS={count!r} is not a number")
    labels = names.split(":") if names else []
    out = []
    for i in range(int(count)):
        fd = FIRST_FD + i
        label = labels[i] if i < len(labels) else str(fd)
        try:
            mode = os.fstat(fd).st_mode
        except OSError as e:
            raise ValueError(f"LISTEN_FDS names fd {fd} ({label}), which is not open: {e}") from None
        if not stat.S_ISSOCK(mode):
            raise ValueError(f"fd {fd} ({label}) from LISTEN_FDS is not a socket")
        os.set_inheritable(fd, False)  # FD_CLOEXEC, as sd_listen_fds sets it
        sock = socket.socket(fileno=fd)  # family and type read from the descriptor
        if sock.type != socket.SOCK_STREAM:
            sock.detach()
            raise ValueError(f"fd {fd} ({label}) from LISTEN_FDS is not a stream socket")
        out.append(sock)
    return out


def notify(*states: str) -> bool:
    """Tell the service manager ``states`` (``"READY=1"``, ``"STOPPING=1"``...); False when there is
    no manager to tell (no ``NOTIFY_SOCKET``) or it cannot be reached."""
    where = os.environ.get("NOTIFY_SOCKET")
    if not where or not states:
        return False
    address = "\0" + where[1:] if where.startswith("@") else where
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(address)
            s.sendall("\n".join(states).encode())
    except OSError:
        return False
    return True
