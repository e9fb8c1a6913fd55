"""Exceptions and the protocol status codes they carry.

Every error the package raises derives from :class:`RpcError`. Errors that mirror a status on the wire
(a fault PDU, a bind_nak reason, an NTSTATUS returned by a procedure) carry that status by name and by
number, so a log line or a traceback reads ``FaultError: nca_s_op_rng_error (0x1c010002)``.

The client's errors say what happened and what to do. Where one replaces an exception Python raised
before (``ValueError`` for a bad binding, ``ConnectionRefusedError``, ``socket.gaierror``,
``TimeoutError``), it also derives from that one, so existing ``except`` clauses keep catching it;
an operating-system error stays reachable as ``__cause__``. The errors of opening a socket are the
client's (``client.opening``: this module is beneath the sans-IO layers and knows no sockets).
docs/errors.md lists them all.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "NCA_STATUS",
    "BindError",
    "BindTimeoutError",
    "BindingError",
    "CallTimeoutError",
    "ConnectTimeoutError",
    "ConnectionClosedError",
    "DeclarationError",
    "EncodeError",
    "EndpointNotRegisteredError",
    "FaultError",
    "ImplementationError",
    "NdrError",
    "ProtocolError",
    "ResolveError",
    "RpcError",
    "RpcTimeoutError",
    "status_name",
]

# C706 Appendix E (nca_s_*) and MS-RPCE 3.3.3.5.x: the fault statuses Windows and Samba send.
NCA_STATUS: Final[dict[int, str]] = {
    0x00000001: "rpc_s_fault_other",
    0x00000005: "rpc_s_access_denied",
    0x000006BA: "rpc_s_server_unavailable",
    0x000006BD: "rpc_s_no_call_active",
    0x000006D8: "ept_s_cant_perform_op",
    0x000006D9: "rpc_s_out_of_resources",
    0x000006F7: "rpc_x_bad_stub_data",
    0x0000071A: "rpc_s_call_cancelled",
    0x00000721: "rpc_s_sec_pkg_error",
    0x1C010001: "nca_s_comm_failure",
    0x1C010002: "nca_s_op_rng_error",
    0x1C010003: "nca_s_unk_if",
    0x1C010006: "nca_s_wrong_boot_time",
    0x1C010009: "nca_s_you_crashed",
    0x1C01000B: "nca_s_proto_error",
    0x1C010013: "nca_s_out_args_too_big",
    0x1C010014: "nca_s_server_too_busy",
    0x1C010015: "nca_s_fault_string_too_long",
    0x1C010017: "nca_s_unsupported_type",
    0x1C000001: "nca_s_fault_int_div_by_zero",
    0x1C000002: "nca_s_fault_addr_error",
    0x1C000006: "nca_s_fault_invalid_tag",
    0x1C000007: "nca_s_fault_invalid_bound",
    0x1C00000D: "nca_s_fault_cancel",
    0x1C000012: "nca_s_fault_unspec",
    0x1C00001A: "nca_s_fault_context_mismatch",
    0x1C00001B: "nca_s_fault_remote_no_memory",
    0x1C00001C: "nca_s_invalid_pres_context_id",
    0x1C00001D: "nca_s_unsupported_authn_level",
    0x1C00001F: "nca_s_invalid_checksum",
    0x1C000020: "nca_s_invalid_crc",
    0x16C9A0D6: "ept_s_not_registered",
}


def status_name(status: int) -> str:
    """The conventional name of a fault / reject status, or its hex spelling when unknown."""
    return NCA_STATUS.get(status, f"0x{status:08x}")


class RpcError(Exception):
    """Base of every error raised by dcerpc."""


class NdrError(RpcError):
    """Bytes that are not a valid NDR encoding of the expected type, or a value that cannot be encoded.

    Attributes:
        offset: byte offset in the stub where decoding failed (-1 for encoding errors).
        reason: what was wrong, in words.
    """

    def __init__(self, reason: str, offset: int = -1) -> None:
        self.reason = reason
        self.offset = offset
        super().__init__(f"{reason} (at offset {offset})" if offset >= 0 else reason)


class EncodeError(NdrError):
    """Values given to a call (or returned by an implementation) that do not fit their declaration.

    The message names the operation and the parameter, down to the member or element that is wrong:
    ``Add(b=...): expected int, got str``, ``Store(s.items[3].name=...): expected str, got bytes``;
    for a result, ``Add -> result: ...``.

    Attributes:
        operation: the operation (or type) being encoded.
        path: the parameter and, within it, the member or element that does not fit.
        problem: what is wrong with it.
    """

    def __init__(self, operation: str, path: str, problem: str, *, result: bool = False) -> None:
        self.operation = operation
        self.path = path
        self.problem = problem
        if result:
            where = f"{operation} -> {path}"
        else:
            where = f"{operation}({path}=...)" if path else f"{operation}(...)"
        super().__init__(f"{where}: {problem}")


class DeclarationError(RpcError, TypeError):
    """A type or interface declaration breaks a rule of NDR / IDL (docs/declarations.md).

    Raised when the class is defined; when the declaration names a type defined later in its module,
    when it is first used (a codec, a proxy, registration with a server). Also a ``TypeError``.

    Attributes:
        owner: the struct, union or ``Interface.operation`` declared.
        member: the member, arm or parameter at fault ("" for the declaration as a whole).
        problem: what is wrong, in words.
        rule: the rule broken, and where it comes from (``C706 14.3.7.2``, MIDL ...).
    """

    def __init__(self, problem: str, rule: str, owner: str = "", member: str = "") -> None:
        self.problem = problem
        self.rule = rule
        self.owner = owner
        self.member = member
        super().__init__(problem, rule, owner, member)

    def at(self, owner: str, member: str = "") -> DeclarationError:
        """This error, placed in ``owner`` (and its ``member``) unless it already names where."""
        if self.owner:
            return self
        return DeclarationError(self.problem, self.rule, owner, member)

    def __str__(self) -> str:
        where = ".".join(p for p in (self.owner, self.member) if p)
        return (
            f"{where}: {self.problem}; rule: {self.rule}" if where else f"{self.problem}; rule: {self.rule}"
        )


class ImplementationError(RpcError, TypeError):
    """What a server was asked to serve does not implement its interface: it is the contract class
    itself, or it leaves operations without a body (they would answer every call with nothing).

    Attributes:
        implementation: the class given.
        interface: the interface it declares to implement.
        missing: the operations it leaves unimplemented, in opnum order.
    """

    def __init__(self, implementation: str, interface: str, missing: tuple[str, ...], contract: bool) -> None:
        self.implementation = implementation
        self.interface = interface
        self.missing = missing
        if contract:
            text = (
                f"{implementation} is the declaration of {interface}, not an implementation: subclass it "
                f"and give its operations bodies ({', '.join(missing)})"
            )
        else:
            text = (
                f"{implementation} does not implement {interface}'s {', '.join(missing)}: define "
                f"{'it' if len(missing) == 1 else 'them'} (an operation not served on purpose: a body that "
                "raises NotImplementedError, answered nca_s_op_rng_error)"
            )
        super().__init__(text)


class ProtocolError(RpcError):
    """A peer broke the connection-oriented or connectionless protocol rules."""


class FaultError(RpcError):
    """The server answered a call with a fault PDU.

    An implementation raises it to answer a call with a fault: the peer gets ``status`` alone (a
    fault PDU has no room for text); ``message`` goes to the server's log.

    Attributes:
        status: the fault status number.
        name: its conventional name (``nca_s_op_rng_error``) or hex spelling.
        message: the text given, if any (never sent).
    """

    def __init__(self, status: int, message: str = "") -> None:
        self.status = status
        self.name = status_name(status)
        self.message = message
        text = f"{self.name} (0x{status:08x})"
        super().__init__(f"{text}: {message}" if message else text)


class BindError(RpcError):
    """The server refused a bind (bind_nak) or rejected the presentation context of an interface.

    Attributes:
        reason: the bind_nak reject reason or the provider rejection reason.
    """

    def __init__(self, message: str, reason: int = 0) -> None:
        self.reason = reason
        super().__init__(message)


class ConnectionClosedError(RpcError):
    """The connection closed while calls were outstanding, or before they could be sent."""


class BindingError(RpcError, ValueError):
    """A string binding that cannot be parsed, or that names what this client cannot do.

    Attributes:
        binding: the text as given.
        part: the part that is wrong (``"protseq"``, ``"endpoint"``, ``"option"`` ...).
        position: its offset in ``binding`` (-1 when it is not one place).
    """

    def __init__(self, binding: str, part: str, problem: str, expected: str, position: int = -1) -> None:
        self.binding = binding
        self.part = part
        self.position = position
        where = f" at position {position}" if position >= 0 else ""
        super().__init__(f"bad string binding {binding!r}: {part}{where}: {problem}; expected {expected}")


class RpcTimeoutError(RpcError, TimeoutError):
    """A step took longer than its deadline (also a builtin ``TimeoutError``).

    Attributes:
        step: ``"connect"``, ``"bind"`` or ``"call"``.
        seconds: the deadline that ran out.
        target: what was waited for (an address, an interface, an operation).
    """

    def __init__(self, step: str, target: str, seconds: float, advice: str) -> None:
        self.step = step
        self.target = target
        self.seconds = seconds
        self._text = f"{step} {target}: no answer within {seconds:g} s; {advice}"
        super().__init__(self._text)

    def __str__(self) -> str:
        return self._text


class ConnectTimeoutError(RpcTimeoutError):
    """The transport connection was not established within the connect deadline."""


class BindTimeoutError(RpcTimeoutError):
    """The server accepted the connection but did not answer the bind (or alter_context) in time."""


class CallTimeoutError(RpcTimeoutError):
    """A call got no answer within its deadline; the call was orphaned (the server stops on it)."""


class ResolveError(RpcError):
    """The endpoint of an interface could not be found (through the endpoint mapper)."""


class EndpointNotRegisteredError(ResolveError):
    """The host's endpoint mapper knows no endpoint of the interface (``ept_s_not_registered``).

    Attributes:
        interface: the interface's name (or its UUID when no name is known).
        host: whose mapper was asked.
        status: the mapper's status (``ept_s_not_registered``, 0x16c9a0d6).
    """

    def __init__(self, host: str, interface: str, syntax: str, status: int) -> None:
        self.host = host
        self.interface = interface
        self.status = status
        super().__init__(
            f"{host}'s endpoint mapper has no TCP endpoint registered for {interface} ({syntax}): "
            f"{status_name(status)} (0x{status:08x}); is the service running and registered there, "
            "or name its port in the binding (ncacn_ip_tcp:HOST[PORT])"
        )
