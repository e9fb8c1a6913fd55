"""The well-known interface table: UUID, version and operation names, in our own format.

Each interface is one line ``NAME UUID MAJOR.MINOR [TITLE]`` followed by indented lines holding its
operation names in opnum order (opnum 0 first), ``-`` where an opnum has no name we know. The facts
(UUIDs, numbering, names) come from the protocol specifications (MS-RPCE, MS-DCOM, MS-WMI, MS-SCMR,
MS-TSCH, MS-RRP, MS-EVEN, MS-EVEN6, MS-SRVS, MS-WKST, MS-SAMR, MS-LSAD, MS-LSAT, MS-NRPC, MS-DRSR,
MS-RPRN, MS-DSSP, C706 for the endpoint mapper and mgmt) as Samba's IDL and impacket's opnum lists
state them; names follow the specifications' spelling where those lists give it. Interfaces derived
from IUnknown (the DCOM and WMI ones) number their own methods from 3: opnums 0-2 are
QueryInterface, AddRef and Release, which are never called remotely.
"""

from __future__ import annotations

from typing import Final

TABLE: Final = """
epmapper e1af8308-5d1f-11c9-91a4-08002b14a0fa 3.0 endpoint mapper
    ept_insert ept_delete ept_lookup ept_map ept_lookup_handle_free ept_inq_object ept_mgmt_delete
mgmt afa8bd80-7d8a-11c9-bef4-08002b102989 1.0 remote management
    inq_if_ids inq_stats is_server_listening stop_server_listening inq_princ_name
rpcecho 60a15ec5-4de8-11d7-a637-005056a20182 1.0 Samba test interface
    AddOne EchoData SinkData SourceData TestCall TestCall2 TestSleep TestEnum TestSurrounding
    TestDoublePointer
ISystemActivator 000001a0-0000-0000-c000-000000000046 0.0 DCOM IRemoteSCMActivator
    QueryInterface AddRef Release RemoteGetClassObject RemoteCreateInstance
IActivation 4d9f4ab8-7d1c-11cf-861e-0020af6e7c57 0.0 DCOM IRemoteActivation
    RemoteActivation
IObjectExporter 99fcfec4-5260-101b-bbcb-00aa0021347a 0.0 DCOM OXID resolver (IOXIDResolver)
    ResolveOxid SimplePing ComplexPing ServerAlive ResolveOxid2 ServerAlive2
IRemUnknown 00000131-0000-0000-c000-000000000046 0.0 DCOM
    QueryInterface AddRef Release RemQueryInterface RemAddRef RemRelease
IRemUnknown2 00000143-0000-0000-c000-000000000046 0.0 DCOM
    QueryInterface AddRef Release RemQueryInterface RemAddRef RemRelease RemQueryInterface2
IWbemLevel1Login f309ad18-d86a-11d0-a075-00c04fb68820 0.0 WMI login
    QueryInterface AddRef Release EstablishPosition RequestChallenge WBEMLogin NTLMLogin
IWbemServices 9556dc99-828c-11cf-a37e-00aa003240c7 0.0 WMI services
    QueryInterface AddRef Release OpenNamespace CancelAsyncCall QueryObjectSink GetObject
    GetObjectAsync PutClass PutClassAsync DeleteClass DeleteClassAsync CreateClassEnum
    CreateClassEnumAsync PutInstance PutInstanceAsync DeleteInstance DeleteInstanceAsync
    CreateInstanceEnum CreateInstanceEnumAsync ExecQuery ExecQueryAsync ExecNotificationQuery
    ExecNotificationQueryAsync ExecMethod ExecMethodAsync
svcctl 367abb81-9844-35f1-ad32-98f038001003 2.0 service control manager
    RCloseServiceHandle RControlService RDeleteService RLockServiceDatabase
    RQueryServiceObjectSecurity RSetServiceObjectSecurity RQueryServiceStatus RSetServiceStatus
    RUnlockServiceDatabase RNotifyBootConfigStatus SCSetServiceBitsW RChangeServiceConfigW
    RCreateServiceW REnumDependentServicesW REnumServicesStatusW ROpenSCManagerW ROpenServiceW
    RQueryServiceConfigW RQueryServiceLockStatusW RStartServiceW RGetServiceDisplayNameW
    RGetServiceKeyNameW SCSetServiceBitsA ChangeServiceConfigA CreateServiceA EnumDependentServicesA
    EnumServicesStatusA OpenSCManagerA OpenServiceA QueryServiceConfigA QueryServiceLockStatusA
    StartServiceA GetServiceDisplayNameA GetServiceKeyNameA GetCurrentGroupeStateW
    REnumServiceGroupW ChangeServiceConfig2A RChangeServiceConfig2W QueryServiceConfig2A
    RQueryServiceConfig2W RQueryServiceStatusEx EnumServicesStatusExA REnumServicesStatusExW
    SCSendTSMessage - RCreateServiceWOW64W - RNotifyServiceStatusChange RGetNotifyResults
    RCloseNotifyHandle - RControlServiceExW - - - - RQueryServiceConfigEx
atsvc 1ff70682-0a51-30e8-076d-740be8cee98b 1.0 task scheduler
    NetrJobAdd NetrJobDel NetrJobEnum NetrJobGetInfo
ITaskSchedulerService 86d35949-83c9-4044-b424-db363231fd0c 1.0
    SchRpcHighestVersion SchRpcRegisterTask SchRpcRetrieveTask SchRpcCreateFolder SchRpcSetSecurity
    SchRpcGetSecurity SchRpcEnumFolders SchRpcEnumTasks SchRpcEnumInstances SchRpcGetInstanceInfo
    SchRpcStopInstance SchRpcStop SchRpcRun SchRpcDelete SchRpcRename SchRpcScheduledRuntimes
    SchRpcGetLastRunInfo SchRpcGetTaskInfo SchRpcGetNumberOfMissedRuns SchRpcEnableTask
winreg 338cd001-2244-31f1-aaaa-900038001003 1.0 remote registry
    OpenClassesRoot OpenCurrentUser OpenLocalMachine OpenPerformanceData OpenUsers BaseRegCloseKey
    BaseRegCreateKey BaseRegDeleteKey BaseRegDeleteValue BaseRegEnumKey BaseRegEnumValue
    BaseRegFlushKey BaseRegGetKeySecurity BaseRegLoadKey NotifyChangeKeyValue BaseRegOpenKey
    BaseRegQueryInfoKey BaseRegQueryValue BaseRegReplaceKey BaseRegRestoreKey BaseRegSaveKey
    BaseRegSetKeySecurity BaseRegSetValue BaseRegUnLoadKey InitiateSystemShutdown
    AbortSystemShutdown BaseRegGetVersion OpenCurrentConfig OpenHKDD BaseRegQueryMultipleValues
    InitiateSystemShutdownEx BaseRegSaveKeyEx OpenPerformanceText OpenPerformanceNlsText
    BaseRegQueryMultipleValues2 BaseRegDeleteKeyEx
eventlog 82273fdc-e32a-18c3-3f78-827929dc23ea 0.0
    ElfrClearELFW ElfrBackupELFW ElfrCloseEL DeregisterEventSource ElfrNumberOfRecords
    ElfrOldestRecord ChangeNotify ElfrOpenELW ElfrRegisterEventSourceW ElfrOpenBELW ElfrReadELW
    ElfrReportEventW ClearEventLogA BackupEventLogA OpenEventLogA RegisterEventSourceA
    OpenBackupEventLogA ReadEventLogA ReportEventA RegisterClusterSvc DeregisterClusterSvc
    WriteClusterEvents GetLogInformation FlushEventLog ReportEventAndSourceW
even6 f6beaff7-1e19-4fbb-9f8f-b89e2018337c 1.0 EventLog remoting 6.0
    EvtRpcRegisterRemoteSubscription EvtRpcRemoteSubscriptionNextAsync EvtRpcRemoteSubscriptionNext
    EvtRpcRemoteSubscriptionWaitAsync EvtRpcRegisterControllableOperation EvtRpcRegisterLogQuery
    EvtRpcClearLog EvtRpcExportLog EvtRpcLocalizeExportLog EvtRpcMessageRender
    EvtRpcMessageRenderDefault EvtRpcQueryNext EvtRpcQuerySeek EvtRpcClose EvtRpcCancel
    EvtRpcAssertConfig EvtRpcRetractConfig EvtRpcOpenLogHandle EvtRpcGetLogFileInfo
    EvtRpcGetChannelList EvtRpcGetChannelConfig EvtRpcPutChannelConfig EvtRpcGetPublisherList
    EvtRpcGetPublisherListForChannel EvtRpcGetPublisherMetadata EvtRpcGetPublisherResourceMetadata
    EvtRpcGetEventMetadataEnum EvtRpcGetNextEventMetadata EvtRpcGetClassicLogDisplayName
srvsvc 4b324fc8-1670-01d3-1278-5a47bf6ee188 3.0 server service
    NetCharDevEnum NetCharDevGetInfo NetCharDevControl NetCharDevQEnum NetCharDevQGetInfo
    NetCharDevQSetInfo NetCharDevQPurge NetCharDevQPurgeSelf NetrConnectionEnum NetrFileEnum
    NetrFileGetInfo NetrFileClose NetrSessionEnum NetrSessionDel NetrShareAdd NetrShareEnum
    NetrShareGetInfo NetrShareSetInfo NetrShareDel NetrShareDelSticky NetrShareCheck
    NetrServerGetInfo NetrServerSetInfo NetrServerDiskEnum NetrServerStatisticsGet
    NetrServerTransportAdd NetrServerTransportEnum NetrServerTransportDel NetrRemoteTOD
    NetSetServiceBits NetprPathType NetprPathCanonicalize NetprPathCompare NetprNameValidate
    NetprNameCanonicalize NetprNameCompare NetrShareEnumSticky NetrShareDelStart NetrShareDelCommit
    NetrpGetFileSecurity NetrpSetFileSecurity NetrServerTransportAddEx NetServerSetServiceBitsEx
    NetrDfsGetVersion NetrDfsCreateLocalPartition NetrDfsDeleteLocalPartition
    NetrDfsSetLocalVolumeState - NetrDfsCreateExitPoint NetrDfsDeleteExitPoint NetrDfsModifyPrefix
    NetrDfsFixLocalVolume NetrDfsManagerReportSiteInfo NetrServerTransportDelEx NetrServerAliasAdd
    NetrServerAliasEnum NetrServerAliasDel NetrShareDelEx
wkssvc 6bffd098-a112-3610-9833-46c3f87e345a 1.0 workstation service
    NetrWkstaGetInfo NetrWkstaSetInfo NetrWkstaUserEnum NetrWkstaUserGetInfo NetrWkstaUserSetInfo
    NetrWkstaTransportEnum NetrWkstaTransportAdd NetrWkstaTransportDel NetrUseAdd NetrUseGetInfo
    NetrUseDel NetrUseEnum NetrMessageBufferSend NetrWorkstationStatisticsGet NetrLogonDomainNameAdd
    NetrLogonDomainNameDel NetrJoinDomain NetrUnjoinDomain NetrRenameMachineInDomain
    NetrValidateName NetrGetJoinInformation NetrGetJoinableOus NetrJoinDomain2 NetrUnjoinDomain2
    NetrRenameMachineInDomain2 NetrValidateName2 NetrGetJoinableOUs2 NetrAddAlternateComputerName
    NetrRemoveAlternateComputerName NetrSetPrimaryComputerName NetrEnumerateComputerNames
samr 12345778-1234-abcd-ef00-0123456789ac 1.0 SAM
    SamrConnect SamrCloseHandle SamrSetSecurityObject SamrQuerySecurityObject Shutdown
    SamrLookupDomainInSamServer SamrEnumerateDomainsInSamServer SamrOpenDomain
    SamrQueryInformationDomain SamrSetInformationDomain SamrCreateGroupInDomain
    SamrEnumerateGroupsInDomain SamrCreateUserInDomain SamrEnumerateUsersInDomain
    SamrCreateAliasInDomain SamrEnumerateAliasesInDomain SamrGetAliasMembership
    SamrLookupNamesInDomain SamrLookupIdsInDomain SamrOpenGroup SamrQueryInformationGroup
    SamrSetInformationGroup SamrAddMemberToGroup SamrDeleteGroup SamrRemoveMemberFromGroup
    SamrGetMembersInGroup SamrSetMemberAttributesOfGroup SamrOpenAlias SamrQueryInformationAlias
    SamrSetInformationAlias SamrDeleteAlias SamrAddMemberToAlias SamrRemoveMemberFromAlias
    SamrGetMembersInAlias SamrOpenUser SamrDeleteUser SamrQueryInformationUser
    SamrSetInformationUser SamrChangePasswordUser SamrGetGroupsForUser SamrQueryDisplayInformation
    SamrGetDisplayEnumerationIndex TestPrivateFunctionsDomain TestPrivateFunctionsUser
    SamrGetUserDomainPasswordInformation SamrRemoveMemberFromForeignDomain
    SamrQueryInformationDomain2 SamrQueryInformationUser2 SamrQueryDisplayInformation2
    SamrGetDisplayEnumerationIndex2 SamrCreateUser2InDomain SamrQueryDisplayInformation3
    SamrAddMultipleMembersToAlias SamrRemoveMultipleMembersFromAlias SamrOemChangePasswordUser2
    SamrUnicodeChangePasswordUser2 SamrGetDomainPasswordInformation SamrConnect2
    SamrSetInformationUser2 SetBootKeyInformation GetBootKeyInformation Connect3 SamrConnect4
    ChangePasswordUser3 SamrConnect5 SamrRidToSid SamrSetDSRMPassword SamrValidatePassword - - - - -
    ChangePasswordUser4
lsarpc 12345778-1234-abcd-ef00-0123456789ab 0.0 LSA
    LsarClose Delete LsarEnumeratePrivileges LsarQuerySecurityObject LsarSetSecurityObject
    ChangePassword LsarOpenPolicy LsarQueryInformationPolicy LsarSetInformationPolicy ClearAuditLog
    LsarCreateAccount LsarEnumerateAccounts CreateTrustedDomain LsarEnumerateTrustedDomains
    LsarLookupNames LsarLookupSids LsarCreateSecret LsarOpenAccount LsarEnumeratePrivilegesAccount
    LsarAddPrivilegesToAccount LsarRemovePrivilegesFromAccount GetQuotasForAccount
    SetQuotasForAccount LsarGetSystemAccessAccount LsarSetSystemAccessAccount OpenTrustedDomain
    QueryTrustedDomainInfo SetInformationTrustedDomain LsarOpenSecret LsarSetSecret LsarQuerySecret
    LsarLookupPrivilegeValue LsarLookupPrivilegeName LsarLookupPrivilegeDisplayName LsarDeleteObject
    LsarEnumerateAccountsWithUserRight LsarEnumerateAccountRights LsarAddAccountRights
    LsarRemoveAccountRights QueryTrustedDomainInfoBySid SetTrustedDomainInfo DeleteTrustedDomain
    LsarStorePrivateData LsarRetrievePrivateData LsarOpenPolicy2 LsarGetUserName
    LsarQueryInformationPolicy2 LsarSetInformationPolicy2 QueryTrustedDomainInfoByName
    SetTrustedDomainInfoByName LsarEnumerateTrustedDomainsEx CreateTrustedDomainEx
    CloseTrustedDomainEx LsarQueryDomainInformationPolicy SetDomainInformationPolicy
    OpenTrustedDomainByName TestCall LsarLookupSids2 LsarLookupNames2 CreateTrustedDomainEx2 - - - -
    - - - - LsarLookupNames3 - - - - LsarQueryForestTrustInformation lsaRSetForestTrustInformation -
    LsarLookupSids3 LsarLookupNames4
netlogon 12345678-1234-abcd-ef00-01234567cffb 1.0
    NetrLogonUasLogon NetrLogonUasLogoff NetrLogonSamLogon NetrLogonSamLogoff NetrServerReqChallenge
    NetrServerAuthenticate ServerPasswordSet NetrDatabaseDeltas NetrDatabaseSync AccountDeltas
    AccountSync NetrGetDCName NetrLogonControl NetrGetAnyDCName NetrLogonControl2
    NetrServerAuthenticate2 NetrDatabaseSync2 NetrDatabaseRedo NetrLogonControl2Ex
    NetrEnumerateTrustedDomains DsrGetDcName NetrLogonGetCapabilities NetrLogonSetServiceBits
    NetrLogonGetTrustRid NetrLogonComputeServerDigest NetrLogonComputeClientDigest
    NetrServerAuthenticate3 DsrGetDcNameEx DsrGetSiteName NetrLogonGetDomainInfo
    NetrServerPasswordSet2 NetrServerPasswordGet NetrLogonSendToSam DsrAddressToSiteNamesW
    DsrGetDcNameEx2 NetrLogonGetTimeServiceParentDomain NetrEnumerateTrustedDomainsEx
    DsrAddressToSiteNamesExW DsrGetDcSiteCoverageW NetrLogonSamLogonEx DsrEnumerateDomainTrusts
    DsrDeregisterDnsHostRecords NetrServerTrustPasswordsGet DsrGetForestTrustInformation
    NetrGetForestTrustInformation NetrLogonSamLogonWithFlags NetrServerGetTrustInfo -
    DSRUpdateReadOnlyServerDnsRecords
drsuapi e3514235-4b06-11d1-ab04-00c04fc2dcd2 4.0 directory replication
    DRSBind DRSUnbind DsReplicaSync DRSGetNCChanges DsReplicaUpdateRefs DsReplicaAdd DsReplicaDel
    DsReplicaMod DRSVerifyNames DsGetMemberships - DRSGetNT4ChangeLog DRSCrackNames
    DsWriteAccountSpn DsRemoveDSServer - DRSDomainControllerInfo DsAddEntry DsExecuteKCC
    DsReplicaGetInfo - DsGetMemberships2 - - QuerySitesByCost
spoolss 12345678-1234-abcd-ef00-0123456789ab 1.0 print spooler
    RpcEnumPrinters RpcOpenPrinter SetJob GetJob EnumJobs AddPrinter DeletePrinter SetPrinter
    GetPrinter AddPrinterDriver RpcEnumPrinterDrivers GetPrinterDriver RpcGetPrinterDriverDirectory
    DeletePrinterDriver AddPrintProcessor EnumPrintProcessors GetPrintProcessorDirectory
    StartDocPrinter StartPagePrinter WritePrinter EndPagePrinter AbortPrinter ReadPrinter
    EndDocPrinter AddJob ScheduleJob GetPrinterData SetPrinterData WaitForPrinterChange
    RpcClosePrinter AddForm DeleteForm GetForm SetForm EnumForms EnumPorts EnumMonitors AddPort
    ConfigurePort DeletePort CreatePrinterIC PlayGDIScriptOnPrinterIC DeletePrinterIC
    AddPrinterConnection DeletePrinterConnection PrinterMessageBox AddMonitor DeleteMonitor
    DeletePrintProcessor AddPrintProvidor DeletePrintProvidor EnumPrintProcessorDataTypes
    ResetPrinter GetPrinterDriver2 FindFirstPrinterChangeNotification
    FindNextPrinterChangeNotification FindClosePrinterNotify
    RouterFindFirstPrinterChangeNotificationOld ReplyOpenPrinter RouterReplyPrinter
    ReplyClosePrinter AddPortEx RouterFindFirstPrinterChangeNotification SpoolerInit ResetPrinterEx
    RpcRemoteFindFirstPrinterChangeNotificationEx RouterReplyPrinterEx
    RouterRefreshPrinterChangeNotify - RpcOpenPrinterEx AddPrinterEx SetPort EnumPrinterData
    DeletePrinterData - - - SetPrinterDataEx GetPrinterDataEx EnumPrinterDataEx EnumPrinterKey
    DeletePrinterDataEx DeletePrinterKey - DeletePrinterDriverEx AddPerMachineConnection
    DeletePerMachineConnection EnumPerMachineConnections XcvData RpcAddPrinterDriverEx - - - - - - -
    SendRecvBidiData - - - - GetCorePrinterDrivers - GetPrinterDriverPackagePath - - - - -
    GetJobNamedPropertyValue SetJobNamedProperty DeleteJobNamedProperty EnumJobNamedProperties - -
    LogJobInfoForBranchOffice
dssetup 3919286a-b10c-11d0-9ba8-00c04fd92ef5 0.0
    DsRolerGetPrimaryDomainInformation DsRoleDnsNameToFlatName DsRoleDcAsDc DsRoleDcAsReplica
    DsRoleDemoteDc DsRoleGetDcOperationProgress DsRoleGetDcOperationResults DsRoleCancel
    DsRoleServerSaveStateForUpgrade DsRoleUpgradeDownlevelServer DsRoleAbortDownlevelServerUpgrade
initshutdown 894de0c0-0d55-11d3-a322-00c04fa321a1 1.0
    Init Abort InitEx
dnsserver 50abc2a4-574d-40b3-9d66-ee4fd5fba076 5.0
efsrpc c681d488-d850-11d0-8c52-00c04fd90f7e 1.0
efsrpc df1941c5-fe89-4e79-bf10-463657acf44d 1.0 EFS
pnp 8d9f4e40-a03d-11ce-8f69-08003e30051b 1.0 plug and play
WindowsShutdown d95afe70-a6d5-4259-822e-2c84da1ddb0d 1.0
"""
