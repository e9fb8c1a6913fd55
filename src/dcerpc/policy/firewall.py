"""Packet-filter rules that match a host's configuration: its RPC ports, open to the source networks
its policy lets connect (nftables or iptables text; ``dcerpc firewall`` prints them).

The ports: TCP and UDP ``epm_port`` (135), then the pinned service ports and, unless every service
is pinned, the dynamic range. The sources follow the policy's accept-time decision
(``Policy.decide`` on what a connection's first packet shows: its source and transport), rule by
rule in the policy's order:

    a rule on source (and transport) only        its action, for those sources: accept or drop
    any other allow or audit rule                accept its sources (the server decides the rest)
    any other deny rule                          nothing: it may not apply to every connection
    the end                                      the default action

so the filter drops exactly the connections the server would close at accept, sooner and cheaper,
and lets through every one the server might serve. Visibility rules and ncalrpc-only rules have
nothing to do with packets and are left out. Rate limits are the server's (``[rate_limit]``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from .rules import Action, Network, Policy, Rule

__all__ = ["Ports", "Verdict", "describe", "iptables", "nftables", "verdicts"]

_NET_TRANSPORTS = frozenset({"ncacn_ip_tcp", "ncadg_ip_udp"})


@dataclass(frozen=True, slots=True)
class Ports:
    """What the host listens on: the mapper's port, pinned ports, the dynamic range (or None)."""

    epm: int = 135
    pinned: tuple[int, ...] = ()
    dynamic: tuple[int, int] | None = (49152, 65535)

    def tcp(self) -> list[str]:
        out = [str(self.epm), *(str(p) for p in sorted(set(self.pinned)) if p != self.epm)]
        if self.dynamic is not None:
            out.append(f"{self.dynamic[0]}-{self.dynamic[1]}")
        return out


@dataclass(frozen=True, slots=True)
class Verdict:
    """One filter rule: these sources (None: any) get ``accept`` (True) or ``drop``."""

    sources: tuple[Network, ...] | None
    accept: bool
    note: str = ""


def verdicts(policy: Policy | None) -> list[Verdict]:
    """The policy's accept-time decisions as filter rules, in order (see the module docstring)."""
    if policy is None:
        return [Verdict(None, True, "no policy: everything the server takes")]
    out: list[Verdict] = []
    for i, rule in enumerate(policy.rules):
        if rule.epm_interfaces is not None:
            continue  # visibility: not a packet's business
        if rule.transports is not None and not rule.transports & _NET_TRANSPORTS:
            continue  # ncalrpc only
        note = _note(i, rule)
        if _only_source(rule):
            out.append(Verdict(rule.sources, rule.action is not Action.DENY, note))
        elif rule.action is not Action.DENY:
            out.append(Verdict(rule.sources, True, note + " (the server decides the rest)"))
        if out and out[-1].sources is None:
            return out  # nothing after a rule for every source is reached
    out.append(Verdict(None, policy.default is not Action.DENY, f"the default: {policy.default.value}"))
    return out


def _only_source(rule: Rule) -> bool:
    return all(
        getattr(rule, key) is None
        for key in ("interfaces", "versions", "opnums", "auth_types", "auth_levels", "principals")
    )


def _note(index: int, rule: Rule) -> str:
    where = f"rule {index + 1}" + (f" at line {rule.line}" if rule.line else "")
    return f"{where}: {rule.name}" if rule.name else where


def _split(sources: Iterable[Network]) -> tuple[list[str], list[str]]:
    v4 = [str(n) for n in sources if isinstance(n, ipaddress.IPv4Network)]
    v6 = [str(n) for n in sources if isinstance(n, ipaddress.IPv6Network)]
    return v4, v6


def nftables(ports: Ports, policy: Policy | None, table: str = "dcerpc") -> str:
    """An nftables ruleset (``nft -f``): a table of its own, an input hook that sends the RPC ports
    to a chain of the policy's verdicts. Other traffic is left to the host's other rules."""
    origin = policy.source if policy is not None and policy.source else "no policy file"
    lines = [
        f"# made by dcerpc firewall: the RPC ports, open to what the policy admits ({origin})",
        f"table inet {table}",
        f"delete table inet {table}",
        f"table inet {table} {{",
        "  chain rpc {",
    ]
    for v in verdicts(policy):
        verdict = "accept" if v.accept else "drop"
        lines.append(f"    # {v.note}")
        if v.sources is None:
            lines.append(f"    {verdict}")
            continue
        v4, v6 = _split(v.sources)
        if v4:
            lines.append(f"    ip saddr {{ {', '.join(v4)} }} {verdict}")
        if v6:
            lines.append(f"    ip6 saddr {{ {', '.join(v6)} }} {verdict}")
    lines += [
        "  }",
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        f"    tcp dport {{ {', '.join(ports.tcp())} }} ct state new jump rpc",
        f"    udp dport {ports.epm} jump rpc",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def iptables(ports: Ports, policy: Policy | None, chain: str = "DCERPC") -> tuple[str, str]:
    """``iptables-restore`` and ``ip6tables-restore`` input (``--noflush``: other rules stay)."""
    out4, out6 = _restore(ports, policy, chain, 4), _restore(ports, policy, chain, 6)
    return out4, out6


def _restore(ports: Ports, policy: Policy | None, chain: str, family: int) -> str:
    tcp = ",".join(p.replace("-", ":") for p in ports.tcp())
    lines = [
        "# made by dcerpc firewall",
        "*filter",
        f":{chain} - [0:0]",
        f"-A INPUT -p tcp -m multiport --dports {tcp} -m conntrack --ctstate NEW -j {chain}",
        f"-A INPUT -p udp --dport {ports.epm} -j {chain}",
    ]
    for v in verdicts(policy):
        target = "ACCEPT" if v.accept else "DROP"
        if v.sources is None:
            lines.append(f"-A {chain} -j {target}")
            continue
        v4, v6 = _split(v.sources)
        for net in v4 if family == 4 else v6:
            lines.append(f"-A {chain} -s {net} -j {target}")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def describe(ports: Ports, policy: Policy | None) -> list[dict[str, object]]:
    """The verdicts as data (``dcerpc firewall --json``)."""
    return [
        {
            "sources": None if v.sources is None else [str(n) for n in v.sources],
            "accept": v.accept,
            "note": v.note,
        }
        for v in verdicts(policy)
    ]
