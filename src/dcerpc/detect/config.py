"""The detectors' settings: each detector's threshold and window, and what they share.

The defaults give no alert on benign traffic (our client, Samba's clients and smbtorture rpc.echo,
impacket at every auth level: tests/detect/ and tests/interop/ run them) and fire on one run of
each attack docs/detection.md describes. The config file's ``[detect]`` section
(cli/config.py's ``DetectFile``) overrides any of them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from .engine import Rule

__all__ = ["DETECTORS", "LOCAL_NETWORKS", "Settings"]

DETECTORS: Final[dict[str, tuple[Rule, str]]] = {
    "epm_enumeration": (
        Rule(1, 60.0),
        "ept_lookup over all entries or by odd max_ents; ept_map of many interfaces",
    ),
    "mgmt_probe": (Rule(1, 300.0), "mgmt inq_if_ids from outside the local networks; stop_server_listening"),
    "interface_brute_force": (Rule(10, 60.0), "abstract syntaxes rejected"),
    "opnum_sweep": (
        Rule(10, 60.0),
        "opnums of one interface refused (nca_s_op_rng_error), their stubs undecodable "
        "(rpc_x_bad_stub_data), or empty stubs faulted",
    ),
    "version_sweep": (Rule(5, 60.0), "versions of one interface proposed"),
    "unmapped_dynamic_port": (Rule(1, 300.0), "a bind on a dynamic port no ept_map answer named"),
    "port_scan": (Rule(20, 60.0), "connections to RPC ports without a bind"),
    "auth_spraying": (Rule(5, 300.0), "users whose authentication failed"),
    "malformed_pdus": (Rule(6, 60.0), "protocol violations (and nca_s_proto_error faults answering them)"),
    "blaster_activation": (Rule(1, 300.0), "DCOM activations with an overlong or UNC-shaped name"),
    "fragment_overflow": (Rule(1, 300.0), "requests whose fragments' sizes are inconsistent or overflow"),
    "service_creation": (Rule(1, 300.0), "services created remotely (svcctl)"),
    "task_registration": (Rule(1, 300.0), "tasks registered remotely (atsvc, ITaskSchedulerService, sasec)"),
    "zerologon": (Rule(4, 60.0), "Netlogon challenges and authentications with an all-zero credential"),
}
"""Every detector: its default rule, and what it counts (the alert's reason begins so)."""

LOCAL_NETWORKS: Final = (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
    "::1/128", "fc00::/7", "fe80::/10",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the detectors read (defaults: :data:`DETECTORS` and the values below)."""

    rules: Mapping[str, Rule] = field(default_factory=lambda: {n: r for n, (r, _) in DETECTORS.items()})
    max_sources: int = 10_000  # windows per detector (engine.py says what this bounds)
    local_networks: tuple[str, ...] = LOCAL_NETWORKS  # mgmt_probe: inq_if_ids from these is not a probe
    rpc_ports: frozenset[int] = frozenset({135, 593})  # port_scan, offline: ports counted as RPC's
    dynamic_ports: tuple[int, int] = (49152, 65535)  # unmapped_dynamic_port
    map_threshold: int = 10  # epm_enumeration: distinct interfaces ept_map'ed
    huge_max_ents: int = 4096  # epm_enumeration: a lookup asking for this many entries or more
    max_name: int = 256  # blaster_activation: characters of a name that is overlong
    max_fragments: int = 512  # fragment_overflow: fragments of one call ...
    small_fragment: int = 512  # ... of at most this many stub octets on average
    max_alloc_hint: int = 0x7FFFFFFF  # fragment_overflow: an alloc_hint beyond this (signed overflow)
    max_call_octets: int = 1 << 30  # fragment_overflow: a call's stub reassembled beyond this (1 GiB)

    @classmethod
    def of(cls, rules: Mapping[str, Rule] | None = None, **given: object) -> Settings:
        """Settings with some rules replaced (the rest default) and any other field given."""
        merged = {n: r for n, (r, _) in DETECTORS.items()}
        if rules:
            unknown = set(rules) - set(merged)
            if unknown:
                raise ValueError(f"unknown detectors: {', '.join(sorted(unknown))}")
            merged.update(rules)
        return cls(rules=merged, **given)  # type: ignore[arg-type]

    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(n, strict=False) for n in self.local_networks]


def is_local(ip: str, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """``ip`` is in one of ``networks`` (an unreadable address is not)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in n for n in networks if n.version == addr.version)
