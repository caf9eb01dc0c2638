"""asyncio support: the same protocol on asyncio streams, for programs whose
event loop must not block. Small on purpose: a connection with a reader
task, leases and sessions with the blocking API's names (``await``ed).

    conn = await gpulease.aio.connect("127.0.0.1:7070", token)
    async with await gpulease.aio.acquire(conn, min_vram=64 << 20, lease_secs=120) as lease:
        s = lease.session()
        buf = await s.mem_alloc(4096)
        await s.mem_write(buf, array)         # pipelined: returns once written
        await s.launch_with_args(m, "scale", 4, 256, gpulease.KernelArgs()...)
        await s.sync()                        # the first pipelined error surfaces here
        out = await s.mem_read(buf, dtype=numpy.float32)
    await conn.close()

Replies are matched to requests by id as in :mod:`gpulease.connection`; at
most ``max_inflight`` requests are outstanding (``send`` waits for a slot).
Errors are the same typed exceptions. Reads copy each chunk once into the
destination (asyncio streams have no ``recv_into``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import struct

import xxhash

from . import tokens as _tokens
from . import wire
from .connection import Device, NodeInfo, parse_address
from .lease import LeaseInfo
from .session import (DeviceBuffer, KernelArgs, Module, ModuleGlobal, SubmitArgs, SubmitResult,
                      _enc_module_global, dim3)
from .status import (ConnectionLostError, GpuleaseError, LeaseLostError, Status, WireError,
                     node_error)
from .wire import Exclusivity, ImageFormat, Opcode

try:
    import numpy as _np
except ImportError:  # pragma: no cover
    _np = None

_QQ = struct.Struct("<QQ")
_QQI = struct.Struct("<QQI")
_Q = struct.Struct("<Q")


class AsyncConnection:
    def __init__(self, reader, writer, token: bytes, request_timeout: float):
        self._r, self._w = reader, writer
        self.token = token
        self.request_timeout = request_timeout
        self._futs: dict[int, tuple] = {}
        self._next_id = secrets.randbits(64) or 1
        self._closed: Exception | None = None
        self.limits = wire.DEFAULT_LIMITS
        self._slots = asyncio.Semaphore(1)
        self._reader_task = asyncio.get_running_loop().create_task(self._read_loop())

    async def _hello(self, client_name: str):
        out = await self.request(Opcode.HELLO, 0, wire.encode_request(
            Opcode.HELLO, {"min_version": 1, "max_version": 1, "client_name": client_name}))
        m = wire.decode_payload(Opcode.HELLO, out, reply=True)
        lim = m["limits"]
        d = wire.DEFAULT_LIMITS
        keys = ("max_token_bytes", "max_payload_bytes", "max_inflight", "max_kernel_args",
                "max_arg_bytes", "max_name_bytes")
        if m["version"] != 1 or lim["max_inflight"] == 0 or lim["max_payload_bytes"] < 4096 or \
                any(lim[k] > getattr(d, k) for k in keys):
            raise WireError(Status.BAD_FRAME, f"HELLO announced impossible values {m}")
        self.limits = dataclasses.replace(d, **{k: lim[k] for k in keys})
        self._slots = asyncio.Semaphore(lim["max_inflight"])
        self.node_info = NodeInfo(m["version"], m["node_id"], m["backend"], lim,
                                  [Device(**x) for x in m["devices"]])

    @property
    def node_id(self) -> str:
        return self.node_info.node_id

    @property
    def chunk_bytes(self) -> int:
        return min(4 << 20, self.limits.max_payload_bytes - 16)

    @property
    def closed(self) -> bool:
        return self._closed is not None

    async def send(self, opcode: int, lease_id: int, payload=b"", *, token=None,
                   op: str | None = None) -> asyncio.Future:
        """Writes one request; returns a future of the OK reply's payload."""
        parts = payload if isinstance(payload, list) else [payload]
        plen = sum(memoryview(p).nbytes for p in parts)
        wire.check_lease_rule(opcode, lease_id, op)
        if plen > self.limits.max_payload_bytes:
            raise WireError(Status.FRAME_TOO_LARGE,
                            f"payload of {plen} bytes exceeds {self.limits.max_payload_bytes}", op)
        if self._closed is not None:
            raise ConnectionLostError(str(self._closed), op)
        tok = b"" if opcode in wire.NO_TOKEN_OPCODES else (
            self.token if token is None else _tokens.token_bytes(token))
        await self._slots.acquire()
        rid = self._next_id
        self._next_id = (rid + 1) & 0xFFFFFFFFFFFFFFFF or 1
        fut = asyncio.get_running_loop().create_future()
        self._futs[rid] = (fut, opcode, lease_id, op)
        h = xxhash.xxh3_64(wire.pack_header(opcode, 0, 0, len(tok), rid, lease_id, plen))
        h.update(tok)
        for p in parts:
            h.update(p)
        head = wire.pack_header(opcode, 0, 0, len(tok), rid, lease_id, plen, h.intdigest())
        self._w.writelines([head, tok, *parts])
        try:
            await self._w.drain()
        except (OSError, asyncio.CancelledError) as e:
            self._fail_all(e)
            raise ConnectionLostError(f"send failed: {e}", op) from e
        return fut

    async def request(self, opcode: int, lease_id: int, payload=b"", **kw):
        fut = await self.send(opcode, lease_id, payload, **kw)
        return await asyncio.wait_for(fut, self.request_timeout)

    async def ping(self, data: bytes = b"") -> bytes:
        return bytes(await self.request(Opcode.PING, 0, data))

    async def _read_loop(self):
        try:
            while True:
                head = await self._r.readexactly(48)
                h = wire.decode_header(head, reply=True, limits=self.limits)
                payload = await self._r.readexactly(h.payload_len) if h.payload_len else b""
                if wire.checksum(head, b"", payload) != h.checksum:
                    raise WireError(Status.CHECKSUM_MISMATCH, "reply checksum mismatch")
                entry = self._futs.pop(h.request_id, None)
                if entry is None:
                    raise WireError(Status.BAD_FRAME,
                                    f"reply to request id {h.request_id} that is not outstanding")
                fut, opcode, lease_id, op = entry
                self._slots.release()
                if h.status == 0 and (h.opcode != opcode or h.lease_id != lease_id):
                    raise WireError(Status.BAD_FRAME, "reply does not echo its request")
                if fut.done():
                    continue
                if h.status != 0:
                    fut.set_exception(node_error(h.status, wire.decode_error_message(payload), op))
                else:
                    fut.set_result(payload)
        except asyncio.CancelledError:
            self._fail_all(ConnectionLostError("connection closed by the client"))
        except asyncio.IncompleteReadError:
            self._fail_all(ConnectionLostError("connection closed by the node"))
        except (OSError, WireError) as e:
            self._fail_all(e)

    def _fail_all(self, e: BaseException):
        if self._closed is None:
            self._closed = e
        for fut, _, _, op in self._futs.values():
            if not fut.done():
                fut.set_exception(e if isinstance(e, WireError)
                                  else ConnectionLostError(f"connection lost: {e}", op))
                fut.exception()  # retrieved: no "never retrieved" warning for pipelined ops
        self._futs.clear()
        self._w.close()

    async def close(self):
        self._reader_task.cancel()
        try:
            await self._reader_task
        except asyncio.CancelledError:
            pass
        self._fail_all(ConnectionLostError("connection closed by the client"))
        try:
            await self._w.wait_closed()
        except OSError:
            pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()


async def connect(address, token=None, *, client_name: str = "gpulease-python-aio/0.1",
                  connect_timeout: float = 10.0, request_timeout: float = 60.0) -> AsyncConnection:
    host, port = parse_address(address)
    r, w = await asyncio.wait_for(asyncio.open_connection(host, port), connect_timeout)
    c = AsyncConnection(r, w, _tokens.token_bytes(token) if token is not None else b"",
                        request_timeout)
    try:
        await c._hello(client_name)
    except BaseException:
        await c.close()
        raise
    return c


class AsyncLease:
    def __init__(self, conn: AsyncConnection, lease_id: int, *, device=0, granted_bytes=0,
                 expires_at_ms=0, ttl_s=300, token=None, owned=True):
        self.conn, self.lease_id, self.device = conn, lease_id, device
        self.granted_bytes, self.expires_at_ms, self.ttl_s = granted_bytes, expires_at_ms, ttl_s
        self.token, self.released, self._owned = token, False, owned

    @property
    def expires_at(self) -> float:
        return self.expires_at_ms / 1000.0

    async def _request(self, opcode, payload=b"", op=None):
        return await self.conn.request(opcode, self.lease_id, payload, token=self.token,
                                       op=op or Opcode(opcode).name)

    async def renew(self, ttl_s: int | None = None) -> int:
        out = await self._request(Opcode.LEASE_RENEW, struct.pack("<I", int(ttl_s or self.ttl_s)))
        self.expires_at_ms = wire.decode_payload(Opcode.LEASE_RENEW, out, reply=True)["expires_at_ms"]
        return self.expires_at_ms

    async def query(self) -> LeaseInfo:
        out = await self._request(Opcode.LEASE_QUERY)
        return LeaseInfo.from_fields(wire.decode_payload(Opcode.LEASE_QUERY, out, reply=True))

    async def release(self) -> None:
        if self.released:
            return
        try:
            await self._request(Opcode.LEASE_RELEASE)
        except GpuleaseError as e:
            if e.status != Status.LEASE_EXPIRED:
                raise
        self.released = True

    def session(self, token=None) -> "AsyncSession":
        return AsyncSession(self, token)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        if self._owned and not self.released and not self.conn.closed:
            try:
                await asyncio.wait_for(self.release(), 5.0)
            except (GpuleaseError, asyncio.TimeoutError):
                pass


async def acquire(conn: AsyncConnection, *, min_vram: int, lease_secs: int = 300,
                  exclusivity=Exclusivity.SHARED, device: int = wire.ANY_DEVICE,
                  release_on_disconnect: bool = False, token=None) -> AsyncLease:
    """LEASE_ACQUIRE with a random idempotency key."""
    from .lease import _excl
    if min_vram <= 0 or lease_secs <= 0:
        raise ValueError("min_vram and lease_secs must be > 0")
    payload = wire.encode_request(Opcode.LEASE_ACQUIRE, {
        "min_vram": int(min_vram), "ttl_s": int(lease_secs), "exclusivity": _excl(exclusivity),
        "release_on_disconnect": release_on_disconnect, "device": device,
        "idempotency_key": secrets.token_bytes(16)})
    m = wire.decode_payload(Opcode.LEASE_ACQUIRE, await conn.request(
        Opcode.LEASE_ACQUIRE, 0, payload, token=token, op="LEASE_ACQUIRE"), reply=True)
    if m["lease_id"] == 0:
        raise GpuleaseError(Status.BAD_FRAME, "node granted lease id 0", "LEASE_ACQUIRE")
    return AsyncLease(conn, m["lease_id"], device=m["device"], granted_bytes=m["granted_bytes"],
                      expires_at_ms=m["expires_at_ms"], ttl_s=int(lease_secs), token=token)


async def list_leases(conn: AsyncConnection, token=None) -> list:
    out = await conn.request(Opcode.LEASE_LIST, 0, b"", token=token, op="LEASE_LIST")
    return [LeaseInfo.from_fields(m)
            for m in wire.decode_payload(Opcode.LEASE_LIST, out, reply=True)["leases"]]


class AsyncSession:
    """As :class:`gpulease.Session`, awaited. One task at a time per session."""

    def __init__(self, lease: AsyncLease, token=None):
        self.lease, self.conn = lease, lease.conn
        tok = token if token is not None else lease.token
        self.token = _tokens.token_bytes(tok) if tok is not None else None
        self._inflight: list = []

    async def _send(self, opcode, payload, op):
        return await self.conn.send(opcode, self.lease.lease_id, payload, token=self.token, op=op)

    async def _call(self, opcode, payload, op):
        return await asyncio.wait_for(await self._send(opcode, payload, op),
                                      self.conn.request_timeout)

    async def _drain(self):
        futs, self._inflight = self._inflight, []
        first = None
        for f in futs:
            try:
                await asyncio.wait_for(f, self.conn.request_timeout)
            except GpuleaseError as e:
                first = first or e
        if first is not None:
            raise first

    async def flush(self) -> None:
        await self._drain()

    async def mem_alloc(self, size: int) -> DeviceBuffer:
        out = await self._call(Opcode.MEM_ALLOC, _Q.pack(int(size)), f"MEM_ALLOC {size} bytes")
        return DeviceBuffer(wire.decode_payload(Opcode.MEM_ALLOC, out, reply=True)["handle"], int(size))

    async def mem_free(self, buf) -> None:
        await self._call(Opcode.MEM_FREE, _Q.pack(int(buf)), f"MEM_FREE buffer 0x{int(buf):x}")

    async def mem_write(self, buf, data, offset: int = 0) -> None:
        mv = memoryview(data)
        if not mv.c_contiguous:
            raise ValueError("data must be a C-contiguous buffer")
        mv = mv.cast("B")
        n, h, c, pos = mv.nbytes, int(buf), self.conn.chunk_bytes, 0
        while True:
            k = min(c, n - pos)
            self._inflight.append(await self._send(
                Opcode.MEM_WRITE, [_QQ.pack(h, offset + pos), mv[pos:pos + k]],
                f"MEM_WRITE buffer 0x{h:x} ({k} bytes at offset {offset + pos})"))
            pos += k
            if pos >= n:
                break

    async def mem_read(self, buf, offset: int = 0, length: int | None = None, *, dtype=None,
                       shape=None):
        if length is None:
            if dtype is not None and shape is not None:
                count = 1
                for s in ((shape,) if isinstance(shape, int) else shape):
                    count *= s
                length = count * _np.dtype(dtype).itemsize
            else:
                length = getattr(buf, "size", 0) - offset
        h, c, pos, futs = int(buf), self.conn.chunk_bytes, 0, []
        while True:
            k = min(c, length - pos)
            futs.append((await self._send(Opcode.MEM_READ, _QQI.pack(h, offset + pos, k),
                                          f"MEM_READ buffer 0x{h:x} ({k} bytes at offset {offset + pos})"), k))
            pos += k
            if pos >= length:
                break
        await self._drain()
        out = bytearray(length)
        pos = 0
        for f, k in futs:
            data = await asyncio.wait_for(f, self.conn.request_timeout)
            if len(data) != k:
                raise GpuleaseError(Status.BAD_FRAME, f"read of {k} bytes answered with {len(data)}")
            out[pos:pos + k] = data
            pos += k
        if dtype is None:
            return out
        a = _np.frombuffer(out, dtype=dtype)
        return a.reshape(shape) if shape is not None else a

    async def module_load(self, image, fmt: ImageFormat = ImageFormat.PTX) -> Module:
        b = image.encode() if isinstance(image, str) else bytes(image)
        out = await self._call(Opcode.MODULE_LOAD, [bytes([int(fmt)]), b],
                               f"MODULE_LOAD {ImageFormat(fmt).name} ({len(b)} bytes)")
        return Module(wire.decode_payload(Opcode.MODULE_LOAD, out, reply=True)["handle"])

    async def module_unload(self, module) -> None:
        await self._call(Opcode.MODULE_UNLOAD, _Q.pack(int(module)), f"MODULE_UNLOAD 0x{int(module):x}")

    async def module_global(self, module, name: str) -> ModuleGlobal:
        """MODULE_GLOBAL (see :meth:`gpulease.Session.module_global`)."""
        out = await self._call(Opcode.MODULE_GLOBAL, _enc_module_global(module, name),
                               f"MODULE_GLOBAL {name!r} of module 0x{int(module):x}")
        m = wire.decode_payload(Opcode.MODULE_GLOBAL, out, reply=True)
        return ModuleGlobal(m["handle"], m["size"], m["space"], name)

    async def launch(self, module, kernel, grid, block, args=b"", arg_sizes=(), shared_bytes=0):
        sizes = [int(s) for s in arg_sizes]
        if sum(sizes) != len(args):
            raise ValueError(f"arg_sizes sum to {sum(sizes)}, args hold {len(args)} bytes")
        await self._launch(module, kernel, grid, block, wire.enc_raw_args(sizes, bytes(args)),
                           shared_bytes)

    async def launch_with_args(self, module, kernel, grid, block, args: KernelArgs, shared_bytes=0):
        await self._launch(module, kernel, grid, block, args.encoded(), shared_bytes)

    async def _launch(self, module, kernel, grid, block, blob, shared_bytes):
        if not kernel:
            raise ValueError("empty kernel name")
        payload = wire.enc_launch(int(module), kernel, dim3(grid), dim3(block), shared_bytes, blob)
        self._inflight.append(await self._send(Opcode.LAUNCH, payload, f"LAUNCH {kernel!r}"))

    async def sync(self) -> int:
        f = await self._send(Opcode.SYNC, b"", "SYNC")
        await self._drain()
        out = await asyncio.wait_for(f, self.conn.request_timeout)
        return wire.decode_payload(Opcode.SYNC, out, reply=True)["completed"]

    async def submit(self, image, kernel, grid, block, args: SubmitArgs, shared_bytes=0,
                     fmt: ImageFormat = ImageFormat.PTX) -> SubmitResult:
        b = image.encode() if isinstance(image, str) else bytes(image)
        payload = wire.encode_request(Opcode.GPU_SUBMIT, {
            "format": int(fmt), "image": b, "kernel": kernel, "grid": dim3(grid),
            "block": dim3(block), "shared_bytes": shared_bytes, "args": args.args})
        out = await self._call(Opcode.GPU_SUBMIT, payload, f"GPU_SUBMIT {kernel!r}")
        return SubmitResult(wire.decode_payload(Opcode.GPU_SUBMIT, out, reply=True)["outputs"])


__all__ = ["AsyncConnection", "AsyncLease", "AsyncSession", "acquire", "connect", "list_leases",
           "LeaseLostError"]
