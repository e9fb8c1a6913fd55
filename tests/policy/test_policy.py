"""Policy files and decisions, sans-IO: what a file means, how a bad one is refused (file, line,
key, reason), and that an early answer is exact: what is denied at accept or bind is denied for
every call that connection or context could make."""

from __future__ import annotations

import ipaddress
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcerpc.pdu.constants import AuthLevel, AuthType
from dcerpc.pdu.syntax import SyntaxId
from dcerpc.policy import UNKNOWN, Action, PolicyError, Subject, parse
from dcerpc.rpcecho import Echo

ECHO = Echo.__syntax__
EPM = SyntaxId(uuid.UUID("e1af8308-5d1f-11c9-91a4-08002b14a0fa"), (3, 0))
NET = ipaddress.ip_address("10.1.2.3")
OUTSIDE = ipaddress.ip_address("192.0.2.7")

EXAMPLE = r"""
default = "deny"

[groups]
admins = ['EXAMPLE\alice', "bob"]

[[rule]]
name = "the mapper for everyone"
action = "allow"
interface = ["epmapper", "mgmt"]

[[rule]]
name = "no sourcedata from outside"
action = "deny"
interface = "rpcecho"
opnum = [3, "5-6"]
source = "192.0.2.0/24"

[[rule]]
action = "audit"
interface = "60a15ec5-4de8-11d7-a637-005056a20182"
version = ">=1.0"
auth_level = "integrity"
principal = "@admins"

[[rule]]
action = "allow"
interface = "rpcecho"
source = ["10.0.0.0/8", "fd00::/8"]
transport = "tcp"

[[rule]]
action = "deny"
epm_interface = "rpcecho"
auth_type = "none"
"""


def call(
    source: object = NET,
    opnum: int = 0,
    auth: tuple[int, int] = (0, 1),
    principal: str | None = None,
    interface: SyntaxId = ECHO,
    transport: str = "ncacn_ip_tcp",
) -> Subject:
    return Subject(source, transport, interface, opnum, auth[0], auth[1], principal)  # type: ignore[arg-type]


def test_the_example_file_means_what_it_says() -> None:
    policy = parse(EXAMPLE, "example.toml")
    assert policy.default is Action.DENY and len(policy.rules) == 5
    assert policy.decide(call(interface=EPM, source=OUTSIDE)).action is Action.ALLOW
    # SourceData from outside: denied by rule 2; from the network: allowed by rule 4
    assert policy.decide(call(source=OUTSIDE, opnum=3)).action is Action.DENY
    assert policy.decide(call(opnum=3)).action is Action.ALLOW
    # an admin at integrity or above: audited (rule 3), from anywhere
    integrity = (AuthType.WINNT, AuthLevel.INTEGRITY)
    decided = policy.decide(call(source=OUTSIDE, auth=integrity, principal="EXAMPLE\\Alice"))
    assert decided.action is Action.AUDIT and decided.rule is policy.rules[2]
    assert policy.decide(call(source=OUTSIDE, auth=integrity, principal="OTHER\\alice")).action is Action.DENY
    assert (
        policy.decide(call(source=OUTSIDE, auth=integrity, principal="bob@EXAMPLE.COM")).action
        is Action.AUDIT
    )
    assert (
        policy.decide(call(source=OUTSIDE, auth=(10, AuthLevel.PACKET), principal="bob")).action
        is Action.DENY
    )
    # not over ncalrpc (rule 4 is TCP only), and nothing else allows it: the default
    assert policy.decide(call(source=None, transport="ncalrpc")).action is Action.DENY
    # IPv6 in the network
    assert policy.decide(call(source=ipaddress.ip_address("fd00::5"))).action is Action.ALLOW


def test_early_moments_decide_only_what_is_certain() -> None:
    policy = parse(EXAMPLE)
    # at accept, from outside: rule 1 (the mapper) may allow later: undecided, not denied
    early = policy.decide(Subject(OUTSIDE, "ncacn_ip_tcp"))
    assert not early.final and not early.denied
    # at bind of rpcecho from outside: rule 2 may deny (opnum unknown), rule 3 may audit: undecided
    assert not policy.decide(Subject(OUTSIDE, "ncacn_ip_tcp", ECHO)).final
    # over ncalrpc, interface unknown: rule 1 may allow it (the mapper)
    assert not policy.decide(Subject(None, "ncalrpc")).denied
    only_tcp = parse('default = "allow"\n[[rule]]\naction = "deny"\ntransport = "local"\n')
    assert only_tcp.decide(Subject(None, "ncalrpc")).denied
    assert only_tcp.decide(Subject(None, "ncalrpc")).final


def test_visibility_rules_answer_only_the_view_question() -> None:
    policy = parse(EXAMPLE)
    anonymous = Subject(OUTSIDE, "ncacn_ip_tcp", UNKNOWN, UNKNOWN, 0, 1, None)
    assert policy.visible(anonymous, ECHO.uuid).denied
    assert not policy.visible(anonymous, EPM.uuid).denied
    signed = Subject(OUTSIDE, "ncacn_ip_tcp", UNKNOWN, UNKNOWN, AuthType.WINNT, AuthLevel.INTEGRITY, "bob")
    assert not policy.visible(signed, ECHO.uuid).denied
    # and they decide no call
    assert policy.decide(call(opnum=0)).action is Action.ALLOW


@pytest.mark.parametrize(
    ("text", "line", "key", "words"),
    [
        ('default = "maybe"\n', 1, "default", "not an action"),
        ('colour = "red"\n', 1, "colour", "unknown key"),
        ('[[rule]]\naction = "allow"\n\nsource = "10.0.0.0/33"\n', 4, "rule 1: source", "not an address"),
        (
            '[[rule]]\naction = "allow"\n[[rule]]\nname = "x"\naction = "deny"\nopnum = "7-3"\n',
            6,
            "rule 2 (x): opnum",
            "0..65535",
        ),
        ('[[rule]]\naction = "allow"\ninterface = "nosuch"\n', 3, "rule 1: interface", "neither a UUID"),
        ('[[rule]]\naction = "allow"\nauth_level = "medium"\n', 3, "rule 1: auth_level", "not an auth level"),
        ('[[rule]]\naction = "allow"\nauth_type = "basic"\n', 3, "rule 1: auth_type", "not one of"),
        ('[[rule]]\naction = "allow"\nprincipal = "@nobody"\n', 3, "rule 1: principal", "no such group"),
        ('[[rule]]\naction = "allow"\nversion = "one"\n', 3, "rule 1: version", "not a version"),
        ('[[rule]]\naction = "allow"\nopnum = []\n', 3, "rule 1: opnum", "matches nothing"),
        ('[[rule]]\nname = "n"\n', 1, "rule 1 (n): action", "missing"),
        (
            '[[rule]]\naction = "deny"\nepm_interface = "srvsvc"\nopnum = 1\n',
            3,
            "rule 1: epm_interface",
            "visibility",
        ),
        ('[[rule]]\naction = "allow"\nsourse = "10.0.0.0/8"\n', 3, "rule 1: sourse", "unknown key"),
        ('[[rule]\naction = "allow"\n', 1, "", "not TOML"),
    ],
)
def test_a_bad_file_is_refused_with_its_line_key_and_reason(
    text: str, line: int, key: str, words: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        parse(text, "p.toml")
    e = caught.value
    assert (e.where, e.line, e.key) == ("p.toml", line, key), str(e)
    assert words in e.reason
    assert str(e).startswith(f"p.toml:{line}: ")


# the exactness of early answers ----------------------------------------------------------------

_SOURCES = ["10.0.0.0/8", "192.0.2.0/24", "fd00::/8", "10.1.0.0/16"]
_rule_keys = st.fixed_dictionaries(
    {"action": st.sampled_from(["allow", "deny", "audit"])},
    optional={
        "interface": st.sampled_from(['"rpcecho"', '"epmapper"', '["rpcecho", "mgmt"]']),
        "opnum": st.sampled_from(["0", "[1, 3]", '"2-5"']),
        "source": st.sampled_from([f'"{s}"' for s in _SOURCES]),
        "transport": st.sampled_from(['"tcp"', '"local"']),
        "auth_type": st.sampled_from(['"none"', '"ntlm"', '["ntlm", "spnego"]']),
        "auth_level": st.sampled_from(['"connect"', '"=packet"', '"privacy"']),
        "principal": st.sampled_from(['"alice"', '"anonymous"', '["DOM\\\\bob", "carol"]']),
    },
)


def _text(default: str, rules: list[dict[str, str]]) -> str:
    out = [f'default = "{default}"']
    for r in rules:
        out.append("[[rule]]")
        out += [f'action = "{r["action"]}"'] + [f"{k} = {v}" for k, v in r.items() if k != "action"]
    return "\n".join(out) + "\n"


_subjects = st.builds(
    lambda src, tr, iface, op, auth, principal: call(src, op, auth, principal, iface, tr),
    st.sampled_from([NET, OUTSIDE, ipaddress.ip_address("fd00::1"), None]),
    st.sampled_from(["ncacn_ip_tcp", "ncalrpc"]),
    st.sampled_from([ECHO, EPM]),
    st.integers(0, 6),
    st.sampled_from([(0, 1), (10, 2), (10, 4), (9, 6), (16, 5)]),
    st.sampled_from([None, "DOM\\alice", "dom\\bob", "carol@DOM.EXAMPLE", "mallory"]),
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["allow", "deny"]), st.lists(_rule_keys, max_size=6), _subjects)
def test_what_is_denied_early_is_denied_at_the_call(
    default: str, rules: list[dict[str, str]], s: Subject
) -> None:
    policy = parse(_text(default, rules))
    final = policy.decide(s)
    assert final.final
    for early in (Subject(s.source, s.transport), Subject(s.source, s.transport, s.interface)):
        decided = policy.decide(early)
        if decided.final and decided.denied:  # (an early allow is never relied on)
            assert final.denied, (early, final)
