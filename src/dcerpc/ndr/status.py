"""NTSTATUS, WERROR and HRESULT: 32-bit status codes that print with their names.

They are ``int`` subclasses, so a decoded status compares equal to its number and encodes as a
``uint32``; ``repr`` and ``.name`` give the conventional name where it is known (MS-ERREF).
"""

from __future__ import annotations

from typing import ClassVar, Final

__all__ = ["HRESULT", "NTSTATUS", "WERROR"]


class _Status(int):
    """A 32-bit status value with a name table per kind."""

    __slots__ = ()
    _names: ClassVar[dict[int, str]] = {}

    def __new__(cls, value: int = 0) -> _Status:
        return super().__new__(cls, value & 0xFFFFFFFF)

    @property
    def name(self) -> str:
        """The conventional name (``NT_STATUS_ACCESS_DENIED``) or the hex spelling."""
        return self._names.get(int(self), f"0x{int(self):08x}")

    @property
    def is_error(self) -> bool:
        """True when the value reports a failure (the kind decides which bits say so)."""
        return int(self) != 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"

    __str__ = __repr__


# MS-ERREF 2.3.1: the NTSTATUS values RPC peers return most.
_NTSTATUS_NAMES: Final[dict[int, str]] = {
    0x00000000: "NT_STATUS_OK",
    0x00000103: "NT_STATUS_PENDING",
    0x80000005: "STATUS_BUFFER_OVERFLOW",
    0x8000001A: "STATUS_NO_MORE_ENTRIES",
    0xC0000001: "NT_STATUS_UNSUCCESSFUL",
    0xC0000002: "NT_STATUS_NOT_IMPLEMENTED",
    0xC0000003: "NT_STATUS_INVALID_INFO_CLASS",
    0xC0000008: "NT_STATUS_INVALID_HANDLE",
    0xC000000D: "NT_STATUS_INVALID_PARAMETER",
    0xC0000017: "NT_STATUS_NO_MEMORY",
    0xC0000022: "NT_STATUS_ACCESS_DENIED",
    0xC0000023: "NT_STATUS_BUFFER_TOO_SMALL",
    0xC0000034: "NT_STATUS_OBJECT_NAME_NOT_FOUND",
    0xC000005E: "NT_STATUS_NO_LOGON_SERVERS",
    0xC0000064: "NT_STATUS_NO_SUCH_USER",
    0xC000006A: "NT_STATUS_WRONG_PASSWORD",
    0xC000006D: "NT_STATUS_LOGON_FAILURE",
    0xC00000BB: "NT_STATUS_NOT_SUPPORTED",
    0xC0000120: "NT_STATUS_CANCELLED",
    0xC0000225: "NT_STATUS_NOT_FOUND",
    0xC0020001: "RPC_NT_INVALID_STRING_BINDING",
    0xC0020030: "RPC_NT_UNKNOWN_IF",
    0xC002002A: "RPC_NT_CALL_FAILED",
    0xC0020016: "RPC_NT_SERVER_UNAVAILABLE",
}

# MS-ERREF 2.2: Win32 error codes as carried by WERROR.
_WERROR_NAMES: Final[dict[int, str]] = {
    0: "WERR_OK",
    1: "WERR_INVALID_FUNCTION",
    2: "WERR_FILE_NOT_FOUND",
    5: "WERR_ACCESS_DENIED",
    6: "WERR_INVALID_HANDLE",
    8: "WERR_NOT_ENOUGH_MEMORY",
    50: "WERR_NOT_SUPPORTED",
    87: "WERR_INVALID_PARAMETER",
    122: "WERR_INSUFFICIENT_BUFFER",
    234: "WERR_MORE_DATA",
    259: "WERR_NO_MORE_ITEMS",
    1722: "WERR_RPC_S_SERVER_UNAVAILABLE",
    1753: "WERR_EPT_S_NOT_REGISTERED",
}

# MS-ERREF 2.1: HRESULT values DCOM peers return most.
_HRESULT_NAMES: Final[dict[int, str]] = {
    0x00000000: "S_OK",
    0x00000001: "S_FALSE",
    0x80004001: "E_NOTIMPL",
    0x80004002: "E_NOINTERFACE",
    0x80004003: "E_POINTER",
    0x80004005: "E_FAIL",
    0x8000FFFF: "E_UNEXPECTED",
    0x80070005: "E_ACCESSDENIED",
    0x8007000E: "E_OUTOFMEMORY",
    0x80070057: "E_INVALIDARG",
    0x80040154: "REGDB_E_CLASSNOTREG",
    0x80010108: "RPC_E_DISCONNECTED",
}


class NTSTATUS(_Status):
    """An NT status code (MS-ERREF 2.3); severity bits 30-31 set mean warning / error."""

    __slots__ = ()
    _names = _NTSTATUS_NAMES

    @property
    def is_error(self) -> bool:
        return (int(self) >> 30) == 3


class WERROR(_Status):
    """A Win32 error code (MS-ERREF 2.2); zero is success."""

    __slots__ = ()
    _names = _WERROR_NAMES


class HRESULT(_Status):
    """A COM result code (MS-ERREF 2.1); the top bit set means failure."""

    __slots__ = ()
    _names = _HRESULT_NAMES

    @property
    def is_error(self) -> bool:
        return bool(int(self) & 0x80000000)
