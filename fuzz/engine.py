"""Running a harness under atheris (coverage-guided, libFuzzer): the command line every target shares.

Each ``fuzz_<target>.py`` imports the code it fuzzes inside :func:`instrumented` (so atheris adds
coverage counters to it), defines ``test_one(data)``, and ends with ``engine.main(test_one, NAME)``.
A target raises for a finding: an exception out of the code under test, or a broken invariant
(:class:`Finding`); libFuzzer then writes the input to ``fuzz/crashes/<target>-...`` and stops.

    python fuzz/fuzz_server.py                      # fuzz until stopped, from the committed seeds
    python fuzz/fuzz_server.py -max_total_time=300  # five minutes
    python fuzz/fuzz_server.py fuzz/crashes/server-crash-...   # replay one input

Any libFuzzer flag may be given. With no corpus directory (nor input file) on the command line, new
inputs go to ``fuzz/work/<target>/`` (not committed) and the seeds come from
``fuzz/corpus/<target>/``, which is never written to.
"""

from __future__ import annotations

import gc
import shlex
import sys
import types
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import atheris

__all__ = ["CORPUS", "Finding", "instrument_generated", "instrumented", "main"]

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
WORK = HERE / "work"
CRASHES = HERE / "crashes"


class Finding(AssertionError):  # noqa: N818 (what a fuzzer reports: an invariant broken)
    """An invariant the code under test broke (an exception out of it is a finding too)."""


def instrumented(*extra: str) -> AbstractContextManager[Any]:
    """Imports inside this block get coverage instrumentation: dcerpc, and the ``extra`` packages
    (``spnego`` for the harnesses whose inputs reach pyspnego's token parsers)."""
    return atheris.instrument_imports(include=["dcerpc", *extra])  # type: ignore[no-any-return]


def instrument_generated(prefix: str = "<ndr ") -> int:
    """Instrument the functions made at run time from generated source whose filename starts with
    ``prefix`` (the NDR codecs, ndr/source.py): atheris instruments modules as they are imported,
    and these never are. In place (they call each other by name); returns how many."""
    n = 0
    for obj in gc.get_objects():
        if isinstance(obj, types.FunctionType) and obj.__code__.co_filename.startswith(prefix):
            atheris.instrument_func(obj)
            n += 1
    return n


def _launcher(name: str) -> str:
    """An executable that runs this target with this interpreter: libFuzzer runs its argv[0] again
    for -merge, -jobs, -fork and -minimize_crash, and a script run as ``python x.py`` is not one."""
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"run-{name}"
    script = shlex.quote(str(Path(sys.argv[0]).resolve()))
    path.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {script} "$@"\n')
    path.chmod(0o755)
    return str(path)


def main(test_one: Callable[[bytes], None], name: str) -> None:
    """libFuzzer's command line, with this project's defaults; never returns."""
    args = sys.argv[1:]
    flags = [a for a in args if a.startswith("-")]
    paths = [a for a in args if not a.startswith("-")]
    defaults = {
        "-artifact_prefix": f"{CRASHES}/{name}-",
        "-timeout": "10",  # seconds one input may take: longer is a hang, reported as a finding
        "-rss_limit_mb": "2048",  # a peer's few octets must not make us hold gigabytes
        "-max_len": "65536",
    }
    for flag, value in defaults.items():
        if not any(a.split("=", 1)[0] == flag for a in flags):
            flags.append(f"{flag}={value}")
            if flag == "-artifact_prefix":
                CRASHES.mkdir(exist_ok=True)
    if not paths:
        work = WORK / name
        work.mkdir(parents=True, exist_ok=True)
        paths = [str(work), str(CORPUS / name)]
    atheris.Setup([_launcher(name), *flags, *paths], test_one)
    atheris.Fuzz()
