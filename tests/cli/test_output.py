"""What the commands print for scripts: tables whole off a terminal, JSON for every outcome."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dcerpc.cli import main

from .conftest import Host
from .procs import free_port


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_tables_are_not_cut_without_a_terminal(host: Host) -> None:
    code, out, _ = invoke("dump", "127.0.0.1", "--epm-port", str(host.port))
    assert code == 0, out
    lines = out.splitlines()
    for endpoint in host.ready["endpoints"]:  # type: ignore[attr-defined]
        whole = any(endpoint["binding"] in line and endpoint["interface"] in line for line in lines)
        assert whole, f"{endpoint['interface']} at {endpoint['binding']} not whole on one line:\n{out}"
    assert any(len(line) > 80 for line in lines)  # laid out to its content, not folded to 80 columns


def test_json_failures_are_json_with_a_nonzero_status(tmp_path: Path) -> None:
    closed = str(free_port())
    bad = tmp_path / "bad.toml"
    bad.write_text('epm_port = "one"\n')
    cases = [
        ("dump", "127.0.0.1", "--epm-port", closed, "--json"),
        ("ping", "127.0.0.1", "--epm-port", closed, "--json"),
        ("call", f"ncacn_ip_tcp:127.0.0.1[{closed}]", "rpcecho.AddOne", "1", "--json"),
        ("call", "ncacn_ip_tcp:127.0.0.1[1]", "rpcecho.NoSuchOperation", "--json"),
        ("call", "not a binding", "rpcecho.AddOne", "1", "--json"),
        ("config", "check", "--config", str(bad), "--json"),
        ("serve", "dcerpc.rpcecho.server:EchoServer", "--socket", str(tmp_path / "none.sock"),
         "--ports", "41000-41100", "--json"),
        ("ping", "127.0.0.1", "--no-such-option", "--json"),
    ]  # fmt: skip
    for args in cases:
        code, out, _ = invoke(*args)
        assert code != 0, args
        doc = json.loads(out)  # the whole of stdout is one JSON document
        assert doc["ok"] is False and doc["error"], (args, doc)


def test_json_success_documents(host: Host) -> None:
    code, out, _ = invoke("ping", "127.0.0.1", "--epm-port", str(host.port), "--json")
    assert code == 0 and json.loads(out)["listening"] is True
    code, out, _ = invoke("dump", "127.0.0.1", "--epm-port", str(host.port), "--json")
    assert code == 0 and {r["binding"] for r in json.loads(out)} == {
        e["binding"]
        for e in host.ready["endpoints"]  # type: ignore[attr-defined]
    }


@pytest.mark.parametrize(
    "how",
    ["option", "binding", "environment", "config"],
)
def test_ping_host_pings_the_mapper_at_its_port(host: Host, how: str, tmp_path: Path) -> None:
    """A bare HOST (or a binding without an endpoint) is the mapper, found at the port the server took."""
    runner = CliRunner()
    port = str(host.port)
    conf = tmp_path / "client.toml"
    conf.write_text(f"epm_port = {port}\n")
    args, env = {
        "option": (["ping", "127.0.0.1", "--epm-port", port], {}),
        "binding": (["ping", f"ncacn_ip_tcp:127.0.0.1[epm_port={port}]"], {}),
        "environment": (["ping", "127.0.0.1"], {"DCERPC_EPM_PORT": port}),
        "config": (["ping", "localhost", "--config", str(conf)], {}),
    }[how]
    result = runner.invoke(main, [*args, "--json"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.stdout
    doc = json.loads(result.stdout)
    assert doc["listening"] is True and doc["binding"].endswith(f"[{port}]")
