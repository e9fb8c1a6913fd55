"""The well-known interface table: every interface the detectors need, with facts checked against
the specifications' numbering."""

from __future__ import annotations

import uuid

import pytest

from dcerpc.known import KNOWN, KNOWN_INTERFACES, interface_name, operation_name

U = uuid.UUID


@pytest.mark.parametrize(
    ("iface", "opnum", "name"),
    [
        ("e1af8308-5d1f-11c9-91a4-08002b14a0fa", 3, "ept_map"),  # C706 Appendix O
        ("afa8bd80-7d8a-11c9-bef4-08002b102989", 3, "stop_server_listening"),  # C706 Appendix Q
        ("000001a0-0000-0000-c000-000000000046", 4, "RemoteCreateInstance"),  # MS-DCOM 3.1.2.5.2.3
        ("4d9f4ab8-7d1c-11cf-861e-0020af6e7c57", 0, "RemoteActivation"),
        ("99fcfec4-5260-101b-bbcb-00aa0021347a", 5, "ServerAlive2"),
        ("00000143-0000-0000-c000-000000000046", 6, "RemQueryInterface2"),
        ("f309ad18-d86a-11d0-a075-00c04fb68820", 6, "NTLMLogin"),
        ("9556dc99-828c-11cf-a37e-00aa003240c7", 24, "ExecMethod"),
        ("367abb81-9844-35f1-ad32-98f038001003", 12, "RCreateServiceW"),  # MS-SCMR 3.1.4.12
        ("1ff70682-0a51-30e8-076d-740be8cee98b", 0, "NetrJobAdd"),
        ("86d35949-83c9-4044-b424-db363231fd0c", 1, "SchRpcRegisterTask"),
        ("338cd001-2244-31f1-aaaa-900038001003", 22, "BaseRegSetValue"),
        ("82273fdc-e32a-18c3-3f78-827929dc23ea", 0, "ElfrClearELFW"),
        ("f6beaff7-1e19-4fbb-9f8f-b89e2018337c", 6, "EvtRpcClearLog"),
        ("4b324fc8-1670-01d3-1278-5a47bf6ee188", 15, "NetrShareEnum"),
        ("6bffd098-a112-3610-9833-46c3f87e345a", 2, "NetrWkstaUserEnum"),
        ("12345778-1234-abcd-ef00-0123456789ac", 64, "SamrConnect5"),
        ("12345778-1234-abcd-ef00-0123456789ab", 76, "LsarLookupSids3"),
        ("12345678-1234-abcd-ef00-01234567cffb", 26, "NetrServerAuthenticate3"),  # Zerologon's
        ("e3514235-4b06-11d1-ab04-00c04fc2dcd2", 3, "DRSGetNCChanges"),  # DCSync's
        ("12345678-1234-abcd-ef00-0123456789ab", 89, "RpcAddPrinterDriverEx"),  # PrintNightmare's
        ("3919286a-b10c-11d0-9ba8-00c04fd92ef5", 0, "DsRolerGetPrimaryDomainInformation"),
    ],
)
def test_operation_names(iface: str, opnum: int, name: str) -> None:
    assert operation_name(U(iface), opnum) == name


def test_unknown_opnums_and_interfaces_have_no_name() -> None:
    assert operation_name(U("367abb81-9844-35f1-ad32-98f038001003"), 9999) == ""
    assert operation_name(U(int=1), 0) == ""
    assert interface_name(U(int=1)) == ""


def test_display_names_keep_their_shape() -> None:
    """``dcerpc dump`` and the policy's interface names (first word) read these."""
    assert interface_name(U("e1af8308-5d1f-11c9-91a4-08002b14a0fa")) == "epmapper (endpoint mapper)"
    assert interface_name(U("12345678-1234-abcd-ef00-01234567cffb")) == "netlogon"
    firsts = {n.split()[0].lower() for n in KNOWN_INTERFACES.values()}
    assert {
        "epmapper",
        "mgmt",
        "svcctl",
        "winreg",
        "samr",
        "lsarpc",
        "netlogon",
        "drsuapi",
        "spoolss",
    } <= firsts


def test_every_interface_parses_with_a_version() -> None:
    assert len(KNOWN) >= 29
    assert all(i.version[0] >= 0 and i.name for i in KNOWN.values())
