"""Call rate and throughput of our client and server, beside a raw floor, grpcio and Pyro5, in one run.

Loopback; every server in a child process of its own, the clients here:

- small calls, 1 in flight: rpcecho AddOne (4 octets each way) one after another;
- small calls, 64 in flight: 64 AddOne outstanding at all times on one connection (one channel);
- 16 MiB echo: EchoData with 16 MiB each way; MiB/s counts one direction (the request).

Beside: a raw floor (asyncio streams of the same framing: a 16-octet header and the payload, one
connection, calls matched by id, no marshalling), grpcio unary calls with bytes in and out (sync
stubs and grpc.aio), and Pyro5 (marshal serializer, which carries bytes as bytes).

Targets tracked for this work: 1 in flight at least 3x grpcio (sync) and 1.5x Pyro5; 64 in flight at
least 20x grpc.aio and half the raw floor; 16 MiB at least 2.5x grpcio.

Every process, the peers' included, runs with the same two process tunings (dcerpc.tuning): malloc
keeps large freed buffers, and glibc's memcpy streams copies of 4 MiB and more (this machine reports
a 504 MiB L3, which otherwise keeps it from streaming below 190 MiB). The run starts itself again
with the latter set; ``--release-buffers`` and ``--glibc-copies`` leave either as it is.

    .venv/bin/python benchmarks/calls.py [--seconds S] [--mib N] [--no-uvloop] [--json]

With ``--secured`` it measures issue 15's figure instead (benchmarks/policy.py, to which the other
arguments go): the same small calls with a 20-rule policy, every call audited to a file and metrics
on, against the plain server; target at least 0.8x at 1 and at 64 in flight.

    .venv/bin/python benchmarks/calls.py --secured [--seconds S] [--rounds N] [--no-pin]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import struct
from collections.abc import Callable
from typing import Any

from common import arate, free_port, rate, streaming_copies, use_uvloop

from dcerpc.tuning import keep_large_buffers

ADD_ONE = "/bench.Echo/AddOne"
ECHO = "/bench.Echo/Echo"
GRPC_MAX = 64 << 20
_FRAME = struct.Struct("<IIQ")  # raw floor header: payload length, call id, padding to 16 octets


# servers (child processes) ---------------------------------------------------------------------------


def serve_dcerpc(port: int, ready: Any, uvloop: bool) -> None:
    use_uvloop(uvloop)
    from dcerpc.protocol.limits import Limits
    from dcerpc.rpcecho.server import EchoServer
    from dcerpc.server.server import Server

    async def main() -> None:
        limits = Limits(max_call_size=GRPC_MAX, max_buffered=2 * GRPC_MAX)
        server = Server(EchoServer(), limits=limits)
        await server.listen_tcp("127.0.0.1", port)
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


class _RawServer(asyncio.Protocol):
    """The floor: echo each framed payload back (AddOne's 4 octets incremented), nothing else."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t: Any = transport
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        out = []
        while len(buf) >= 16:
            n, cid, _ = _FRAME.unpack_from(buf)
            if len(buf) < 16 + n:
                break
            payload = bytes(buf[16 : 16 + n])
            del buf[: 16 + n]
            if n == 4:
                payload = struct.pack("<I", (struct.unpack("<I", payload)[0] + 1) & 0xFFFFFFFF)
            out.append(_FRAME.pack(len(payload), cid, 0) + payload)
        if out:
            self.t.write(b"".join(out))


def serve_raw(port: int, ready: Any, uvloop: bool) -> None:
    use_uvloop(uvloop)

    async def main() -> None:
        await asyncio.get_running_loop().create_server(_RawServer, "127.0.0.1", port)
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


def serve_grpc(port: int, ready: Any) -> None:
    from concurrent import futures

    import grpc

    def add_one(request: bytes, context: Any) -> bytes:
        return struct.pack("<I", (struct.unpack("<I", request)[0] + 1) & 0xFFFFFFFF)

    def echo(request: bytes, context: Any) -> bytes:
        return request

    handlers = grpc.method_handlers_generic_handler(
        "bench.Echo",
        {
            "AddOne": grpc.unary_unary_rpc_method_handler(add_one),
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
        },
    )
    options = [("grpc.max_send_message_length", GRPC_MAX), ("grpc.max_receive_message_length", GRPC_MAX)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=options)
    server.add_generic_rpc_handlers((handlers,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    ready.set()
    server.wait_for_termination()


def serve_pyro(port: int, ready: Any) -> None:
    import Pyro5
    import Pyro5.api

    Pyro5.config.SERIALIZER = "marshal"

    @Pyro5.api.expose
    class PyroEcho:
        def add_one(self, x: int) -> int:
            return (x + 1) & 0xFFFFFFFF

        def echo(self, data: bytes) -> bytes:
            return data

    daemon = Pyro5.api.Daemon(host="127.0.0.1", port=port)
    daemon.register(PyroEcho(), "echo")
    ready.set()
    daemon.requestLoop()


# clients ----------------------------------------------------------------------------------------------


async def bench_dcerpc(port: int, seconds: float, mib: int) -> dict[str, float]:
    import dcerpc
    from dcerpc.protocol.limits import Limits
    from dcerpc.rpcecho import Echo

    limits = Limits(max_call_size=GRPC_MAX, max_buffered=2 * GRPC_MAX)
    url = f"ncacn_ip_tcp:127.0.0.1[{port}]"
    async with await dcerpc.connect(url, limits=limits, max_concurrent_calls=64) as conn:
        echo = await conn.bind(Echo)
        one = await arate(seconds, lambda: echo.AddOne(41))
        many = await arate(seconds, lambda: echo.AddOne(41), in_flight=64)
        data = bytes(range(256)) * (mib << 12)
        assert await echo.EchoData(len(data), data) == data
        big = await arate(seconds, lambda: echo.EchoData(len(data), data)) * mib
    return {"one": one, "many": many, "mib_s": big}


class _RawClient(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiting: dict[int, asyncio.Future[bytes]] = {}
        self.next_id = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t: Any = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while len(buf) >= 16:
            n, cid, _ = _FRAME.unpack_from(buf)
            if len(buf) < 16 + n:
                break
            payload = bytes(buf[16 : 16 + n])
            del buf[: 16 + n]
            fut = self.waiting.pop(cid)
            fut.set_result(payload)

    def call(self, payload: bytes) -> asyncio.Future[bytes]:
        self.next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self.waiting[self.next_id] = fut
        self.t.write(_FRAME.pack(len(payload), self.next_id, 0) + payload)
        return fut


async def bench_raw(port: int, seconds: float, mib: int) -> dict[str, float]:
    _, proto = await asyncio.get_running_loop().create_connection(_RawClient, "127.0.0.1", port)
    small = struct.pack("<I", 41)
    one = await arate(seconds, lambda: proto.call(small))
    many = await arate(seconds, lambda: proto.call(small), in_flight=64)
    data = bytes(range(256)) * (mib << 12)
    big = await arate(seconds, lambda: proto.call(data)) * mib
    proto.t.close()
    return {"one": one, "many": many, "mib_s": big}


def bench_grpc_sync(port: int, seconds: float, mib: int) -> dict[str, float]:
    import grpc

    options = [("grpc.max_send_message_length", GRPC_MAX), ("grpc.max_receive_message_length", GRPC_MAX)]
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        add_one = channel.unary_unary(ADD_ONE)
        echo = channel.unary_unary(ECHO)
        small = struct.pack("<I", 41)
        one = rate(seconds, lambda: add_one(small))
        data = bytes(range(256)) * (mib << 12)
        big = rate(seconds, lambda: echo(data)) * mib
    return {"one": one, "mib_s": big}


async def bench_grpc_aio(port: int, seconds: float) -> dict[str, float]:
    import grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        add_one = channel.unary_unary(ADD_ONE)
        small = struct.pack("<I", 41)
        one = await arate(seconds, lambda: add_one(small))
        many = await arate(seconds, lambda: add_one(small), in_flight=64)
    return {"one": one, "many": many}


def bench_pyro(port: int, seconds: float, mib: int) -> dict[str, float]:
    import Pyro5
    import Pyro5.api

    Pyro5.config.SERIALIZER = "marshal"
    with Pyro5.api.Proxy(f"PYRO:echo@127.0.0.1:{port}") as proxy:
        one = rate(seconds, lambda: proxy.add_one(41))
        data = bytes(range(256)) * (mib << 12)
        big = rate(seconds, lambda: proxy.echo(data)) * mib
    return {"one": one, "mib_s": big}


# the run ------------------------------------------------------------------------------------------


def _child(keep: bool, target: Callable[..., None], *args: Any) -> None:
    if keep:
        keep_large_buffers()
    target(*args)


def _start(ctx: Any, keep: bool, target: Callable[..., None], *args: Any) -> tuple[Any, int]:
    port = free_port()
    ready = ctx.Event()
    proc = ctx.Process(target=_child, args=(keep, target, port, ready, *args), daemon=True)
    proc.start()
    if not ready.wait(60):
        raise RuntimeError(f"{target.__name__} did not start")
    return proc, port


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--mib", type=int, default=16)
    parser.add_argument("--no-uvloop", action="store_true", help="asyncio's own loop for dcerpc and raw")
    parser.add_argument(
        "--release-buffers",
        action="store_true",
        help="leave malloc as it is (default: every process, peers' included, keeps large freed "
        "buffers for reuse, as the dcerpc command's servers do; see dcerpc.tuning)",
    )
    parser.add_argument(
        "--glibc-copies",
        action="store_true",
        help="leave glibc's copy thresholds as it sets them (default: every process, peers' "
        "included, streams copies of 4 MiB and more; see dcerpc.tuning)",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--secured",
        action="store_true",
        help="instead, our server with and without the security half: a 20-rule policy, every call "
        "audited to a file, metrics (benchmarks/policy.py, whose options are its own)",
    )
    args, rest = parser.parse_known_args()
    if args.secured:
        import policy

        return policy.main(
            [
                *["--seconds", str(args.seconds)],  # (taken by this parser, which has it too)
                *rest,
                *(["--no-uvloop"] if args.no_uvloop else []),
                *(["--json"] if args.json else []),
            ]
        )
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    copies = streaming_copies(not args.glibc_copies)
    keep = not args.release_buffers
    if keep:
        keep_large_buffers()
    loop = use_uvloop(not args.no_uvloop)
    uv = loop == "uvloop"
    ctx = multiprocessing.get_context("spawn")
    results: dict[str, dict[str, float] | None] = {}
    children = []
    try:
        proc, port = _start(ctx, keep, serve_dcerpc, uv)
        children.append(proc)
        results["dcerpc"] = asyncio.run(bench_dcerpc(port, args.seconds, args.mib))
        proc, port = _start(ctx, keep, serve_raw, uv)
        children.append(proc)
        results["raw floor"] = asyncio.run(bench_raw(port, args.seconds, args.mib))
        try:
            import grpc  # noqa: F401
        except ImportError:
            results["grpcio (sync)"] = results["grpc.aio"] = None
        else:
            proc, port = _start(ctx, keep, serve_grpc)
            children.append(proc)
            results["grpcio (sync)"] = bench_grpc_sync(port, args.seconds, args.mib)
            results["grpc.aio"] = asyncio.run(bench_grpc_aio(port, args.seconds))
        try:
            import Pyro5  # noqa: F401
        except ImportError:
            results["Pyro5"] = None
        else:
            proc, port = _start(ctx, keep, serve_pyro)
            children.append(proc)
            results["Pyro5"] = bench_pyro(port, args.seconds, args.mib)
    finally:
        for child in children:
            child.terminate()
            child.join(5)

    ours = results["dcerpc"]
    assert ours is not None

    def ratio(peer: str, key: str) -> float | None:
        r = results.get(peer)
        return ours[key] / r[key] if r and r.get(key) else None

    targets = [
        ("1 in flight vs grpcio (sync)", ratio("grpcio (sync)", "one"), 3.0),
        ("1 in flight vs Pyro5", ratio("Pyro5", "one"), 1.5),
        ("64 in flight vs grpc.aio", ratio("grpc.aio", "many"), 20.0),
        ("64 in flight vs raw floor", ratio("raw floor", "many"), 0.5),
        (f"{args.mib} MiB vs grpcio (sync)", ratio("grpcio (sync)", "mib_s"), 2.5),
    ]
    if args.json:
        out = {
            "loop": loop,
            "copies": copies,
            "results": results,
            "ratios": {name: r for name, r, _ in targets},
        }
        print(json.dumps(out, indent=2))
        return 0
    print(f"calls benchmark: dcerpc and raw floor on {loop}, {args.seconds:.0f} s per figure")
    print("malloc: " + ("large freed buffers kept in every process" if keep else "as it is"))
    print(copies)
    print(f"{'implementation':<16}{'1 in flight/s':>15}{'64 in flight/s':>16}{f'{args.mib} MiB MiB/s':>16}")
    for name, r in results.items():
        if r is None:
            print(f"{name:<16}{'(not installed)':>47}")
            continue
        cells = [f"{r[k]:.0f}" if k in r else "-" for k in ("one", "many")]
        big = f"{r['mib_s']:.1f}" if "mib_s" in r else "-"
        print(f"{name:<16}{cells[0]:>15}{cells[1]:>16}{big:>16}")
    for name, r, goal in targets:
        if r is None:
            print(f"  {name}: (peer missing)")
        else:
            print(f"  {name}: {r:.2f}x  (target >= {goal}: {'met' if r >= goal else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
