"""A connection to a gpulease node: TCP, HELLO, pipelined requests.

:meth:`Connection.send` writes a request and returns a :class:`Pending` at
once; replies are matched to requests by ``request_id``. There is no reader
thread: whichever thread waits for a reply reads frames off the socket (one
at a time, under a lock) and completes the requests they answer, so a single
thread that pipelines pays no thread hand-off per reply. At most the node's
announced ``max_inflight`` requests are outstanding; :meth:`send` waits for a
slot (reading replies) rather than provoking ``BUSY``.

A reply can be received straight into a caller's buffer (``sink``): MEM_READ
chunks land in the destination array with ``recv_into``, without a copy.
"""

from __future__ import annotations

import dataclasses
import secrets
import socket
import struct
import threading
import time

import xxhash

from . import tokens as _tokens
from . import wire
from .status import ConnectionLostError, Status, WireError, is_wire_status, node_error
from .wire import Opcode

_HEADER = struct.Struct("<IHHHHIQQIIQ")
_OPCODES = frozenset(int(o) for o in Opcode)
_xxh3 = xxhash.xxh3_64
_xxh3_int = xxhash.xxh3_64_intdigest
_ZERO8 = bytes(8)
_RBUF_BYTES = 1 << 18
_SMALL = 4096
DEFAULT_PORT = 7070
DEFAULT_CHUNK_BYTES = 4 << 20


@dataclasses.dataclass
class Device:
    index: int
    name: str
    uuid: bytes
    cc_major: int
    cc_minor: int
    sm_count: int
    total_bytes: int
    free_bytes: int


@dataclasses.dataclass
class NodeInfo:
    version: int
    node_id: str
    backend: str
    limits: dict
    devices: list


def parse_address(address) -> tuple[str, int]:
    if isinstance(address, tuple):
        return address[0], int(address[1])
    host, sep, port = str(address).rpartition(":")
    if not sep:
        return str(address), DEFAULT_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port in {address!r}")
    return host.strip("[]"), int(port)


class Pending:
    """One request in flight. :meth:`result` waits for its reply."""

    __slots__ = ("conn", "opcode", "request_id", "lease_id", "sink", "done", "status",
                 "payload", "error", "op")

    def __init__(self, conn, opcode, request_id, lease_id, sink, op):
        self.conn = conn
        self.opcode = opcode
        self.request_id = request_id
        self.lease_id = lease_id
        self.sink = sink
        self.done = False
        self.status = 0
        self.payload = b""
        self.error = None
        self.op = op

    def wait(self, timeout: float | None = None) -> "Pending":
        if not self.done:
            self.conn._wait_for(self, timeout)
        return self

    def result(self, timeout: float | None = None):
        """The OK reply's payload (``None`` when it went into the sink); raises
        the typed error for an error reply or a lost connection."""
        self.wait(timeout)
        if self.error is not None:
            raise self.error
        return self.payload

    def exception(self):
        """The error of a completed request, or None (does not wait)."""
        return self.error


class Connection:
    """A connection to one node. Thread-safe; share one between threads or
    open one per thread."""

    def __init__(self, address, token=None, *, client_name: str = "gpulease-python/0.1",
                 connect_timeout: float = 10.0, request_timeout: float = 60.0):
        self.address = parse_address(address)
        self.token = _tokens.token_bytes(token) if token is not None else b""
        self.request_timeout = request_timeout
        self._state = threading.Condition(threading.Lock())
        self._write_lock = threading.Lock()
        self._pending: dict[int, Pending] = {}
        self._reading = False
        self._closed: Exception | None = None
        self._next_id = secrets.randbits(64) or 1
        self._rbuf = bytearray(_RBUF_BYTES)
        self._rmv = memoryview(self._rbuf)
        self._rstart = self._rend = 0
        self.limits = wire.DEFAULT_LIMITS
        self.max_inflight = 1
        self._sock = socket.create_connection(self.address, timeout=connect_timeout)
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                try:
                    self._sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
                except OSError:
                    pass
            self._sock.settimeout(0.5)  # a slice: waits loop on it against their deadlines
            self.node_info = self._hello(client_name)
        except BaseException:
            self._sock.close()
            raise

    # -- setup ---------------------------------------------------------------------

    def _hello(self, client_name: str) -> NodeInfo:
        payload = wire.encode_request(Opcode.HELLO, {"min_version": 1, "max_version": 1,
                                                     "client_name": client_name})
        m = wire.decode_payload(Opcode.HELLO, self.send(Opcode.HELLO, 0, payload).result(),
                                reply=True)
        if m["version"] != wire.VERSION:
            raise WireError(Status.UNSUPPORTED_VERSION, f"node chose version {m['version']}")
        lim = m["limits"]
        d = wire.DEFAULT_LIMITS
        if (lim["max_inflight"] == 0 or lim["max_payload_bytes"] < 4096
                or any(lim[k] > getattr(d, k) for k in ("max_token_bytes", "max_payload_bytes",
                                                        "max_inflight", "max_kernel_args",
                                                        "max_arg_bytes", "max_name_bytes"))):
            raise WireError(Status.BAD_FRAME, f"HELLO announced impossible limits {lim}")
        self.limits = dataclasses.replace(
            d, **{k: lim[k] for k in ("max_token_bytes", "max_payload_bytes", "max_inflight",
                                      "max_kernel_args", "max_arg_bytes", "max_name_bytes")})
        self.max_inflight = lim["max_inflight"]
        devices = [Device(**dev) for dev in m["devices"]]
        return NodeInfo(m["version"], m["node_id"], m["backend"], lim, devices)

    @property
    def chunk_bytes(self) -> int:
        """Bytes per MEM_WRITE / MEM_READ chunk."""
        return min(DEFAULT_CHUNK_BYTES, self.limits.max_payload_bytes - 16)

    @property
    def node_id(self) -> str:
        return self.node_info.node_id

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<gpulease.Connection {self.address[0]}:{self.address[1]} node={self.node_id!r}>"

    # -- requests ------------------------------------------------------------------

    def send(self, opcode: int, lease_id: int, payload=b"", *, token=None, sink=None,
             op: str | None = None, timeout: float | None = None) -> Pending:
        """Writes one request frame; returns at once. ``payload`` is a buffer or a
        list of buffers (sent with one ``sendmsg``, no concatenation). ``sink``: a
        writable buffer an OK reply's payload goes into, when its length matches."""
        parts = payload if isinstance(payload, list) else [payload]
        plen = sum(memoryview(p).nbytes for p in parts)
        wire.check_lease_rule(opcode, lease_id, op)
        if opcode in wire.NO_TOKEN_OPCODES:
            tok = b""
        else:
            tok = self.token if token is None else _tokens.token_bytes(token)
        if plen > self.limits.max_payload_bytes:
            raise WireError(Status.FRAME_TOO_LARGE,
                            f"payload of {plen} bytes exceeds the node's {self.limits.max_payload_bytes}",
                            op)
        deadline = time.monotonic() + (self.request_timeout if timeout is None else timeout)
        with self._state:
            if self._closed is not None:
                raise ConnectionLostError(str(self._closed), op)
        # A slot: read replies while max_inflight are outstanding.
        while len(self._pending) >= self.max_inflight:
            self._pump(deadline, None)
        with self._state:
            if self._closed is not None:
                raise ConnectionLostError(str(self._closed), op)
            rid = self._next_id
            self._next_id = (rid + 1) & 0xFFFFFFFFFFFFFFFF or 1
            p = Pending(self, opcode, rid, lease_id, sink, op)
            self._pending[rid] = p
        head = _HEADER.pack(wire.MAGIC, wire.VERSION, opcode, 0, 0, len(tok), rid, lease_id,
                            plen, 0, 0)
        if plen + len(tok) <= _SMALL:
            body = tok + b"".join(bytes(x) for x in parts) if (tok or parts) else b""
            c = _xxh3_int(head + body)
            bufs = [head[:40] + c.to_bytes(8, "little"), body]
        else:
            h = _xxh3(head)
            if tok:
                h.update(tok)
            for x in parts:
                h.update(x)
            bufs = [head[:40] + h.intdigest().to_bytes(8, "little"), tok, *parts]
        try:
            self._write(bufs, deadline)
        except BaseException as e:
            self._fail_all(e)
            raise ConnectionLostError(f"send failed: {e}", op) from e
        return p

    def request(self, opcode: int, lease_id: int, payload=b"", **kw):
        """Send and wait: the OK reply's payload, or the typed error."""
        return self.send(opcode, lease_id, payload, **kw).result(kw.get("timeout"))

    def ping(self, data: bytes = b"") -> bytes:
        return bytes(self.request(Opcode.PING, 0, data))

    def _write(self, bufs, deadline):
        bufs = [memoryview(b).cast("B") for b in bufs if len(b)]
        with self._write_lock:
            while bufs:
                try:
                    n = self._sock.sendmsg(bufs)
                except socket.timeout:
                    if time.monotonic() > deadline:
                        raise TimeoutError("node stopped reading") from None
                    continue
                while n and bufs:
                    if n >= bufs[0].nbytes:
                        n -= bufs[0].nbytes
                        bufs.pop(0)
                    else:
                        bufs[0] = bufs[0][n:]
                        n = 0

    # -- replies -------------------------------------------------------------------

    def _wait_for(self, p: Pending, timeout: float | None):
        deadline = time.monotonic() + (self.request_timeout if timeout is None else timeout)
        while not p.done:
            self._pump(deadline, p)

    def _pump(self, deadline: float, p: Pending | None):
        """Reads one reply frame, or waits while another thread reads one."""
        with self._state:
            if p is not None and p.done:
                return
            if self._reading:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no reply within the timeout ({p.op if p else 'send'})")
                self._state.wait(min(left, 0.5))
                return
            if self._closed is not None and p is not None and not p.done:
                p.error = p.error or ConnectionLostError(str(self._closed), p.op)
                p.done = True
                return
            self._reading = True
        try:
            self._read_frame(deadline)
        except TimeoutError:
            raise
        except BaseException as e:
            self._fail_all(e)
            if isinstance(e, (WireError, ConnectionLostError)) and p is None:
                raise
        finally:
            with self._state:
                self._reading = False
                self._state.notify_all()

    def _fail_all(self, e: BaseException):
        with self._state:
            if self._closed is None:
                self._closed = e
            err = e
            for q in self._pending.values():
                if not q.done:
                    q.error = (err if isinstance(err, WireError)
                               else ConnectionLostError(f"connection lost: {err}", q.op))
                    q.done = True
            self._pending.clear()
            self._state.notify_all()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _recv_some(self, mv, deadline, started: bool) -> int:
        while True:
            try:
                n = self._sock.recv_into(mv)
            except socket.timeout:
                if time.monotonic() > deadline:
                    if started:
                        raise ConnectionLostError("reply stalled mid-frame") from None
                    raise TimeoutError("no reply within the timeout") from None
                continue
            if n == 0:
                raise ConnectionLostError("connection closed by the node")
            return n

    def _fill(self, n: int, deadline: float, started: bool):
        """At least n bytes buffered (n <= buffer size)."""
        if self._rend - self._rstart >= n:
            return
        if self._rstart + n > _RBUF_BYTES:
            avail = self._rend - self._rstart
            self._rbuf[:avail] = self._rbuf[self._rstart:self._rend]
            self._rstart, self._rend = 0, avail
        while self._rend - self._rstart < n:
            got = self._recv_some(self._rmv[self._rend:], deadline,
                                  started or self._rend > self._rstart)
            self._rend += got

    def _read_into(self, dst: memoryview, deadline: float):
        n = dst.nbytes
        avail = min(self._rend - self._rstart, n)
        if avail:
            dst[:avail] = self._rmv[self._rstart:self._rstart + avail]
            self._rstart += avail
        pos = avail
        while pos < n:
            pos += self._recv_some(dst[pos:], deadline, True)

    def _read_frame(self, deadline: float):
        self._fill(48, deadline, False)
        s = self._rstart
        (magic, version, opcode, flags, status, token_len, rid, lease_id, plen, reserved,
         csum) = _HEADER.unpack_from(self._rbuf, s)
        if not (magic == wire.MAGIC and version == wire.VERSION and flags == wire.FLAG_REPLY
                and reserved == 0 and token_len == 0 and is_wire_status(status)
                and (opcode in _OPCODES or status != 0)
                and plen <= self.limits.max_payload_bytes):
            wire.decode_header(self._rbuf[s:s + 48], reply=True, limits=self.limits)
            raise WireError(Status.BAD_FRAME, "malformed reply header")
        head = bytes(self._rmv[s:s + 40])
        self._rstart += 48
        with self._state:
            p = self._pending.get(rid)
        if p is None:
            raise WireError(Status.BAD_FRAME, f"reply to request id {rid} that is not outstanding")
        if status == 0 and (opcode != p.opcode or lease_id != p.lease_id):
            raise WireError(Status.BAD_FRAME, "reply does not echo its request's opcode and lease")
        sink = p.sink
        if status == 0 and sink is not None and plen == sink.nbytes and plen > 0:
            self._read_into(sink, deadline)
            h = _xxh3(head)
            h.update(_ZERO8)
            h.update(sink)
            ok = h.intdigest() == csum
            payload = None
        else:
            if plen <= _RBUF_BYTES:
                self._fill(plen, deadline, True)
                payload = bytes(self._rmv[self._rstart:self._rstart + plen])
                self._rstart += plen
            else:
                buf = bytearray(plen)
                self._read_into(memoryview(buf), deadline)
                payload = buf
            ok = _xxh3_int(head + _ZERO8 + payload) == csum if plen <= _SMALL else \
                self._csum(head, payload) == csum
        if not ok:
            raise WireError(Status.CHECKSUM_MISMATCH, "reply checksum mismatch")
        err = None
        if status != 0:
            msg = wire.decode_error_message(payload or b"")
            err = node_error(status, msg, p.op)
        with self._state:
            self._pending.pop(rid, None)
            p.status = status
            p.payload = payload
            p.error = err
            p.done = True

    @staticmethod
    def _csum(head, payload):
        h = _xxh3(head)
        h.update(_ZERO8)
        h.update(payload)
        return h.intdigest()

    def outstanding(self) -> int:
        return len(self._pending)

    def close(self):
        """Fails outstanding requests and closes the socket."""
        self._fail_all(ConnectionLostError("connection closed by the client"))
        try:
            self._sock.close()
        except OSError:
            pass

    @property
    def closed(self) -> bool:
        return self._closed is not None


def connect(address, token=None, **kw) -> Connection:
    return Connection(address, token, **kw)
