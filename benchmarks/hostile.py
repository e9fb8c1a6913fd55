"""The hostile classes of issue 14, each a loop of attacks on a real server (``attack_worker``).

Each class is a loop of raw-socket attacks built from ``dcerpc.pdu`` classes, from a loopback source
address of its own (127.0.0.2 and up: one attacking host per class, so each meets the per-source
cap on its own and the honest client, from 127.0.0.1, is never counted with them):

- ``sourcedata``: rpcecho SourceData for ``--sourcedata-mib`` MiB, then disconnect without reading
  (every 5 s, skipped while the server's RSS is above ``--rss-guard-mib``);
- ``alter_contexts``: ~1,000 alter_contexts of ~61 KB with random syntaxes on one connection;
- ``co_cancel``: 40 partial (first-fragment) calls each cancelled by co_cancel, then a 40 KB call in
  two fragments: served or refused (issue 14: refused after 32 cancels);
- ``ntlm_contexts``: alter_contexts that start NTLM on a new auth_context_id each (2,100 per
  connection, past the server's cap of 2,049);
- ``connections``: as many bound, idle connections as the server lets one address hold;
- ``trickle``: 64 sockets sending a bind one octet every 2 s;
- ``never_bind``: 64 sockets that connect and send nothing;
- ``frag_flood``: request fragments without PFC_LAST_FRAG until the server stops the call
  (CVE-2022-26809 shape), paced at 64 KiB per ms;
- ``malformed``: malformed PDUs on fresh connections, one every 20 ms.

``hostile_run.py`` runs them against the soak server beside an honest client and reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import struct
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from soakclients import proc_status, raise_nofile

from dcerpc.pdu import (
    NDR20,
    PFC,
    AlterContext,
    AuthVerifier,
    Bind,
    CoCancel,
    ContextElement,
    Request,
    SyntaxId,
    frame_length,
    parse,
)
from dcerpc.rpcecho import Echo

ECHO = Echo.__syntax__
BIG = 65528
CLASSES = (
    "sourcedata",
    "alter_contexts",
    "co_cancel",
    "ntlm_contexts",
    "connections",
    "trickle",
    "never_bind",
    "frag_flood",
    "malformed",
)
SILENT = object()  # Raw.recv: no PDU within the time given
NTLM_NEGOTIATE = b"NTLMSSP\x00" + struct.pack("<II", 1, 0xE2088297) + bytes(16) + bytes(8)


def _stub(name: str, *args: Any) -> bytes:
    return Echo.operation_named(name).encode_request(*args)


def _opnum(name: str) -> int:
    return Echo.operation_named(name).opnum


class Raw:
    """A raw connection: octets out, whole PDUs in (None once the server closed it)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.buf = b""

    @classmethod
    async def open(cls, port: int, source: str) -> Raw:
        r, w = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        return cls(r, w)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self, timeout: float = 10.0) -> Any:
        """The next PDU; None: the server closed; SILENT: nothing whole within ``timeout``."""
        try:
            return await self._recv(timeout)
        except TimeoutError:
            return SILENT

    async def _recv(self, timeout: float) -> Any:
        async with asyncio.timeout(timeout):
            while True:
                n = frame_length(self.buf)
                if n is not None and len(self.buf) >= n:
                    pdu, self.buf = parse(self.buf[:n]).pdu, self.buf[n:]
                    return pdu
                try:
                    chunk = await self.reader.read(1 << 16)
                except OSError:
                    return None
                if not chunk:
                    return None
                self.buf += chunk

    async def bind(self, frag: int = BIG, auth: AuthVerifier | None = None) -> Any:
        ctx = ContextElement(0, ECHO, (NDR20,))
        await self.send(
            Bind(call_id=1, max_xmit_frag=frag, max_recv_frag=frag, contexts=(ctx,), auth=auth).encode()
        )
        return await self.recv()

    def abort(self) -> None:
        self.writer.transport.abort()

    async def closed(self) -> None:
        """Wait until the server closes (reading and dropping what it sends)."""
        with contextlib.suppress(OSError):
            while await self.reader.read(1 << 16):
                pass


def _name(pdu: Any) -> str:
    if pdu is SILENT:
        return "no answer"
    return "closed" if pdu is None else type(pdu).__name__


def _rss(pid: int) -> int:
    return proc_status(pid)["VmRSS"]


# the classes --------------------------------------------------------------------------------------


class Attack:
    """One class's loop; ``counts`` says what it did and what the server answered."""

    def __init__(self, port: int, source: str, server_pid: int, args: dict[str, Any]) -> None:
        self.port, self.source, self.pid, self.args = port, source, server_pid, args
        self.counts: Counter[str] = Counter()

    async def open(self) -> Raw:
        return await Raw.open(self.port, self.source)

    async def sourcedata(self) -> None:
        if _rss(self.pid) > self.args["rss_guard"]:
            self.counts["skipped (RSS guard)"] += 1
            await asyncio.sleep(5)
            return
        raw = await self.open()
        await raw.bind()
        stub = _stub("SourceData", self.args["sourcedata_mib"] << 20)
        await raw.send(
            Request(call_id=2, opnum=_opnum("SourceData"), alloc_hint=len(stub), stub=stub).encode()
        )
        raw.abort()  # never read a response octet
        self.counts["requests"] += 1
        await asyncio.sleep(5)

    async def alter_contexts(self) -> None:
        raw = await self.open()
        await raw.bind()
        rnd = random.Random()
        for i in range(1000):
            ctxs = tuple(
                ContextElement(
                    k,
                    SyntaxId(uuid.UUID(int=rnd.getrandbits(128)), (1, 0)),
                    tuple(SyntaxId(uuid.UUID(int=rnd.getrandbits(128)), (2, 0)) for _ in range(254)),
                )
                for k in range(12)  # 12 x (24 + 254 x 20) = 61,248 octets of context list
            )
            await raw.send(
                AlterContext(call_id=i + 2, max_xmit_frag=BIG, max_recv_frag=BIG, contexts=ctxs).encode()
            )
            answer = await raw.recv()
            self.counts[_name(answer)] += 1
            if answer is None:
                break
        raw.abort()
        self.counts["rounds"] += 1

    async def co_cancel(self) -> None:
        raw = await self.open()
        await raw.bind()
        data = bytes(40 * 1024 - 8)
        stub = _stub("EchoData", len(data), data)
        op, half = _opnum("EchoData"), len(stub) // 2

        def fragment(call: int, flags: int, part: bytes) -> bytes:
            return Request(call_id=call, flags=flags, opnum=op, alloc_hint=len(part), stub=part).encode()

        for call in range(2, 42):  # 40 calls cancelled while half received, then completed
            await raw.send(fragment(call, PFC.FIRST_FRAG, stub[:half]) + CoCancel(call_id=call).encode())
            await raw.send(fragment(call, PFC.LAST_FRAG, stub[half:]))
            answer = await raw.recv()
            self.counts[f"cancelled call: {_name(answer)}"] += 1
            if answer is None or answer is SILENT:
                raw.abort()
                return
        # an honest 40 KB call in two fragments on the same connection (issue 14: refused after 32)
        await raw.send(fragment(50, PFC.FIRST_FRAG, stub[:half]) + fragment(50, PFC.LAST_FRAG, stub[half:]))
        answer = await raw.recv()
        self.counts[
            "40 KB call after 40 cancels: " + ("served" if _name(answer) == "Response" else _name(answer))
        ] += 1
        raw.abort()

    async def ntlm_contexts(self) -> None:
        raw = await self.open()
        first = await raw.bind(
            auth=AuthVerifier(auth_type=10, auth_level=5, context_id=0, value=NTLM_NEGOTIATE)
        )
        self.counts["bind: " + _name(first)] += 1
        ctx = (ContextElement(0, ECHO, (NDR20,)),)
        for i in range(1, 2101):  # past MAX_AUTH_CONTEXTS (2,049): what answers the excess
            auth = AuthVerifier(auth_type=10, auth_level=5, context_id=i, value=NTLM_NEGOTIATE)
            await raw.send(AlterContext(call_id=i + 1, contexts=ctx, auth=auth).encode())
            answer = await raw.recv()
            self.counts[_name(answer)] += 1
            if answer is None:
                break
        raw.abort()

    async def _hold(self, send: Callable[[Raw], Awaitable[None]], kind: str) -> None:
        """One slot: connect, ``send``, wait for the server to close, again (paced on refusals)."""
        try:
            raw = await self.open()
        except OSError:
            self.counts[f"{kind}: connect failed"] += 1
            await asyncio.sleep(1)
            return
        self.counts[f"{kind}: connected"] += 1
        t = time.monotonic()
        await send(raw)
        await raw.closed()
        held = time.monotonic() - t
        self.counts[
            f"{kind}: closed by server after <1 s" if held < 1 else f"{kind}: closed after >=1 s"
        ] += 1
        if held < 1:
            await asyncio.sleep(1)

    async def connection(self) -> None:
        async def bound(raw: Raw) -> None:
            self.counts[_name(await raw.bind())] += 1

        await self._hold(bound, "connections")

    async def trickle(self) -> None:
        octets = Bind(call_id=1, contexts=(ContextElement(0, ECHO, (NDR20,)),)).encode()

        async def slowly(raw: Raw) -> None:
            for b in octets:
                try:
                    await raw.send(bytes([b]))
                except OSError:
                    return
                if raw.reader.at_eof():
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(2):
                        await raw.reader.read(1)  # the server closing ends the wait early
                if raw.reader.at_eof():
                    return

        await self._hold(slowly, "trickle")

    async def never_bind(self) -> None:
        async def silent(raw: Raw) -> None:
            return None

        await self._hold(silent, "never_bind")

    async def frag_flood(self) -> None:
        raw = await self.open()
        await raw.bind()
        chunk = bytes(BIG - 24)
        answer = asyncio.ensure_future(raw.recv(3600))  # whatever stops the call: a fault, a close
        flags, sent = PFC.FIRST_FRAG, 0
        try:
            while not answer.done():
                try:
                    await raw.send(Request(call_id=2, flags=flags, alloc_hint=0, stub=chunk).encode())
                except OSError:
                    break
                flags, sent = 0, sent + len(chunk)
                await asyncio.sleep(0.001)  # about 64 MiB/s
            async with asyncio.timeout(5):
                self.counts[f"stopped by {_name(await answer)}"] += 1
        finally:
            answer.cancel()
            self.counts["MiB sent"] += sent >> 20
            raw.abort()

    async def malformed(self) -> None:
        rnd = random.Random()
        good = Bind(call_id=1, contexts=(ContextElement(0, ECHO, (NDR20,)),)).encode()
        request = Request(call_id=2, opnum=0, stub=_stub("AddOne", 1)).encode()
        kinds: dict[str, Callable[[], bytes]] = {
            "bad version": lambda: b"\x04" + good[1:],
            "short frag_length": lambda: good[:8] + struct.pack("<H", 10) + good[10:],
            "huge frag_length": lambda: good[:8] + struct.pack("<H", 0xFFFF) + good[10:],
            "unknown ptype": lambda: good[:2] + bytes([rnd.randrange(20, 256)]) + good[3:],
            "request before bind": lambda: request,
            "truncated bind": lambda: good[:8] + struct.pack("<H", 40) + good[10:40],
            "garbage": lambda: rnd.randbytes(rnd.randrange(16, 2048)),
            "flipped octets": lambda: bytes(
                b ^ (rnd.getrandbits(8) if rnd.random() < 0.05 else 0) for b in good
            ),
        }
        kind = rnd.choice(list(kinds))
        raw = await self.open()
        await raw.send(kinds[kind]())
        answer = await raw.recv(3)
        self.counts[f"{kind}: {_name(answer)}"] += 1
        raw.abort()
        await asyncio.sleep(0.02)


async def _attack(ports: dict[str, int], pid: int, seconds: float, args: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    out: dict[str, Any] = {}
    loops: list[Awaitable[None]] = []
    slots = args["slots"]

    def forever(attack: Attack, step: Callable[[], Awaitable[None]]) -> Awaitable[None]:
        async def run() -> None:
            while time.monotonic() < deadline:
                try:
                    async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                        await step()
                except TimeoutError:
                    return
                except Exception as e:
                    attack.counts[f"error {type(e).__name__}"] += 1
                    await asyncio.sleep(0.1)

        return run()

    for i, name in enumerate(args["classes"]):
        attack = Attack(ports["echo"], f"127.0.0.{2 + i}", pid, args)
        out[name] = attack.counts
        if name in ("connections", "trickle", "never_bind"):
            step = {
                "connections": attack.connection,
                "trickle": attack.trickle,
                "never_bind": attack.never_bind,
            }
            n = slots + 16 if name == "connections" else slots  # a few more than the cap: refusals
            loops += [forever(attack, step[name]) for _ in range(n)]
        else:
            loops.append(forever(attack, getattr(attack, name)))
    await asyncio.gather(*loops)
    return {k: dict(v) for k, v in out.items()}


def attack_worker(ports: dict[str, int], pid: int, seconds: float, args: dict[str, Any], q: Any) -> None:
    """Run ``args["classes"]`` for ``seconds``: says ("started", t) once ready, then ("done", t,
    counts). ``args["nice"]``: the process's niceness (``--attack-nice``; what the attacks get done
    is in the counts)."""
    raise_nofile(8192)
    if args.get("nice"):
        os.nice(args["nice"])
    q.put(("started", time.monotonic()))
    counts = asyncio.run(_attack(ports, pid, seconds, args))
    q.put(("done", time.monotonic(), counts))


if __name__ == "__main__":  # a quick look at one class: python benchmarks/hostile.py PORT PID CLASS
    import sys

    port, pid, name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    cfg = {"classes": [name], "sourcedata_mib": 256, "rss_guard": 4 << 30, "slots": 64}
    print(asyncio.run(_attack({"echo": port}, pid, float(os.environ.get("SECONDS", "10")), cfg)))
