"""Protocol towers (C706 Appendix L, MS-RPCE 3.1.3.5.3): where an interface listens, as octets.

    u16 floor_count, then per floor: u16 lhs_len, lhs, u16 rhs_len, rhs      (lengths little-endian)

    floor 1  0x0d + interface UUID + u16 major        rhs: u16 minor
    floor 2  0x0d + transfer syntax UUID + u16 major  rhs: u16 minor
    floor 3  0x0b connection-oriented / 0x0a datagram / 0x0c local RPC     rhs: u16 minor (0)
    floor 4  0x07 TCP / 0x08 UDP / 0x1f HTTP: rhs port, big-endian;  0x0f named pipe / 0x10 local
             endpoint name: rhs NUL-terminated string
    floor 5  0x09 IP: rhs 4 octets IPv4 (16 octets: IPv6, our extension; C706 defines no IPv6
             floor and MS-RPCE 3.1.3.5.3 tells servers to ignore the address anyway);
             0x11 NetBIOS host name: NUL-terminated string

Decoding is total: any octets give a :class:`Tower` or raise :class:`TowerError`.
"""

from __future__ import annotations

import ipaddress
import struct
import uuid
from dataclasses import dataclass
from typing import Final

from .._errors import RpcError
from ..pdu.constants import NDR20
from ..pdu.syntax import SyntaxId

__all__ = ["Tower", "TowerError", "tcp_tower"]

UUID_FLOOR: Final = 0x0D
NCACN: Final = 0x0B
NCADG: Final = 0x0A
NCALRPC: Final = 0x0C
TCP: Final = 0x07
UDP: Final = 0x08
HTTP: Final = 0x1F
PIPE: Final = 0x0F
LRPC_ENDPOINT: Final = 0x10
IP: Final = 0x09
NETBIOS: Final = 0x11

# MS-RPCE 3.1.3.5.3: towers with more than six floors SHOULD be rejected.
MAX_FLOORS: Final = 6

# protseq -> (rpc protocol floor, endpoint floor, address floor or None)
_SHAPES: Final = {
    "ncacn_ip_tcp": (NCACN, TCP, IP),
    "ncadg_ip_udp": (NCADG, UDP, IP),
    "ncacn_http": (NCACN, HTTP, IP),
    "ncacn_np": (NCACN, PIPE, NETBIOS),
    "ncalrpc": (NCALRPC, LRPC_ENDPOINT, None),
}
_BY_FLOORS: Final = {(rpc, ep): name for name, (rpc, ep, _) in _SHAPES.items()}


class TowerError(RpcError):
    """Tower octets that cannot be read, or a tower that cannot be built."""


@dataclass(frozen=True, slots=True)
class Tower:
    """A decoded tower: interface, transfer syntax, protocol sequence, endpoint, host address.

    ``endpoint`` is the port number as text for TCP / UDP / HTTP, else the pipe or endpoint name.
    """

    interface: SyntaxId
    transfer_syntax: SyntaxId
    protseq: str
    endpoint: str = ""
    host: str = ""

    @property
    def port(self) -> int | None:
        return int(self.endpoint) if self.endpoint.isdigit() else None

    @property
    def binding(self) -> str:
        """The string binding this tower names (``ncacn_ip_tcp:127.0.0.1[49152]``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.protseq}:{host}[{self.endpoint}]"

    def with_address(self, host: str, endpoint: str | None = None) -> Tower:
        return Tower(
            self.interface,
            self.transfer_syntax,
            self.protseq,
            self.endpoint if endpoint is None else endpoint,
            host,
        )

    def encode(self) -> bytes:
        """The tower octets."""
        shape = _SHAPES.get(self.protseq)
        if shape is None:
            raise TowerError(f"no tower shape for protocol sequence {self.protseq!r}")
        rpc, ep_floor, addr_floor = shape
        floors = [
            _floor(
                bytes([UUID_FLOOR]) + _uuid_version(self.interface),
                struct.pack("<H", self.interface.version[1]),
            ),
            _floor(
                bytes([UUID_FLOOR]) + _uuid_version(self.transfer_syntax),
                struct.pack("<H", self.transfer_syntax.version[1]),
            ),
            _floor(bytes([rpc]), b"\0\0"),
        ]
        if ep_floor in (TCP, UDP, HTTP):
            port = int(self.endpoint or 0)
            if not 0 <= port <= 0xFFFF:
                raise TowerError(f"port {port} is out of range")
            floors.append(_floor(bytes([ep_floor]), struct.pack(">H", port)))
        else:
            floors.append(_floor(bytes([ep_floor]), _cstring(self.endpoint)))
        if addr_floor == IP:
            try:
                addr = ipaddress.ip_address(self.host or "0.0.0.0")
            except ValueError:
                # a decoded tower may name its host in a NetBIOS floor (found by fuzzing)
                raise TowerError(f"host {self.host!r} is not an IP address") from None
            floors.append(_floor(bytes([IP]), addr.packed))
        elif addr_floor == NETBIOS:
            floors.append(_floor(bytes([NETBIOS]), _cstring(self.host)))
        return struct.pack("<H", len(floors)) + b"".join(floors)

    @classmethod
    def decode(cls, octets: bytes) -> Tower:
        """Read tower octets (as found in twr_t.tower_octet_string)."""
        floors = _floors(octets)
        if len(floors) < 3:
            raise TowerError(f"a tower needs at least 3 floors, this one has {len(floors)}")
        interface = _syntax_floor(floors[0], "interface")
        transfer = _syntax_floor(floors[1], "transfer syntax")
        rpc = floors[2][0][:1]
        ep = floors[3][0][:1] if len(floors) > 3 else b""
        name = _BY_FLOORS.get((rpc[0] if rpc else -1, ep[0] if ep else -1))
        if name is None:
            ids = [f"0x{f[0][0]:02x}" for f in floors if f[0]]
            raise TowerError(f"unknown protocol floors {', '.join(ids)}")
        endpoint = ""
        rhs = floors[3][1]
        if ep[0] in (TCP, UDP, HTTP):
            if len(rhs) != 2:
                raise TowerError(f"a port floor needs 2 octets, has {len(rhs)}")
            endpoint = str(struct.unpack(">H", rhs)[0])
        else:
            endpoint = _read_cstring(rhs)
        host = ""
        if len(floors) > 4:
            lhs, rhs = floors[4]
            if lhs[:1] == bytes([IP]):
                if len(rhs) not in (4, 16):
                    raise TowerError(f"an IP floor needs 4 or 16 octets, has {len(rhs)}")
                host = str(ipaddress.ip_address(rhs))
            elif lhs[:1] == bytes([NETBIOS]):
                host = _read_cstring(rhs)
        return cls(interface, transfer, name, endpoint, host)


def tcp_tower(interface: SyntaxId, port: int = 0, host: str = "0.0.0.0") -> Tower:
    """An ncacn_ip_tcp tower over NDR 2.0."""
    return Tower(interface, NDR20, "ncacn_ip_tcp", str(port), host)


def _uuid_version(s: SyntaxId) -> bytes:
    return s.uuid.bytes_le + struct.pack("<H", s.version[0])


def _floor(lhs: bytes, rhs: bytes) -> bytes:
    return struct.pack("<H", len(lhs)) + lhs + struct.pack("<H", len(rhs)) + rhs


def _cstring(text: str) -> bytes:
    return text.encode("latin-1") + b"\0"


def _read_cstring(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("latin-1")


def _floors(octets: bytes) -> list[tuple[bytes, bytes]]:
    if len(octets) < 2:
        raise TowerError("a tower needs its floor count")
    (count,) = struct.unpack_from("<H", octets, 0)
    if count > MAX_FLOORS:
        raise TowerError(f"{count} floors: more than {MAX_FLOORS} (MS-RPCE 3.1.3.5.3)")
    pos = 2
    floors = []
    for i in range(count):
        parts = []
        for side in ("lhs", "rhs"):
            if pos + 2 > len(octets):
                raise TowerError(f"floor {i + 1}: {side} length is missing")
            (n,) = struct.unpack_from("<H", octets, pos)
            pos += 2
            if pos + n > len(octets):
                raise TowerError(f"floor {i + 1}: {side} of {n} octets runs past the tower")
            parts.append(bytes(octets[pos : pos + n]))
            pos += n
        floors.append((parts[0], parts[1]))
    return floors


def _syntax_floor(floor: tuple[bytes, bytes], what: str) -> SyntaxId:
    lhs, rhs = floor
    if len(lhs) != 19 or lhs[0] != UUID_FLOOR or len(rhs) != 2:
        raise TowerError(f"the {what} floor is not a UUID floor (lhs {len(lhs)} octets, rhs {len(rhs)})")
    major = struct.unpack_from("<H", lhs, 17)[0]
    minor = struct.unpack("<H", rhs)[0]
    return SyntaxId(uuid.UUID(bytes_le=lhs[1:17]), (major, minor))
