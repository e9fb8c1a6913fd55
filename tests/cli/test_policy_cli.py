"""The policy from the command line, for real: ``dcerpc policy check`` names a bad file's line, key
and reason; ``dcerpc run --policy FILE`` enforces it on the demo services, and SIGHUP reads the file
again (a file that no longer reads keeps the policy in force, and the log says why)."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import dcerpc
from dcerpc.rpcecho import Echo

from .procs import Running, echo_binding, host_args
from .procs import dcerpc as run_dcerpc

NO_ADD_ONE = """
[[rule]]
name = "no AddOne"
action = "deny"
interface = "rpcecho"
opnum = 0
"""


def test_policy_check_prints_the_rules_or_the_first_mistake(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('default = "deny"\n' + NO_ADD_ONE)
    done = run_dcerpc("policy", "check", str(good), "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["default"] == "deny"
    assert doc["rules"] == [
        {
            "index": 1,
            "line": 3,
            "name": "no AddOne",
            "action": "deny",
            "matches": ["interface rpcecho", "opnum 0"],
        }
    ]
    words = run_dcerpc("policy", "check", str(good))
    assert "no AddOne" in words.stdout and "default deny" in words.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\naction = "deny"\n\nopnum = "9-2"\n')
    done = run_dcerpc("policy", "check", str(bad), "--json")
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    assert (doc["ok"], doc["line"], doc["key"]) == (False, 4, "rule 1: opnum")
    assert "0..65535" in doc["reason"]


def test_run_enforces_the_policy_and_sighup_reads_it_again(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(NO_ADD_ONE)
    args, _, _ = host_args(tmp_path)
    host = Running(["run", *args, "--policy", str(policy)])
    try:
        echo = echo_binding(host.ready)
        denied = run_dcerpc("call", echo, "Echo.AddOne", "1", "--json")
        assert denied.returncode == 1 and "access_denied" in denied.stdout, denied.stdout
        assert run_dcerpc("call", echo, "Echo.TestCall", "hi", "--json").returncode == 0  # other operations
        policy.write_text('default = "allow"\n')
        host.signal(signal.SIGHUP)
        host.wait_for_log("settings reloaded")
        allowed = run_dcerpc("call", echo, "Echo.AddOne", "1", "--json")
        assert allowed.returncode == 0, allowed.stdout
        policy.write_text('[[rule]]\naction = "deny"\nsource = "10.0.0.0/33"\n')
        host.signal(signal.SIGHUP)
        host.wait_for_log("10.0.0.0/33")  # refused, with its line, key and reason
        assert run_dcerpc("call", echo, "Echo.AddOne", "1", "--json").returncode == 0  # still in force
    finally:
        host.stop()


def test_reloading_under_load_loses_no_call(tmp_path: Path) -> None:
    """Calls in flight on several connections while SIGHUP reads the policy again, many times:
    every call is answered, none refused or lost (the policy allows them before and after)."""
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rule]]\naction = "audit"\ninterface = "rpcecho"\nopnum = 6\n')
    args, _, _ = host_args(tmp_path)
    host = Running(["run", *args, "--policy", str(policy)])
    try:
        echo = echo_binding(host.ready)
        done = {"calls": 0}

        async def caller() -> None:
            async with await dcerpc.connect(echo) as conn:
                proxy = await conn.bind(Echo)
                for i in range(400):
                    assert await proxy.AddOne(i) == i + 1
                    done["calls"] += 1

        async def reloader() -> None:
            for i in range(10):
                policy.write_text(
                    f'[[rule]]\nname = "r{i}"\naction = "audit"\ninterface = "rpcecho"\nopnum = 6\n'
                )
                host.signal(signal.SIGHUP)
                await asyncio.sleep(0.05)

        async def main() -> None:
            await asyncio.gather(*(caller() for _ in range(4)), reloader())

        asyncio.run(main())
        assert done["calls"] == 1600
        host.wait_for_log("settings reloaded")
    finally:
        host.stop()
