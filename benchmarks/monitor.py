"""``dcerpc monitor`` beside tshark on one large capture of real DCE/RPC traffic.

The capture is made once (or reused: ``--capture FILE``): in a private network namespace whose
loopback has Ethernet's MTU (1500) and no segmentation offloads (ethtool -K lo tso off gso off gro off:
with them on, the kernel hands dumpcap each send whole, so every 8 KiB fragment was one "packet" of a
size no real network carries; now segments are MSS-sized as on a wire), dumpcap
records our client calling our server: ``--connections`` associations at once, each repeating
AddOne x4 and an 8 KiB EchoData (fragmented both ways), until the file holds ``--size-mb``.
Then, in one run, each reader goes through the whole file (best of ``--repeat``):

- ``dcerpc monitor --json FILE > /dev/null`` (every call, bind and violation as a JSON line);
- ``tshark -r FILE -Y dcerpc -T fields -e frame.number -e tcp.stream -e dcerpc.pkt_type
  -e dcerpc.cn_call_id -e dcerpc.opnum`` (Wireshark's dissector, one line per DCE/RPC frame).

Both as child processes, wall time and CPU time (user + system, from the children's rusage);
packets/s and MB/s of each and the ratio. The target tracked: the monitor faster than tshark.
``--profile`` runs the monitor's pipeline in this process under cProfile and prints where the
time goes (per module, then the top functions).

    sudo .venv/bin/python benchmarks/monitor.py [--size-mb 100] [--capture FILE] [--profile] [--json]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.interop.netns, from a checkout

from tests.interop.netns import NetNs

DEFAULT_CAPTURE = Path("/tmp/dcerpc-bench-monitor-mss.pcapng")
TSHARK_FIELDS = ("frame.number", "tcp.stream", "dcerpc.pkt_type", "dcerpc.cn_call_id", "dcerpc.opnum")

SERVER = """
import sys
from dcerpc.rpcecho.server import EchoServer
from dcerpc.testing import ServerThread
with ServerThread(EchoServer(), port=4444):
    print("ready", flush=True)
    sys.stdin.read()
"""

CLIENT = """
import asyncio, os, sys
import dcerpc
from dcerpc.rpcecho import Echo
target, connections = sys.argv[1], int(sys.argv[2])
data = os.urandom(8192)
async def one(stop):
    async with await dcerpc.connect("ncacn_ip_tcp:127.0.0.1[4444]") as conn:
        echo = await conn.bind(Echo)
        n = 0
        while not stop.is_set():
            for i in range(4):
                assert await echo.AddOne(i) == i + 1
            assert await echo.EchoData(len(data), data) == data
            n += 5
        return n
async def main():
    stop = asyncio.Event()
    tasks = [asyncio.create_task(one(stop)) for _ in range(connections)]
    while os.path.getsize(target) < int(sys.argv[3]):
        await asyncio.sleep(0.2)
    stop.set()
    print(sum(await asyncio.gather(*tasks)))
asyncio.run(main())
"""


def make_capture(path: Path, size: int, connections: int) -> int:
    """Record our client and server in a namespace until ``path`` holds ``size`` octets; calls made."""
    ns = NetNs()
    try:
        ns.run(["ip", "link", "set", "lo", "mtu", "1500"])
        offload = ns.run(["ethtool", "-K", "lo", "tso", "off", "gso", "off", "gro", "off"])
        if offload.returncode != 0:
            raise RuntimeError(f"ethtool could not turn lo's offloads off: {offload.stderr}")
        server = ns.popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE)
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        cap = ns.popen(["dumpcap", "-i", "lo", "-q", "-B", "256", "-f", "tcp port 4444", "-w", str(path)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        assert cap.stderr is not None
        for line in cap.stderr:
            if line.startswith("File:"):
                break
        done = ns.run([sys.executable, "-c", CLIENT, str(path), str(connections), str(size)], timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"the client failed: {done.stderr}")
        time.sleep(1)  # dumpcap writes what it still holds (the last calls: a negligible tail)
        cap.send_signal(signal.SIGINT)
        cap.wait(30)
        return int(done.stdout.split()[-1])
    finally:
        ns.close()


def _timed(args: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one child process (its output thrown away)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def packets(path: Path) -> int:
    out = subprocess.run(
        ["capinfos", "-M", "-c", "-T", str(path)], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip().splitlines()[-1].split("\t")[1])


def measure(path: Path, repeat: int) -> dict[str, Any]:
    monitor = [sys.executable, "-m", "dcerpc", "monitor", "--json", str(path)]
    tshark = ["tshark", "-r", str(path), "-Y", "dcerpc", "-T", "fields"]
    for f in TSHARK_FIELDS:
        tshark += ["-e", f]
    n, mb = packets(path), path.stat().st_size / 1e6
    out: dict[str, Any] = {"capture": str(path), "packets": n, "megabytes": round(mb, 1)}
    for name, args in (("monitor", monitor), ("tshark", tshark)):
        runs = [_timed(args) for _ in range(repeat)]
        wall, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
        out[name] = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "packets_per_s": round(n / wall),
                     "mb_per_s": round(mb / wall, 1)}  # fmt: skip
    out["ratio_wall"] = round(out["tshark"]["wall_s"] / out["monitor"]["wall_s"], 2)  # > 1: we are faster
    out["ratio_cpu"] = round(out["tshark"]["cpu_s"] / out["monitor"]["cpu_s"], 2)
    return out


def profile(path: Path, top: int) -> dict[str, Any]:
    """The CLI's --json path (reader, reassembly, associations, records, detectors, JSON) under
    cProfile, as ``dcerpc monitor --json`` runs it (cli/monitor_cmd.py)."""
    from dcerpc.detect import Detectors
    from dcerpc.monitor import Monitor, json_line, monitor_file

    sink = io.BytesIO()
    prof = cProfile.Profile()
    stats: Counter[str] = Counter()
    mon = Monitor(detectors=Detectors())
    prof.enable()
    for rec in monitor_file(path, stats, None, mon):
        sink.write(json_line(mon.event(rec)))
        if sink.tell() > 1 << 24:
            sink.seek(0)
            sink.truncate()
    prof.disable()
    st = pstats.Stats(prof)
    raw: Any = st.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())
    by_module: defaultdict[str, float] = defaultdict(float)
    for (file, _, _), (_, _, tottime, _, _) in raw.items():
        by_module[_module(file)] += tottime
    rows = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    return {
        "total_s": round(total, 2),
        "by_module": {k: round(v, 2) for k, v in sorted(by_module.items(), key=lambda kv: -kv[1])},
        "top": [
            {
                "function": f"{_module(f)}:{line}({fn})",
                "calls": nc,
                "tottime_s": round(tt, 3),
                "cumtime_s": round(ct, 3),
            }
            for (f, line, fn), (_, nc, tt, ct, _) in rows
        ],
    }


def _module(file: str) -> str:
    if "dcerpc/" in file:
        return "dcerpc/" + file.split("dcerpc/", 1)[1]
    if "dpkt/" in file:
        return "dpkt/" + file.split("dpkt/", 1)[1]
    if file.startswith("~") or file.startswith("<"):
        return "builtins"
    return os.path.basename(file)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--capture", type=Path, default=DEFAULT_CAPTURE, help="made there when missing or small")
    ap.add_argument("--size-mb", type=float, default=100)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    size = int(args.size_mb * 1e6)
    calls = None
    if not args.capture.exists() or args.capture.stat().st_size < size:
        t0 = time.monotonic()
        calls = make_capture(args.capture, size, args.connections)
        made = time.monotonic() - t0
    result = measure(args.capture, args.repeat)
    if calls is not None:
        result["made"] = {"calls": calls, "seconds": round(made, 1)}
    if args.profile:
        result["profile"] = profile(args.capture, args.top)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['capture']}: {result['packets']} packets, {result['megabytes']} MB"
          + (f" (made now: {calls} calls in {made:.0f} s)" if calls is not None else ""))  # fmt: skip
    for name in ("monitor", "tshark"):
        r = result[name]
        print(f"  {name:8} {r['wall_s']:7.2f} s wall {r['cpu_s']:7.2f} s CPU  "
              f"{r['packets_per_s']:>9} packets/s {r['mb_per_s']:7.1f} MB/s")  # fmt: skip
    verdict = "faster" if result["ratio_cpu"] > 1 else "slower"  # wall time follows the machine's load
    ratios = f"{result['ratio_wall']}x wall, {result['ratio_cpu']}x CPU"
    print(f"  tshark/monitor: {ratios} (the monitor is {verdict} in CPU time)")
    if args.profile:
        p = result["profile"]
        print(f"profile (cProfile, {p['total_s']} s in all; its overhead inflates small functions):")
        for mod, secs in list(p["by_module"].items())[:12]:
            print(f"  {secs:7.2f} s  {100 * secs / p['total_s']:5.1f}%  {mod}")
        for row in p["top"]:
            print(f"  {row['tottime_s']:7.3f} s  {row['calls']:>9}  {row['function']}")


if __name__ == "__main__":
    main()
