"""The cost of the security half: the same server with and without a 20-rule policy, every call an
audit event written to a file, and metrics counted, side by side in one run.

Small calls (rpcecho AddOne), 1 in flight and 64 in flight on one connection. The policy's rules
are shaped like a real one (sources, interfaces, opnums, auth types and levels, principals, a
visibility rule, rate limits generous enough never to refuse); the caller is matched by the last
allowing rule, so every call walks all of them the first time, and the per-connection cache after.
Target (issue 15): at least 0.8x the rate without them, at both depths. Beside the rates, the CPU
one call cost in the client, the server's process and its audit writer process: on a machine shared
with other work the rates move far more than these.

A secured slice's work is done when its audit trail has every call's event: the CPU the server's
processes spend after the slice's last call until then (the writer catching up, the last chunk of
calls shipped) is added to the slice's time, as if spent within it. The wait itself (the last
chunk waits for the writer's timer, up to 50 ms; this process then reads the trail, some 100 MB at
64 in flight) is latency, not work, and is printed rather than counted: counted, it took 2.5% of a
2 s slice at 1 in flight and 6% at 64 (where 130 ms of it was this process reading the file).

Each server runs ``--rounds`` times, plain and secured alternating; the ratio is the median of each
round's secured rate over its plain one, the rates and CPU figures are medians (this machine's
speed drifts by tens of percent within minutes). Each run's audit file is deleted when it ends.
With two CPUs or more the server host is CPU 0: the server and its audit writer process are
pinned there, and this client to CPU 1, as if it called from another machine (``--no-pin`` leaves
them to the kernel). Every cost of the security half then falls on the server's one CPU, the
writer's too: the writer (at niceness 10) writes while the server's loop waits.

A virtual machine's CPUs are shared with other guests: the time the hypervisor gives them (steal,
/proc/stat) halves this benchmark's rates on this project's 2-CPU test machine when it reaches a
fifth of the CPUs, and with them the ratio, whichever server it falls on. So each slice's steal is
measured, and a round in which a slice lost more than ``--max-steal`` percent is measured again
(at most ``--retries`` times; the last is kept, and counted). On a machine that is not virtual,
or whose hypervisor does not report it, steal is 0 and no round is repeated.

With ``--interleave`` both servers are up at once and the client alternates between them, a slice
of ``--seconds`` at a time (the order reversed each round), at 64 in flight and then at 1: the two
of a round are measured seconds apart rather than a whole run, so the machine's drift between them
is smaller (each server is one process for the whole run, though: a process's own speed, which
differs by a few percent from another's, is not averaged out as in separate runs). A secured
slice ends, as a run does, when the trail has every event; the trail is then emptied.

    .venv/bin/python benchmarks/policy.py [--seconds S] [--rounds N] [--no-pin] [--interleave]
        [--max-steal PCT] [--retries N] [--no-uvloop] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from common import arate, free_port, use_uvloop

RULES = 20


def policy_text() -> str:
    """20 rules that do not match our caller, then the one that allows it, then a deny default."""
    rules = ['default = "deny"\n[groups]\nops = ["OPS\\\\carol", "dave"]\n']
    shapes = [
        'source = "10.{i}.0.0/16"\ninterface = "rpcecho"',
        'interface = "srvsvc"\nopnum = [{i}, "20-30"]',
        'auth_type = "ntlm"\nauth_level = "privacy"\nprincipal = "@ops"\ninterface = "rpcecho"',
        'source = "fd00:{i}::/32"',
        'interface = "rpcecho"\nversion = ">=2.0"',
    ]
    for i in range(RULES - 2):
        rules.append(f'[[rule]]\nname = "r{i}"\naction = "deny"\n' + shapes[i % len(shapes)].format(i=i + 1))
    rules.append(
        '[[rule]]\naction = "deny"\nepm_interface = "rpcecho"\nauth_type = "none"\nsource = "192.0.2.0/24"'
    )
    rules.append(
        '[[rule]]\nname = "loopback"\naction = "allow"\nsource = "127.0.0.0/8"\ninterface = "rpcecho"'
    )
    rules.append('[rate_limit]\nconnections = "1000/s"\ncalls = "10000000/s"\n')
    return "\n".join(rules) + "\n"


def serve(port: int, ready: Any, uvloop: bool, secured: bool, audit_dir: str) -> None:
    use_uvloop(uvloop)
    from dcerpc.audit import Audit, FileSink
    from dcerpc.policy import parse
    from dcerpc.rpcecho.server import EchoServer
    from dcerpc.server.server import Server

    async def main() -> None:
        if secured:  # every call audited to a file, metrics counted
            audit = Audit([FileSink(Path(audit_dir) / f"audit-{port}.jsonl")], metrics=True)
            server = Server(EchoServer(), audit=audit, metrics=True)
            server.policy = parse(policy_text())
            assert len(server.policy.rules) == RULES
            assert audit.flush(60)  # the writer (a process) is up before the first call: steady state
        else:
            server = Server(EchoServer())
        await server.listen_tcp("127.0.0.1", port)
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


def _cpu(pid: int) -> float:
    """CPU seconds of process ``pid`` and of its children still running (the audit writer): the
    scheduler's nanoseconds of each of their threads (``/proc/PID/task/TID/schedstat``), or
    where there is none the 10 ms ticks of ``/proc/PID/stat`` (a slice of 0.2 s would see a
    writer's 12 ms as one tick, or none)."""
    total = 0.0
    for p in [pid, *_children(pid)]:
        total += _process_cpu(p)
    return total


_SCHEDSTAT = Path("/proc/self/schedstat").exists()  # (a kernel with CONFIG_SCHED_INFO)


def _process_cpu(pid: int) -> float:
    """CPU seconds of process ``pid``'s threads (one that ended since is not counted: none of the
    servers here has threads that come and go)."""
    if not _SCHEDSTAT:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    total = 0
    for tid in threads:
        with contextlib.suppress(OSError):  # (a thread that has just ended)
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
    return total / 1e9


def _ticks() -> tuple[int, int]:
    """The machine's CPU time so far, in ticks: what the hypervisor took (steal) and all of it
    (0, 0 where there is no /proc/stat: no round is then measured again)."""
    try:
        user, nice, system, idle, iowait, irq, softirq, steal = map(
            int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
        )  # (guest time is counted within user)
    except (OSError, ValueError):
        return 0, 0
    return steal, user + nice + system + idle + iowait + irq + softirq + steal


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class _Trail:
    """The secured server's audit file, read as it grows: its lines so far."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.lines = 0
        self._buffer = bytearray(1 << 22)  # read into, again and again: no 100 MB of fresh pages

    def count(self) -> int:
        try:
            with self.path.open("rb", buffering=0) as f:
                f.seek(self.offset)
                while n := f.readinto(self._buffer):
                    self.offset += n
                    self.lines += self._buffer.count(b"\n", 0, n)
        except FileNotFoundError:
            pass
        return self.lines


async def bench(port: int, seconds: float, pid: int, trail: Path | None) -> dict[str, float]:
    """Calls/s at each depth, and the CPU one call cost (µs): this client's, the server's process,
    its writer process (a machine shared with others moves the rates far more than these).

    With an audit trail, a depth's run ends when the trail has every call's event (the writer
    caught up): its rate counts that wait, and the writer's CPU its catching up. A writer that fell
    behind would otherwise leave its work uncounted and the rate too high (``behind``: events still
    missing after 30 s; 0 when it kept up)."""
    import dcerpc
    from dcerpc.rpcecho import Echo

    async with await dcerpc.connect(f"ncacn_ip_tcp:127.0.0.1[{port}]", max_concurrent_calls=64) as conn:
        echo = await conn.bind(Echo)
        assert await echo.AddOne(1) == 2
        server = _server(echo, pid, trail)
        out: dict[str, float] = {}
        for key, depth in (("one", 1), ("many", 64)):
            out.update(await _slice(server, key, depth, seconds))
    return out


async def interleaved(
    servers: dict[str, tuple[int, int, Path | None]], seconds: float, rounds: int, calm: Calm
) -> dict[str, list[dict[str, float]]]:
    """:func:`bench`'s figures for each server (name: port, pid, trail), a slice at a time: each
    round measures every server at one depth, then the next; the servers' order reverses each
    round. A round whose slices ``calm`` does not accept (steal) is measured again."""
    import dcerpc
    from dcerpc.rpcecho import Echo

    async with contextlib.AsyncExitStack() as stack:
        state: dict[str, dict[str, Any]] = {}
        for name, (port, pid, trail) in servers.items():
            conn = await stack.enter_async_context(
                await dcerpc.connect(f"ncacn_ip_tcp:127.0.0.1[{port}]", max_concurrent_calls=64)
            )
            echo = await conn.bind(Echo)
            assert await echo.AddOne(1) == 2
            state[name] = _server(echo, pid, trail)
        runs: dict[str, list[dict[str, float]]] = {name: [{} for _ in range(rounds)] for name in servers}
        for key, depth in (("many", 64), ("one", 1)):
            for i in range(rounds):
                got: dict[str, dict[str, float]] = {}
                while not got or not calm.accepts(got.values()):
                    order = list(servers)[:: 1 if i % 2 == 0 else -1]
                    got = {name: await _slice(state[name], key, depth, seconds) for name in order}
                for name, figures in got.items():
                    runs[name][i].update(figures)
    return runs


class Calm:
    """Whether a round's slices were measured on CPUs the hypervisor left alone: none lost more
    than ``limit`` percent of them to steal. A round it refuses is measured again, at most
    ``retries`` times; then the last is kept (``kept``). ``again``: rounds measured again."""

    def __init__(self, limit: float, retries: int) -> None:
        self.limit = limit
        self.retries = retries
        self.again = 0
        self.kept = 0
        self._tries = 0

    def accepts(self, slices: Any) -> bool:
        stolen = max(v for figures in slices for k, v in figures.items() if k.endswith("_steal"))
        if stolen <= self.limit:
            self._tries = 0
            return True
        if self._tries >= self.retries:
            self._tries = 0
            self.kept += 1
            return True
        self._tries += 1
        self.again += 1
        return False


def _server(echo: Any, pid: int, trail: Path | None) -> dict[str, Any]:
    """What :func:`_slice` measures a server by: its bound client, process, calls made, trail."""
    return {"echo": echo, "pid": pid, "made": 1, "trail": _Trail(trail) if trail is not None else None}


async def _slice(server: dict[str, Any], key: str, depth: int, seconds: float) -> dict[str, float]:
    """One server at one depth for ``seconds`` (and its writer's catching up): bench()'s figures."""
    echo, pid, reader = server["echo"], server["pid"], server["trail"]

    async def call() -> None:
        await echo.AddOne(41)
        server["made"] += 1

    kids = _children(pid)
    stolen, ticks = _ticks()
    client, cpu, writer = time.process_time(), _cpu(pid), sum(_cpu(c) for c in kids)
    before = server["made"]
    started = time.perf_counter()
    await arate(seconds, call, in_flight=depth)
    elapsed = time.perf_counter() - started
    client = time.process_time() - client  # (the trail's reading below is not the client's work)
    behind = 0
    tail = 0.0
    done = None  # the server's processes' CPU at the last call, when there is a trail to wait for
    if reader is not None:  # the association's open and bind events, then one per call
        # done when the trail has every call's event: the server's processes' CPU after the last
        # call is the slice's work, the wait for it is not (the module docstring)
        done = _cpu(pid)  # (the server and its writer process)
        deadline = time.perf_counter() + 30
        while (behind := 2 + server["made"] - reader.count()) > 0 and time.perf_counter() < deadline:
            await asyncio.sleep(0.005)
        tail = time.perf_counter() - started - elapsed
        os.truncate(reader.path, 0)  # emptied: a trail of gigabytes would cost its writer more
        reader.offset = 0
    calls = server["made"] - before
    end = _cpu(pid)
    deferred = 0.0 if done is None else end - done
    writer = sum(_cpu(c) for c in kids) - writer
    stolen_now, ticks_now = _ticks()
    return {
        key: calls / (elapsed + deferred),
        f"{key}_behind": max(behind, 0),
        f"{key}_tail_ms": tail * 1e3,
        f"{key}_deferred_ms": deferred * 1e3,
        f"{key}_client_us": client / calls * 1e6,
        f"{key}_server_us": (end - cpu - writer) / calls * 1e6,
        f"{key}_writer_us": writer / calls * 1e6,
        f"{key}_steal": (stolen_now - stolen) / max(ticks_now - ticks, 1) * 100,  # percent of the CPUs
    }


def _start(args: argparse.Namespace, ctx: Any, uvloop: bool, secured: bool, tmp: str) -> tuple[Any, int]:
    """A server process, pinned as ``args`` asks, and its port."""
    port = free_port()
    ready = ctx.Event()
    proc = ctx.Process(target=serve, args=(port, ready, uvloop, secured, tmp), daemon=True)
    proc.start()
    if not ready.wait(60):
        raise RuntimeError("server did not start")
    if args.pin:  # the server host on CPU 0 (the server and its audit writer), the client on 1
        assert proc.pid is not None
        _pin(proc.pid, 0)
        for child in _children(proc.pid):
            _pin(child, 0)
    return proc, port


def _pin(pid: int, cpu: int) -> None:
    """Keep process ``pid`` on ``cpu`` (its children started later inherit it)."""
    os.sched_setaffinity(pid, {cpu})


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def run(args: argparse.Namespace, ctx: Any, uvloop: bool, secured: bool, tmp: str) -> dict[str, float]:
    """One server, measured at both depths."""
    proc, port = _start(args, ctx, uvloop, secured, tmp)
    try:
        trail = Path(tmp, f"audit-{port}.jsonl") if secured else None
        return asyncio.run(bench(port, args.seconds, proc.pid or 0, trail))
    finally:
        proc.terminate()
        proc.join()
        # the run's trail goes before the kernel writes it back: writeback of hundreds of MiB
        # during the next runs is noise here (this machine's disk is a virtual one)
        Path(tmp, f"audit-{port}.jsonl").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="per depth and run")
    parser.add_argument("--rounds", type=int, default=7,
                        help="plain and secured runs, alternating (their ratios' median: at 3 a"
                             " single slow round moves it by 0.05x here)")  # fmt: skip
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="leave the processes where the kernel puts them")  # fmt: skip
    parser.add_argument("--interleave", action="store_true",
                        help="both servers up at once, measured in alternating slices")  # fmt: skip
    parser.add_argument("--max-steal", type=float, default=5.0, metavar="PCT",
                        help="measure a round again when the hypervisor took more of the CPUs")  # fmt: skip
    parser.add_argument("--retries", type=int, default=2, help="times a round is measured again, at most")
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    calm = Calm(args.max_steal, args.retries)
    args.pin = args.pin and len(os.sched_getaffinity(0)) >= 2
    uvloop = not args.no_uvloop
    loop_name = use_uvloop(uvloop)
    if args.pin:
        _pin(os.getpid(), 1)
    ctx = multiprocessing.get_context("spawn")
    runs: dict[str, list[dict[str, float]]] = {"plain": [], "secured": []}
    with tempfile.TemporaryDirectory() as tmp:
        if args.interleave:
            procs = {name: _start(args, ctx, uvloop, secured, tmp) for name, secured in
                     (("plain", False), ("secured", True))}  # fmt: skip
            try:
                servers = {
                    name: (port, proc.pid, Path(tmp, f"audit-{port}.jsonl") if name == "secured" else None)
                    for name, (proc, port) in procs.items()
                }
                runs = asyncio.run(interleaved(servers, args.seconds, args.rounds, calm))
            finally:
                for proc, port in procs.values():
                    proc.terminate()
                    proc.join()
                    Path(tmp, f"audit-{port}.jsonl").unlink(missing_ok=True)
        else:
            for _ in range(args.rounds):
                got: dict[str, dict[str, float]] = {}
                while not got or not calm.accepts(got.values()):
                    got = {name: run(args, ctx, uvloop, secured, tmp)
                           for name, secured in (("plain", False), ("secured", True))}  # fmt: skip
                for name, figures in got.items():
                    runs[name].append(figures)
    keys = list(runs["plain"][0])
    median = {name: {k: _median([r[k] for r in rs]) for k in keys} for name, rs in runs.items()}
    # each round's secured run against its own plain run, the median of those: the machine's
    # drift between rounds cancels (as soak.py's fair figure does)
    pairs = list(zip(runs["plain"], runs["secured"], strict=True))
    ratios = {k: _median([s[k] / p[k] for p, s in pairs]) for k in ("one", "many")}
    if args.json:
        print(json.dumps({"loop": loop_name, "pinned": args.pin, "interleaved": args.interleave,
                          "seconds": args.seconds, "rounds": args.rounds, "runs": runs, "median": median,
                          "ratios": ratios,
                          "steal": {"limit": calm.limit, "again": calm.again, "kept": calm.kept}},
                         indent=2))  # fmt: skip
        return 0
    where = "server and its audit writer on CPU 0, client on CPU 1" if args.pin else "not pinned"
    how = f"{args.rounds} {'rounds of alternating slices' if args.interleave else 'alternating runs'}"
    print(f"{loop_name}; {RULES}-rule policy; {where}; median of {how}")
    print(f"{'':>14} {'1 in flight':>14} {'64 in flight':>14}")
    for name, rs in runs.items():
        for i, r in enumerate(rs):
            print(f"{name + ' ' + str(i + 1):>14} {r['one']:>12,.0f}/s {r['many']:>12,.0f}/s")
    for name, r in median.items():
        print(f"{name + ' median':>14} {r['one']:>12,.0f}/s {r['many']:>12,.0f}/s")
    print(f"{'ratio':>14} {ratios['one']:>13.2f}x {ratios['many']:>13.2f}x   (median of the rounds' ratios;"
          " target >= 0.80x)")  # fmt: skip
    behind = max(r[f"{k}_behind"] for r in runs["secured"] for k in ("one", "many"))
    print("audit trail: every call's event written before each rate was taken"
          if not behind else f"audit trail BEHIND by up to {behind:,.0f} events after 30 s")  # fmt: skip
    sec = median["secured"]
    print(f"  complete {sec['one_tail_ms']:.0f} / {sec['many_tail_ms']:.0f} ms after the last call"
          f" (medians, 1 / 64 in flight: not counted); the server's work in that time, counted in"
          f" the rate: {sec['one_deferred_ms']:.1f} / {sec['many_deferred_ms']:.1f} ms of CPU")  # fmt: skip
    print("CPU per call, us, medians (client / server process / its audit writer process):")
    for name, r in median.items():
        cells = [f"{r[f'{k}_client_us']:5.1f} / {r[f'{k}_server_us']:5.1f} / {r[f'{k}_writer_us']:4.1f}"
                 for k in ("one", "many")]  # fmt: skip
        print(f"{name:>14}  {cells[0]:>22}  {cells[1]:>22}")
    stolen = ";  ".join(f"{n} {r['one_steal']:.1f}% / {r['many_steal']:.1f}%" for n, r in median.items())
    print(f"CPU time the hypervisor took (steal), medians:  {stolen}")
    print(f"rounds measured again for steal above {calm.limit:g}%: {calm.again}"
          + (f" ({calm.kept} kept after {calm.retries} retries)" if calm.kept else ""))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
