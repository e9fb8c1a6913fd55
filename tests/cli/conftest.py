from __future__ import annotations

from collections.abc import Iterator

import pytest

from .procs import Running, host_args


class Host:
    def __init__(self, running: Running, port: int, socket: str) -> None:
        self.running, self.port, self.socket = running, port, socket

    @property
    def ready(self) -> dict[str, object]:
        return self.running.ready


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    """One ``dcerpc run`` (mapper + rpcecho) shared by a module's tests."""
    args, port, sock = host_args(tmp_path_factory.mktemp("host"))
    running = Running(["run", *args])
    yield Host(running, port, sock)
    running.stop()
