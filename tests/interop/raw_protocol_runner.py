"""Runs Samba's raw-PDU conformance suite (samba.tests.dcerpc.raw_protocol) and prints one line per
test: ``PASS name``, ``FAIL name`` or ``ERROR name``, then the first lines of what went wrong.

Run with the system Python that has python3-samba (``/usr/bin/python3``), not the project's venv:

    SERVER=127.0.0.1 USERNAME=alice PASSWORD=... DOMAIN=DOMAIN REALM=DOMAIN SMB_CONF_PATH=smb.conf \
        /usr/bin/python3 tests/interop/raw_protocol_runner.py [--list] [TEST_NAME ...]

With ``--list`` it prints the names of the core set (see CORE_EXCLUDED) and exits. Names are the
method names (``test_no_auth_request``); the suite has one class, TestDCERPC_BIND.
"""

from __future__ import annotations

import fnmatch
import sys
import unittest

CORE_EXCLUDED = (
    "test_krb5_*",  # a Kerberos KDC of the suite's own domain
    "test_lsa_multi_auth_*",  # over SMB named pipes
    "test_assoc_group_ok2",
    "test_assoc_group_fail3",
    "test_fragmented_requests0*",  # map and call netlogon, which we do not serve
    "test_first_*_requests",
    "test_last_*_requests",
    "test_2nd_cancel_requests",
    "test_mix_requests",
    "test_none_only_requests",
    "test_spnego_multiple_auth_hdr_signing",  # Kerberos inside SPNEGO
)


def core_names() -> list[str]:
    from samba.tests.dcerpc.raw_protocol import TestDCERPC_BIND

    names = sorted(n for n in dir(TestDCERPC_BIND) if n.startswith("test_"))
    return [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in CORE_EXCLUDED)]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--list"]:
        print("\n".join(core_names()))
        return 0
    from samba.tests.dcerpc.raw_protocol import TestDCERPC_BIND

    for name in argv or core_names():
        result = unittest.TestResult()
        TestDCERPC_BIND(name).run(result)
        problems = [("FAIL", t) for _, t in result.failures] + [("ERROR", t) for _, t in result.errors]
        if not problems:
            print(f"PASS {name}", flush=True)
            continue
        kind, text = problems[0]
        print(f"{kind} {name}", flush=True)
        tail = [line for line in text.strip().splitlines() if line.strip()][-3:]
        for line in tail:
            print(f"    {line.strip()[:300]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
