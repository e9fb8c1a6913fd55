"""Samba's RPC server (samba-dcerpcd) in private network and mount namespaces, for our client to call.

    with SambaDcerpcd(tmp_path, users={"alice": "Secret-1"}) as samba:
        samba.python("-c", "...")            # runs inside: 127.0.0.1:135 is Samba's endpoint mapper
        samba.run(["dcerpc", "dump", "127.0.0.1", "--json"])
        samba.add_user("bob", "Secret-2")    # Unix account + smbpasswd entry, usable at once
        samba.list_users()                   # the passdb's user names

The namespace holder mounts over /etc/passwd and /etc/group (copies of the host's, ROOT/passwd and
ROOT/group, that get the Unix accounts smbpasswd needs) and /var/log/samba (where the rpcd_* workers
log whatever smb.conf says), and brings up its own loopback. The users given are added (add_user)
before samba-dcerpcd starts inside with a throwaway standalone smb.conf whose directories all live
under the temp dir; more can be added while it runs. Stopping kills every process in the namespace
(samba-dcerpcd and its workers), then the holder.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.conftest import require_peer, samba_python_available

SAMBA_DCERPCD = "/usr/libexec/samba/samba-dcerpcd"
WORKGROUP = "SAMBADOM"
FIRST_UID = 42000


def available() -> bool:
    return os.geteuid() == 0 and os.access(SAMBA_DCERPCD, os.X_OK) and os.path.exists("/usr/bin/smbpasswd")


# prints one account name a line
_LIST_USERS = """
import sys
from samba.samba3 import param, passdb
lp = param.get_context()
lp.load(sys.argv[1])
passdb.set_secrets_dir(lp.get("private dir"))
passdb.set_smb_config(sys.argv[1])
for u in passdb.PDB(lp.get("passdb backend")).search_users(0):
    print(u["account_name"])
"""


class SambaDcerpcd:
    def __init__(self, root: Path, users: dict[str, str] | None = None) -> None:
        require_peer(
            available(),
            "Samba's samba-dcerpcd in a private namespace needs root and the samba package",
        )
        self.root = root
        self.users = dict(users or {})
        self.conf = root / "smb.conf"
        self.holder: subprocess.Popen[str] | None = None
        self.daemon: subprocess.Popen[str] | None = None

    # setup --------------------------------------------------------------------------------------

    def _write_files(self) -> None:
        r = self.root
        for d in ("private", "lock", "state", "cache", "pid", "ncalrpc", "binddns", "log", "varlog"):
            (r / d).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            "[global]\n"
            f"  workgroup = {WORKGROUP}\n"
            "  netbios name = DCERPCPEER\n"
            "  server role = standalone server\n"
            "  passdb backend = tdbsam\n"
            f"  private dir = {r}/private\n  lock directory = {r}/lock\n  state directory = {r}/state\n"
            f"  cache directory = {r}/cache\n  pid directory = {r}/pid\n  ncalrpc dir = {r}/ncalrpc\n"
            f"  binddns dir = {r}/binddns\n  log file = {r}/log/log.%m\n"
            "  interfaces = 127.0.0.1/8\n  bind interfaces only = yes\n  disable netbios = yes\n"
            "  disable spoolss = yes\n  rpc start on demand helpers = false\n"
        )
        (r / "passwd").write_text(Path("/etc/passwd").read_text())
        (r / "group").write_text(Path("/etc/group").read_text())

    def _holder_script(self) -> str:
        r = self.root
        return "\n".join(
            [
                "set -e",
                f"mount --bind {r}/passwd /etc/passwd",
                f"mount --bind {r}/group /etc/group",
                "mkdir -p /var/log/samba",
                f"mount --bind {r}/varlog /var/log/samba",
                "ip link set lo up",
                "echo ready",
                "exec sleep 100000",
            ]
        )

    def __enter__(self) -> SambaDcerpcd:
        self._write_files()
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c", self._holder_script()],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.holder.stdout is not None
        line = self.holder.stdout.readline()
        if line.strip() != "ready":
            err = self.holder.stderr.read() if self.holder.stderr else ""
            raise RuntimeError(f"namespace setup failed: {line} {err}")
        try:
            for user, password in list(self.users.items()):
                self.add_user(user, password)
            self.daemon = subprocess.Popen(
                self._wrap(
                    [SAMBA_DCERPCD, "-s", str(self.conf), "--libexec-rpcds", "-F", "--no-process-group"]
                ),
                # not the caller's stdin: in the foreground it exits when a pipe there reaches EOF
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            self.wait_port(135)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # running things inside ------------------------------------------------------------------------

    def _wrap(self, args: Sequence[str]) -> list[str]:
        assert self.holder is not None
        return ["nsenter", "-t", str(self.holder.pid), "-n", "-m", "--", *args]

    def run(self, args: Sequence[str], timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._wrap(args), capture_output=True, text=True, timeout=timeout, check=False, **kw
        )

    def python(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        """Our interpreter (dcerpc, impacket) inside the namespace."""
        return self.run([sys.executable, *args], **kw)

    def samba_python(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        """The system interpreter with python3-samba, inside the namespace."""
        return self.run(["/usr/bin/python3", *args], **kw)

    # users ----------------------------------------------------------------------------------------

    def _append(self, name: str, line: str) -> None:
        # in place: a rename would leave the holder's bind mount on the old inode
        with (self.root / name).open("a") as f:
            f.write(line)

    def _free_uid(self) -> int:
        text = (self.root / "passwd").read_text() + (self.root / "group").read_text()
        used = {int(n) for n in re.findall(r"^[^:]*:[^:]*:(\d+):", text, re.M)}
        return next(uid for uid in range(FIRST_UID, 60000) if uid not in used)

    def add_user(self, user: str, password: str) -> None:
        """A Unix account (in the namespace's passwd and group, unless it has one) and an NTLM
        (tdbsam) user with this password; again for the same user sets a new password."""
        if not re.search(rf"^{re.escape(user)}:", (self.root / "passwd").read_text(), re.M):
            uid = self._free_uid()
            self._append("passwd", f"{user}:x:{uid}:{uid}::/nonexistent:/usr/sbin/nologin\n")
            self._append("group", f"{user}:x:{uid}:\n")
        out = self.run(
            ["smbpasswd", "-c", str(self.conf), "-s", "-a", user],
            input=f"{password}\n{password}\n",
            timeout=30,
        )
        if out.returncode != 0:
            raise RuntimeError(f"smbpasswd -a {user} failed: {out.stdout}{out.stderr}")
        self.users[user] = password

    def list_users(self) -> list[str]:
        """The passdb's user names, read through python3-samba's passdb bindings (the library
        ``pdbedit -L`` uses; pdbedit itself comes with the whole Debian samba server package)."""
        require_peer(samba_python_available(), "python3-samba is not installed for /usr/bin/python3")
        out = self.samba_python("-c", _LIST_USERS, str(self.conf), timeout=30)
        if out.returncode != 0:
            raise RuntimeError(f"listing the passdb failed: {out.stdout}{out.stderr}")
        return out.stdout.splitlines()

    def wait_port(self, port: int, timeout: float = 30) -> None:
        probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=1).close()"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.python("-c", probe, timeout=10).returncode == 0:
                return
            if self.daemon is not None and self.daemon.poll() is not None:
                raise RuntimeError(
                    f"samba-dcerpcd exited ({self.daemon.returncode}); logs in {self.root}/log"
                )
            time.sleep(0.2)
        raise TimeoutError(f"samba-dcerpcd is not listening on {port}; logs in {self.root}/log")

    # stopping -------------------------------------------------------------------------------------

    def _members(self) -> list[int]:
        """Processes in the holder's network namespace, the holder excepted."""
        assert self.holder is not None
        try:
            ns = os.readlink(f"/proc/{self.holder.pid}/ns/net")
        except OSError:
            return []
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == self.holder.pid:
                continue
            try:
                if os.readlink(f"/proc/{entry}/ns/net") == ns:
                    pids.append(int(entry))
            except OSError:
                continue
        return pids

    def close(self) -> None:
        if self.holder is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            members = self._members()
            for pid in members:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 5
            while self._members() and time.monotonic() < deadline:
                time.sleep(0.05)
            if not self._members():
                break
        if self.daemon is not None:
            try:
                self.daemon.wait(5)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
        self.holder.kill()
        self.holder.wait()
        self.holder = None
