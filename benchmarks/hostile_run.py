"""A hostile run: the attack classes (``hostile.py``) against the soak server while an honest client measures.

The honest client (a process of its own, from 127.0.0.1) makes AddOne calls one after another on one
connection and opens a fresh connection once a second (connect, bind, one call) to see whether new
clients are let in. It is measured on the idle server first, then (with ``--per-class``) beside each
class alone, then beside all of them for the run's length, then on the idle server again. The
server is sampled once a second (RSS, descriptors, threads); after the attack its tables, what
survives a collection, malloc's octets in use, and its RSS once malloc_trim has run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections import Counter
from typing import Any

from hostile import CLASSES, attack_worker
from soakclients import ServerProcess

from dcerpc.rpcecho import Echo

# the honest client ------------------------------------------------------------------------------


def honest_worker(port: int, seconds: float, q: Any, uvloop: bool) -> None:
    from common import use_uvloop

    use_uvloop(uvloop)
    import dcerpc

    async def main() -> dict[str, Any]:
        url = f"ncacn_ip_tcp:127.0.0.1[{port}]"
        errors: list[str] = []
        probes: Counter[str] = Counter()
        conn = await dcerpc.connect(url, timeout=10, call_timeout=10)
        echo = await conn.bind(Echo)
        deadline = time.monotonic() + seconds
        calls = 0
        worst = 0.0

        async def probe() -> None:
            while time.monotonic() < deadline:
                t = time.monotonic()
                try:
                    async with await dcerpc.connect(url, timeout=5, call_timeout=5) as c:
                        assert await (await c.bind(Echo)).AddOne(1) == 2
                    probes["ok"] += 1
                except Exception as e:
                    probes["failed"] += 1
                    if len(errors) < 5:
                        errors.append(f"probe: {e!r}")
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - t)))

        took = 0.0

        async def calls_loop() -> None:
            nonlocal calls, worst, conn, echo, took
            start = time.monotonic()
            while (now := time.monotonic()) < deadline:
                try:
                    await echo.AddOne(calls)
                    calls += 1
                except Exception as e:
                    if len(errors) < 5:
                        errors.append(f"call: {e!r}")
                    probes["call errors"] += 1
                    with contextlib.suppress(Exception):
                        conn = await dcerpc.connect(url, timeout=5, call_timeout=10)
                        echo = await conn.bind(Echo)
                worst = max(worst, time.monotonic() - now)
            took = time.monotonic() - start

        await asyncio.gather(calls_loop(), probe())
        await conn.close()
        return {
            "rate": calls / took,
            "calls": calls,
            "worst_call_s": worst,
            "probes": dict(probes),
            "first_errors": errors,
        }

    q.put(asyncio.run(main()))


# the run ----------------------------------------------------------------------------------------


class _Run:
    """The server and the processes of one hostile run."""

    def __init__(self, args: argparse.Namespace, ctx: Any) -> None:
        self.args, self.ctx = args, ctx
        self.srv = ServerProcess("--ntlm", "--nofile", "16384", log=args.log, uvloop=args.uvloop)

    def honest(self, seconds: float) -> tuple[Any, Any]:
        q = self.ctx.Queue()
        p = self.ctx.Process(
            target=honest_worker, args=(self.srv.echo_port, seconds, q, self.args.uvloop), daemon=True
        )
        p.start()
        return p, q

    def honest_alone(self, seconds: float) -> dict[str, Any]:
        p, q = self.honest(seconds)
        out: dict[str, Any] = q.get(timeout=seconds + 60)
        p.join(10)
        return out

    def attack(self, classes: list[str], seconds: float) -> dict[str, Any]:
        """``classes`` for ``seconds`` while the honest client measures; the server sampled each second."""
        srv = self.srv
        cfg = {
            "classes": classes,
            "sourcedata_mib": self.args.sourcedata_mib,
            "rss_guard": self.args.rss_guard_mib << 20,
            "slots": 64,
        }
        aq = self.ctx.Queue()
        ports = {"echo": srv.echo_port, "epm": srv.epm_port}
        attacker = self.ctx.Process(
            target=attack_worker, args=(ports, srv.pid, seconds, cfg, aq), daemon=True
        )
        attacker.start()
        hp, hq = self.honest(seconds)
        samples: list[tuple[float, int, int, int]] = []  # time, RSS, fds, threads
        t0 = time.monotonic()
        attacked = None
        while attacked is None:
            try:
                attacked = hq.get(timeout=1.0)
            except Exception:  # queue.Empty: sample the server
                st = srv.status()
                samples.append((time.monotonic() - t0, st["VmRSS"], st["fds"], st["Threads"]))
        hp.join(10)
        counts = aq.get(timeout=120)
        attacker.join(10)
        during = srv.stats()
        srv.wait_for(lambda s: s["echo"]["connections"] == 0, 60)
        return {"honest": attacked, "classes": counts, "samples": samples, "stats": during["echo"]}


def run_hostile(args: argparse.Namespace, ctx: Any) -> dict[str, Any]:
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    idle_s = args.honest_seconds or min(30.0, max(10.0, seconds / 10))
    classes = args.classes.split(",") if args.classes else list(CLASSES)
    unknown = set(classes) - set(CLASSES)
    if unknown:
        raise SystemExit(
            f"unknown hostile classes: {', '.join(sorted(unknown))} (known: {', '.join(CLASSES)})"
        )
    run = _Run(args, ctx)
    srv = run.srv
    try:
        idle = run.honest_alone(idle_s)
        base = srv.status()
        before = srv.stats(collect=True)
        alone: dict[str, Any] = {}
        for name in classes if args.per_class else []:  # each class on its own: what each costs
            r = run.attack([name], args.per_class)
            alone[name] = {
                "ratio": r["honest"]["rate"] / idle["rate"],
                "rate": r["honest"]["rate"],
                "worst_call_s": r["honest"]["worst_call_s"],
                "probes": r["honest"]["probes"],
                "rss_max": max((x[1] for x in r["samples"]), default=0),
                "counts": r["classes"][name],
            }
        r = run.attack(classes, seconds)
        attacked, samples, during = r["honest"], r["samples"], r["stats"]
        after = srv.stats()
        collected = srv.stats(collect=True)
        end = srv.status()
        recovered = run.honest_alone(idle_s)
        trimmed = srv.rss_trimmed()
        ratio = attacked["rate"] / idle["rate"] if idle["rate"] else 0.0
        return {
            "seconds": seconds,
            "honest_idle": idle,
            "honest_attacked": attacked,
            "honest_after": recovered,
            "ratio": ratio,
            "ratio_after": attacked["rate"] / recovered["rate"] if recovered["rate"] else 0.0,
            "classes": r["classes"],
            "alone": alone,
            "rss_base": base["VmRSS"],
            "rss_peak": max([s[1] for s in samples] + [end["VmHWM"]]),
            "rss_max_sampled": max((s[1] for s in samples), default=0),
            "rss_after": end["VmRSS"],
            "rss_after_trimmed": trimmed,
            "fds_max": max((s[2] for s in samples), default=0),
            "threads_max": max((s[3] for s in samples), default=0),
            "samples": samples[:: max(1, len(samples) // 60)],
            "refusals": during["refusals"],
            "violations": during["violations"],
            "connections_after": after["echo"]["connections"],
            "alive_after_gc": {k: v for k, v in collected["alive"].items() if v},
            "malloc_in_use_before": before["malloc_in_use"],
            "malloc_in_use_after": collected["malloc_in_use"],
            "python_blocks_before": before["python_blocks"],
            "python_blocks_after": collected["python_blocks"],
            "log_lines": srv.log_lines(),
            "ok": ratio >= 0.8 and attacked["probes"].get("failed", 0) == 0,
        }
    finally:
        srv.stop()


def table_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    mib = 1 << 20
    a, i = r["honest_attacked"], r["honest_idle"]
    rows = [
        ("hostile", "attack length, classes", f"{r['seconds']:.0f} s, {len(r['classes'])}", ""),
        ("hostile", "honest calls/s idle / under attack", f"{i['rate']:,.0f} / {a['rate']:,.0f}", ""),
        (
            "hostile",
            "honest rate under attack",
            f"{100 * r['ratio']:.0f}% ({100 * r.get('ratio_after', 0):.0f}% of the rate after)",
            ">= 80%",
        ),
        ("hostile", "honest slowest call under attack", f"{a['worst_call_s'] * 1e3:,.0f} ms", ""),
        (
            "hostile",
            "honest new connections ok / failed",
            f"{a['probes'].get('ok', 0)} / {a['probes'].get('failed', 0)}",
            "all ok",
        ),
        ("hostile", "honest calls/s after the attack", f"{r['honest_after']['rate']:,.0f}", ""),
        (
            "hostile",
            "server RSS before / peak / after (after malloc_trim)",
            f"{r['rss_base'] / mib:,.0f} / {r['rss_peak'] / mib:,.0f} / {r['rss_after'] / mib:,.0f} "
            f"({r['rss_after_trimmed'] / mib:,.0f}) MiB",
            "",
        ),
        (
            "hostile",
            "server malloc in use before / after (after gc)",
            f"{r['malloc_in_use_before'] / mib:,.0f} / {r['malloc_in_use_after'] / mib:,.0f} MiB",
            "",
        ),
        ("hostile", "server fds max / threads max", f"{r['fds_max']} / {r['threads_max']}", ""),
        ("hostile", "refusals", ", ".join(f"{k} {v}" for k, v in sorted(r["refusals"].items())) or "-", ""),
        ("hostile", "server log lines", f"{r['log_lines']:,}", ""),
    ]
    for name, a in r["alone"].items():
        rows.append(
            (
                f"hostile: {name} alone",
                "honest rate (slowest call)",
                f"{100 * a['ratio']:.0f}% ({a['worst_call_s'] * 1e3:,.0f} ms)",
                ">= 80%",
            )
        )
    return rows
