"""A hostile run: the attack classes (``hostile.py``) against the soak server while an honest client measures.

The honest client (a process of its own, from 127.0.0.1) makes AddOne calls one after another on one
connection and opens a fresh connection once a second (connect, bind, one call) to see whether new
clients are let in. It runs for the whole run and counts its calls in 100 ms bins; the run is cut
into segments: the idle server first, then (with ``--per-class``) each class alone, then all of
them, with an idle segment after each attacked one. Each attacked segment's rate is compared with
the mean of the idle segments either side of it. The server is sampled once a second while
attacked (RSS, descriptors, threads); after the attack its tables, what survives a collection,
malloc's octets in use, and its RSS once malloc_trim has run.

Fair measurement (the default; ``--no-fair``: the first runs' way, one idle measurement, one block of
attack, every process on either core). Attackers are other hosts in reality; here they share the
server's two cores, and a figure that counts the CPU they take from the server measures the
machine, not the server. So:

- the server and the honest client run on CPU 0, the attack process (one asyncio loop, so at most
  one core before as now) and this script on the other CPUs (``sched_setaffinity``; with two CPUs
  or more): the attacker has a core of its own, as a remote host would, and what it costs the
  server is its octets, not its CPU. The attacks themselves are the same (classes, sizes, pacing),
  and their counts are reported. (The server and the honest client share a core on purpose: a
  call's round trip between two cores costs a cross-CPU wake-up each way, and measured 2,850
  calls/s against 9,700-11,200 on one core, idle; unpinned, the kernel put them together anyway.)
  ``--attack-nice N`` also lowers the attackers' priority (default 0: on a shared machine, nice 19
  would let other people's jobs take the attackers' core and weaken the attack);
- the attackers' CPU is kept busy for the whole run by a ballast process at nice 19 (it yields to
  the attackers, who get all but about 1.5% of it while they run): on this shared VM, the same
  spinner on CPU 1, with no network at all, took the honest client on CPU 0 from about 5,000 to
  about 10,000 calls/s (load average 8-9), so an idle segment with CPU 1 idle and an attacked one
  with CPU 1 busy do not measure one machine;
- the attack of all classes is cut into segments of ``--segment`` seconds (default 30), each
  between two idle segments (idle A, attack B, idle A, attack B, ..., idle A): the shared
  machine's drift over minutes cancels, and the figure is the median of the per-segment ratios,
  each attacked rate over the mean of the idle rates either side (the pooled ratio, all attacked
  calls over all idle calls, beside it). ``--per-class S`` runs each class alone the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from array import array
from collections import Counter
from typing import Any

from hostile import CLASSES, attack_worker
from soakclients import ServerProcess

from dcerpc.rpcecho import Echo

BIN = 0.1  # seconds: the honest client's calls are counted per bin
SERVER_CPU = 0  # fair runs: the server and the honest client; everything else on the other CPUs

# the honest client ------------------------------------------------------------------------------


def ballast_worker(cpus: set[int], stop: Any) -> None:
    """Keep ``cpus`` busy at nice 19 until ``stop`` is set (fair runs, idle and attacked segments
    alike: the attackers' core is never idle, so the two kinds of segment see one machine)."""
    os.sched_setaffinity(0, cpus)
    os.nice(19)
    while not stop.is_set():
        deadline = time.monotonic() + 0.05
        while time.monotonic() < deadline:
            pass


def honest_worker(port: int, q: Any, stop: Any, limit: float, uvloop: bool, cpu: int | None) -> None:
    """Calls and probes until ``stop`` is set (or ``limit`` seconds); reports its bins."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    from common import use_uvloop

    use_uvloop(uvloop)
    import dcerpc

    async def main() -> dict[str, Any]:
        url = f"ncacn_ip_tcp:127.0.0.1[{port}]"
        errors: list[tuple[float, str]] = []
        probes: list[tuple[float, str]] = []  # (time, "ok" / "failed" / "call errors")
        bins, worst = array("I"), array("d")
        conn = await dcerpc.connect(url, timeout=10, call_timeout=10)
        echo = await conn.bind(Echo)
        t0 = time.monotonic()
        deadline = t0 + limit
        q.put(("ready", t0))
        done = False

        def note(now: float, took: float) -> None:
            i = int((now - t0) / BIN)
            if i >= len(bins):
                grow = i + 1 - len(bins)
                bins.extend([0] * grow)
                worst.extend([0.0] * grow)
            bins[i] += 1
            worst[i] = max(worst[i], took)

        async def probe() -> None:
            nonlocal done
            while not done:
                t = time.monotonic()
                try:
                    async with await dcerpc.connect(url, timeout=5, call_timeout=5) as c:
                        assert await (await c.bind(Echo)).AddOne(1) == 2
                    probes.append((t, "ok"))
                except Exception as e:
                    probes.append((t, "failed"))
                    errors.append((t, f"probe: {e!r}"))
                done = stop.is_set() or time.monotonic() > deadline  # looked at once a second
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - t)))

        async def calls_loop() -> None:
            nonlocal conn, echo
            calls = 0
            while not done:
                t = time.monotonic()
                try:
                    await echo.AddOne(calls)
                    calls += 1
                    now = time.monotonic()
                    note(now, now - t)
                except Exception as e:
                    errors.append((t, f"call: {e!r}"))
                    probes.append((t, "call errors"))
                    with contextlib.suppress(Exception):
                        conn = await dcerpc.connect(url, timeout=5, call_timeout=10)
                        echo = await conn.bind(Echo)

        await asyncio.gather(calls_loop(), probe())
        await conn.close()
        return {
            "t0": t0,
            "bins": bins.tobytes(),
            "worst": worst.tobytes(),
            "probes": probes,
            "errors": errors[:200],
        }

    q.put(asyncio.run(main()))


class Honest:
    """What the honest client reported, read by time window."""

    def __init__(self, r: dict[str, Any]) -> None:
        self.t0: float = r["t0"]
        self.bins = array("I")
        self.bins.frombytes(r["bins"])
        self.worst = array("d")
        self.worst.frombytes(r["worst"])
        self.probes: list[tuple[float, str]] = r["probes"]
        self.errors: list[tuple[float, str]] = r["errors"]

    def window(self, spans: list[tuple[float, float]]) -> dict[str, Any]:
        """The calls, rate, slowest call and probes within ``spans`` (monotonic times)."""
        calls, took, worst = 0, 0.0, 0.0
        probes: Counter[str] = Counter()
        errors: list[str] = []
        for a, b in spans:
            i, j = round((a - self.t0) / BIN), round((b - self.t0) / BIN)
            calls += sum(self.bins[max(i, 0) : j])
            worst = max([worst, *self.worst[max(i, 0) : j]])
            took += (j - i) * BIN
            probes.update(kind for t, kind in self.probes if a <= t < b)
            errors += [e for t, e in self.errors if a <= t < b]
        return {
            "rate": calls / took if took > 0 else 0.0,
            "calls": calls,
            "seconds": took,
            "worst_call_s": worst,
            "probes": dict(probes),
            "first_errors": errors[:5],
        }

    def stalls(self, labelled: list[tuple[str, tuple[float, float]]], over: float = 0.5) -> list[str]:
        """The calls slower than ``over`` seconds, each said as "<ms> ms in <label> at +<s> s"
        (its segment, and when in it it ended): where a stall happened, to line up with the
        server's log and profile."""
        out = []
        for i, took in enumerate(self.worst):
            if took <= over:
                continue
            t = self.t0 + i * BIN
            where = next(
                (f"{name} at +{t - a:.1f} s" for name, (a, b) in labelled if a <= t < b), "between segments"
            )
            out.append(f"{took * 1e3:,.0f} ms in {where}")
        return out


# the run ----------------------------------------------------------------------------------------


def _pin(pid: int, cpu: int) -> None:
    """Every thread of process ``pid`` on ``cpu`` (sched_setaffinity takes one thread at a time)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(tid), {cpu})


class _Run:
    """The server, the honest client and the attack processes of one hostile run."""

    def __init__(self, args: argparse.Namespace, ctx: Any) -> None:
        self.args, self.ctx = args, ctx
        self.stop = ctx.Event()  # the end of the run: the honest client and the ballast
        self.cpus = os.sched_getaffinity(0)
        self.fair = bool(args.fair) and len(self.cpus) >= 2 and SERVER_CPU in self.cpus
        self.srv = ServerProcess("--ntlm", "--nofile", "16384", log=args.log, uvloop=args.uvloop)
        self.others: set[int] | None = None
        if self.fair:
            _pin(self.srv.pid, SERVER_CPU)
            self.others = os.sched_getaffinity(0) - {SERVER_CPU}
            os.sched_setaffinity(0, self.others)  # this script, and the attackers it starts
            self.ballast = ctx.Process(target=ballast_worker, args=(self.others, self.stop), daemon=True)
            self.ballast.start()
        self.profiled: dict[str, int] = {}
        self.hq = ctx.Queue()
        self.hp = ctx.Process(
            target=honest_worker,
            args=(
                self.srv.echo_port,
                self.hq,
                self.stop,
                args.timeout,
                args.uvloop,
                SERVER_CPU if self.fair else None,
            ),
            daemon=True,
        )
        self.hp.start()
        kind, _ = self.hq.get(timeout=120)
        assert kind == "ready"

    def idle(self, seconds: float) -> tuple[float, float]:
        """The honest client alone for ``seconds``: its span."""
        a = time.monotonic()
        time.sleep(seconds)
        return a, time.monotonic()

    def honest(self) -> Honest:
        """Stop the honest client: what it measured."""
        self.stop.set()
        r = Honest(self.hq.get(timeout=60))
        self.hp.join(10)
        return r

    def _profile(self, classes: list[str], seconds: float) -> subprocess.Popen[bytes] | None:
        """``--profile DIR``: py-spy samples the server while ``classes`` attack (collapsed
        stacks, one file per segment: DIR/<class or all>-<n>.txt; py-spy from PyPI)."""
        out = self.args.profile
        if not out:
            return None
        os.makedirs(out, exist_ok=True)
        name = classes[0] if len(classes) == 1 else "all"
        self.profiled[name] = n = self.profiled.get(name, 0) + 1
        spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
        cmd = [spy, "record", "-p", str(self.srv.pid), "-d", str(max(1, int(seconds))), "-r", "200"]
        cmd += ["-f", "raw", "--nonblocking", "-o", os.path.join(out, f"{name}-{n}.txt")]
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def attack(self, classes: list[str], seconds: float) -> dict[str, Any]:
        """``classes`` for ``seconds`` (from when the attack process is ready); the server sampled
        each second; then until the server has let the attack's connections go."""
        srv = self.srv
        cfg = {
            "classes": classes,
            "sourcedata_mib": self.args.sourcedata_mib,
            "rss_guard": self.args.rss_guard_mib << 20,
            "slots": 64,
            "nice": self.args.attack_nice,
        }
        aq = self.ctx.Queue()
        ports = {"echo": srv.echo_port, "epm": srv.epm_port}
        attacker = self.ctx.Process(
            target=attack_worker, args=(ports, srv.pid, seconds, cfg, aq), daemon=True
        )
        attacker.start()
        kind, started = aq.get(timeout=120)
        assert kind == "started"
        spy = self._profile(classes, seconds)
        samples: list[tuple[float, int, int, int]] = []  # time, RSS, fds, threads
        msg = None
        while msg is None:
            try:
                msg = aq.get(timeout=1.0)
            except Exception:  # queue.Empty: sample the server
                st = srv.status()
                samples.append((time.monotonic() - started, st["VmRSS"], st["fds"], st["Threads"]))
        kind, ended, counts = msg
        attacker.join(10)
        if spy is not None:
            spy.wait(30)
        during = srv.stats()
        # the honest client holds one connection, and its probe one now and then
        srv.wait_for(lambda s: s["echo"]["connections"] <= 2, 60)
        return {
            "span": (started, ended),
            "classes": counts,
            "samples": samples,
            "stats": during["echo"],
            "gc_pauses": during.get("gc_pauses"),
        }


def _ratio(rate: float, idle: list[float]) -> float:
    base = statistics.fmean(idle) if idle else 0.0
    return rate / base if base else 0.0


def run_hostile(args: argparse.Namespace, ctx: Any) -> dict[str, Any]:
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    classes = args.classes.split(",") if args.classes else list(CLASSES)
    unknown = set(classes) - set(CLASSES)
    if unknown:
        raise SystemExit(
            f"unknown hostile classes: {', '.join(sorted(unknown))} (known: {', '.join(CLASSES)})"
        )
    segment = args.segment if args.fair else 0.0
    parts = max(1, round(seconds / segment)) if segment > 0 else 1
    idle_s = args.honest_seconds or (seconds / parts if parts > 1 else min(30.0, max(10.0, seconds / 10)))
    run = _Run(args, ctx)
    srv = run.srv
    try:
        first = run.idle(idle_s)
        base = srv.status()
        before = srv.stats(collect=True)
        alone_runs: list[tuple[str, dict[str, Any], tuple[float, float], tuple[float, float]]] = []
        last = first
        for name in classes if args.per_class else []:  # each class on its own: what each costs
            r = run.attack([name], args.per_class)
            after_idle = run.idle(args.honest_seconds or args.per_class) if args.fair else last
            alone_runs.append((name, r, last, after_idle))
            last = after_idle
        attacks: list[tuple[dict[str, Any], tuple[float, float], tuple[float, float]]] = []
        for _ in range(parts):
            r = run.attack(classes, seconds / parts)
            after_idle = run.idle(idle_s)
            attacks.append((r, last, after_idle))
            last = after_idle
        honest = run.honest()
        srv.wait_for(lambda s: s["echo"]["connections"] == 0, 60)
        after = srv.stats()
        collected = srv.stats(collect=True)
        end = srv.status()
        trimmed = srv.rss_trimmed()

        def rate(span: tuple[float, float]) -> float:
            return float(honest.window([span])["rate"])

        alone: dict[str, Any] = {}
        for name, r, idle_before, idle_after in alone_runs:
            h = honest.window([r["span"]])
            idles = [rate(idle_before)] if not args.fair else [rate(idle_before), rate(idle_after)]
            alone[name] = {
                "ratio": _ratio(h["rate"], idles),
                "rate": h["rate"],
                "idle_rates": idles,
                "worst_call_s": h["worst_call_s"],
                "probes": h["probes"],
                "rss_max": max((x[1] for x in r["samples"]), default=0),
                "counts": r["classes"][name],
            }
        segments = []
        for r, idle_before, idle_after in attacks:
            h = honest.window([r["span"]])
            idles = [rate(idle_before), rate(idle_after)]
            segments.append(
                {
                    "rate": h["rate"],
                    "idle_rates": idles,
                    "ratio": _ratio(h["rate"], idles[: 2 if args.fair else 1]),
                }
            )
        idle = honest.window([first])
        attacked = honest.window([r["span"] for r, _, _ in attacks])
        idle_spans = sorted({s for _, a, b in attacks for s in (a, b)})
        pooled_idle = honest.window(idle_spans)
        recovered = honest.window([last])
        counts: dict[str, Counter[str]] = {}
        for r, _, _ in attacks:
            for name, c in r["classes"].items():
                counts.setdefault(name, Counter()).update(c)
        samples = [s for r, _, _ in attacks for s in r["samples"]]
        labelled = [(f"idle {n}", s) for n, s in enumerate(idle_spans)]
        labelled += [(f"{name} alone", r["span"]) for name, r, _, _ in alone_runs]
        labelled += [(f"attack {n}", r["span"]) for n, (r, _, _) in enumerate(attacks)]
        during = attacks[-1][0]["stats"]
        during_gc = attacks[-1][0].get("gc_pauses")
        ratios = [s["ratio"] for s in segments]
        ratio = statistics.median(ratios) if args.fair else _ratio(attacked["rate"], [idle["rate"]])
        return {
            "seconds": seconds,
            "fair": args.fair,
            "segments": segments,
            "honest_idle": idle,
            "honest_attacked": attacked,
            "honest_after": recovered,
            "ratio": ratio,
            "ratio_pooled": _ratio(attacked["rate"], [pooled_idle["rate"]]),
            "ratio_after": _ratio(attacked["rate"], [recovered["rate"]]),
            "classes": {k: dict(v) for k, v in counts.items()},
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
            "gc_pauses": {"during": during_gc, "after": after.get("gc_pauses")},
            "loop_lag": after.get("loop_lag"),
            "stalls": honest.stalls(labelled),
            "load_average": os.getloadavg(),
            "ok": ratio >= 0.8 and attacked["probes"].get("failed", 0) == 0,
        }
    finally:
        run.stop.set()
        srv.stop()
        os.sched_setaffinity(0, run.cpus)


def table_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    mib = 1 << 20
    a, i = r["honest_attacked"], r["honest_idle"]
    load = r.get("load_average")
    segs = r.get("segments", [])
    rows = [
        (
            "hostile",
            "attack length, classes, segments",
            f"{r['seconds']:.0f} s, {len(r['classes'])}, {len(segs)}"
            + (" (fair: the attackers on a core of their own)" if r.get("fair") else ""),
            "",
        ),
        ("hostile", "honest calls/s idle / under attack", f"{i['rate']:,.0f} / {a['rate']:,.0f}", ""),
        (
            "hostile",
            "honest rate under attack" + (" (median of segments)" if r.get("fair") else ""),
            f"{100 * r['ratio']:.0f}% (pooled {100 * r.get('ratio_pooled', 0):.0f}%, "
            f"{100 * r.get('ratio_after', 0):.0f}% of the rate after)",
            ">= 80%",
        ),
    ]
    if r.get("fair") and segs:
        rows.append(
            (
                "hostile",
                "per segment: ratio (attacked / idle either side, calls/s)",
                "; ".join(
                    f"{100 * s['ratio']:.0f}% ({s['rate']:,.0f} / "
                    + " & ".join(f"{x:,.0f}" for x in s["idle_rates"])
                    + ")"
                    for s in segs
                ),
                "",
            )
        )
    rows += [
        ("hostile", "honest slowest call under attack", f"{a['worst_call_s'] * 1e3:,.0f} ms", ""),
        ("hostile", "honest calls over 0.5 s (where)", "; ".join(r.get("stalls", [])) or "none", ""),
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
    if lag := r.get("loop_lag"):
        rows.append(
            (
                "hostile",
                "server loop lateness: longest / ticks late > 100 ms / > 1 s",
                f"{lag['longest_ms']:,.0f} ms / {lag['over_100ms']} / {lag['over_1s']}"
                + "".join(
                    f"; stalled {wall:.1f} s, loop thread ran {ran:.2f} s"
                    for wall, ran in lag.get("stalls_s_and_cpu_s", [])
                ),
                "",
            )
        )
    if gcp := (r.get("gc_pauses") or {}).get("after"):
        rows.append(
            (
                "hostile",
                "server gc: collections gen0/1/2, longest gen2",
                "/".join(map(str, gcp["count"])) + f", {gcp['longest_ms'][2]:,.0f} ms",
                "",
            )
        )
    if load:
        rows.append(
            ("hostile", "load average at the end (1 / 5 / 15 min)", " / ".join(f"{x:.2f}" for x in load), "")
        )
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
