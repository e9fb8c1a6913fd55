"""What protection costs: 16 MiB echo at each authentication level, and authenticated binds per second.

Loopback, the server (rpcecho with an NTLM users file) in a child process, our client here:

- throughput: EchoData with 16 MiB each way, MiB/s counted one way (request bytes), anonymous
  versus NTLM at packet integrity (every fragment signed) and privacy (every fragment sealed);
- binds: connections per second that connect, bind with NTLM (bind, bind_ack, auth3) and make
  one AddOne call at privacy, versus the same without authentication.

Target tracked for this work: privacy at least half the throughput of no protection.

    .venv/bin/python benchmarks/auth.py [--seconds S] [--mib N] [--uvloop] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any

from common import free_port, streaming_copies, use_uvloop

import dcerpc
from dcerpc.auth import NTLM
from dcerpc.rpcecho import Echo
from dcerpc.tuning import keep_large_buffers

USERS = "BENCH:alice:wonderland\n"
CREDS = NTLM("BENCH", "alice", "wonderland")


def serve(port: int, users: str, ready: Any, uvloop: bool, keep: bool = True) -> None:
    """Child process: rpcecho accepting NTLM and anonymous callers."""
    if keep:
        keep_large_buffers()
    use_uvloop(uvloop)
    from dcerpc.auth import NtlmProvider
    from dcerpc.protocol.limits import Limits
    from dcerpc.rpcecho.server import EchoServer
    from dcerpc.server.server import Server

    async def main() -> None:
        limits = Limits(max_call_size=64 << 20, max_buffered=128 << 20)
        server = Server(EchoServer(), limits=limits, security=[NtlmProvider(users)])
        await server.listen_tcp("127.0.0.1", port)
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


async def throughput(port: int, level: str | None, mib: int, seconds: float) -> float:
    data = bytes(range(256)) * (mib << 12)
    url = f"ncacn_ip_tcp:127.0.0.1[{port}]"
    auth = CREDS if level else None
    async with await dcerpc.connect(url, auth=auth, level=level or "none") as conn:
        echo = await conn.bind(Echo)
        assert await echo.EchoData(len(data), data) == data  # warm-up and correctness
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            await echo.EchoData(len(data), data)
            n += 1
        return n * mib / (time.perf_counter() - start)


async def binds(port: int, authenticated: bool, seconds: float) -> float:
    url = f"ncacn_ip_tcp:127.0.0.1[{port}]"
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        auth = CREDS if authenticated else None
        async with await dcerpc.connect(url, auth=auth, level="privacy") as conn:
            await (await conn.bind(Echo)).AddOne(1)
        n += 1
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--mib", type=int, default=16)
    ap.add_argument("--uvloop", action="store_true")
    ap.add_argument(
        "--release-buffers", action="store_true", help="leave malloc as it is (see dcerpc.tuning)"
    )
    ap.add_argument(
        "--glibc-copies", action="store_true", help="leave glibc's copy thresholds as it sets them"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    copies = streaming_copies(not args.glibc_copies)
    keep = not args.release_buffers
    if keep:
        keep_large_buffers()
    loop_name = use_uvloop(args.uvloop)
    with tempfile.TemporaryDirectory() as tmp:
        users = Path(tmp) / "users"
        users.write_text(USERS)
        port = free_port()
        ready = multiprocessing.Event()
        child = multiprocessing.Process(
            target=serve, args=(port, str(users), ready, args.uvloop, keep), daemon=True
        )
        child.start()
        ready.wait(30)
        try:
            results: dict[str, float] = {}
            for level in (None, "integrity", "privacy"):
                results[f"echo_{level or 'none'}_mib_s"] = asyncio.run(
                    throughput(port, level, args.mib, args.seconds)
                )
            results["binds_none_per_s"] = asyncio.run(binds(port, False, args.seconds))
            results["binds_ntlm_privacy_per_s"] = asyncio.run(binds(port, True, args.seconds))
        finally:
            child.terminate()
            child.join(5)
    ratio = results["echo_privacy_mib_s"] / results["echo_none_mib_s"]
    results["privacy_over_none"] = ratio
    if args.json:
        print(json.dumps({"loop": loop_name, "copies": copies, **results}, indent=2))
        return
    print(f"auth benchmark ({loop_name}, {args.mib} MiB echo, {args.seconds:.0f} s each)")
    print(f"  {copies}")
    print(f"  echo, no protection     {results['echo_none_mib_s']:8.1f} MiB/s")
    print(f"  echo, NTLM integrity    {results['echo_integrity_mib_s']:8.1f} MiB/s")
    print(f"  echo, NTLM privacy      {results['echo_privacy_mib_s']:8.1f} MiB/s")
    print(f"  binds+call, anonymous   {results['binds_none_per_s']:8.1f} /s")
    print(f"  binds+call, NTLM seal   {results['binds_ntlm_privacy_per_s']:8.1f} /s")
    verdict = "met" if ratio >= 0.5 else "NOT met"
    print(f"  privacy / none = {ratio:.2f}  (target >= 0.5: {verdict})")


if __name__ == "__main__":
    main()
