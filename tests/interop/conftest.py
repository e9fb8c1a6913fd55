"""Fixtures for talking to real peers: our rpcecho server on a real TCP socket."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dcerpc.rpcecho.server import EchoServer
from dcerpc.testing import ServerThread


@pytest.fixture
def echo_server() -> Iterator[ServerThread]:
    with ServerThread(EchoServer()) as srv:
        yield srv
