"""The server process the soak runs measure: what ``dcerpc run`` starts, with the limits given as flags.

``dcerpc run`` builds an :class:`dcerpc.epm.host.EpmHost` (the endpoint mapper on TCP and its local
socket) and serves rpcecho beside it, with uvloop and malloc's large-buffer tuning. This script does
the same, with two differences the soak needs:

- the ``Limits`` come from flags (the ``dcerpc`` command's TOML file has no settings for them; the
  load and idle runs need more than 1,024 connections and more than 64 from one address);
- a read-only hook on stdin: each line ``stats`` (or ``gc``: a full collection first, and counts of
  the connection objects still alive) is answered with one JSON line on stdout: connections held,
  association groups, context handles open and run down (counted by a ``GroupTable`` subclass
  installed in both servers before any connection arrives), refusals, violations, counters, and
  the octets malloc has handed out (mallinfo2). ``types`` answers the most common object types;
  ``trim`` calls malloc_trim(0) (after the figures: RSS then shows what malloc was only keeping).
  Nothing in the library changes for it.

    python benchmarks/soak_server.py --epm-port P --echo-port Q [--max-connections N] ...

prints ``ready {"epm": P, "echo": Q, "pid": ...}`` once both listen. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import logging
import os
import resource
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from typing import Any

from dcerpc.auth.config import AuthConfig
from dcerpc.epm.host import EpmHost, HostConfig
from dcerpc.protocol.groups import Group, GroupTable
from dcerpc.protocol.limits import Limits
from dcerpc.rpcecho.server import EchoServer
from dcerpc.server.server import Server
from dcerpc.tuning import keep_large_buffers

NTLM_USER = ("SOAK", "honest", "Soak-Passw0rd")  # the users file this script writes for NTLM binds


class CountingGroups(GroupTable):
    """The server's association groups, counting the context handles each departing group ran down."""

    def __init__(self) -> None:
        super().__init__(on_rundown_error=self._failed)
        self.created = 0
        self.run_down = 0
        self.rundown_errors = 0

    def _failed(self, e: BaseException) -> None:
        self.rundown_errors += 1
        logging.getLogger("soak").error("rundown failed: %r", e)

    def create(self) -> Group:
        self.created += 1
        return super().create()

    def leave(self, group: Group) -> int:
        n = super().leave(group)
        self.run_down += n
        return n

    def handles_open(self) -> int:
        return sum(len(g.handles) for g in self._groups.values())


def _groups(server: Server) -> CountingGroups:
    groups = server.groups
    assert isinstance(groups, CountingGroups)
    return groups


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def malloc_in_use() -> int:
    """Octets malloc has handed out and not had back (glibc's mallinfo2; -1 elsewhere): what RSS
    would be without the freed heap malloc keeps (keep_large_buffers retains up to 256 MiB)."""
    try:
        f = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return -1
    f.restype = _Mallinfo2
    m = f()
    return int(m.uordblks + m.hblkhd)


def malloc_trim() -> bool:
    try:
        return bool(ctypes.CDLL(None).malloc_trim(0))
    except (OSError, AttributeError):
        return False


class GcPauses:
    """The cyclic collector's pauses, by generation (gc.callbacks): how many, the longest, the
    total (a stall of the loop may be one of them)."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.longest = [0.0, 0.0, 0.0]
        self.total = [0.0, 0.0, 0.0]
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
            return
        took = time.perf_counter() - self._start
        g = info["generation"]
        self.count[g] += 1
        self.total[g] += took
        self.longest[g] = max(self.longest[g], took)

    def report(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "longest_ms": [round(x * 1e3, 1) for x in self.longest],
            "total_ms": [round(x * 1e3, 1) for x in self.total],
            "tracked_now": len(gc.get_objects()),
        }


class Watchdog:
    """The loop's lateness: a callback every 50 ms notes how late it ran (the longest, how many
    were over 100 ms and over 1 s); a thread looks every 250 ms and, when the loop has not ticked
    for a second, writes the loop thread's stack to the log (once per stall), with the CPU time
    the loop thread had meanwhile: where a stall is, and whether it was the loop's work or a
    wait for the CPU."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.longest = 0.0
        self.over_100ms = 0
        self.over_1s = 0
        self.stacks = 0
        self._tick = time.monotonic()
        self._thread_id = threading.get_ident()
        # the loop thread's own CPU clock: a stall it spent running is ours (a long handler), one
        # it spent waiting for a CPU is the machine's (other processes on the core)
        self._cpu_clock = time.pthread_getcpuclockid(self._thread_id)
        self._tick_cpu = time.clock_gettime(self._cpu_clock)
        self.stalls: list[tuple[float, float]] = []  # (seconds stalled, of which the loop ran)
        loop.call_soon(self._beat, time.monotonic())
        threading.Thread(target=self._watch, daemon=True).start()

    def _beat(self, due: float) -> None:
        now = time.monotonic()
        self._tick = now
        self._tick_cpu = time.clock_gettime(self._cpu_clock)
        late = now - due
        self.longest = max(self.longest, late)
        self.over_100ms += late > 0.1
        self.over_1s += late > 1.0
        self.loop.call_later(0.05, self._beat, now + 0.05)

    def _watch(self) -> None:
        dumped = 0.0
        while True:
            time.sleep(0.25)
            tick = self._tick
            wall = time.monotonic() - tick
            if wall > 1.0 and dumped != tick:
                dumped = tick
                self.stacks += 1
                ran = time.clock_gettime(self._cpu_clock) - self._tick_cpu
                self.stalls.append((round(wall, 2), round(ran, 2)))
                frame = sys._current_frames().get(self._thread_id)
                text = "".join(traceback.format_stack(frame)) if frame is not None else "?"
                logging.getLogger("soak").error(
                    "loop stalled for %.2f s (its thread ran %.2f s of CPU meanwhile) at:\n%s",
                    wall,
                    ran,
                    text,
                )

    def report(self) -> dict[str, Any]:
        return {
            "longest_ms": round(self.longest * 1e3, 1),
            "over_100ms": self.over_100ms,
            "over_1s": self.over_1s,
            "stacks_logged": self.stacks,
            "stalls_s_and_cpu_s": self.stalls[-20:],
        }


OBSERVERS: dict[str, GcPauses | Watchdog] = {}  # "gc", "lag": what snapshot reports beside the tables


def snapshot(servers: dict[str, Server], collect: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "gc" in OBSERVERS:
        out["gc_pauses"] = OBSERVERS["gc"].report()
    if "lag" in OBSERVERS:
        out["loop_lag"] = OBSERVERS["lag"].report()
    if collect:
        # what the collector finds unreachable: objects in reference cycles, which only a
        # collection frees (a connection's should go with its last reference instead)
        out["unreachable"] = gc.collect()
        names = {"Dispatcher", "ServerAssociation", "ServerProtocol", "Group", "HandleEntry", "_Paging"}
        alive: Counter[str] = Counter()
        for obj in gc.get_objects():
            name = type(obj).__name__
            if name in names:
                alive[name] += 1
        out["alive"] = dict(alive)
    out["malloc_in_use"] = malloc_in_use()
    out["python_blocks"] = sys.getallocatedblocks()
    for name, server in servers.items():
        groups = _groups(server)
        out[name] = {
            "connections": len(server._connections),  # read only
            "groups": len(groups),
            "groups_created": groups.created,
            "handles_open": groups.handles_open(),
            "handles_run_down": groups.run_down,
            "rundown_errors": groups.rundown_errors,
            "refusals": dict(server.refusals),
            "violations": dict(server.violations),
            "stats": dict(server.stats),
        }
    return out


async def control(servers: dict[str, Server]) -> None:
    """Answer ``stats`` / ``gc`` lines on stdin until it closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        cmd = line.strip().decode()
        if cmd in ("stats", "gc"):
            answer: dict[str, Any] = snapshot(servers, cmd == "gc")
        elif cmd == "trim":  # give freed heap back to the system: what RSS holds that malloc does not
            answer = {"trimmed": malloc_trim()}
        elif cmd == "types":  # objects by type, the 40 most common (finding what a leak is made of)
            gc.collect()
            answer = dict(Counter(type(o).__name__ for o in gc.get_objects()).most_common(40))
        else:
            answer = {"error": f"unknown command {cmd!r}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def main() -> int:
    d = Limits()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--epm-port", type=int, required=True)
    p.add_argument("--echo-port", type=int, required=True)
    p.add_argument("--max-connections", type=int, default=d.max_connections)
    p.add_argument("--per-source", type=int, default=d.max_connections_per_source)
    p.add_argument("--idle-timeout", type=float, default=d.idle_timeout)
    p.add_argument("--nofile", type=int, default=0, help="raise RLIMIT_NOFILE to this (0: leave it)")
    p.add_argument("--ntlm", action="store_true", help="accept NTLM binds (a users file of one account)")
    p.add_argument("--no-uvloop", action="store_true")
    args = p.parse_args()
    if args.nofile:  # as far as the hard limit lets it (raising that needs CAP_SYS_RESOURCE)
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, max(args.nofile, hard)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(args.nofile, hard), hard))
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    if not args.no_uvloop:
        Server.use_uvloop()
    keep_large_buffers()  # as the dcerpc command's servers do
    limits = Limits(
        max_connections=args.max_connections,
        max_connections_per_source=args.per_source,
        idle_timeout=args.idle_timeout,
    )
    tmp = tempfile.mkdtemp(prefix="dcerpc-soak-")
    auth = AuthConfig()
    if args.ntlm:
        users = os.path.join(tmp, "ntlm-users")
        with open(users, "w") as f:
            f.write(":".join(NTLM_USER) + "\n")
        auth = AuthConfig(ntlm_users=users)
    config = HostConfig(
        host=args.host, epm_port=args.epm_port, socket=os.path.join(tmp, "epmapper"), limits=limits, auth=auth
    )

    OBSERVERS["gc"] = GcPauses()

    async def run() -> None:
        OBSERVERS["lag"] = Watchdog(asyncio.get_running_loop())
        host = EpmHost(config)
        host.epm_server.groups = CountingGroups()
        await host.start()
        echo = await host.add_service(EchoServer(), port=args.echo_port, annotation="rpcecho soak")
        echo.groups = CountingGroups()  # before any client knows the port: no connection has one yet
        servers = {"epm": host.epm_server, "echo": echo}
        ready = {"epm": args.epm_port, "echo": args.echo_port, "pid": os.getpid()}
        sys.stdout.write("ready " + json.dumps(ready) + "\n")
        sys.stdout.flush()
        try:
            await control(servers)
        finally:
            await host.close()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
