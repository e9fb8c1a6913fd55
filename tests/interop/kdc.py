"""A throwaway MIT Kerberos realm on loopback: KDC, a user, and a service keytab for our server.

with Kdc(tmp_path) as kdc:       # realm DCERPC.TEST, KDC on a free port, KRB5_CONFIG set
    kdc.user, kdc.password      # alice@DCERPC.TEST
    kdc.keytab                  # host/localhost@DCERPC.TEST
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from tests.conftest import require_peer

REALM = "DCERPC.TEST"
SBIN = ("/usr/sbin", "/usr/bin")


def _tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in SBIN:
        if os.access(f"{d}/{name}", os.X_OK):
            return f"{d}/{name}"
    return None


def kdc_available() -> bool:
    try:
        import gssapi  # noqa: F401
        import krb5  # noqa: F401
    except ImportError:
        return False
    return all(_tool(t) for t in ("krb5kdc", "kdb5_util", "kadmin.local"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Kdc:
    def __init__(self, root: Path, user: str = "alice", password: str = "Secret-1") -> None:
        require_peer(
            kdc_available(),
            "MIT Kerberos (krb5-kdc, krb5-admin-server) or python-gssapi/krb5 (the kerberos extra) missing",
        )
        self.root = root
        self.port = _free_port()
        self.realm = REALM
        self.user = f"{user}@{REALM}"
        self.password = password
        self.keytab = root / "server.keytab"
        self.conf = root / "krb5.conf"
        self._saved: dict[str, str | None] = {}
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Kdc:
        r = self.root
        self.conf.write_text(
            f"[libdefaults]\n default_realm = {REALM}\n dns_lookup_kdc = false\n dns_lookup_realm = false\n"
            " rdns = false\n dns_canonicalize_hostname = false\n ignore_acceptor_hostname = true\n"
            f"[realms]\n {REALM} = {{\n  kdc = 127.0.0.1:{self.port}\n }}\n"
            f"[domain_realm]\n localhost = {REALM}\n"
        )
        (r / "kdc.conf").write_text(
            f"[kdcdefaults]\n kdc_ports = {self.port}\n kdc_tcp_ports = {self.port}\n"
            f"[realms]\n {REALM} = {{\n  database_name = {r}/principal\n  key_stash_file = {r}/stash\n"
            f"  acl_file = {r}/kadm5.acl\n  kdc_listen = 127.0.0.1:{self.port}\n"
            f"  kdc_tcp_listen = 127.0.0.1:{self.port}\n"
            "  supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal\n }\n"
            f"[logging]\n kdc = FILE:{r}/kdc.log\n"
        )
        env = {**os.environ, "KRB5_CONFIG": str(self.conf), "KRB5_KDC_PROFILE": str(r / "kdc.conf")}
        run = lambda *a: subprocess.run(a, env=env, capture_output=True, text=True, check=True, timeout=60)  # noqa: E731
        run(str(_tool("kdb5_util")), "create", "-s", "-r", REALM, "-P", "throwaway-master")
        kadmin = str(_tool("kadmin.local"))
        run(kadmin, "-q", f"addprinc -pw {self.password} {self.user}")
        run(kadmin, "-q", "addprinc -randkey host/localhost")
        run(kadmin, "-q", f"ktadd -k {self.keytab} host/localhost")
        self._proc = subprocess.Popen(
            [str(_tool("krb5kdc")), "-n", "-P", str(r / "kdc.pid")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the KDC did not start") from None
                time.sleep(0.05)
        for key, value in (("KRB5_CONFIG", str(self.conf)), ("KRB5CCNAME", "MEMORY:dcerpc-tests")):
            self._saved[key] = os.environ.get(key)
            os.environ[key] = value
        return self

    def env(self) -> dict[str, str]:
        """Environment for a peer process (smbtorture, Samba's Python) to use this realm."""
        return {**os.environ, "KRB5_CONFIG": str(self.conf), "KRB5CCNAME": f"FILE:{self.root}/peer.cc"}

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
