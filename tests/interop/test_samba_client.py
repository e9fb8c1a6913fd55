"""Samba's own Python client (python3-samba) calls every rpcecho operation on our server."""

from __future__ import annotations

import json
import subprocess

import pytest

from dcerpc.testing import ServerThread

CLIENT = r"""
import json, sys
from samba.dcerpc import base, echo
from samba.param import LoadParm
from samba.credentials import Credentials
lp = LoadParm(); lp.load_default() if False else None
creds = Credentials(); creds.guess(lp); creds.set_anonymous()
conn = echo.rpcecho(sys.argv[1], lp, creds)
out = {}
out["AddOne"] = [conn.AddOne(41), conn.AddOne(0xFFFFFFFF)]
out["EchoData"] = list(conn.EchoData([1, 2, 3, 250]))
# long: read straight into the call's buffer, answered from the decoded bytes where they lie
big = [(i * 7 + 3) & 0xFF for i in range(1_200_000)]
out["EchoDataLong"] = [list(conn.EchoData(big)) == big for _ in range(2)]
conn.SinkData([9] * 100)
out["SourceData"] = list(conn.SourceData(300))
out["TestCall"] = conn.TestCall("grüße €")
levels = {}
for level in range(1, 8):
    info = conn.TestCall2(level)
    v = getattr(info, "v", None)
    if level == 5:
        v = [info.v1, info.v2]
    elif level == 6:
        v = [info.v1, info.info1.v]
    elif level == 7:
        v = [info.v1, info.info4.v]
    levels[level] = v
out["TestCall2"] = levels
out["TestSleep"] = conn.TestSleep(1)
e2 = echo.Enum2(); e2.e1 = echo.ECHO_ENUM1; e2.e2 = echo.ECHO_ENUM1_32
# a union argument is passed as its selected arm's value (Samba's bindings cannot build Enum3)
foo1, foo2, foo3 = conn.TestEnum(echo.ECHO_ENUM1, e2, echo.ECHO_ENUM1)
out["TestEnum"] = [foo1, foo2.e1, foo2.e2, foo3]
s = echo.Surrounding(); s.x = 4; s.surrounding = [1, 2, 3, 4]
r = conn.TestSurrounding(s)
out["TestSurrounding"] = [r.x, list(r.surrounding)]
out["TestDoublePointer"] = conn.TestDoublePointer(base.ndr_pointer(7))  # its **data level
print(json.dumps(out))
"""

EXPECTED = {
    "AddOne": [42, 0],
    "EchoData": [1, 2, 3, 250],
    "EchoDataLong": [True, True],
    "SourceData": [i & 0xFF for i in range(300)],
    "TestCall": "grüße €",
    "TestCall2": {"1": 10, "2": 20, "3": 30, "4": 40, "5": [50, 60], "6": [70, 80], "7": [80, 90]},
    "TestSleep": 1,
    "TestEnum": [1, 2, 1, 1],
    "TestSurrounding": [8, [0] * 8],
    "TestDoublePointer": 7,
}


def run_client(samba_python: str, binding: str) -> dict[str, object]:
    proc = subprocess.run(
        [samba_python, "-c", CLIENT, binding], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


@pytest.mark.interop
@pytest.mark.parametrize("options", ["", ",bigendian"], ids=["little-endian", "big-endian"])
def test_samba_client_calls_every_operation(
    samba_python: str, echo_server: ServerThread, options: str
) -> None:
    result = run_client(samba_python, f"ncacn_ip_tcp:127.0.0.1[{echo_server.port}{options}]")
    assert result == EXPECTED
