"""The CPU one small call costs, client and server together, with no sockets in the way.

Our client and server run in one process and one event loop, joined by an in-memory transport that
hands each write to the other side's ``get_buffer``/``buffer_updated`` on the next turn of the loop,
as a socket would. rpcecho AddOne, one call in flight (or ``--in-flight N``). What it prints:

- the wall time per call, which here is the CPU of both sides (no kernel, no waiting);
- with ``--callgrind``, the instructions per call: the run is repeated under valgrind's callgrind
  at two call counts and the difference divided out, so start-up is not counted. Deterministic to
  a fraction of a percent, it shows a change of 1% that timings cannot; it takes about a minute.

    .venv/bin/python benchmarks/inproc.py [--calls N] [--in-flight N] [--callgrind] [--no-uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import time
from typing import Any

from common import use_uvloop


class _Pipe:
    """One direction of the in-memory connection: what is written reaches ``peer`` a turn later."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.peer: Any = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.loop.call_soon(self._deliver, bytes(data))

    def writelines(self, parts: list[bytes | memoryview]) -> None:
        self.write(b"".join(parts))

    def _deliver(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            room = self.peer.get_buffer(-1)
            n = min(len(room), len(view))
            room[:n] = view[:n]
            view = view[n:]
            self.peer.buffer_updated(n)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 49152) if name in ("peername", "sockname") else default

    def is_closing(self) -> bool:
        return False

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _run(calls: int, in_flight: int) -> float:
    from dcerpc.aio.server import ServerProtocol
    from dcerpc.client.binding import parse_binding
    from dcerpc.client.connection import Connection
    from dcerpc.rpcecho import Echo
    from dcerpc.rpcecho.server import EchoServer
    from dcerpc.server.server import Server

    loop = asyncio.get_running_loop()
    # the server's protocol as its listener makes it; the client's is the connection's own
    server_side = ServerProtocol(Server(EchoServer()).accept, "ncacn_ip_tcp")
    conn = Connection(parse_binding("ncacn_ip_tcp:127.0.0.1[49152]"))
    client_side = conn._proto
    to_client, to_server = _Pipe(loop), _Pipe(loop)
    to_client.peer, to_server.peer = client_side, server_side
    server_side.connection_made(to_client)  # type: ignore[arg-type]
    client_side.connection_made(to_server)  # type: ignore[arg-type]
    echo = await conn.bind(Echo)
    assert await echo.AddOne(41) == 42

    async def worker(n: int) -> None:
        for _ in range(n):
            await echo.AddOne(41)

    start = time.perf_counter()
    await asyncio.gather(*(worker(calls // in_flight) for _ in range(in_flight)))
    return (time.perf_counter() - start) / calls


def _instructions(calls: int, argv: list[str]) -> int:
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            *argv,
            "--calls",
            str(calls),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    found = re.search(r"Collected : (\d+)", out)
    if found is None:
        raise RuntimeError(f"callgrind printed no total:\n{out[-2000:]}")
    return int(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--in-flight", type=int, default=1)
    parser.add_argument("--callgrind", action="store_true", help="count instructions per call")
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args()
    inner = ["--in-flight", str(args.in_flight)] + (["--no-uvloop"] if args.no_uvloop else [])
    if args.callgrind:
        if shutil.which("valgrind") is None:
            print("valgrind is not installed (apt install valgrind)")
            return 1
        few, many = 1_000, 11_000
        per_call = (_instructions(many, inner) - _instructions(few, inner)) / (many - few)
        print(f"{per_call:,.0f} instructions per call ({args.in_flight} in flight, client and server)")
        return 0
    loop = use_uvloop(not args.no_uvloop)
    per_call = asyncio.run(_run(args.calls, args.in_flight))
    print(f"{per_call * 1e6:.2f} us per call on {loop} ({args.in_flight} in flight, client and server CPU)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
