"""Minimal servers of the operations the stub-reading detectors watch, so an attack reaches them.

``dcerpc serve tests.detect.attacked:Netlogon tests.detect.attacked:Svcctl ...`` serves these
beside the endpoint mapper; their contracts are the operations' [in] parameters in our NDR
declarations (MS-NRPC 3.5.4.4.1 / 3.5.4.4.2, MS-SCMR 3.1.4.15 / 3.1.4.12, MS-TSCH 3.2.5.2.1,
MS-TSCH 3.2.5.4.2, MS-DCOM 3.1.2.5.1.1 / 3.1.2.5.2.3.2), and every implementation answers as a hardened server
does: the challenge is given, the credential, the service, the job and the activation refused.
What matters to tests/interop/test_detect_stubs_e2e.py is that the bind is accepted and the
request's stub reaches the server's dispatcher, which is where the inline detectors read it (a
stub that does not decode as declared is faulted rpc_x_bad_stub_data and read all the same).

The [out] sides are what the refusals need: the activations are faulted (access denied), so
their out parameters are declared as the HRESULT alone.
"""

from __future__ import annotations

import os
from typing import Annotated, NamedTuple

from dcerpc import Interface, operation
from dcerpc._errors import FaultError
from dcerpc.ndr import (
    GUID,
    HRESULT,
    NTSTATUS,
    ContextHandle,
    Fixed,
    SizeIs,
    Struct,
    Unique,
    WString,
    uint8,
    uint16,
    uint32,
)
from dcerpc.server.context import current_call

STATUS_ACCESS_DENIED = 0xC0000022
ERROR_ACCESS_DENIED = 5
RPC_S_ACCESS_DENIED = 0x00000005

Credential = Annotated[bytes, Fixed(8)]  # NETLOGON_CREDENTIAL: CHAR data[8]


class _Challenge(NamedTuple):
    ServerChallenge: Credential
    status: NTSTATUS


class _Authenticated(NamedTuple):
    ServerCredential: Credential
    NegotiateFlags: uint32
    AccountRid: uint32
    status: NTSTATUS


class Netlogon(Interface, uuid="12345678-1234-abcd-ef00-01234567cffb", version=(1, 0), name="netlogon"):
    """NetrServerReqChallenge and NetrServerAuthenticate3: every credential refused (a patched DC's
    answer to CVE-2020-1472's zero credential)."""

    @operation(4)
    async def NetrServerReqChallenge(
        self, PrimaryName: Unique[WString], ComputerName: WString, ClientChallenge: Credential
    ) -> _Challenge:
        return _Challenge(os.urandom(8), NTSTATUS(0))

    @operation(26)
    async def NetrServerAuthenticate3(
        self,
        PrimaryName: Unique[WString],
        AccountName: WString,
        SecureChannelType: uint16,
        ComputerName: WString,
        ClientCredential: Credential,
        NegotiateFlags: uint32,
    ) -> _Authenticated:
        return _Authenticated(bytes(8), 0, 0, NTSTATUS(STATUS_ACCESS_DENIED))


class _Opened(NamedTuple):
    lpScHandle: ContextHandle
    status: uint32


class _Created(NamedTuple):
    lpdwTagId: Unique[uint32]
    lpServiceHandle: ContextHandle
    status: uint32


class Svcctl(Interface, uuid="367abb81-9844-35f1-ad32-98f038001003", version=(2, 0), name="svcctl"):
    """ROpenSCManagerW gives a handle; RCreateServiceW on it is refused (ERROR_ACCESS_DENIED)."""

    @operation(15)
    async def ROpenSCManagerW(
        self, lpMachineName: Unique[WString], lpDatabaseName: Unique[WString], dwDesiredAccess: uint32
    ) -> _Opened:
        return _Opened(current_call().open_handle("scm"), 0)

    @operation(12)
    async def RCreateServiceW(
        self,
        hSCManager: ContextHandle,
        lpServiceName: WString,
        lpDisplayName: Unique[WString],
        dwDesiredAccess: uint32,
        dwServiceType: uint32,
        dwStartType: uint32,
        dwErrorControl: uint32,
        lpBinaryPathName: WString,
        lpLoadOrderGroup: Unique[WString],
        lpdwTagId: Unique[uint32],
        lpDependencies: Unique[Annotated[bytes, SizeIs("dwDependSize")]],
        dwDependSize: uint32,
        lpServiceStartName: Unique[WString],
        lpPassword: Unique[Annotated[bytes, SizeIs("dwPwSize")]],
        dwPwSize: uint32,
    ) -> _Created:
        current_call().handle_value(hSCManager)  # a handle of this association group
        return _Created(None, ContextHandle(), ERROR_ACCESS_DENIED)


class AT_INFO(Struct):
    JobTime: uint32  # DWORD_PTR: 32 bits in NDR 2.0
    DaysOfMonth: uint32
    DaysOfWeek: uint8
    Flags: uint8
    Command: Unique[WString]


class _JobAdded(NamedTuple):
    pJobId: uint32
    status: uint32


class Atsvc(Interface, uuid="1ff70682-0a51-30e8-076d-740be8cee98b", version=(1, 0), name="atsvc"):
    """NetrJobAdd: refused (ERROR_ACCESS_DENIED)."""

    @operation(0)
    async def NetrJobAdd(self, ServerName: Unique[WString], pAtInfo: AT_INFO) -> _JobAdded:
        return _JobAdded(0, ERROR_ACCESS_DENIED)


class COMVERSION(Struct):
    MajorVersion: uint16
    MinorVersion: uint16


class ORPC_EXTENT(Struct):
    id: GUID
    size: uint32
    data: Annotated[bytes, SizeIs("(size + 7) / 8 * 8")]


class ORPC_EXTENT_ARRAY(Struct):
    size: uint32
    reserved: uint32
    extent: Unique[Annotated[list[Unique[ORPC_EXTENT]], SizeIs("(size + 1) / 2 * 2")]]


class ORPCTHIS(Struct):
    version: COMVERSION
    flags: uint32
    reserved1: uint32
    cid: GUID
    extensions: Unique[ORPC_EXTENT_ARRAY]


class MInterfacePointer(Struct):
    ulCntData: uint32
    abData: Annotated[bytes, SizeIs("ulCntData")]


class RemoteActivator(
    Interface, uuid="4d9f4ab8-7d1c-11cf-861e-0020af6e7c57", version=(0, 0), name="IRemoteActivation"
):
    """RemoteActivation: every activation refused (a fault, access denied)."""

    @operation(0)
    async def RemoteActivation(
        self,
        ORPCthis: ORPCTHIS,
        Clsid: GUID,
        pwszObjectName: Unique[WString],
        pObjectStorage: Unique[MInterfacePointer],
        ClientImpLevel: uint32,
        Mode: uint32,
        Interfaces: uint32,
        pIIDs: Unique[Annotated[list[GUID], SizeIs("Interfaces")]],
        cRequestedProtseqs: uint16,
        aRequestedProtseqs: Annotated[list[uint16], SizeIs("cRequestedProtseqs")],
    ) -> HRESULT:
        raise FaultError(RPC_S_ACCESS_DENIED, "activation refused")


class SystemActivator(
    Interface, uuid="000001a0-0000-0000-c000-000000000046", version=(0, 0), name="ISystemActivator"
):
    """RemoteCreateInstance: every activation refused (a fault, access denied)."""

    @operation(4)
    async def RemoteCreateInstance(
        self, orpcthis: ORPCTHIS, pUnkOuter: Unique[MInterfacePointer], pActProperties: MInterfacePointer
    ) -> HRESULT:
        raise FaultError(RPC_S_ACCESS_DENIED, "activation refused")


class TASK_USER_CRED(Struct):
    userId: Unique[WString]
    password: Unique[WString]
    flags: uint32


class TASK_XML_ERROR_INFO(Struct):
    line: uint32
    column: uint32
    node: Unique[WString]
    value: Unique[WString]


class _Registered(NamedTuple):
    pActualPath: Unique[WString]
    pErrorInfo: Unique[TASK_XML_ERROR_INFO]
    status: HRESULT


E_ACCESSDENIED = 0x80070005


class TaskScheduler(
    Interface, uuid="86d35949-83c9-4044-b424-db363231fd0c", version=(1, 0), name="ITaskSchedulerService"
):
    """SchRpcRegisterTask: refused (E_ACCESSDENIED)."""

    @operation(1)
    async def SchRpcRegisterTask(
        self,
        path: Unique[WString],
        xml: WString,
        flags: uint32,
        sddl: Unique[WString],
        logonType: uint32,
        cCreds: uint32,
        pCreds: Unique[Annotated[list[TASK_USER_CRED], SizeIs("cCreds")]],
    ) -> _Registered:
        return _Registered(None, None, HRESULT(E_ACCESSDENIED))
