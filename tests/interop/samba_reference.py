"""Reference NDR from Samba's C implementation, for byte-for-byte comparison with ours.

Run with Debian's /usr/bin/python3 (python3-samba). Reads a JSON list of cases on stdin, packs each
with Samba's generated NDR (``samba.ndr.ndr_pack_in`` / ``ndr_pack_out``) and prints a JSON object
mapping case name to hex. Tower octets are handed over as hex and parsed by Samba into its own
structures (``epm_tower``) before it encodes the response around them. Nothing here is ours but the
plumbing: every octet printed is Samba's.

A case: {"name": ..., "iface": "echo"|"epmapper"|"mgmt", "call": "AddOne", "dir": "in"|"out",
"set": {"in_in_data": 41, ...}} where values are JSON, with these spellings:
{"hex": "..."} bytes; {"guid": "..."} a GUID; {"handle": [type, "guid"]} a policy_handle;
{"tower": "hex"} an epm_twr_t; {"entry": [guid, tower-hex or null, annotation]} an epm_entry_t;
{"struct": "module.Type", "fields": {...}} any struct; {"ptr": value} a base.ndr_pointer;
{"syntax": [guid, version]} an ndr_syntax_id; {"list": [...]} a list of converted values.
"""

import json
import struct
import sys

from samba import ndr
from samba.dcerpc import base, echo, epmapper, mgmt, misc

MODULES = {"echo": echo, "epmapper": epmapper, "mgmt": mgmt, "misc": misc}


def convert(v):
    if isinstance(v, list):
        return [convert(x) for x in v]
    if not isinstance(v, dict):
        return v
    if "hex" in v:
        return list(bytes.fromhex(v["hex"]))
    if "guid" in v:
        return misc.GUID(v["guid"])
    if "handle" in v:
        h = misc.policy_handle()
        h.handle_type = v["handle"][0]
        h.uuid = misc.GUID(v["handle"][1])
        return h
    if "tower" in v:
        # epm_tower is not public in Samba's bindings; epm_twr_t is (u32 length, then the tower
        # in a subcontext with its own u32 length): Samba parses the floors into its structures.
        octets = bytes.fromhex(v["tower"])
        return ndr.ndr_unpack(epmapper.epm_twr_t, struct.pack("<II", len(octets), len(octets)) + octets)
    if "towerp" in v:
        p = epmapper.epm_twr_p_t()
        p.twr = convert({"tower": v["towerp"]})
        return p
    if "entry" in v:
        guid, tower, annotation = v["entry"]
        e = epmapper.epm_entry_t()
        e.object = misc.GUID(guid)
        e.tower = convert({"tower": tower}) if tower else None
        e.annotation = annotation
        return e
    if "struct" in v:
        module, name = v["struct"].split(".")
        obj = getattr(MODULES[module], name)()
        for key, value in v["fields"].items():
            setattr(obj, key, convert(value))
        return obj
    if "ptr" in v:
        return base.ndr_pointer(convert(v["ptr"]))
    if "syntax" in v:
        s = misc.ndr_syntax_id()
        s.uuid = misc.GUID(v["syntax"][0])
        s.if_version = v["syntax"][1]
        return s
    if "syntaxp" in v:
        p = mgmt.ndr_syntax_id_p()
        p.id = convert({"syntax": v["syntaxp"]}) if v["syntaxp"] else None
        return p
    if "list" in v:
        return [convert(x) for x in v["list"]]
    raise ValueError(f"unknown value spelling {v!r}")


def main():
    cases = json.load(sys.stdin)
    out = {}
    for case in cases:
        call = getattr(MODULES[case["iface"]], case["call"])()
        for key, value in case["set"].items():
            setattr(call, key, convert(value))
        pack = ndr.ndr_pack_in if case["dir"] == "in" else ndr.ndr_pack_out
        out[case["name"]] = pack(call).hex()
    json.dump(out, sys.stdout)


main()
