"""Samba's file server (smbd) on 445 beside samba-dcerpcd, in the same private namespaces as
sambad.py's: named pipes (ncacn_np) for impacket's SMBTransport, rpcclient and smbtorture.

    with SambaSmbd(tmp_path, users={"alice": "Secret-1"}) as samba:
        samba.run(["rpcclient", "-U", "SAMBADOM/alice%Secret-1", "127.0.0.1", "-c", "srvinfo"])

Samba 4.17's smbd forwards each named pipe to samba-dcerpcd over a local socket; with
``rpc start on demand helpers = false`` (the throwaway smb.conf of sambad.py) it expects
samba-dcerpcd to be running already, so this starts that first (as SambaDcerpcd does), then smbd in
the foreground, and waits for 445. Stopping kills everything in the namespace (SambaDcerpcd.close).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import require_peer
from tests.interop.sambad import SambaDcerpcd

SMBD = "/usr/sbin/smbd"


def available() -> bool:
    return os.geteuid() == 0 and os.access(SMBD, os.X_OK)


class SambaSmbd(SambaDcerpcd):
    """samba-dcerpcd and smbd (SMB2 and SMB3 on 127.0.0.1:445) in one private namespace."""

    def __init__(self, root: Path, users: dict[str, str] | None = None, encrypt: bool = False) -> None:
        require_peer(available(), "Samba's smbd in a private namespace needs root and the samba package")
        super().__init__(root, users)
        self.encrypt = encrypt
        self.smbd: subprocess.Popen[str] | None = None

    def _write_files(self) -> None:
        super()._write_files()
        (self.root / "share").mkdir(exist_ok=True)
        with self.conf.open("a") as f:  # still the [global] section
            f.write("  smb ports = 445\n  server min protocol = SMB2_02\n")
            if self.encrypt:
                f.write("  server smb encrypt = required\n")
            f.write(f"[share]\n  path = {self.root}/share\n  read only = no\n")

    def __enter__(self) -> SambaSmbd:
        super().__enter__()
        try:
            self.smbd = subprocess.Popen(
                self._wrap([SMBD, "-s", str(self.conf), "-F", "--no-process-group"]),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                text=True,
                # its own process group: smbd signals its whole group when it shuts down
                start_new_session=True,
            )
            self.wait_port(445)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        super().close()
        if self.smbd is not None:
            try:
                self.smbd.wait(5)
            except subprocess.TimeoutExpired:
                self.smbd.kill()
            self.smbd = None
