"""Wire status codes (docs/PROTOCOL.md, "Status codes") and the exceptions
the client raises for them.

Every failure the client reports is a :class:`GpuleaseError` carrying the
wire ``status`` (a :class:`Status`), the node's ``message`` and, for session
operations, ``op``: a short description of the operation that failed (for a
pipelined op that failed, the op is named, not the call that noticed it).
"""

from __future__ import annotations

import enum


class Status(enum.IntEnum):
    OK = 0
    BAD_FRAME = 1
    UNSUPPORTED_VERSION = 2
    UNKNOWN_OPCODE = 3
    CHECKSUM_MISMATCH = 4
    FRAME_TOO_LARGE = 5
    UNAUTHENTICATED = 6
    PERMISSION_DENIED = 7
    TOKEN_EXPIRED = 8
    REVOKED = 9
    LEASE_NOT_FOUND = 10
    LEASE_EXPIRED = 11
    CAPACITY_EXCEEDED = 12
    ALLOC_FAILED = 13
    INVALID_HANDLE = 14
    OUT_OF_RANGE = 15
    LOAD_FAILED = 16
    LAUNCH_FAILED = 17
    SYNC_FAILED = 18
    LEASE_FAULTED = 19
    BUSY = 20
    INTERNAL = 21
    INVALID_ARGUMENT = 22
    UNSUPPORTED = 23
    IDEMPOTENCY_CONFLICT = 24  # DECISIONS.md: same idempotency key, other parameters

    # Client-only: never on the wire (the connection dropped, the outcome of the
    # request is unknown). Outside the u16 range the wire can carry.
    CONNECTION_LOST = 0x10000


#: The highest status code defined on the wire by this client.
MAX_WIRE_STATUS = max(s for s in Status if s < 0x10000)


def is_wire_status(code: int) -> bool:
    return 0 <= code <= MAX_WIRE_STATUS


def status_name(code: int) -> str:
    try:
        return Status(code).name
    except ValueError:
        return f"STATUS_{code}"


#: Statuses after which retrying the same request later may succeed.
RETRYABLE = frozenset({
    Status.CHECKSUM_MISMATCH, Status.TOKEN_EXPIRED, Status.LEASE_EXPIRED,
    Status.CAPACITY_EXCEEDED, Status.ALLOC_FAILED, Status.LEASE_FAULTED, Status.BUSY,
    Status.CONNECTION_LOST,
})


class GpuleaseError(Exception):
    """Base of every error the client raises for the node or the network."""

    def __init__(self, status: int, message: str = "", op: str | None = None):
        self.status = Status(status) if status in Status._value2member_map_ else status
        self.message = message
        self.op = op
        text = f"{status_name(status)}: "
        if op:
            text += f"{op}: "
        text += message
        super().__init__(text)

    @property
    def retryable(self) -> bool:
        return self.status in RETRYABLE


class WireError(GpuleaseError):
    """A frame or payload that does not decode (BAD_FRAME, FRAME_TOO_LARGE,
    CHECKSUM_MISMATCH, UNSUPPORTED_VERSION, UNKNOWN_OPCODE, INVALID_ARGUMENT
    for a well-formed but unacceptable value)."""


class ConnectionLostError(GpuleaseError):
    def __init__(self, message: str = "connection lost", op: str | None = None):
        super().__init__(Status.CONNECTION_LOST, message, op)


class NodeError(GpuleaseError):
    """An error reply from the node. Subclassed per status (see
    :func:`error_class`)."""


class LeaseLostError(NodeError):
    """LEASE_EXPIRED, LEASE_FAULTED or LEASE_NOT_FOUND: start again on a new lease."""


def _camel(name: str) -> str:
    return "".join(p.capitalize() for p in name.split("_")) + "Error"


_BY_STATUS: dict[int, type] = {}
for _s in Status:
    if _s in (Status.OK, Status.CONNECTION_LOST):
        continue
    _base = LeaseLostError if _s in (Status.LEASE_EXPIRED, Status.LEASE_FAULTED,
                                     Status.LEASE_NOT_FOUND) else NodeError
    _cls = type(_camel(_s.name), (_base,), {"__doc__": f"Node answered {_s.name} ({int(_s)})."})
    _BY_STATUS[int(_s)] = _cls
    globals()[_cls.__name__] = _cls

# Names exported for `from gpulease.status import ...` and type checkers.
BadFrameError = _BY_STATUS[Status.BAD_FRAME]
UnauthenticatedError = _BY_STATUS[Status.UNAUTHENTICATED]
PermissionDeniedError = _BY_STATUS[Status.PERMISSION_DENIED]
TokenExpiredError = _BY_STATUS[Status.TOKEN_EXPIRED]
LeaseNotFoundError = _BY_STATUS[Status.LEASE_NOT_FOUND]
LeaseExpiredError = _BY_STATUS[Status.LEASE_EXPIRED]
LeaseFaultedError = _BY_STATUS[Status.LEASE_FAULTED]
CapacityExceededError = _BY_STATUS[Status.CAPACITY_EXCEEDED]
AllocFailedError = _BY_STATUS[Status.ALLOC_FAILED]
InvalidHandleError = _BY_STATUS[Status.INVALID_HANDLE]
OutOfRangeError = _BY_STATUS[Status.OUT_OF_RANGE]
LoadFailedError = _BY_STATUS[Status.LOAD_FAILED]
LaunchFailedError = _BY_STATUS[Status.LAUNCH_FAILED]
SyncFailedError = _BY_STATUS[Status.SYNC_FAILED]
BusyError = _BY_STATUS[Status.BUSY]
InvalidArgumentError = _BY_STATUS[Status.INVALID_ARGUMENT]
UnsupportedError = _BY_STATUS[Status.UNSUPPORTED]
IdempotencyConflictError = _BY_STATUS[Status.IDEMPOTENCY_CONFLICT]


def error_class(status: int) -> type:
    """The exception class for an error reply with this status."""
    return _BY_STATUS.get(int(status), NodeError)


def node_error(status: int, message: str, op: str | None = None) -> NodeError:
    return error_class(status)(status, message, op)
