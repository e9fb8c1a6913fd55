"""Two NTLM servers in one process, each with its own users file, hit by clients in several threads.

pyspnego's NTLM acceptor finds its users through the process-wide NTLM_USER_FILE. Each server
here runs on its own event loop in its own thread (ServerThread) and the clients in further
threads, so handshakes on the two servers interleave. Every authentication must succeed or fail
exactly as the file of the server it reached says: the same user has a different password in each
file, and each file has a user the other lacks. A credential-less SPNEGO client, which pyspnego
serves from the process's own NTLM_USER_FILE, must keep seeing that file meanwhile.

The environment-variable code before the lock (set, step, restore, in each thread) fails this: one
server's step saw the other's file, or none once the other had restored it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import dcerpc
from dcerpc import FaultError, current_call
from dcerpc.auth import NTLM, ClientCredentials, Negotiate, NegotiateProvider, NtlmProvider
from dcerpc.rpcecho import Echo
from dcerpc.rpcecho.server import EchoServer
from dcerpc.testing import ServerThread

FILES = {
    "a": "DOM:alice:apple\nDOM:carol:cherry\n",
    "b": "DOM:alice:banana\nDOM:bob:berry\n",
}
CLIENTS = [("alice", "apple"), ("alice", "banana"), ("bob", "berry"), ("carol", "cherry")]
ROUNDS = 12  # per client thread: every (server, user, mechanism) case, this many times


class WhoAmI(EchoServer):
    async def TestCall(self, s1: str) -> str | None:
        return current_call().principal


def accepted(server: str, user: str, password: str) -> bool:
    return f"DOM:{user}:{password}\n" in FILES[server]


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[dict[str, ServerThread]]:
    threads = {}
    for name, text in FILES.items():
        path = tmp_path / f"users-{name}"
        path.write_text(text)
        threads[name] = ServerThread(WhoAmI(), security=[NtlmProvider(path), NegotiateProvider(path)])
        threads[name].__enter__()
    try:
        yield threads
    finally:
        for srv in threads.values():
            srv.__exit__(None, None, None)


async def attempt(port: int, creds: ClientCredentials) -> str | None:
    """The principal the server saw, or None when it refused the credentials."""
    try:
        async with await dcerpc.connect(f"ncacn_ip_tcp:127.0.0.1[{port}]", auth=creds, level="privacy") as c:
            return await (await c.bind(Echo)).TestCall("x")
    except (FaultError, dcerpc.BindError):
        return None


def test_each_server_authenticates_by_its_own_file(
    servers: dict[str, ServerThread], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the process's own file: a credential-less SPNEGO client takes its first user from it
    own = tmp_path / "users-process"
    own.write_text("DOM:carol:cherry\n")
    monkeypatch.setenv("NTLM_USER_FILE", str(own))
    wrong: list[str] = []
    done = threading.Barrier(5)

    def client(index: int) -> None:
        async def main() -> None:
            for n in range(ROUNDS):
                for server in ("a", "b")[:: 1 if (index + n) % 2 else -1]:
                    for user, password in CLIENTS:
                        for creds in (
                            NTLM("DOM", user, password),
                            Negotiate("DOM", user, password, kerberos=False),
                        ):
                            got = await attempt(servers[server].port, creds)
                            want = f"DOM\\{user}" if accepted(server, user, password) else None
                            if got != want:
                                wrong.append(f"{server} {user}/{password} {type(creds).__name__}: {got}")

        try:
            asyncio.run(main())
        finally:
            done.wait()

    def process_credentials() -> None:
        async def main() -> None:
            for _ in range(ROUNDS * 4):
                got = await attempt(servers["a"].port, Negotiate(kerberos=False))
                if got != "DOM\\carol":
                    wrong.append(f"credential-less client: {got}")

        try:
            asyncio.run(main())
        finally:
            done.wait()

    # One call first, alone: the NDR codecs of rpcecho are built on first use, and that is not
    # thread-safe (ndr/schema.py publishes a union's node before its arms are filled), which is
    # not what this test is about.
    assert asyncio.run(attempt(servers["a"].port, NTLM("DOM", "carol", "cherry"))) == "DOM\\carol"
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, so that handshakes interleave
    try:
        workers = [threading.Thread(target=client, args=(i,)) for i in range(3)]
        workers.append(threading.Thread(target=process_credentials))
        for w in workers:
            w.start()
        done.wait()
        for w in workers:
            w.join()
    finally:
        sys.setswitchinterval(interval)
    assert not wrong, f"{len(wrong)} wrong outcomes, e.g. {wrong[:5]}"
    assert os.environ["NTLM_USER_FILE"] == str(own)  # left as it was found
