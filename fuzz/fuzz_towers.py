"""Fuzz target ``towers``: protocol tower octets through ``dcerpc.epm.towers.Tower.decode``.

Decoding is total (towers.py's contract): any octets give a :class:`Tower` or raise
``TowerError``. A decoded tower encodes again (or says why not, as ``TowerError``), and what it
encodes to decodes to the same interface, transfer syntax, protocol sequence and endpoint.

    python fuzz/fuzz_towers.py -max_total_time=300
"""

from __future__ import annotations

import engine

with engine.instrumented():
    from dcerpc.epm.towers import Tower, TowerError

NAME = "towers"


def test_one(data: bytes) -> None:
    try:
        tower = Tower.decode(data)
    except TowerError:
        return
    try:
        octets = tower.encode()
    except TowerError:
        return  # e.g. a tcp port floor whose value we cannot write back: said, not raised past us
    try:
        again = Tower.decode(octets)
    except TowerError as e:
        raise engine.Finding(f"{tower!r} encodes to octets that do not decode: {e}") from e
    same = ("interface", "transfer_syntax", "protseq", "endpoint")
    if any(getattr(again, f) != getattr(tower, f) for f in same):
        raise engine.Finding(f"{tower!r} decodes back as {again!r}")


if __name__ == "__main__":
    engine.main(test_one, NAME)
