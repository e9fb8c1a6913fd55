"""The configuration file: errors name the file, key and expected type; ``config check``; the docs
cover every key, command and option."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from dcerpc.cli import main
from dcerpc.cli.config import ConfigError, keys, load

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ('epm_port = "one"', "epm_port", "expected int, got str"),
        ("epm_prot = 1135", "epm_prot", "unknown key"),
        ('[auth]\nmin_auth_level = "secret"', "auth.min_auth_level", "not one of none, connect"),
        ("[auth]\nntlm_user = 'x'", "auth.ntlm_user", "unknown key"),
        ('[services.rpcecho]\nport = "50000"', "services.rpcecho.port", "expected int | null, got str"),
        ('ports = "high-low"', "ports", "LOW-HIGH"),
        ('epm_allow_insert = ["10.0.0.0/33"]', "epm_allow_insert", "10.0.0.0/33"),
        ('register_users = ["no-such-user-here"]', "register_users", "no local user"),
        ('log_level = "loud"', "log_level", "not one of debug, info"),
        ("epm_port = 70000", "epm_port", "not a TCP port"),
        ("host = [", "", "not valid TOML"),
        ("[limits]\nmax_fragment = 10", "limits.max_fragment", "between 1432 and 65535"),
        ("[limits]\nmax_conections = 10", "limits.max_conections", "unknown key"),
        ('[limits]\nidle_timeout = "soon"', "limits.idle_timeout", "expected float | null, got str"),
        ('policy = "/nonexistent/policy.toml"', "policy", "cannot be read"),
        ("[services.rpcecho]\nmax_calls = 0", "services.rpcecho.max_calls", "at least 1"),
    ],
)
def test_errors_name_the_file_the_key_and_what_was_expected(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    conf = tmp_path / "dcerpc.toml"
    conf.write_text(text + "\n")
    with pytest.raises(ConfigError) as caught:
        load(str(conf))
    assert caught.value.source == str(conf) and caught.value.key == key
    assert expected in str(caught.value)
    assert str(caught.value).startswith(f"{conf}: {key}: " if key else f"{conf}: ")


def test_config_check_prints_the_effective_settings(tmp_path: Path) -> None:
    conf = tmp_path / "dcerpc.toml"
    conf.write_text('epm_port = 1135\nregister_users = ["root", 4242]\n[services.rpcecho]\nport = 50000\n'
                    '[auth]\nmin_auth_level = "integrity"\n[limits]\nmax_connections = 5000\n')  # fmt: skip
    runner = CliRunner()
    result = runner.invoke(main, ["config", "check", "--config", str(conf), "--log-level", "debug", "--json"])
    assert result.exit_code == 0, result.stdout
    doc = json.loads(result.stdout)
    s = doc["settings"]
    assert s["epm_port"] == 1135 and s["register_users"] == [0, 4242] and s["services.rpcecho.port"] == 50000
    assert s["limits.max_connections"] == 5000 and s["limits.write_timeout"] == 60.0
    assert (
        s["auth.min_auth_level"] == "integrity" and s["log_level"] == "debug" and s["ports"] == "49152-65535"
    )
    assert doc["sources"]["epm_port"] == str(conf) and doc["sources"]["log_level"] == "flag"
    assert doc["sources"]["ports"] == "default"
    table = runner.invoke(main, ["config", "check", "--config", str(conf)])
    assert table.exit_code == 0 and re.search(
        r"epm_port\s*│\s*1135\s*│\s*" + re.escape(str(conf)), table.stdout
    )
    conf.write_text('epm_port = "one"\n')
    bad = runner.invoke(main, ["config", "check", "--config", str(conf)])
    assert bad.exit_code == 2 and f"{conf}: epm_port: expected int, got str" in bad.stderr


def _commands(group: click.Group, prefix: str = "dcerpc") -> list[tuple[str, click.Command]]:
    out = []
    for name, cmd in group.commands.items():
        out.append((f"{prefix} {name}", cmd))
        if isinstance(cmd, click.Group):
            out += _commands(cmd, f"{prefix} {name}")
    return out


def test_the_docs_name_every_key_command_and_option() -> None:
    configuration = (DOCS / "configuration.md").read_text()
    for key in keys():
        assert f"`{key}`" in configuration, f"docs/configuration.md does not describe {key}"
    cli = (DOCS / "cli.md").read_text()
    for name, cmd in _commands(main):
        assert f"`{name}" in cli, f"docs/cli.md does not describe {name}"
        for param in cmd.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("-"):
                    assert f"`{opt}" in cli, f"docs/cli.md does not describe {name} {opt}"
    readme = (DOCS.parent / "README.md").read_text()
    for page in ("getting-started.md", "configuration.md", "cli.md", "service.md"):
        assert (DOCS / page).exists() and f"docs/{page}" in readme
    for linked in re.findall(r"docs/[\w.-]+\.md", readme):  # nothing it points to is missing
        assert (DOCS.parent / linked).exists(), f"README.md points to {linked}, which is not there"
    assert (DOCS.parent / "LICENSE").read_text().lstrip().startswith("Apache License")
    assert 'license = { text = "Apache-2.0" }' in (DOCS.parent / "pyproject.toml").read_text()
