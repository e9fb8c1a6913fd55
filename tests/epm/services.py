"""Small interfaces for endpoint-mapper tests (``dcerpc serve tests.epm.services:Svc0``)."""

from __future__ import annotations

import uuid

from dcerpc import Interface, operation
from dcerpc.ndr import uint32


def _make(i: int) -> type[Interface]:
    class Contract(
        Interface, uuid=str(uuid.UUID(f"7e57c0de-0000-4000-8000-{i:012x}")), version=(1, 0), name=f"svc{i}"
    ):
        @operation(0)
        async def Twice(self, x: uint32) -> uint32:
            return (x * 2) & 0xFFFFFFFF

    impl = type(f"Svc{i}", (Contract,), {})
    impl.__module__ = __name__
    return impl


SERVICES = [_make(i) for i in range(64)]
for _cls in SERVICES:
    globals()[_cls.__name__] = _cls
