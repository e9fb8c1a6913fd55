"""The evaluation corpus, built once per test session (tests/evaluation/corpus.py).

Building it costs about a minute and a half on the 2-core machine (two namespaces, 27 captures,
most of a second to a few seconds each; nmap -sV is the longest at ~7 s). ``DCERPC_CORPUS=DIR``
reuses a corpus built before (``python -m tests.evaluation.corpus DIR``) when DIR has labels.json.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from tests.conftest import have, require_peer, samba_python_available
from tests.evaluation.corpus import Capture, build, load
from tests.interop import sambad
from tests.interop.netns import netns_available


def _peers() -> None:
    require_peer(netns_available(), "private network namespaces need root and unshare/nsenter/ip")
    for tool, package in (("dumpcap", "tshark"), ("tshark", "tshark"), ("nmap", "nmap"),
                          ("smbtorture", "samba-testsuite")):  # fmt: skip
        require_peer(have(tool), f"{tool} is not installed (Debian package {package})")
    require_peer(importlib.util.find_spec("impacket") is not None, "impacket is a dev dependency")
    require_peer(samba_python_available(), "python3-samba is not installed for /usr/bin/python3")
    require_peer(sambad.available(), "Samba's samba-dcerpcd needs root and the samba package")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Capture]:
    reuse = os.environ.get("DCERPC_CORPUS")
    if reuse and (Path(reuse) / "labels.json").exists():
        return load(Path(reuse))
    _peers()
    return build(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def by_name(corpus: list[Capture]) -> dict[str, Capture]:
    return {c.name: c for c in corpus}
