"""The soak runs' moving parts: the server process and what it reports, and the client processes.

- :class:`ServerProcess` starts ``soak_server.py`` (what ``dcerpc run`` starts, with the limits as
  flags), asks it for its tables over its stdin hook, and reads its RSS, threads and descriptors
  from ``/proc/PID``.
- ``load_worker``, ``idle_worker``, ``handles_worker`` run in client processes of their own (the
  machine has 2 cores; one process cannot drive the server hard), each with many asyncio clients
  from ``dcerpc.connect``, and report to the parent through queues.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from array import array
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
T = TypeVar("T")


def proc_status(pid: int) -> dict[str, int]:
    """RSS and peak RSS (octets), threads and open descriptors of a process, from /proc."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
        elif key == "Threads":
            out[key] = int(value)
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def raise_nofile(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (n, max(n, hard)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class ServerProcess:
    """``soak_server.py`` in a child process; ``stats()`` asks it for its tables."""

    def __init__(self, *flags: str, log: str | None = None, uvloop: bool = True) -> None:
        from common import free_port

        self.epm_port, self.echo_port = free_port(), free_port()
        cmd = [sys.executable, str(HERE / "soak_server.py"), "--epm-port", str(self.epm_port)]
        cmd += ["--echo-port", str(self.echo_port), *flags]
        if not uvloop:
            cmd.append("--no-uvloop")
        self.log_path = log or os.devnull
        self._log = open(self.log_path, "w")  # noqa: SIM115  (closed in stop)
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, bufsize=1
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("ready "):
            self.stop()
            raise RuntimeError(f"soak server did not start (log: {self.log_path})")
        self.pid = int(json.loads(line[6:])["pid"])

    def stats(self, collect: bool = False) -> dict[str, Any]:
        return self.ask("gc" if collect else "stats")

    def ask(self, command: str) -> dict[str, Any]:
        """One command to the server's hook (stats, gc, types, trim), its JSON answer."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return dict(json.loads(self.proc.stdout.readline()))

    def rss_trimmed(self) -> int:
        """RSS once malloc has given its freed heap back (call after every other figure)."""
        self.ask("trim")
        return self.rss()

    def status(self) -> dict[str, int]:
        return proc_status(self.pid)

    def rss(self) -> int:
        return self.status()["VmRSS"]

    def wait_for(self, check: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """Poll the tables until ``check`` holds (or ``timeout`` passes); the last answer."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.stats()
            if check(s) or time.monotonic() > deadline:
                return s
            time.sleep(0.05)

    def log_lines(self) -> int:
        try:
            with open(self.log_path) as f:
                return sum(1 for _ in f)
        except OSError:
            return 0

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # the hook sees EOF: the host closes
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


def _loop(uvloop: bool) -> None:
    from common import use_uvloop

    use_uvloop(uvloop)


async def _bounded(n: int, jobs: list[Callable[[], Awaitable[T]]]) -> list[T | BaseException]:
    """Run ``jobs`` with at most ``n`` at a time; exceptions are returned in their place."""
    sem = asyncio.Semaphore(n)

    async def one(job: Callable[[], Awaitable[T]]) -> T:
        async with sem:
            return await job()

    return await asyncio.gather(*(one(j) for j in jobs), return_exceptions=True)


def _first_errors(results: list[Any], into: list[str]) -> int:
    bad = [r for r in results if isinstance(r, BaseException)]
    into.extend(repr(e) for e in bad[: 5 - len(into)] if len(into) < 5)
    return len(bad)


# load --------------------------------------------------------------------------------------------


def load_worker(
    port: int, clients: int, calls: int, warmup: int, q: Any, go: Any, finish: Any, uvloop: bool
) -> None:
    """``clients`` connections, each bound and making ``warmup`` then ``calls`` AddOne calls one after
    another; reports "warm" when warmed up, waits for ``go``, reports "done", waits for ``finish``
    (the parent reads the server's RSS with every connection still open), then reports errors and
    latencies."""
    _loop(uvloop)
    raise_nofile(4 * clients + 256)
    import dcerpc
    from dcerpc.rpcecho import Echo

    async def main() -> dict[str, Any]:
        url = f"ncacn_ip_tcp:127.0.0.1[{port}]"
        errors: list[str] = []

        async def open_one() -> tuple[dcerpc.Connection, Echo]:
            conn = await dcerpc.connect(url)
            return conn, await conn.bind(Echo)

        opened = await _bounded(64, [open_one] * clients)
        nerr = _first_errors(opened, errors)
        pairs = [p for p in opened if not isinstance(p, BaseException)]
        lat = array("d")
        failed = 0

        async def client(echo: Echo, n: int, record: bool) -> None:
            nonlocal failed
            clock = time.perf_counter
            for i in range(n):
                t = clock()
                try:
                    r = await echo.AddOne(i)
                except Exception as e:
                    failed += 1
                    if len(errors) < 5:
                        errors.append(repr(e))
                    continue
                if record:
                    lat.append(clock() - t)
                if r != i + 1:
                    failed += 1

        await asyncio.gather(*(client(e, warmup, False) for _, e in pairs))
        q.put(("warm", nerr + failed))
        await asyncio.get_running_loop().run_in_executor(None, go.wait)
        warm_failed, failed = failed, 0
        start = time.time()
        await asyncio.gather(*(client(e, calls, True) for _, e in pairs))
        end = time.time()
        q.put(("done", None))
        await asyncio.get_running_loop().run_in_executor(None, finish.wait)
        for conn, _ in pairs:
            await conn.close()
        lost = (clients - len(pairs)) * calls
        return {
            "errors": nerr + warm_failed + failed + lost,
            "first": errors,
            "lat": lat.tobytes(),
            "start": start,
            "end": end,
        }

    q.put(("result", asyncio.run(main())))


# idle ---------------------------------------------------------------------------------------------


def idle_worker(port: int, n: int, q: Any, release: Any, uvloop: bool) -> None:
    """Hold ``n`` bound associations (each has made one call) until ``release``."""
    _loop(uvloop)
    raise_nofile(2 * n + 256)
    import dcerpc
    from dcerpc.rpcecho import Echo

    async def main() -> dict[str, Any]:
        url = f"ncacn_ip_tcp:127.0.0.1[{port}]"
        errors: list[str] = []

        async def open_one() -> dcerpc.Connection:
            conn = await dcerpc.connect(url)
            echo = await conn.bind(Echo)
            if await echo.AddOne(1) != 2:
                raise RuntimeError("AddOne answered wrong")
            return conn

        opened = await _bounded(128, [open_one] * n)
        nerr = _first_errors(opened, errors)
        conns = [c for c in opened if not isinstance(c, BaseException)]
        q.put(("held", len(conns)))
        await asyncio.get_running_loop().run_in_executor(None, release.wait)

        # still bound after the hold: every association answers once more
        async def again(conn: dcerpc.Connection) -> None:
            echo = await conn.bind(Echo)
            if await echo.AddOne(2) != 3:
                raise RuntimeError("AddOne answered wrong")

        later = await _bounded(128, [lambda c=c: again(c) for c in conns])  # type: ignore[misc]
        nerr += _first_errors(later, errors)
        for conn in conns:
            await conn.close()
        return {"held": len(conns), "errors": nerr, "first": errors}

    q.put(("result", asyncio.run(main())))


# handles ------------------------------------------------------------------------------------------


def handles_worker(port: int, sessions: int, concurrency: int, q: Any, uvloop: bool) -> None:
    """``sessions`` connections to the endpoint mapper, each leaving an ept_lookup handle open
    (max_ents 1 of a larger map) and dropped without ept_lookup_handle_free."""
    _loop(uvloop)
    raise_nofile(4 * concurrency + 256)
    import dcerpc
    from dcerpc.epm.idl import RPC_C_EP_ALL_ELTS, RPC_C_VERS_ALL, Epm
    from dcerpc.ndr.declarations import ContextHandle

    async def main() -> dict[str, Any]:
        url = f"ncacn_ip_tcp:127.0.0.1[{port}]"
        errors: list[str] = []

        async def session() -> bool:
            conn = await dcerpc.connect(url)
            try:
                epm = await conn.bind(Epm)
                r = await epm.ept_lookup(RPC_C_EP_ALL_ELTS, None, None, RPC_C_VERS_ALL, ContextHandle(), 1)
                return not r.entry_handle.is_null  # a handle the server holds for the next page
            finally:
                await conn.close()  # no ept_lookup_handle_free: the group's rundown must free it

        results = await _bounded(concurrency, [session] * sessions)
        nerr = _first_errors(results, errors)
        held = sum(1 for r in results if r is True)
        return {"sessions": sessions, "handles": held, "errors": nerr, "first": errors}

    q.put(("result", asyncio.run(main())))
