"""What each hostile class costs the server's CPU, with no honest client: the share of its core.

The soak server pinned on CPU 0, the attack process on CPU 1 (as ``hostile_run.py``'s fair runs),
each class (or comma-joined group of classes) for ``--seconds``, one after another against the same
server; the server's user and system CPU time over the attack from /proc/PID/stat, as a share of the
wall time. On one core shared with an honest client, what the attacks take is what the honest
client loses: all nine together must cost under 20% for the ">= 80%" target of issue 14. Also the
server's gc pauses and loop lateness (``soak_server.py``'s counters, cumulative).

    .venv/bin/python benchmarks/hostile_cost.py [--seconds S] [CLASS[,CLASS...] ...]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time

from hostile import CLASSES, attack_worker
from hostile_run import _pin
from soakclients import ServerProcess


def _cpu(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "classes", nargs="*", help="a class, or classes joined by commas (default: each alone, then all)"
    )
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--log", default=None, help="the server's log file (default: discarded)")
    args = p.parse_args()
    specs = args.classes or [*CLASSES, ",".join(CLASSES)]
    ctx = multiprocessing.get_context("spawn")
    srv = ServerProcess("--ntlm", "--nofile", "16384", log=args.log)
    cpus = os.sched_getaffinity(0)
    if len(cpus) >= 2 and 0 in cpus:
        _pin(srv.pid, 0)
        os.sched_setaffinity(0, cpus - {0})
    try:
        for spec in specs:
            cfg = {"classes": spec.split(","), "sourcedata_mib": 256, "rss_guard": 4 << 30, "slots": 64}
            q = ctx.Queue()
            ports = {"echo": srv.echo_port, "epm": srv.epm_port}
            attacker = ctx.Process(
                target=attack_worker, args=(ports, srv.pid, args.seconds, cfg, q), daemon=True
            )
            attacker.start()
            q.get(timeout=120)  # started
            (u0, s0), t0 = _cpu(srv.pid), time.monotonic()
            q.get(timeout=args.seconds + 120)  # done
            (u1, s1), t1 = _cpu(srv.pid), time.monotonic()
            attacker.join(10)
            st = srv.wait_for(lambda s: s["echo"]["connections"] == 0, 60)
            gc, lag = st.get("gc_pauses", {}), st.get("loop_lag", {})
            name = "all nine" if spec == ",".join(CLASSES) else spec
            user, system = 100 * (u1 - u0) / (t1 - t0), 100 * (s1 - s0) / (t1 - t0)
            gen2 = gc.get("count", ["-"] * 3)[2], gc.get("longest_ms", [0] * 3)[2]
            print(
                f"{name:16} user {user:5.1f}%  system {system:5.1f}%  (gc gen2 so far: {gen2[0]}, "
                f"longest {gen2[1]} ms; loop late at most {lag.get('longest_ms', '-')} ms)",
                flush=True,
            )
    finally:
        srv.stop()
    print(f"load average {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
