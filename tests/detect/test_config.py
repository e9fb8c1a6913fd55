"""``[detect]`` in the config file: rules and settings read, defaults kept, each wrong value named
by its key; off unless enabled."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcerpc.cli.config import ConfigError, keys, load
from dcerpc.detect import DETECTORS, Rule


def _load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "dcerpc.toml"
    path.write_text(text)
    return load(str(path))


def test_rules_and_settings(tmp_path: Path) -> None:
    s = _load(
        tmp_path,
        """
[detect]
enabled = true
local_networks = ["10.0.0.0/8"]
dynamic_ports = "50000-51000"
rpc_ports = [135, 4999]
[detect.port_scan]
threshold = 50
window = 30.0
[detect.zerologon]
enabled = false
""",
    )
    d = s.detect
    assert d is not None
    assert d.rules["port_scan"] == Rule(50, 30.0)
    assert d.rules["zerologon"] == Rule(DETECTORS["zerologon"][0].threshold, 60.0, enabled=False)
    assert d.rules["opnum_sweep"] == DETECTORS["opnum_sweep"][0]  # the rest default
    assert d.local_networks == ("10.0.0.0/8",) and d.dynamic_ports == (50000, 51000)
    assert d.rpc_ports == frozenset({135, 4999})


def test_off_unless_enabled(tmp_path: Path) -> None:
    assert _load(tmp_path, "[detect.port_scan]\nthreshold = 5\n").detect is None


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[detect.port_scan]\nthreshold = 0\n", "detect.port_scan.threshold"),
        ("[detect.port_scan]\nwindow = 0\n", "detect.port_scan.window"),
        ("[detect.nope]\nthreshold = 3\n", "detect.nope"),
        ('[detect]\nlocal_networks = ["10.0.0.300/8"]\n', "detect.local_networks"),
        ('[detect]\ndynamic_ports = "9-1"\n', "detect.dynamic_ports"),
        ("[detect]\nmax_name = 0\n", "detect.max_name"),
    ],
)
def test_wrong_values_are_named(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, text)
    assert e.value.key == key


def test_keys_name_the_section() -> None:
    assert {"detect.enabled", "detect.NAME.threshold", "detect.NAME.window", "detect.NAME.enabled"} <= set(
        keys()
    )


def test_config_check_shows_the_rules(tmp_path: Path) -> None:
    flat = _load(tmp_path, "[detect]\nenabled = true\n[detect.port_scan]\nthreshold = 7\n").flat()
    assert flat["detect.enabled"] is True and flat["detect.port_scan.threshold"] == 7
    assert _load(tmp_path, "").flat()["detect.enabled"] is False
