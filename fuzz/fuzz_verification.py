"""Fuzz target ``verification``: the security verification trailer (MS-RPCE 2.2.2.13) of a stub.

The first octet chooses the byte order and what the rest is:

- even: a stub as received, through ``verification.split``, which may raise nothing; when it finds
  a trailer, what it leaves is a 4-aligned prefix of the stub;
- odd: a stub and the fields of a trailer our client would add to it (``verification.build``):
  ``split`` must find that trailer again and give back the stub, whatever the stub holds (unless
  the stub or the trailer's own fields contain the trailer's magic, where the end of the stub is
  ambiguous by construction).

    python fuzz/fuzz_verification.py -max_total_time=300
"""

from __future__ import annotations

import atheris
import engine

with engine.instrumented():
    from dcerpc.pdu.syntax import SyntaxId
    from dcerpc.protocol import verification

NAME = "verification"


def _syntax(fdp: atheris.FuzzedDataProvider) -> SyntaxId:
    raw = fdp.ConsumeBytes(20).ljust(20, b"\0")
    return SyntaxId.unpack(raw, 0, True)


def test_one(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0], data[1:]
    little = not mode & 2
    if not mode & 1:
        stub, trailer = verification.split(body, little)
        if trailer is not None and (len(stub) % 4 or body[: len(stub)] != stub):
            raise engine.Finding(f"split left {len(stub)} octets, not a 4-aligned prefix")
        return
    fdp = atheris.FuzzedDataProvider(body)
    header_sign = fdp.ConsumeBool()
    interface, transfer = _syntax(fdp), _syntax(fdp)
    ptype = fdp.ConsumeIntInRange(0, 255)
    drep = fdp.ConsumeBytes(4).ljust(4, b"\0")
    call_id = fdp.ConsumeIntInRange(0, 0xFFFFFFFF)
    context_id, opnum = fdp.ConsumeIntInRange(0, 0xFFFF), fdp.ConsumeIntInRange(0, 0xFFFF)
    stub = fdp.ConsumeBytes(fdp.remaining_bytes())
    tail = verification.build(
        header_sign=header_sign,
        interface=interface,
        transfer=transfer,
        ptype=ptype,
        drep=drep,
        call_id=call_id,
        context_id=context_id,
        opnum=opnum,
        stub_length=len(stub),
    )
    whole = stub + tail
    if whole.count(verification.MAGIC) != 1:
        return  # the magic inside the stub or the fields: which one ends the stub is ambiguous
    got, trailer = verification.split(whole, True)  # build writes little-endian (as our client)
    if trailer is None or bytes(got) != stub + bytes(-len(stub) % 4):
        raise engine.Finding(f"the trailer built for a {len(stub)}-octet stub was not found again")
    expected = (ptype, drep, call_id, context_id, opnum)
    if (trailer.interface, trailer.transfer, trailer.header2) != (interface, transfer, expected):
        raise engine.Finding(f"the trailer built for a {len(stub)}-octet stub reads back as {trailer!r}")
    if bool(trailer.bitmask) != header_sign:
        raise engine.Finding("the trailer's header-signing bit does not read back")


if __name__ == "__main__":
    engine.main(test_one, NAME)
