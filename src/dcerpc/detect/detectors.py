"""The detectors: which events are evidence of which attack (docs/detection.md lists them).

:class:`Detectors` takes one event at a time, in the shape both the monitor's records
(``monitor.records.to_event``) and the server's audit events have (ECS ``event.action``,
``source.ip``, ``destination.*``, ``user.*``; ``dcerpc.interface``, ``.opnum``, ``.fault``,
``.contexts``, ``.violation``, ...), with the features :func:`~.stubs.inspect` read of the call's
stub when there was one, and returns the alerts it completed (:class:`~.engine.Alert`). Each
detector is a few lines that turn an event into :meth:`Engine.hit` calls; the engine counts in
windows and bounds the memory.

Besides the engine's windows, two detectors remember a little, bounded the same way (least
recently used first), :data:`MAX_REMEMBERED` entries each: ``unmapped_dynamic_port`` the
(address, port) pairs ept_map answers (and DCOM's string bindings) named and the connections
already judged, ``port_scan`` the server endpoints seen carrying DCE/RPC: a capture of a million
answers, connections or servers costs that many entries.
"""

from __future__ import annotations

import itertools
import uuid
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import Any, Final

from .config import Settings, is_local
from .engine import Alert, Engine
from .stubs import ACTIVATION, EPM, NETLOGON, REMOTE_ACTIVATION, SVCCTL

__all__ = ["MAX_REMEMBERED", "Detectors"]

MAX_REMEMBERED: Final = 65536

MGMT: Final = uuid.UUID("afa8bd80-7d8a-11c9-bef4-08002b102989")
ATSVC: Final = uuid.UUID("1ff70682-0a51-30e8-076d-740be8cee98b")
TASK_SCHEDULER: Final = uuid.UUID("86d35949-83c9-4044-b424-db363231fd0c")
SASEC: Final = uuid.UUID("378e52b0-c0a9-11cf-822d-00aa0051e40f")

_CREATE_SERVICE: Final = {12: "RCreateServiceW", 24: "RCreateServiceA", 45: "RCreateServiceWOW64W"}
_TASKS: Final = {
    (ATSVC, 0): "NetrJobAdd",
    (TASK_SCHEDULER, 1): "SchRpcRegisterTask",
    (SASEC, 0): "SASetAccountInformation",
}
_TAGS: Final = {
    EPM: "epm", MGMT: "mgmt", SVCCTL: "svcctl", ATSVC: "task", TASK_SCHEDULER: "task", SASEC: "task",
    NETLOGON: "netlogon", REMOTE_ACTIVATION: "activation", ACTIVATION: "activation",
}  # fmt: skip
"""The interfaces a detector reads calls of: one dict lookup per call finds whether it is one."""
_ABSTRACT_REJECTED: Final = (1, "abstract_syntax_not_supported")  # provider reason (C706 12.6.3.1)
_NOT_MALFORMED: Final = frozenset({
    "handshake_rate", "alter_handshake_rate", "out_of_resources", "response_out_of_resources",
    "too_many_calls",
    "auth_refused", "alter_auth_refused", "auth3_refused", "auth_invalid", "auth_not_finished",
    "verify_invalid", "verify_not_finished", "signature", "auth_type_unavailable", "unsupported_level",
    "alter_level_unavailable",
})  # fmt: skip
"""Violations that are not a malformed PDU: the server's limits speaking, and authentication that
failed or asked for what is not served (a wrong password's auth3 and the request after it: the
evidence of auth_spraying, not of malformed_pdus)."""
_LOGON_REFUSED: Final = frozenset({
    "rpc_s_access_denied", "rpc_s_sec_pkg_error", "nca_s_proto_error",
})  # fmt: skip
"""Faults that, on a call made under an NTLM logon whose user the monitor read, say the logon
failed: Windows and our server answer the request after a refused AUTHENTICATE with access denied
(or rpc_s_sec_pkg_error for a bad signature); Samba answers it with nca_s_proto_error and hangs up
(its connection's auth is marked invalid after a failed auth3, dcesrv_core.c)."""
_SWEPT: Final = frozenset({"nca_s_op_rng_error", "rpc_x_bad_stub_data"})
"""Faults that, on many opnums of one interface, are a sweep: the opnum is not served, or it is and
the stub is not its operation's (smbtorture rpc.scanner sends one 1000-octet 0xFF stub to opnum 0,
1, 2, ... of each interface; a client that knows the interface sends each operation its own)."""
_FRAGMENT_VIOLATIONS: Final = frozenset({"call_too_large", "request_too_long"})
"""Server-side violations of a call's size (inline: the server reassembles, so these are what it
sees of an oversized or overflowing fragment run)."""


_UUIDS: dict[str, uuid.UUID | None] = {}  # interface UUIDs as events spell them, read once (bounded)


def _uuid(text: Any) -> uuid.UUID | None:
    if not isinstance(text, str):
        return None
    found = _UUIDS.get(text, False)
    if found is False:
        try:
            found = uuid.UUID(text)
        except ValueError:
            found = None
        if len(_UUIDS) >= 4096:
            _UUIDS.clear()
        _UUIDS[text] = found
    return found  # type: ignore[return-value]


class Detectors:
    """Every enabled detector over one stream of events (see the module)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = s = settings or Settings()
        self.engine = Engine(s.rules, s.max_sources)
        self._networks = s.networks()
        self._seq = itertools.count()  # keys of detectors that count events, not distinct things
        self._mapped: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._judged: OrderedDict[Hashable, None] = OrderedDict()
        self._rpc: OrderedDict[tuple[str, int], None] = OrderedDict()  # server endpoints seen with DCE/RPC

    @property
    def counts(self) -> dict[str, int]:
        """Alerts made so far, by detector."""
        return self.engine.counts

    def feed(
        self, ev: Mapping[str, Any], ts: float, features: Mapping[str, Any] | None = None
    ) -> list[Alert]:
        """One event at ``ts`` (its time, seconds since the epoch); the alerts it completed."""
        action = ev.get("event", {}).get("action")
        src = ev.get("source", {}).get("ip") or "local"
        dcerpc = ev.get("dcerpc", {})
        if action in ("call", "bind", "alter-context"):
            self._carries_rpc(ev)
        if action == "call":
            self._call(ev, src, ts, dcerpc, features or {})
        elif action in ("bind", "alter-context"):
            self._bind(ev, src, ts, dcerpc, action == "bind")
        elif action == "authentication":
            if ev.get("event", {}).get("outcome") == "failure":
                self._auth_failed(ev, src, ts)
        elif action == "protocol-violation":
            self._violation(ev, src, ts, dcerpc)
        elif action == "association-close":
            self._closed(ev, src, ts, dcerpc)
        return self.engine.take() if self.engine.alerts else []

    # --- calls -----------------------------------------------------------------------------------

    def _call(
        self, ev: Mapping[str, Any], src: str, ts: float, d: Mapping[str, Any], f: Mapping[str, Any]
    ) -> None:
        hit = self.engine.hit
        s = self.settings
        iface = d.get("interface", {})
        u = _uuid(iface.get("uuid"))
        opnum = d.get("opnum")
        name = iface.get("name") or str(u)
        dst = ev.get("destination", {})
        where = (dst["ip"], dst.get("port")) if dst.get("ip") else None
        status = d.get("fault", {}).get("status")
        tag = _TAGS.get(u) if u is not None else None
        if f.get("epm.ports") and tag != "epm":  # DCOM's string bindings: ports learned as from the map
            self._learn(f["epm.ports"], where)
        if tag is None:
            pass
        elif tag == "epm":
            self._epm(src, ts, opnum, f, where)
        elif tag == "mgmt" and opnum in (0, 3):
            if opnum == 3:
                hit("mgmt_probe", src, ts, next(self._seq), "stop_server_listening",
                    "mgmt stop_server_listening: a request to stop the server",
                    destination=where)  # fmt: skip
            elif not is_local(src, self._networks):
                hit("mgmt_probe", src, ts, next(self._seq), "inq_if_ids",
                    "mgmt inq_if_ids from outside the local networks: the interfaces served, listed",
                    destination=where)  # fmt: skip
        elif tag == "svcctl" and opnum in _CREATE_SERVICE and d.get("transport") != "ncalrpc":
            service = f.get("svcctl.service")
            sample = f"{_CREATE_SERVICE[opnum]} {service}" if service else _CREATE_SERVICE[opnum]
            hit("service_creation", src, ts, next(self._seq), sample,
                "a service created over the network (svcctl)", destination=where)  # fmt: skip
        elif tag == "task" and (u, opnum) in _TASKS and d.get("transport") != "ncalrpc":
            hit("task_registration", src, ts, next(self._seq), _TASKS[u, opnum],  # type: ignore[index]
                "a task registered over the network", destination=where)  # fmt: skip
        elif tag == "netlogon" and f.get("netlogon.zero_credential"):
            op: dict[Any, str] = {
                4: "NetrServerReqChallenge", 15: "NetrServerAuthenticate2", 26: "NetrServerAuthenticate3"
            }  # fmt: skip
            sample = f"{op.get(opnum, str(opnum))} {f.get('netlogon.computer', '')}".strip()
            hit("zerologon", src, ts, next(self._seq), sample,
                "Netlogon challenges and authentications with an all-zero credential (CVE-2020-1472)",
                destination=where)  # fmt: skip
        elif tag == "activation" and opnum in ((0,) if u == REMOTE_ACTIVATION else (3, 4)):
            for text, count in f.get("activation.names", ()):
                if text.startswith("\\\\") or count > s.max_name:
                    shape = "UNC-shaped" if text.startswith("\\\\") else f"overlong ({count} characters)"
                    hit("blaster_activation", src, ts, next(self._seq), f"{count}:{text}",
                        f"a DCOM activation with an {shape} name (MS03-026)", destination=where)  # fmt: skip
                    break
        if status in _SWEPT or (d.get("octets", {}).get("in") == 0 and status is not None):
            hit("opnum_sweep", src, ts, opnum, f"{name} opnum {opnum} {status}",
                "opnums of one interface refused", group=u, destination=where)  # fmt: skip
        if status is not None:
            if ev.get("user", {}).get("name"):
                if status in _LOGON_REFUSED:
                    self._failed_user(ev, src, ts, f"{status} on {name}")
            elif status == "nca_s_proto_error":
                # the server's word that the client broke the protocol: a malformed PDU it saw
                self.engine.hit("malformed_pdus", src, ts, next(self._seq), f"{status} on {name}",
                                "protocol violations", destination=where)  # fmt: skip
        self._fragments(src, ts, d, where)

    def _epm(self, src: str, ts: float, opnum: Any, f: Mapping[str, Any], where: Any) -> None:
        hit = self.engine.hit
        s = self.settings
        reason = "the endpoint map enumerated"
        if opnum == 2:
            inquiry, max_ents = f.get("epm.inquiry_type"), f.get("epm.max_ents")
            if inquiry == 0:
                hit("epm_enumeration", src, ts, next(self._seq), "ept_lookup RPC_C_EP_ALL_ELTS",
                    reason + " (ept_lookup of all elements)", destination=where)  # fmt: skip
            elif max_ents is not None and (max_ents <= 1 or max_ents >= s.huge_max_ents):
                hit("epm_enumeration", src, ts, next(self._seq), f"ept_lookup max_ents {max_ents}",
                    reason + f" (ept_lookup for {max_ents} entries)", destination=where)  # fmt: skip
            elif f.get("epm.handle"):
                hit("epm_enumeration", src, ts, next(self._seq), "ept_lookup with a handle",
                    reason + " (ept_lookup continued with its handle)", destination=where)  # fmt: skip
        elif opnum == 3:
            mapped = f.get("epm.map_interface")
            if mapped:
                hit("epm_enumeration", src, ts, mapped, f"ept_map {mapped}",
                    reason + " (ept_map of many interfaces)", group="map", destination=where,
                    threshold=s.map_threshold)  # fmt: skip
            self._learn(f.get("epm.ports", ()), where)

    def _learn(self, ports: Any, where: Any) -> None:
        """Ports an answer named (an ept_map's towers, DCOM's string bindings): not unmapped."""
        server = where[0] if where else ""
        for host, port in ports:
            key = (host if host not in ("", "0.0.0.0", "::") else server, port)
            self._mapped.pop(key, None)
            self._mapped[key] = None
            if len(self._mapped) > MAX_REMEMBERED:
                self._mapped.popitem(last=False)

    def _carries_rpc(self, ev: Mapping[str, Any]) -> None:
        """The event's server endpoint carries DCE/RPC (port_scan's ports, offline)."""
        dst = ev.get("destination", {})
        if dst.get("ip") and dst.get("port") is not None:
            key = (dst["ip"], dst["port"])
            if key in self._rpc:
                self._rpc.move_to_end(key)
            else:
                self._rpc[key] = None
                if len(self._rpc) > MAX_REMEMBERED:
                    self._rpc.popitem(last=False)

    def _fragments(self, src: str, ts: float, d: Mapping[str, Any], where: Any) -> None:
        s = self.settings
        frags = d.get("fragments", {}).get("in", 0)
        octets = d.get("octets", {}).get("in", 0)
        hint = d.get("alloc_hint")
        why = None
        if hint is not None and hint > s.max_alloc_hint:
            why = f"alloc_hint {hint:#x} beyond 2^31"
        elif d.get("alloc_hint_grew"):
            why = "a continuation's alloc_hint above its first fragment's"
        elif octets > s.max_call_octets:
            why = f"{octets} stub octets in {frags} fragments"
        elif frags >= s.max_fragments and octets <= frags * s.small_fragment:
            why = f"{frags} fragments of {octets} stub octets"
        if why is not None:
            self.engine.hit("fragment_overflow", src, ts, next(self._seq), why,
                            "a request's fragments inconsistent or overflowing (CVE-2022-26809)",
                            destination=where)  # fmt: skip

    # --- binds, authentication, violations, connections ------------------------------------------

    def _bind(self, ev: Mapping[str, Any], src: str, ts: float, d: Mapping[str, Any], first: bool) -> None:
        hit = self.engine.hit
        dst = ev.get("destination", {})
        where = (dst["ip"], dst.get("port")) if dst.get("ip") else None
        for ctx in d.get("contexts", ()):
            # the monitor's contexts hold uuid/version/name; the server's accepted ones an "interface"
            iface = ctx.get("interface", ctx)
            u, version = iface.get("uuid"), iface.get("version")
            label = f"{iface.get('name') or u} {version}" if u else f"context {ctx.get('id')}"
            if u and version:
                hit("version_sweep", src, ts, version, label, "versions of one interface proposed",
                    group=u, destination=where)  # fmt: skip
            if ctx.get("result") == "rejected" and ctx.get("reason") in _ABSTRACT_REJECTED:
                key = (u, version) if u else next(self._seq)
                hit("interface_brute_force", src, ts, key, label, "abstract syntaxes rejected",
                    destination=where)  # fmt: skip
            if ctx.get("result") in ("nak", "fault"):
                self._failed_user(ev, src, ts, f"bind {ctx.get('result')}")
        if first and where is not None and where[1] is not None:
            self._unmapped(ev, src, ts, d, where)

    def _unmapped(self, ev: Mapping[str, Any], src: str, ts: float, d: Mapping[str, Any], where: Any) -> None:
        lo, hi = self.settings.dynamic_ports
        if not lo <= where[1] <= hi or d.get("connection", {}).get("partial"):
            return
        conn = d.get("connection", {}).get("uid")
        if conn is None or conn in self._judged:
            return
        self._judged[conn] = None
        if len(self._judged) > MAX_REMEMBERED:
            self._judged.popitem(last=False)
        if (where[0], where[1]) in self._mapped:
            return
        ctx = (d.get("contexts") or [{}])[0]
        sample = f"{where[0]}:{where[1]} {ctx.get('name') or ctx.get('uuid')}"
        self.engine.hit("unmapped_dynamic_port", src, ts, where, sample,
                        "a bind on a dynamic port that no ept_map answer named",
                        destination=where)  # fmt: skip

    def _failed_user(self, ev: Mapping[str, Any], src: str, ts: float, how: str) -> None:
        user = ev.get("user", {})
        name = user.get("name")
        if not name:
            return
        who = f"{user.get('domain') or ''}\\{name}"
        self.engine.hit("auth_spraying", src, ts, who.lower(), f"{who} ({how})",
                        "authentication failed for many users")  # fmt: skip

    def _auth_failed(self, ev: Mapping[str, Any], src: str, ts: float) -> None:
        self._failed_user(ev, src, ts, str(ev.get("event", {}).get("reason") or "refused"))

    def _violation(self, ev: Mapping[str, Any], src: str, ts: float, d: Mapping[str, Any]) -> None:
        kind = d.get("violation")
        if d.get("sender") == "server" or not isinstance(kind, str):
            return
        dst = ev.get("destination", {})
        where = (dst["ip"], dst.get("port")) if dst.get("ip") else None
        if kind in _FRAGMENT_VIOLATIONS:
            self.engine.hit("fragment_overflow", src, ts, next(self._seq), kind,
                            "a request's fragments inconsistent or overflowing (CVE-2022-26809)",
                            destination=where)  # fmt: skip
        if kind not in _NOT_MALFORMED:
            self.engine.hit("malformed_pdus", src, ts, next(self._seq), kind, "protocol violations",
                            destination=where)  # fmt: skip

    def _closed(self, ev: Mapping[str, Any], src: str, ts: float, d: Mapping[str, Any]) -> None:
        assoc = d.get("association", {})
        if assoc.get("bound", True):
            return
        dst = ev.get("destination", {})
        port = dst.get("port")
        rpc = ev.get("network", {}).get("protocol") == "dcerpc" or (dst.get("ip"), port) in self._rpc
        where = (dst["ip"], None) if dst.get("ip") else None
        if not rpc and port not in self.settings.rpc_ports:
            # a connection to a port not known for RPC: a scan across a host's ports (nmap -sT) is
            # one too, counted by distinct ports so that reconnecting to one service is not
            self.engine.hit("port_scan", src, ts, (dst.get("ip"), port), f"port {port}",
                            "connections to many ports without a bind", group="ports",
                            destination=where)  # fmt: skip
            return
        self.engine.hit("port_scan", src, ts, next(self._seq), f"port {port}",
                        "connections to RPC ports without a bind", destination=where)  # fmt: skip
