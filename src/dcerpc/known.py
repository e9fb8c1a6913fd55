"""Names of well-known RPC interfaces, for listings (``dcerpc dump``) and logs."""

from __future__ import annotations

import uuid
from typing import Final

__all__ = ["KNOWN_INTERFACES", "interface_name"]

KNOWN_INTERFACES: Final[dict[uuid.UUID, str]] = {
    uuid.UUID(k): v
    for k, v in {
        "e1af8308-5d1f-11c9-91a4-08002b14a0fa": "epmapper (endpoint mapper)",
        "afa8bd80-7d8a-11c9-bef4-08002b102989": "mgmt (remote management)",
        "60a15ec5-4de8-11d7-a637-005056a20182": "rpcecho (Samba test interface)",
        "12345778-1234-abcd-ef00-0123456789ab": "lsarpc (LSA)",
        "12345778-1234-abcd-ef00-0123456789ac": "samr (SAM)",
        "12345678-1234-abcd-ef00-01234567cffb": "netlogon",
        "e3514235-4b06-11d1-ab04-00c04fc2dcd2": "drsuapi (directory replication)",
        "4b324fc8-1670-01d3-1278-5a47bf6ee188": "srvsvc (server service)",
        "6bffd098-a112-3610-9833-46c3f87e345a": "wkssvc (workstation service)",
        "367abb81-9844-35f1-ad32-98f038001003": "svcctl (service control manager)",
        "338cd001-2244-31f1-aaaa-900038001003": "winreg (remote registry)",
        "86d35949-83c9-4044-b424-db363231fd0c": "ITaskSchedulerService",
        "12345678-1234-abcd-ef00-0123456789ab": "spoolss (print spooler)",
        "000001a0-0000-0000-c000-000000000046": "ISystemActivator (DCOM)",
        "99fcfec4-5260-101b-bbcb-00aa0021347a": "IObjectExporter (DCOM OXID resolver)",
        "00000131-0000-0000-c000-000000000046": "IRemUnknown (DCOM)",
        "00000143-0000-0000-c000-000000000046": "IRemUnknown2 (DCOM)",
        "4d9f4ab8-7d1c-11cf-861e-0020af6e7c57": "IActivation (DCOM)",
        "1ff70682-0a51-30e8-076d-740be8cee98b": "atsvc (task scheduler)",
        "3919286a-b10c-11d0-9ba8-00c04fd92ef5": "dssetup",
        "50abc2a4-574d-40b3-9d66-ee4fd5fba076": "dnsserver",
        "c681d488-d850-11d0-8c52-00c04fd90f7e": "efsrpc",
        "df1941c5-fe89-4e79-bf10-463657acf44d": "efsrpc (EFS)",
        "8d9f4e40-a03d-11ce-8f69-08003e30051b": "pnp (plug and play)",
        "82273fdc-e32a-18c3-3f78-827929dc23ea": "eventlog",
        "894de0c0-0d55-11d3-a322-00c04fa321a1": "initshutdown",
        "d95afe70-a6d5-4259-822e-2c84da1ddb0d": "WindowsShutdown",
    }.items()
}


def interface_name(u: uuid.UUID) -> str:
    """The conventional name of an interface UUID ("" when unknown)."""
    return KNOWN_INTERFACES.get(u, "")
