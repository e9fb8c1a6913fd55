"""Endpoint resolution: ept_map rate and the cold path, beside Pyro5's name server, in one run.

Measured on loopback, servers in child processes:

- map rate: ept_map answers per second on one open association to the endpoint mapper, versus Pyro5
  ``NameServer.lookup`` calls per second on one open name-server proxy;
- cold path: per second, a fresh client connects to the endpoint mapper, maps the interface,
  connects to the service it names, and makes one call (AddOne), versus a fresh
  ``Pyro5.api.Proxy("PYRONAME:...")`` resolving through the name server and making one call.

The target tracked for this work: our cold path at least 2x Pyro5's. The endpoint mapper runs on a
high port here (no root needed); the work is the same as on 135.

    .venv/bin/python benchmarks/epm.py [--seconds S] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
from typing import Any

from common import arate, free_port, rate, use_uvloop

from dcerpc import connect
from dcerpc.epm.idl import Epm, twr_t
from dcerpc.epm.towers import Tower, tcp_tower
from dcerpc.ndr import ContextHandle
from dcerpc.rpcecho import Echo


def run_epm_host(epm_port: int, ready: Any, uvloop: bool) -> None:
    """Child process: endpoint mapper + rpcecho service."""
    import tempfile

    use_uvloop(uvloop)

    from dcerpc.epm.host import EpmHost, HostConfig
    from dcerpc.rpcecho.server import EchoServer

    async def main() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            host = EpmHost(HostConfig(epm_port=epm_port, socket=f"{tmp}/epm.sock"))
            await host.start()
            await host.add_service(EchoServer())
            ready.set()
            await asyncio.Event().wait()

    asyncio.run(main())


def run_pyro(ns_port: int, ready: Any) -> None:
    """Child process: Pyro5 name server and a daemon with an echo object registered in it."""
    import threading

    import Pyro5.api
    import Pyro5.nameserver

    @Pyro5.api.expose
    class PyroEcho:
        def add_one(self, x: int) -> int:
            return x + 1

    _uri, ns_daemon, _ = Pyro5.nameserver.start_ns(host="127.0.0.1", port=ns_port)
    threading.Thread(target=ns_daemon.requestLoop, daemon=True).start()
    daemon = Pyro5.api.Daemon(host="127.0.0.1")
    echo_uri = daemon.register(PyroEcho())
    Pyro5.api.locate_ns(host="127.0.0.1", port=ns_port).register("bench.echo", echo_uri)
    ready.set()
    daemon.requestLoop()


async def ours(epm_port: int, seconds: float) -> dict[str, float]:
    probe = twr_t.of(tcp_tower(Echo.__syntax__).encode())
    null = ContextHandle()
    async with await connect(f"ncacn_ip_tcp:127.0.0.1[{epm_port}]") as conn:
        epm = await conn.bind(Epm)
        map_rate = await arate(seconds, lambda: epm.ept_map(None, probe, null, 1))

    async def cold() -> None:
        async with await connect(f"ncacn_ip_tcp:127.0.0.1[{epm_port}]") as conn:
            answer = await (await conn.bind(Epm)).ept_map(None, probe, null, 1)
        port = Tower.decode(answer.towers[0].tower_octet_string).port  # type: ignore[union-attr]
        async with await connect(f"ncacn_ip_tcp:127.0.0.1[{port}]") as conn:
            await (await conn.bind(Echo)).AddOne(1)

    return {"map_per_s": map_rate, "cold_per_s": await arate(seconds, cold)}


def pyro(ns_port: int, seconds: float) -> dict[str, float]:
    import Pyro5.api

    ns = Pyro5.api.locate_ns(host="127.0.0.1", port=ns_port)
    lookup_rate = rate(seconds, lambda: ns.lookup("bench.echo"))

    def cold() -> None:
        with Pyro5.api.Proxy(f"PYRONAME:bench.echo@127.0.0.1:{ns_port}") as p:
            p.add_one(1)

    return {"map_per_s": lookup_rate, "cold_per_s": rate(seconds, cold)}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--no-uvloop", action="store_true", help="use asyncio's own loop even if uvloop is installed"
    )
    args = parser.parse_args()
    loop = use_uvloop(not args.no_uvloop)
    ctx = multiprocessing.get_context("spawn")
    epm_port, ns_port = free_port(), free_port()
    children = []
    results: dict[str, Any] = {}
    try:
        ready = ctx.Event()
        children.append(
            ctx.Process(target=run_epm_host, args=(epm_port, ready, loop == "uvloop"), daemon=True)
        )
        children[-1].start()
        ready.wait(30)
        results["dcerpc"] = asyncio.run(ours(epm_port, args.seconds))
        try:
            import Pyro5  # noqa: F401
        except ImportError:
            results["pyro5"] = None
        else:
            ready = ctx.Event()
            children.append(ctx.Process(target=run_pyro, args=(ns_port, ready), daemon=True))
            children[-1].start()
            ready.wait(30)
            results["pyro5"] = pyro(ns_port, args.seconds)
    finally:
        for child in children:
            child.terminate()
            child.join(5)
    ratios = {}
    if results.get("pyro5"):
        ratios = {k: results["dcerpc"][k] / results["pyro5"][k] for k in ("map_per_s", "cold_per_s")}
    if args.json:
        print(json.dumps({"loop": loop, "results": results, "ratios": ratios}, indent=2))
        return 0
    print(f"dcerpc on {loop}")
    print(f"{'implementation':<16}{'map/lookup per s':>18}{'cold path per s':>18}")
    for name, r in results.items():
        if r is None:
            print(f"{name:<16}{'(not installed)':>36}")
        else:
            print(f"{name:<16}{r['map_per_s']:>18.0f}{r['cold_per_s']:>18.0f}")
    if ratios:
        cold = ratios["cold_per_s"]
        print(f"map rate dcerpc/pyro5: {ratios['map_per_s']:.2f}")
        print(f"cold path dcerpc/pyro5: {cold:.2f}   target >= 2: {'met' if cold >= 2 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
