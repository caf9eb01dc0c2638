"""gpulease: the Python client of a gpulease node (docs/PYTHON.md).

    import gpulease as gl
    with gl.connect("127.0.0.1:7070", token) as conn, \\
         gl.LeaseBuilder(conn).min_vram(64 << 20).lease_secs(120).acquire() as lease:
        s = gl.Session(lease)
        buf = s.mem_alloc(4096)
        s.mem_write(buf, numpy_array)          # pipelined
        ...
        s.sync()                               # errors of pipelined ops surface here
        out = s.mem_read(buf, dtype="float32")
"""
from .status import *  # noqa: F401,F403  (Status, GpuleaseError and one class per status)
from .status import (ConnectionLostError, GpuleaseError, LeaseLostError, NodeError, Status,
                     WireError, error_class)
from .wire import ANY_DEVICE, Exclusivity, ImageFormat, LeaseState, Limits, Opcode
from .connection import Connection, NodeInfo, Device, Pending, connect
from .lease import (Grant, Lease, LeaseBuilder, LeaseInfo, RenewalManager, check_scoped_token,
                    list_leases, request_scoped_token)
from .session import (DeviceBuffer, KernelArgs, Module, ModuleGlobal, Session, SubmitArgs,
                      SubmitResult, submit)
from .tokens import Perm
from . import tokens, wire

__version__ = "0.1.0"
