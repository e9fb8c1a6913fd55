"""The endpoint mapper service over real sockets: paging, handles, permissions, registration, resolution."""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import dcerpc
from dcerpc import FaultError
from dcerpc.epm.host import EpmHost, HostConfig
from dcerpc.epm.idl import EPT_S_INVALID_ENTRY, EPT_S_NOT_REGISTERED, Epm, ept_entry_t, twr_t
from dcerpc.epm.map import Entry
from dcerpc.epm.register import register, towers_for
from dcerpc.epm.towers import Tower, tcp_tower
from dcerpc.ndr import ContextHandle
from dcerpc.pdu import constants as const
from dcerpc.rpcecho import Echo
from dcerpc.rpcecho.server import EchoServer
from dcerpc.server.ports import PortRange
from tests.epm.services import SERVICES

NIL = uuid.UUID(int=0)


def hosted(**config: object) -> Callable[[Callable[[EpmHost], Awaitable[None]]], None]:
    """Run a test coroutine against a fresh host (endpoint mapper on a random port)."""

    def wrap(test: Callable[[EpmHost], Awaitable[None]]) -> None:
        async def main() -> None:
            with tempfile.TemporaryDirectory() as tmp:
                cfg = HostConfig(epm_port=0, socket=str(Path(tmp) / "epm.sock"), **config)  # type: ignore[arg-type]
                host = EpmHost(cfg)
                await host.start()
                try:
                    await test(host)
                finally:
                    await host.close()

        asyncio.run(main())

    return wrap


def epm_binding(host: EpmHost) -> str:
    assert host.epm_address is not None
    return f"ncacn_ip_tcp:127.0.0.1[{host.epm_address[1]}]"


def fill(host: EpmHost, n: int) -> None:
    host.map.insert(
        Entry.make(NIL, tcp_tower(SERVICES[i % 64].__syntax__, 40000 + i, "127.0.0.1"), f"entry {i}")
        for i in range(n)
    )


def test_paging_through_a_large_map() -> None:
    @hosted()
    async def _(host: EpmHost) -> None:
        fill(host, 1200)
        async with await dcerpc.connect(epm_binding(host)) as conn:
            epm = await conn.bind(Epm)
            seen: list[ept_entry_t] = []
            handle = ContextHandle()
            pages = []
            while True:
                res = await epm.ept_lookup(0, None, None, 1, handle, 500)
                pages.append((res.num_ents, res.status, res.entry_handle.is_null))
                seen += res.entries
                handle = res.entry_handle
                if res.status != 0 or handle.is_null:
                    break
        # the mapper's own two entries (TCP and ncalrpc) come first
        assert pages == [(500, 0, False), (500, 0, False), (202, EPT_S_NOT_REGISTERED, True)]
        assert [e.annotation for e in seen[2:]] == [f"entry {i}" for i in range(1200)]


def test_a_first_page_that_holds_everything_is_status_0_and_a_null_handle() -> None:
    @hosted()
    async def _(host: EpmHost) -> None:
        fill(host, 5)
        async with await dcerpc.connect(epm_binding(host)) as conn:
            res = await (await conn.bind(Epm)).ept_lookup(0, None, None, 1, ContextHandle(), 500)
        assert (res.num_ents, res.status, res.entry_handle.is_null) == (7, 0, True)


def test_lookup_handles_belong_to_their_group() -> None:
    @hosted()
    async def _(host: EpmHost) -> None:
        fill(host, 20)
        async with (
            await dcerpc.connect(epm_binding(host)) as c1,
            await dcerpc.connect(epm_binding(host)) as c2,
        ):
            mine, other = await c1.bind(Epm), await c2.bind(Epm)
            res = await mine.ept_lookup(0, None, None, 1, ContextHandle(), 2)
            assert res.status == 0 and res.num_ents == 2 and not res.entry_handle.is_null
            with pytest.raises(FaultError) as e:
                await other.ept_lookup(0, None, None, 1, res.entry_handle, 2)
            assert e.value.status == const.NCA_S_FAULT_CONTEXT_MISMATCH
            freed = await mine.ept_lookup_handle_free(res.entry_handle)
            assert freed.entry_handle.is_null and freed.status == 0
            with pytest.raises(FaultError):
                await mine.ept_lookup(0, None, None, 1, res.entry_handle, 2)


def test_remote_insert_is_refused_unless_opened() -> None:
    entry = ept_entry_t(NIL, twr_t.of(tcp_tower(SERVICES[0].__syntax__, 1234, "127.0.0.1").encode()), "x")

    @hosted()
    async def closed(host: EpmHost) -> None:
        async with await dcerpc.connect(epm_binding(host)) as conn:
            epm = await conn.bind(Epm)
            assert await epm.ept_insert(1, [entry], False) == 5  # rpc_s_access_denied
            assert await epm.ept_delete(1, [entry]) == 5
        assert len(host.map) == 2  # only the mapper's own entries

    @hosted(epm_allow_insert=["127.0.0.0/8"])
    async def opened(host: EpmHost) -> None:
        async with await dcerpc.connect(epm_binding(host)) as conn:
            epm = await conn.bind(Epm)
            assert await epm.ept_insert(1, [entry], False) == 0
            assert len(host.map) == 3
        await asyncio.sleep(0.2)
        assert len(host.map) == 2  # the inserting association went, and its entries with it


def test_a_tower_that_decodes_but_cannot_be_encoded_is_an_invalid_entry() -> None:
    """An ncacn_ip_tcp tower naming its host in a NetBIOS floor: ept_insert and ept_mgmt_delete
    answer ept_s_invalid_entry, not a generic fault (found by fuzz_towers)."""
    octets = bytearray(tcp_tower(SERVICES[0].__syntax__, 1234, "127.0.0.1").encode())
    octets[octets.rindex(b"\x01\x00\x09\x04\x00") :] = b"\x01\x00\x11\x02\x00\x02\x00"
    tower = twr_t.of(bytes(octets))

    @hosted(epm_allow_insert=["127.0.0.0/8"])
    async def _(host: EpmHost) -> None:
        async with await dcerpc.connect(epm_binding(host)) as conn:
            epm = await conn.bind(Epm)
            assert await epm.ept_insert(1, [ept_entry_t(NIL, tower, "x")], False) == EPT_S_INVALID_ENTRY
            assert await epm.ept_mgmt_delete(False, None, tower) == EPT_S_INVALID_ENTRY
        assert len(host.map) == 2  # only the mapper's own entries


def test_an_unterminated_annotation_cannot_break_ept_lookup() -> None:
    """``char annotation[64]`` is 63 characters and a NUL; our decoder takes 64 octets without the
    NUL, and an entry inserted with such an annotation made every ept_lookup that reached it fault
    (its answer could not be encoded). The service keeps 63 (found by fuzz_ndr). Our client will not
    encode such a stub, so impacket sends it."""
    pytest.importorskip("impacket", reason="impacket is a dev dependency")
    from impacket.dcerpc.v5 import transport
    from impacket.uuid import uuidtup_to_bin

    op = Epm.operation_named("ept_insert")
    tower = twr_t.of(tcp_tower(SERVICES[0].__syntax__, 1234, "127.0.0.1").encode())
    stub = bytearray(op.encode_request(1, [ept_entry_t(NIL, tower, "x" * 63)], False))
    at = stub.index(b"x" * 63)
    stub[at - 4 : at] = (64).to_bytes(4, "little")  # actual_count 64
    stub[at + 63] = ord("y")  # where the NUL was: 64 characters, unterminated

    @hosted(epm_allow_insert=["127.0.0.0/8"])
    async def _(host: EpmHost) -> None:
        assert host.epm_address is not None
        dce = transport.DCERPCTransportFactory(f"ncacn_ip_tcp:127.0.0.1[{host.epm_address[1]}]").get_dce_rpc()
        await asyncio.to_thread(dce.connect)
        try:
            await asyncio.to_thread(dce.bind, uuidtup_to_bin((str(Epm.__syntax__.uuid), "3.0")))
            await asyncio.to_thread(dce.call, op.opnum, bytes(stub))
            assert await asyncio.to_thread(dce.recv) == bytes(4)  # inserted
            async with await dcerpc.connect(epm_binding(host)) as conn:
                epm = await conn.bind(Epm)
                found = await epm.ept_lookup(0, None, None, 1, ContextHandle(), 10)  # faulted
                assert found.num_ents == 3
                assert "x" * 63 in [e.annotation for e in found.entries]
        finally:
            await asyncio.to_thread(dce.disconnect)


def test_local_registration_lives_as_long_as_its_connection() -> None:
    @hosted()
    async def _(host: EpmHost) -> None:
        server = dcerpc.Server(SERVICES[1]())
        await server.listen_tcp("127.0.0.1", 0)
        reg = await register(
            towers_for([SERVICES[1].__syntax__], server.addresses), "svc1", socket_path=host.config.socket
        )
        assert [e.annotation for e in host.map].count("svc1") == 1
        await reg.conn.close()  # the process "dies": its socket closes
        for _ in range(50):
            if "svc1" not in [e.annotation for e in host.map]:
                break
            await asyncio.sleep(0.02)
        assert "svc1" not in [e.annotation for e in host.map]
        await server.close()


def test_ept_map_answers_the_connected_address_and_clients_resolve_through_it() -> None:
    @hosted()
    async def _(host: EpmHost) -> None:
        svc = await host.add_service(EchoServer())
        port = next(a[1][1] for a in svc.addresses if a[0] == "ncacn_ip_tcp")
        async with await dcerpc.connect(epm_binding(host)) as conn:
            epm = await conn.bind(Epm)
            res = await epm.ept_map(None, twr_t.of(tcp_tower(Echo.__syntax__).encode()), ContextHandle(), 4)
        assert res.status == 0 and res.num_towers == 1
        tower = Tower.decode(res.towers[0].tower_octet_string)  # type: ignore[union-attr]
        assert (tower.host, tower.port) == ("127.0.0.1", port)
        portless = f"ncacn_ip_tcp:127.0.0.1[epm_port={host.epm_address[1]}]"  # type: ignore[index]
        async with await dcerpc.connect(portless) as conn:
            assert await (await conn.bind(Echo)).AddOne(1) == 2
            assert conn.binding.port == port

        # the service moves: the cached port refuses, the client resolves again once
        await svc.close()
        host.map.delete([e for e in host.map if e.tower.interface == Echo.__syntax__])
        await host.add_service(EchoServer())
        async with await dcerpc.connect(portless) as conn:
            assert await (await conn.bind(Echo)).AddOne(2) == 3
            assert conn.binding.port != port


def test_fifty_services_get_fifty_distinct_ports_in_the_range() -> None:
    @hosted(ports=PortRange(43000, 43999))
    async def _(host: EpmHost) -> None:
        servers = [await host.add_service(SERVICES[i]()) for i in range(50)]
        ports = {a[1][1] for s in servers for a in s.addresses if a[0] == "ncacn_ip_tcp"}
        assert len(ports) == 50 and all(43000 <= p <= 43999 for p in ports)
        assert len(host.map) == 2 + 50
        async with await dcerpc.connect(f"ncacn_ip_tcp:127.0.0.1[epm_port={host.epm_address[1]}]") as conn:  # type: ignore[index]
            assert await (await conn.bind(SERVICES[37])).Twice(21) == 42


@pytest.mark.skipif(
    os.geteuid() != 0, reason="checking SO_PEERCRED acceptance needs to run as root or the owner"
)
def test_registration_over_ncalrpc_checks_peer_credentials() -> None:
    @hosted()
    async def _(host: EpmHost) -> None:
        host.epm.local_uids = {12345}  # nobody we are
        with pytest.raises(dcerpc.RpcError, match="refused"):
            await register([tcp_tower(SERVICES[2].__syntax__, 1)], socket_path=host.config.socket)
