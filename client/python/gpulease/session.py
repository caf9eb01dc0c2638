"""Sessions: device memory, modules, launches and GPU_SUBMIT on one lease.

Writes and launches are pipelined: they return once the frame is written,
and the first error among them surfaces at the next :meth:`Session.sync`,
:meth:`Session.mem_read` or :meth:`Session.flush` as the typed exception of
its status, naming the op that failed (``e.op``). Transfers larger than
``Connection.chunk_bytes`` go in chunks kept in flight together; reads land
in the destination buffer (a new numpy array, or ``out=``) with ``recv_into``.
"""

from __future__ import annotations

import collections
import dataclasses
import struct

from . import tokens as _tokens
from . import wire
from .status import GpuleaseError, LeaseLostError, Status
from .wire import ImageFormat, Opcode

try:  # numpy is a dependency of the package, but the wire layer does not need it
    import numpy as _np
except ImportError:  # pragma: no cover
    _np = None

_QQ = struct.Struct("<QQ")
_QQI = struct.Struct("<QQI")
_Q = struct.Struct("<Q")


@dataclasses.dataclass(frozen=True)
class DeviceBuffer:
    """A MEM_ALLOC buffer; ``handle`` is its device address."""
    handle: int
    size: int

    @property
    def address(self) -> int:
        return self.handle

    def __int__(self):
        return self.handle


@dataclasses.dataclass(frozen=True)
class Module:
    handle: int

    def __int__(self):
        return self.handle


@dataclasses.dataclass(frozen=True)
class ModuleGlobal:
    """A loaded module's module-scope variable (a CUDA ``__constant__`` or
    ``__device__`` variable), from :meth:`Session.module_global`.

    ``handle`` is its device address: ``mem_write``/``mem_read`` take the
    variable as they take a :class:`DeviceBuffer` (``size`` bounds the read),
    and ``KernelArgs.push_buffer(var)`` hands a kernel a pointer to it. Valid
    until its module is unloaded. ``space`` is ``"GLOBAL"``, ``"CONST"`` or
    ``"UNKNOWN"`` (cuda with a cubin/fatbin image)."""
    handle: int
    size: int
    space: str
    name: str

    @property
    def address(self) -> int:
        return self.handle

    @property
    def is_const(self) -> bool:
        return self.space == "CONST"

    def __int__(self):
        return self.handle


def _enc_module_global(module, name: str) -> bytes:
    b = name.encode("utf-8") if isinstance(name, str) else bytes(name)
    if not 1 <= len(b) <= wire.DEFAULT_LIMITS.max_name_bytes:
        raise ValueError(f"a variable name is 1..{wire.DEFAULT_LIMITS.max_name_bytes} bytes")
    return _Q.pack(int(module)) + struct.pack("<H", len(b)) + b


def dim3(d) -> tuple[int, int, int]:
    if isinstance(d, int):
        return (d, 1, 1)
    t = tuple(int(x) for x in d)
    if not 1 <= len(t) <= 3:
        raise ValueError(f"grid/block must have 1..3 dimensions, got {d!r}")
    return t + (1,) * (3 - len(t))


def _bytes_view(data) -> memoryview:
    mv = memoryview(data)
    if not mv.c_contiguous:
        raise ValueError("data must be a C-contiguous buffer (numpy.ascontiguousarray)")
    return mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv


class KernelArgs:
    """Kernel arguments in the protocol's typed form: the node checks every
    buffer against the lease's own buffers before the launch."""

    def __init__(self):
        self._args: list[dict] = []
        self._blob: bytes | None = None

    def _scalar(self, b: bytes) -> "KernelArgs":
        self._args.append({"kind": "SCALAR", "bytes": b})
        self._blob = None
        return self

    def push_u32(self, v: int):
        return self._scalar(struct.pack("<I", v))

    def push_i32(self, v: int):
        return self._scalar(struct.pack("<i", v))

    def push_u64(self, v: int):
        return self._scalar(struct.pack("<Q", v))

    def push_i64(self, v: int):
        return self._scalar(struct.pack("<q", v))

    def push_f32(self, v: float):
        return self._scalar(struct.pack("<f", v))

    def push_f64(self, v: float):
        return self._scalar(struct.pack("<d", v))

    def push_bytes(self, b) -> "KernelArgs":
        b = bytes(b)
        if not 1 <= len(b) <= wire.DEFAULT_LIMITS.max_scalar_bytes:
            raise ValueError("a scalar argument is 1..256 bytes")
        return self._scalar(b)

    def push_scalar(self, value) -> "KernelArgs":
        """A numpy scalar (its little-endian bytes)."""
        a = _np.asarray(value)
        return self.push_bytes(a.astype(a.dtype.newbyteorder("<")).tobytes())

    def push_buffer(self, buf, offset: int = 0) -> "KernelArgs":
        self._args.append({"kind": "BUFFER", "handle": int(buf), "offset": int(offset)})
        self._blob = None
        return self

    def __len__(self):
        return len(self._args)

    def encoded(self) -> bytes:
        if self._blob is None:
            self._blob = wire.enc_typed_args(self._args)
        return self._blob


class SubmitArgs:
    """GPU_SUBMIT arguments: scalars, ``in_`` buffers, ``out`` sizes, ``inout`` buffers."""

    def __init__(self):
        self.args: list[dict] = []

    def scalar(self, b) -> "SubmitArgs":
        self.args.append({"kind": "SCALAR", "bytes": bytes(b)})
        return self

    def i32(self, v):
        return self.scalar(struct.pack("<i", v))

    def u32(self, v):
        return self.scalar(struct.pack("<I", v))

    def f32(self, v):
        return self.scalar(struct.pack("<f", v))

    def u64(self, v):
        return self.scalar(struct.pack("<Q", v))

    def in_(self, data) -> "SubmitArgs":
        self.args.append({"kind": "IN", "bytes": bytes(_bytes_view(data))})
        return self

    def inout(self, data) -> "SubmitArgs":
        self.args.append({"kind": "INOUT", "bytes": bytes(_bytes_view(data))})
        return self

    def out(self, size: int) -> "SubmitArgs":
        self.args.append({"kind": "OUT", "size": int(size)})
        return self


class SubmitResult:
    def __init__(self, outputs: list[dict]):
        self.outputs = {o["arg_index"]: o["data"] for o in outputs}

    def output(self, arg_index: int, dtype=None, shape=None):
        data = self.outputs[arg_index]
        if dtype is None:
            return data
        a = _np.frombuffer(data, dtype=dtype)
        return a.reshape(shape) if shape is not None else a


class Session:
    """A light handle on a lease for running work. Use one Session from one
    thread at a time (open several on one lease for several threads)."""

    def __init__(self, lease, token=None):
        self.lease = lease
        self.conn = lease.conn
        self.lease_id = lease.lease_id
        tok = token if token is not None else lease.token
        self.token = _tokens.token_bytes(tok) if tok is not None else None
        self._inflight: collections.deque = collections.deque()
        self._first_error: GpuleaseError | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    # -- plumbing ------------------------------------------------------------------

    def _send(self, opcode, payload, op, sink=None):
        return self.conn.send(opcode, self.lease_id, payload, token=self.token, op=op, sink=sink)

    def _call(self, opcode, payload, op):
        try:
            return self._send(opcode, payload, op).result()
        except LeaseLostError as e:
            self.lease.lost = e
            raise

    def _pipelined(self, p):
        q = self._inflight
        q.append(p)
        while q and q[0].done:
            self._note(q.popleft())

    def _note(self, p):
        if p.error is not None and self._first_error is None:
            self._first_error = p.error

    def _drain(self):
        """Waits for every pipelined op; raises the first error once."""
        q = self._inflight
        while q:
            p = q.popleft()
            p.wait()
            self._note(p)
        e, self._first_error = self._first_error, None
        if e is not None:
            if isinstance(e, LeaseLostError):
                self.lease.lost = e
            raise e

    def flush(self) -> None:
        """Waits for the replies of pipelined ops (not for kernels); raises the first error."""
        self._drain()

    # -- memory --------------------------------------------------------------------

    def mem_alloc(self, size: int) -> DeviceBuffer:
        out = self._call(Opcode.MEM_ALLOC, _Q.pack(int(size)), f"MEM_ALLOC {size} bytes")
        h = wire.decode_payload(Opcode.MEM_ALLOC, out, reply=True)["handle"]
        return DeviceBuffer(h, int(size))

    def mem_free(self, buf: DeviceBuffer) -> None:
        self._call(Opcode.MEM_FREE, _Q.pack(int(buf)), f"MEM_FREE buffer 0x{int(buf):x}")

    def mem_write(self, buf, data, offset: int = 0, progress=None) -> None:
        """Pipelined write of any C-contiguous buffer (bytes, bytearray, numpy array),
        in chunks. ``progress(bytes_sent, total)`` is called after each chunk."""
        mv = _bytes_view(data)
        n = mv.nbytes
        h = int(buf)
        c = self.conn.chunk_bytes
        pos = 0
        while True:
            k = min(c, n - pos)
            op = f"MEM_WRITE buffer 0x{h:x} ({k} bytes at offset {offset + pos})"
            self._pipelined(self._send(Opcode.MEM_WRITE, [_QQ.pack(h, offset + pos),
                                                          mv[pos:pos + k]], op))
            pos += k
            if progress is not None:
                progress(pos, n)
            if pos >= n:
                break

    def mem_read(self, buf, offset: int = 0, length: int | None = None, *, dtype=None,
                 shape=None, out=None, progress=None):
        """Reads ``length`` bytes (default: to the end of the buffer, or what
        ``dtype``/``shape`` need) in chunks in flight together. Returns a new numpy
        array of ``dtype``/``shape``, ``out`` filled in place, or a bytearray.
        Earlier pipelined errors surface here first."""
        if out is not None:
            dst = memoryview(out)
            if dst.readonly or not dst.c_contiguous:
                raise ValueError("out must be a writable C-contiguous buffer")
            dst = dst.cast("B") if dst.ndim != 1 or dst.format != "B" else dst
            result = out
            if length is None:
                length = dst.nbytes
            elif length != dst.nbytes:
                raise ValueError(f"out holds {dst.nbytes} bytes, length is {length}")
        elif dtype is not None:
            dt = _np.dtype(dtype)
            if shape is None:
                if length is None:
                    length = getattr(buf, "size", 0) - offset
                if length % dt.itemsize:
                    raise ValueError(f"{length} bytes is not a whole number of {dt}")
                shape = (length // dt.itemsize,)
            shape = (shape,) if isinstance(shape, int) else tuple(shape)
            count = 1
            for s in shape:
                count *= s
            if length is None:
                length = count * dt.itemsize
            elif length != count * dt.itemsize:
                raise ValueError(f"shape {shape} of {dt} is not {length} bytes")
            result = _np.empty(shape, dtype=dt)
            dst = memoryview(result).cast("B") if result.size else memoryview(bytearray(0))
        else:
            if length is None:
                length = getattr(buf, "size", 0) - offset
            result = bytearray(length)
            dst = memoryview(result)
        if length < 0:
            raise ValueError("negative length")
        h = int(buf)
        c = self.conn.chunk_bytes
        pend = []
        pos = 0
        while True:
            k = min(c, length - pos)
            op = f"MEM_READ buffer 0x{h:x} ({k} bytes at offset {offset + pos})"
            p = self._send(Opcode.MEM_READ, _QQI.pack(h, offset + pos, k), op,
                           sink=dst[pos:pos + k])
            pend.append((p, pos, k))
            pos += k
            if progress is not None:
                progress(pos, length)
            if pos >= length:
                break
        self._drain()
        for p, pos, k in pend:
            try:
                data = p.result()
            except LeaseLostError as e:
                self.lease.lost = e
                raise
            if data is not None:  # not received into the sink: must still be k bytes
                if len(data) != k:
                    raise GpuleaseError(Status.BAD_FRAME,
                                        f"read of {k} bytes answered with {len(data)}", p.op)
                dst[pos:pos + k] = data
        return result

    # -- modules and launches ------------------------------------------------------

    def module_load(self, image, fmt: ImageFormat = ImageFormat.PTX) -> Module:
        b = image.encode("utf-8") if isinstance(image, str) else bytes(image)
        out = self._call(Opcode.MODULE_LOAD, [bytes([int(fmt)]), b],
                         f"MODULE_LOAD {ImageFormat(fmt).name} ({len(b)} bytes)")
        return Module(wire.decode_payload(Opcode.MODULE_LOAD, out, reply=True)["handle"])

    def module_unload(self, module: Module) -> None:
        self._call(Opcode.MODULE_UNLOAD, _Q.pack(int(module)), f"MODULE_UNLOAD 0x{int(module):x}")

    def module_global(self, module, name: str) -> ModuleGlobal:
        """MODULE_GLOBAL: the module's variable ``name`` (``cuModuleGetGlobal``).
        ``InvalidArgumentError`` when the module declares no such variable.

            coeffs = s.module_global(m, "kCoeffs")
            s.mem_write(coeffs, numpy.array([...], dtype=numpy.float32))
            ...
            count = s.mem_read(counter, dtype=numpy.uint32)[0]
        """
        payload = _enc_module_global(module, name)
        out = self._call(Opcode.MODULE_GLOBAL, payload,
                         f"MODULE_GLOBAL {name!r} of module 0x{int(module):x}")
        m = wire.decode_payload(Opcode.MODULE_GLOBAL, out, reply=True)
        return ModuleGlobal(m["handle"], m["size"], m["space"], name)

    def launch(self, module, kernel: str, grid, block, args=b"", arg_sizes=(),
               shared_bytes: int = 0) -> None:
        """Pipelined LAUNCH, raw argument form (as the recipes build it): ``args``
        is the concatenated parameter bytes, ``arg_sizes`` each parameter's size."""
        blob = bytes(args)
        sizes = [int(s) for s in arg_sizes]
        if sum(sizes) != len(blob):
            raise ValueError(f"arg_sizes sum to {sum(sizes)}, args hold {len(blob)} bytes")
        self._launch(module, kernel, grid, block, wire.enc_raw_args(sizes, blob), shared_bytes)

    def launch_with_args(self, module, kernel: str, grid, block, args: KernelArgs,
                         shared_bytes: int = 0) -> None:
        """Pipelined LAUNCH, typed argument form."""
        self._launch(module, kernel, grid, block, args.encoded(), shared_bytes)

    def _launch(self, module, kernel, grid, block, argblob, shared_bytes):
        if not kernel:
            raise ValueError("empty kernel name")
        payload = wire.enc_launch(int(module), kernel, dim3(grid), dim3(block), shared_bytes,
                                  argblob)
        self._pipelined(self._send(Opcode.LAUNCH, payload, f"LAUNCH {kernel!r}"))

    def sync(self) -> int:
        """Waits for every launch queued before it; returns the launches completed
        on the lease. The first error of any pipelined op surfaces here."""
        p = self._send(Opcode.SYNC, b"", "SYNC")
        self._drain()
        try:
            out = p.result()
        except LeaseLostError as e:
            self.lease.lost = e
            raise
        return wire.decode_payload(Opcode.SYNC, out, reply=True)["completed"]

    def submit(self, image, kernel: str, grid, block, args: SubmitArgs, shared_bytes: int = 0,
               fmt: ImageFormat = ImageFormat.PTX) -> SubmitResult:
        """GPU_SUBMIT: load, run, return the outputs in one request."""
        b = image.encode("utf-8") if isinstance(image, str) else bytes(image)
        payload = wire.encode_request(Opcode.GPU_SUBMIT, {
            "format": int(fmt), "image": b, "kernel": kernel, "grid": dim3(grid),
            "block": dim3(block), "shared_bytes": shared_bytes, "args": args.args})
        out = self._call(Opcode.GPU_SUBMIT, payload, f"GPU_SUBMIT {kernel!r}")
        return SubmitResult(wire.decode_payload(Opcode.GPU_SUBMIT, out, reply=True)["outputs"])

    def query(self):
        return self.lease.query()


def submit(lease, image, kernel: str, grid, block, args: SubmitArgs, **kw) -> SubmitResult:
    """The one-call GPU_SUBMIT on a lease."""
    return Session(lease).submit(image, kernel, grid, block, args, **kw)
