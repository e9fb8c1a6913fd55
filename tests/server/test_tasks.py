"""An implementation lives in a normal asyncio world: each call runs in a Task of its own, from its
first line, so asyncio.current_task(), asyncio.timeout, TaskGroup, cancellation and context
variables behave as in any task. Over real sockets, between our client (or a sans-IO client
association on a raw socket, where the fault on the wire matters) and our server.
"""

from __future__ import annotations

import asyncio
import contextvars
import socket
import threading
from collections.abc import Iterator

import pytest

import dcerpc
from dcerpc import FaultError, Interface, current_call, operation
from dcerpc.ndr import uint32
from dcerpc.pdu import constants as const
from dcerpc.protocol.client import ClientAssociation
from dcerpc.protocol.events import BindAccepted, FaultReceived
from dcerpc.testing import ServerThread

ERROR_TIMEOUT = 0x5B4  # what the implementation maps its own timeout to
_mark: contextvars.ContextVar[int] = contextvars.ContextVar("mark", default=0)


class World(Interface, uuid="3f0a8e52-6c1d-4b7e-a9f2-5d4c3b2a1f00", version=(1, 0)):
    @operation(0)
    async def InTask(self) -> uint32: ...

    @operation(1)
    async def Deadline(self, limit_ms: uint32, work_ms: uint32) -> uint32: ...

    @operation(2)
    async def Group(self, n: uint32) -> uint32: ...

    @operation(3)
    async def Hold(self) -> uint32: ...


class WorldServer(World):
    def __init__(self) -> None:
        self.held = threading.Event()
        self.children_cancelled = threading.Event()
        self.outer_cancelled = threading.Event()

    async def InTask(self) -> int:
        task = asyncio.current_task()  # before anything is awaited
        if task is None:
            return 0
        await asyncio.sleep(0)
        return 1 if asyncio.current_task() is task and not task.done() else 2

    async def Deadline(self, limit_ms: int, work_ms: int) -> int:
        try:
            async with asyncio.timeout(limit_ms / 1000):
                await asyncio.sleep(work_ms / 1000)
        except TimeoutError:
            raise FaultError(ERROR_TIMEOUT, "the work took too long") from None
        return work_ms

    async def Group(self, n: int) -> int:
        call_id = current_call().call_id
        _mark.set(call_id)

        async def child(i: int) -> int:
            await asyncio.sleep(0)
            # each child copies the call's context: the call and its variables are there
            return i if current_call().call_id == call_id and _mark.get() == call_id else -1000

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(child(i)) for i in range(n)]
        return sum(t.result() for t in tasks)

    async def Hold(self) -> int:
        async def forever() -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.children_cancelled.set()
                raise

        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(forever())
                self.held.set()
        except asyncio.CancelledError:
            self.outer_cancelled.set()
            raise
        return 0


@pytest.fixture
def served() -> Iterator[tuple[ServerThread, WorldServer]]:
    impl = WorldServer()
    with ServerThread(impl) as srv:
        yield srv, impl


def _call(srv: ServerThread, *calls: tuple[str, tuple[int, ...]]) -> list[object]:
    async def main() -> list[object]:
        async with await dcerpc.connect(f"ncacn_ip_tcp:127.0.0.1[{srv.port}]", call_timeout=10) as conn:
            world = await conn.bind(World)
            out: list[object] = []
            for name, args in calls:
                try:
                    out.append(await getattr(world, name)(*args))
                except FaultError as e:
                    out.append(e)
            return out

    return asyncio.run(main())


def test_an_implementation_runs_in_a_task_from_its_first_line(
    served: tuple[ServerThread, WorldServer],
) -> None:
    srv, _ = served
    assert _call(srv, ("InTask", ()), ("InTask", ())) == [1, 1]


def test_asyncio_timeout_works_and_its_expiry_is_the_implementations_to_map(
    served: tuple[ServerThread, WorldServer],
) -> None:
    srv, _ = served
    in_time, late = _call(srv, ("Deadline", (5000, 0)), ("Deadline", (20, 10_000)))
    assert in_time == 0
    assert isinstance(late, FaultError) and late.status == ERROR_TIMEOUT


def test_a_task_group_works_and_its_children_see_the_call(served: tuple[ServerThread, WorldServer]) -> None:
    srv, _ = served
    assert _call(srv, ("Group", (5,)), ("Group", (3,))) == [10, 3]


def _bound(port: int) -> tuple[socket.socket, ClientAssociation]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    assoc = ClientAssociation()
    assoc.bind({0: World.__syntax__})
    sock.sendall(assoc.data_to_send())
    while not any(isinstance(e, BindAccepted) for e in _receive(sock, assoc)):
        pass
    return sock, assoc


def _receive(sock: socket.socket, assoc: ClientAssociation) -> list[object]:
    data = sock.recv(65536)
    assert data, "connection closed"
    assoc.receive_data(data)
    return list(assoc.events())


def test_co_cancel_cancels_the_task_and_is_answered_with_nca_s_fault_cancel(
    served: tuple[ServerThread, WorldServer],
) -> None:
    srv, impl = served
    sock, assoc = _bound(srv.port)
    with sock:
        cid = assoc.request(0, 3, b"")
        sock.sendall(assoc.data_to_send())
        assert impl.held.wait(5)
        assoc.cancel(cid)
        sock.sendall(assoc.data_to_send())
        faults: list[FaultReceived] = []
        while not faults:
            faults = [e for e in _receive(sock, assoc) if isinstance(e, FaultReceived)]
    assert [(f.call_id, f.status) for f in faults] == [(cid, const.NCA_S_FAULT_CANCEL)]
    assert impl.children_cancelled.wait(5) and impl.outer_cancelled.wait(5)


def test_a_call_cancelled_in_the_read_that_brought_it_is_still_answered(
    served: tuple[ServerThread, WorldServer],
) -> None:
    # the request and its co_cancel in one write: the task is cancelled only once it has started
    srv, _ = served
    sock, assoc = _bound(srv.port)
    with sock:
        cid = assoc.request(0, 3, b"")
        assoc.cancel(cid)
        sock.sendall(assoc.data_to_send())
        faults: list[FaultReceived] = []
        while not faults:
            faults = [e for e in _receive(sock, assoc) if isinstance(e, FaultReceived)]
    assert [(f.call_id, f.status) for f in faults] == [(cid, const.NCA_S_FAULT_CANCEL)]


def test_an_orphaned_call_is_cancelled_silently(served: tuple[ServerThread, WorldServer]) -> None:
    srv, impl = served
    sock, assoc = _bound(srv.port)
    with sock:
        cid = assoc.request(0, 3, b"")
        sock.sendall(assoc.data_to_send())
        assert impl.held.wait(5)
        assoc.orphan(cid)
        sock.sendall(assoc.data_to_send())
        assert impl.outer_cancelled.wait(5)
        # nothing answers the orphaned call: the next call's answer is the next PDU
        nxt = assoc.request(0, 0, b"")
        sock.sendall(assoc.data_to_send())
        events: list[object] = []
        while not events:
            events = _receive(sock, assoc)
    assert [getattr(e, "call_id", None) for e in events] == [nxt]
    assert not any(isinstance(e, FaultReceived) for e in events)
