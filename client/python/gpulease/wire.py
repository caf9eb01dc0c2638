"""Frames and messages of the gpulease wire protocol, version 1
(docs/PROTOCOL.md).

Two layers:

- frames: :func:`encode_frame` / :func:`decode_frame` (a whole frame in a
  buffer), :func:`decode_header` (the 48 header bytes, checked in the spec's
  order before anything is allocated) and :func:`checksum`;
- messages: :func:`encode_payload` / :func:`decode_payload` map a payload to a
  ``dict`` whose keys are the field names of the spec's tables (the same names
  the golden vectors use). Byte strings are ``bytes``; enums are the
  upper-case names (``"SHARED"``, ``"PTX"``, ...); ``dim3`` is a 3-tuple or list.

Every length and count is checked against its limit before it is used.
Payloads are checked in the spec's two passes (PROTOCOL.md, "Encodings" ->
"Decoding order"): a structural error (``BAD_FRAME``, ``FRAME_TOO_LARGE``)
anywhere in the payload wins over a value error (``INVALID_ARGUMENT``)
anywhere, and among value errors the first field wins. The chosen error is
raised as :class:`~gpulease.status.WireError`.
"""

from __future__ import annotations

import dataclasses
import enum
import struct

import xxhash

from .status import Status, WireError, is_wire_status

MAGIC = 0x534C5047
VERSION = 1
HEADER_BYTES = 48
FLAG_REPLY = 0x0001
ANY_DEVICE = 0xFFFF
ACQUIRE_RELEASE_ON_DISCONNECT = 0x01

_HEADER = struct.Struct("<IHHHHIQQIIQ")
_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_ZERO8 = bytes(8)

_xxh3 = xxhash.xxh3_64
_xxh3_int = xxhash.xxh3_64_intdigest


class Opcode(enum.IntEnum):
    HELLO = 0x0001
    PING = 0x0002
    LEASE_ACQUIRE = 0x0101
    LEASE_RENEW = 0x0102
    LEASE_RELEASE = 0x0103
    LEASE_QUERY = 0x0104
    LEASE_LIST = 0x0105
    CAP_REQUEST = 0x0201
    MEM_ALLOC = 0x0601
    MEM_FREE = 0x0602
    MEM_WRITE = 0x0603
    MEM_READ = 0x0604
    MODULE_LOAD = 0x0605
    LAUNCH = 0x0606
    SYNC = 0x0607
    MODULE_UNLOAD = 0x0608
    GPU_SUBMIT = 0x0609
    MODULE_GLOBAL = 0x060A


_OPCODES = frozenset(int(o) for o in Opcode)

#: Opcodes whose header lease_id must be 0 (DECISIONS.md, "Header lease rule");
#: every other opcode names its lease.
LEASE_NONE_OPCODES = frozenset({Opcode.HELLO, Opcode.PING, Opcode.LEASE_ACQUIRE,
                                Opcode.LEASE_LIST})
#: Opcodes sent without a token.
NO_TOKEN_OPCODES = frozenset({Opcode.HELLO, Opcode.PING})


def check_lease_rule(opcode: int, lease_id: int, op: str | None = None) -> None:
    """The opcode's header lease rule (DECISIONS.md): 0 for HELLO, PING,
    LEASE_ACQUIRE and LEASE_LIST, the lease (nonzero) for every other opcode.
    Raises INVALID_ARGUMENT, so a frame breaking it is never sent."""
    if opcode in LEASE_NONE_OPCODES:
        if lease_id != 0:
            raise WireError(Status.INVALID_ARGUMENT,
                            f"lease_id must be 0 for {opcode_name(opcode)}", op)
    elif lease_id == 0:
        raise WireError(Status.INVALID_ARGUMENT, "lease_id required", op)


def opcode_name(op: int) -> str:
    return Opcode(op).name if op in _OPCODES else f"0x{op:04x}"


class Exclusivity(enum.IntEnum):
    SHARED = 0
    SESSION_EXCLUSIVE = 1
    DEVICE_EXCLUSIVE = 2


class LeaseState(enum.IntEnum):
    ACTIVE = 0
    FAULTED = 1
    EXPIRED = 2
    RELEASED = 3


class GlobalSpace(enum.IntEnum):
    """Where a module variable lives (MODULE_GLOBAL reply)."""
    GLOBAL = 0   # .global (__device__): kernels may write it
    CONST = 1    # .const (__constant__): read-only to kernels
    UNKNOWN = 2  # the backend cannot tell (cuda with a cubin/fatbin image)


class ImageFormat(enum.IntEnum):
    PTX = 0
    CUBIN = 1
    FATBIN = 2


ARG_RAW = 0
ARG_TYPED = 1
TYPED_SCALAR = 0
TYPED_BUFFER = 1
SUBMIT_SCALAR = 0
SUBMIT_IN = 1
SUBMIT_OUT = 2
SUBMIT_INOUT = 3
_SUBMIT_KINDS = ("SCALAR", "IN", "OUT", "INOUT")


@dataclasses.dataclass(frozen=True)
class Limits:
    """Protocol maximums (docs/PROTOCOL.md, "Limits"); a node may announce lower ones."""
    max_token_bytes: int = 1024
    max_payload_bytes: int = 64 * 1024 * 1024
    max_message_bytes: int = 1024
    max_ping_bytes: int = 65536
    max_name_bytes: int = 256
    max_kernel_args: int = 128
    max_arg_bytes: int = 4096
    max_scalar_bytes: int = 256
    max_devices: int = 64
    max_list_entries: int = 4096
    max_inflight: int = 64


DEFAULT_LIMITS = Limits()


# ---- Frames -------------------------------------------------------------------------

@dataclasses.dataclass
class Header:
    opcode: int
    flags: int
    status: int
    token_len: int
    request_id: int
    lease_id: int
    payload_len: int
    checksum: int
    version: int = VERSION
    reserved: int = 0
    magic: int = MAGIC

    @property
    def is_reply(self) -> bool:
        return bool(self.flags & FLAG_REPLY)


@dataclasses.dataclass
class Frame:
    header: Header
    token: bytes
    payload: bytes


def pack_header(opcode: int, flags: int, status: int, token_len: int, request_id: int,
                lease_id: int, payload_len: int, checksum: int = 0) -> bytes:
    return _HEADER.pack(MAGIC, VERSION, opcode, flags, status, token_len, request_id,
                        lease_id, payload_len, 0, checksum)


def checksum(header48, token=b"", payload=b"") -> int:
    """XXH3-64 (seed 0) of the header with bytes 40..47 zeroed, the token section
    and the payload."""
    h = _xxh3()
    h.update(memoryview(header48)[:40])
    h.update(_ZERO8)
    if token:
        h.update(token)
    if payload:
        h.update(payload)
    return h.intdigest()


def frame_parts(opcode: int, request_id: int, lease_id: int, token=b"", payload=b"",
                *, reply: bool = False, status: int = 0) -> tuple[bytes, ...]:
    """The frame as (header, token, payload) buffers, ready for ``sendmsg``
    (no copy of the payload)."""
    tl = len(token)
    pl = len(payload) if not isinstance(payload, memoryview) else payload.nbytes
    flags = FLAG_REPLY if reply else 0
    head = _HEADER.pack(MAGIC, VERSION, opcode, flags, status, tl, request_id, lease_id, pl, 0, 0)
    if pl <= 4096 and tl + pl:
        c = _xxh3_int(head + bytes(token) + bytes(payload))
    else:
        h = _xxh3(head)
        if tl:
            h.update(token)
        if pl:
            h.update(payload)
        c = h.intdigest()
    head = head[:40] + _U64.pack(c)
    return head, token, payload


def encode_frame(opcode: int, request_id: int, lease_id: int, token=b"", payload=b"",
                 *, reply: bool = False, status: int = 0) -> bytes:
    head, token, payload = frame_parts(opcode, request_id, lease_id, token, payload,
                                       reply=reply, status=status)
    return head + bytes(token) + bytes(payload)


def decode_header(buf, *, reply: bool, limits: Limits = DEFAULT_LIMITS) -> Header:
    """Checks the 48 header bytes in the normative order (DECISIONS.md, "Frame
    check order"): the fatal checks first (magic, version, the declared
    lengths, so a refused body is never read), then flags, reserved, opcode,
    and status / direction."""
    if len(buf) < HEADER_BYTES:
        raise WireError(Status.BAD_FRAME, f"frame of {len(buf)} bytes is shorter than the header")
    (magic, version, opcode, flags, status, token_len, request_id, lease_id, payload_len,
     reserved, csum) = _HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise WireError(Status.BAD_FRAME, "bad magic")
    if version != VERSION:
        raise WireError(Status.UNSUPPORTED_VERSION, f"unsupported version {version}")
    if token_len > limits.max_token_bytes:
        raise WireError(Status.FRAME_TOO_LARGE, f"token_len {token_len} exceeds {limits.max_token_bytes}")
    if payload_len > limits.max_payload_bytes:
        raise WireError(Status.FRAME_TOO_LARGE,
                        f"payload_len {payload_len} exceeds {limits.max_payload_bytes}")
    if flags & ~FLAG_REPLY:
        raise WireError(Status.BAD_FRAME, f"undefined flag bits 0x{flags:04x}")
    if reserved != 0:
        raise WireError(Status.BAD_FRAME, "reserved header field is not 0")
    is_reply = bool(flags & FLAG_REPLY)
    # An error reply echoes its request's opcode, even an undefined one.
    if opcode not in _OPCODES and not (is_reply and status != 0 and is_wire_status(status)):
        raise WireError(Status.UNKNOWN_OPCODE, f"unknown opcode 0x{opcode:04x}")
    if is_reply != reply:
        raise WireError(Status.BAD_FRAME,
                        "reply frame where a request was expected" if is_reply
                        else "request frame where a reply was expected")
    if not is_reply and status != 0:
        raise WireError(Status.BAD_FRAME, f"request with status {status}")
    if is_reply and not is_wire_status(status):
        raise WireError(Status.BAD_FRAME, f"reply with undefined status {status}")
    if is_reply and token_len != 0:
        raise WireError(Status.BAD_FRAME, "reply with a token section")
    return Header(opcode=opcode, flags=flags, status=status, token_len=token_len,
                  request_id=request_id, lease_id=lease_id, payload_len=payload_len,
                  checksum=csum, version=version, reserved=reserved, magic=magic)


def decode_frame(buf, *, reply: bool, limits: Limits = DEFAULT_LIMITS) -> Frame:
    """One complete frame in ``buf``: header checks, exact length, checksum."""
    buf = bytes(buf)
    h = decode_header(buf, reply=reply, limits=limits)
    want = HEADER_BYTES + h.token_len + h.payload_len
    if len(buf) != want:
        raise WireError(Status.BAD_FRAME, f"frame of {len(buf)} bytes, header declares {want}")
    if checksum(buf[:HEADER_BYTES], buf[HEADER_BYTES:]) != h.checksum:
        raise WireError(Status.CHECKSUM_MISMATCH, "checksum mismatch")
    tok = buf[HEADER_BYTES:HEADER_BYTES + h.token_len]
    return Frame(h, tok, buf[HEADER_BYTES + h.token_len:])


# ---- Payload decoding ---------------------------------------------------------------

def _utf8(b: bytes, what: str) -> str:
    try:
        s = b.decode("utf-8")  # strict: no overlong forms, surrogates or > U+10FFFF
    except UnicodeDecodeError:
        raise WireError(Status.BAD_FRAME, f"{what} is not valid UTF-8") from None
    if "\x00" in s:
        raise WireError(Status.BAD_FRAME, f"{what} contains NUL")
    return s


class Reader:
    """Bounds-checked little-endian reader over one payload.

    A structural error (a field cut short, a length or count over its limit
    or beyond the remaining bytes, invalid UTF-8, an undefined layout value
    or flag bit, trailing bytes) raises at once. A value the operation cannot
    accept in a well-laid-out field is only recorded (:meth:`invalid`, the
    first one is kept) and decoding goes on, so that a structural error later
    in the payload still wins; :meth:`finish` raises the recorded one.
    """

    __slots__ = ("b", "pos", "limits", "value_error")

    def __init__(self, b, limits: Limits = DEFAULT_LIMITS):
        self.b = memoryview(b).cast("B") if not isinstance(b, (bytes, bytearray)) else b
        self.pos = 0
        self.limits = limits
        self.value_error: WireError | None = None

    def invalid(self, msg: str) -> None:
        """Records a value error (INVALID_ARGUMENT); the first one is reported."""
        if self.value_error is None:
            self.value_error = WireError(Status.INVALID_ARGUMENT, msg)

    def remaining(self) -> int:
        return len(self.b) - self.pos

    def _need(self, n: int, f: str):
        if self.remaining() < n:
            raise WireError(Status.BAD_FRAME, f"truncated at {f}")

    def u8(self, f):
        self._need(1, f)
        v = self.b[self.pos]
        self.pos += 1
        return v

    def u16(self, f):
        self._need(2, f)
        v = _U16.unpack_from(self.b, self.pos)[0]
        self.pos += 2
        return v

    def u32(self, f):
        self._need(4, f)
        v = _U32.unpack_from(self.b, self.pos)[0]
        self.pos += 4
        return v

    def u64(self, f):
        self._need(8, f)
        v = _U64.unpack_from(self.b, self.pos)[0]
        self.pos += 8
        return v

    def take(self, n, f) -> bytes:
        self._need(n, f)
        v = bytes(self.b[self.pos:self.pos + n])
        self.pos += n
        return v

    def dim3(self, f):
        return [self.u32(f), self.u32(f), self.u32(f)]

    def str16(self, f, mx) -> str:
        if self.remaining() >= 2:
            n = _U16.unpack_from(self.b, self.pos)[0]
            if n > mx:
                raise WireError(Status.FRAME_TOO_LARGE, f"{f} longer than {mx}")
        n = self.u16(f)
        return _utf8(self.take(n, f), f)

    def bytes32(self, f, mx) -> bytes:
        if self.remaining() >= 4:
            n = _U32.unpack_from(self.b, self.pos)[0]
            if n > mx:
                raise WireError(Status.FRAME_TOO_LARGE, f"{f} longer than {mx}")
        n = self.u32(f)
        return self.take(n, f)

    def rest(self, f, mx) -> bytes:
        if self.remaining() > mx:
            raise WireError(Status.FRAME_TOO_LARGE, f"{f} longer than {mx}")
        return self.take(self.remaining(), f)

    def count(self, n, f, mx, min_elem):
        if n > mx:
            raise WireError(Status.FRAME_TOO_LARGE, f"{f} {n} exceeds {mx}")
        if min_elem and n > self.remaining() // min_elem:
            raise WireError(Status.BAD_FRAME, f"truncated at {f}")
        return n

    def finish(self):
        if self.remaining():
            raise WireError(Status.BAD_FRAME, "trailing bytes after message")
        if self.value_error is not None:
            raise self.value_error


def _lease_info(r: Reader) -> dict:
    m = {"lease_id": r.u64("lease_id")}
    state = r.u8("state")
    excl = r.u8("exclusivity")
    m["device"] = r.u16("device")
    for f in ("quota_bytes", "used_bytes", "expires_at_ms", "remaining_ms"):
        m[f] = r.u64(f)
    m["buffers"] = r.u32("buffers")
    m["modules"] = r.u32("modules")
    if state > LeaseState.RELEASED:
        raise WireError(Status.BAD_FRAME, "unknown lease state")
    if excl > Exclusivity.DEVICE_EXCLUSIVE:
        raise WireError(Status.BAD_FRAME, "unknown exclusivity")
    return {"lease_id": m["lease_id"], "state": LeaseState(state).name,
            "exclusivity": Exclusivity(excl).name, **{k: v for k, v in m.items() if k != "lease_id"}}


_LEASE_INFO_BYTES = 52


def _format(r: Reader) -> str | int:
    f = r.u8("format")
    if f > ImageFormat.FATBIN:
        r.invalid(f"unknown image format {f}")
        return f  # refused at finish(); the layout does not depend on it
    return ImageFormat(f).name


def _kernel(r: Reader) -> str:
    k = r.str16("kernel", r.limits.max_name_bytes)
    if not k:
        r.invalid("empty kernel name")
    return k


def _scalar(r: Reader) -> bytes:
    n = r.u16("scalar size")
    if n == 0 or n > r.limits.max_scalar_bytes:
        r.invalid(f"scalar argument of {n} bytes (1..{r.limits.max_scalar_bytes})")
    # Read even when refused: the layout is sound and a structural error later
    # in the payload must still be found.
    return r.take(n, "scalar")


def _dec_launch_args(r: Reader) -> dict:
    lim = r.limits
    form = r.u8("arg form")
    if form > ARG_TYPED:
        raise WireError(Status.BAD_FRAME, f"unknown argument form {form}")
    if form == ARG_RAW:
        n = r.count(r.u16("arg count"), "arg count", lim.max_kernel_args, 4)
        sizes = []
        for _ in range(n):
            s = r.u32("arg size")
            if s == 0:
                r.invalid("zero-sized argument")
            sizes.append(s)
        total = sum(sizes)
        if total > lim.max_arg_bytes:
            raise WireError(Status.FRAME_TOO_LARGE, f"arguments exceed {lim.max_arg_bytes} bytes")
        blob = r.bytes32("arg bytes", lim.max_arg_bytes)
        if len(blob) != total:
            raise WireError(Status.BAD_FRAME, "argument bytes do not match the sum of argument sizes")
        return {"form": "RAW", "sizes": sizes, "blob": blob}
    n = r.count(r.u16("arg count"), "arg count", lim.max_kernel_args, 3)
    args, total = [], 0
    for _ in range(n):
        kind = r.u8("arg kind")
        if kind == TYPED_SCALAR:
            b = _scalar(r)
            total += len(b)
            args.append({"kind": "SCALAR", "bytes": b})
        elif kind == TYPED_BUFFER:
            args.append({"kind": "BUFFER", "handle": r.u64("buffer handle"),
                         "offset": r.u64("buffer offset")})
            total += 8
        else:
            raise WireError(Status.BAD_FRAME, f"unknown argument kind {kind}")
    if total > lim.max_arg_bytes:
        raise WireError(Status.FRAME_TOO_LARGE, f"arguments exceed {lim.max_arg_bytes} bytes")
    return {"form": "TYPED", "args": args}


def _dec_request(op: int, r: Reader) -> dict:
    lim = r.limits
    if op == Opcode.HELLO:
        m = {"min_version": r.u16("min_version"), "max_version": r.u16("max_version"),
             "client_name": r.str16("client_name", lim.max_name_bytes)}
        if m["min_version"] > m["max_version"]:
            r.invalid("min_version > max_version")
        return m
    if op == Opcode.PING:
        return {"data": r.rest("ping data", lim.max_ping_bytes)}
    if op == Opcode.LEASE_ACQUIRE:
        min_vram, ttl, excl = r.u64("min_vram"), r.u32("ttl_s"), r.u8("exclusivity")
        flags, dev, key = r.u8("flags"), r.u16("device"), r.take(16, "idempotency_key")
        if flags & ~ACQUIRE_RELEASE_ON_DISCONNECT:
            raise WireError(Status.BAD_FRAME, "unknown acquire flag bits")
        # Value checks in field order; the first refusal is the one reported.
        if min_vram == 0:
            r.invalid("min_vram must be > 0")
        if ttl == 0:
            r.invalid("ttl_s must be > 0")
        if excl > Exclusivity.DEVICE_EXCLUSIVE:
            r.invalid(f"unknown exclusivity class {excl}")
        return {"min_vram": min_vram, "ttl_s": ttl,
                "exclusivity": Exclusivity(excl).name if excl <= Exclusivity.DEVICE_EXCLUSIVE
                else excl,
                "release_on_disconnect": bool(flags & ACQUIRE_RELEASE_ON_DISCONNECT),
                "device": dev, "idempotency_key": key}
    if op == Opcode.LEASE_RENEW:
        ttl = r.u32("ttl_s")
        if ttl == 0:
            r.invalid("ttl_s must be > 0")
        return {"ttl_s": ttl}
    if op in (Opcode.LEASE_RELEASE, Opcode.LEASE_QUERY, Opcode.LEASE_LIST, Opcode.SYNC):
        return {}
    if op == Opcode.CAP_REQUEST:
        return {"permissions": r.u32("permissions"), "ttl_s": r.u32("ttl_s")}
    if op == Opcode.MEM_ALLOC:
        size = r.u64("size")
        if size == 0:
            r.invalid("allocation size must be > 0")
        return {"size": size}
    if op in (Opcode.MEM_FREE, Opcode.MODULE_UNLOAD):
        return {"handle": r.u64("handle")}
    if op == Opcode.MEM_WRITE:
        return {"handle": r.u64("handle"), "offset": r.u64("offset"),
                "data": r.rest("data", lim.max_payload_bytes)}
    if op == Opcode.MEM_READ:
        m = {"handle": r.u64("handle"), "offset": r.u64("offset"), "length": r.u32("length")}
        if m["length"] > lim.max_payload_bytes:
            raise WireError(Status.FRAME_TOO_LARGE, "read length exceeds the payload limit")
        return m
    if op == Opcode.MODULE_LOAD:
        fmt = _format(r)
        image = r.rest("image", lim.max_payload_bytes)
        if not image:
            r.invalid("empty module image")
        return {"format": fmt, "image": image}
    if op == Opcode.LAUNCH:
        m = {"module": r.u64("module"), "kernel": _kernel(r), "grid": r.dim3("grid"),
             "block": r.dim3("block"), "shared_bytes": r.u32("shared_bytes")}
        m["args"] = _dec_launch_args(r)
        return m
    if op == Opcode.MODULE_GLOBAL:
        m = {"module": r.u64("module"), "name": r.str16("name", lim.max_name_bytes)}
        if not m["name"]:
            r.invalid("empty variable name")
        return m
    if op == Opcode.GPU_SUBMIT:
        fmt = _format(r)
        image = r.bytes32("image", lim.max_payload_bytes)
        if not image:
            r.invalid("empty module image")
        m = {"format": fmt, "image": image, "kernel": _kernel(r), "grid": r.dim3("grid"),
             "block": r.dim3("block"), "shared_bytes": r.u32("shared_bytes")}
        n = r.count(r.u16("arg count"), "arg count", lim.max_kernel_args, 3)
        args, param, reply_bytes = [], 0, 2
        for _ in range(n):
            kind = r.u8("arg kind")
            if kind == SUBMIT_SCALAR:
                b = _scalar(r)
                param += len(b)
                args.append({"kind": "SCALAR", "bytes": b})
            elif kind in (SUBMIT_IN, SUBMIT_INOUT):
                b = r.bytes32("buffer data", lim.max_payload_bytes)
                if not b:
                    r.invalid("empty input buffer")
                param += 8
                if kind == SUBMIT_INOUT:
                    reply_bytes += 6 + len(b)
                args.append({"kind": _SUBMIT_KINDS[kind], "bytes": b})
            elif kind == SUBMIT_OUT:
                size = r.u64("out size")
                if size > lim.max_payload_bytes:
                    raise WireError(Status.FRAME_TOO_LARGE,
                                    f"output buffer larger than {lim.max_payload_bytes} bytes")
                if size == 0:
                    r.invalid("empty output buffer")
                param += 8
                reply_bytes += 6 + size
                args.append({"kind": "OUT", "size": size})
            else:
                raise WireError(Status.BAD_FRAME, f"unknown submit argument kind {kind}")
        if param > lim.max_arg_bytes:
            raise WireError(Status.FRAME_TOO_LARGE, f"arguments exceed {lim.max_arg_bytes} bytes")
        if reply_bytes > lim.max_payload_bytes:
            raise WireError(Status.FRAME_TOO_LARGE,
                            f"outputs of {reply_bytes} bytes would exceed the payload limit")
        m["args"] = args
        return m
    raise WireError(Status.UNKNOWN_OPCODE, f"unknown opcode 0x{op:04x}")


_LIMIT_NAMES = ("max_token_bytes", "max_payload_bytes", "max_inflight", "max_kernel_args",
                "max_arg_bytes", "max_name_bytes", "max_lease_ttl_s")
#: The protocol maximum of each limit a HELLO reply announces (the defaults of
#: :class:`Limits`, whatever limits the decoder itself runs with);
#: max_lease_ttl_s has none beyond its u32.
_ANNOUNCED_MAX = {**{k: getattr(DEFAULT_LIMITS, k) for k in _LIMIT_NAMES[:-1]},
                  "max_lease_ttl_s": 0xFFFFFFFF}


def _dec_reply(op: int, r: Reader) -> dict:
    lim = r.limits
    if op == Opcode.HELLO:
        m = {"version": r.u16("version"), "node_id": r.str16("node_id", lim.max_name_bytes),
             "backend": r.str16("backend", lim.max_name_bytes)}
        m["limits"] = {k: r.u32("limits") for k in _LIMIT_NAMES}
        # Each announced limit is 1..its protocol maximum; a value out of
        # range is a malformed reply, never clamped (PROTOCOL.md, "Limits").
        for k in _LIMIT_NAMES:
            v, mx = m["limits"][k], _ANNOUNCED_MAX[k]
            if v == 0 or v > mx:
                raise WireError(Status.BAD_FRAME, f"announced {k} {v} outside 1..{mx}")
        n = r.count(r.u16("device count"), "device count", lim.max_devices, 2 + 2 + 16 + 2 + 4 + 16)
        devs = []
        for _ in range(n):
            devs.append({"index": r.u16("device index"),
                         "name": r.str16("device name", lim.max_name_bytes),
                         "uuid": r.take(16, "device uuid"), "cc_major": r.u8("cc_major"),
                         "cc_minor": r.u8("cc_minor"), "sm_count": r.u32("sm_count"),
                         "total_bytes": r.u64("total_bytes"), "free_bytes": r.u64("free_bytes")})
        m["devices"] = devs
        return m
    if op == Opcode.PING:
        return {"data": r.rest("ping data", lim.max_ping_bytes)}
    if op == Opcode.LEASE_ACQUIRE:
        return {"lease_id": r.u64("lease_id"), "device": r.u16("device"),
                "granted_bytes": r.u64("granted_bytes"), "expires_at_ms": r.u64("expires_at_ms")}
    if op == Opcode.LEASE_RENEW:
        return {"expires_at_ms": r.u64("expires_at_ms")}
    if op in (Opcode.LEASE_RELEASE, Opcode.MEM_FREE, Opcode.MEM_WRITE, Opcode.MODULE_UNLOAD):
        return {}
    if op == Opcode.LEASE_QUERY:
        return _lease_info(r)
    if op == Opcode.LEASE_LIST:
        n = r.count(r.u32("lease count"), "lease count", lim.max_list_entries, _LEASE_INFO_BYTES)
        return {"leases": [_lease_info(r) for _ in range(n)]}
    if op == Opcode.CAP_REQUEST:
        return {"token": r.bytes32("token", lim.max_token_bytes)}
    if op in (Opcode.MEM_ALLOC, Opcode.MODULE_LOAD):
        return {"handle": r.u64("handle")}
    if op == Opcode.MEM_READ:
        return {"data": r.rest("data", lim.max_payload_bytes)}
    if op == Opcode.LAUNCH:
        return {"launch_seq": r.u64("launch_seq")}
    if op == Opcode.SYNC:
        return {"completed": r.u64("completed")}
    if op == Opcode.MODULE_GLOBAL:
        m = {"handle": r.u64("handle"), "size": r.u64("size")}
        space = r.u8("space")
        if space > GlobalSpace.UNKNOWN:
            raise WireError(Status.BAD_FRAME, f"unknown variable space {space}")
        m["space"] = GlobalSpace(space).name
        return m
    if op == Opcode.GPU_SUBMIT:
        n = r.count(r.u16("output count"), "output count", lim.max_kernel_args, 6)
        return {"outputs": [{"arg_index": r.u16("arg_index"),
                             "data": r.bytes32("output data", lim.max_payload_bytes)}
                            for _ in range(n)]}
    raise WireError(Status.UNKNOWN_OPCODE, f"unknown opcode 0x{op:04x}")


def decode_error_message(payload, limits: Limits = DEFAULT_LIMITS) -> str:
    if len(payload) > limits.max_message_bytes:
        raise WireError(Status.FRAME_TOO_LARGE, "error message too long")
    return _utf8(bytes(payload), "error message")


def decode_payload(opcode: int, payload, *, reply: bool, status: int = 0,
                   limits: Limits = DEFAULT_LIMITS) -> dict:
    """The fields of a payload. Error replies (status != 0) give ``{"message": ...}``."""
    if reply and status != 0:
        return {"message": decode_error_message(payload, limits)}
    r = Reader(payload, limits)
    m = _dec_reply(opcode, r) if reply else _dec_request(opcode, r)
    r.finish()
    return m


# ---- Payload encoding ---------------------------------------------------------------

def _enum_value(e, v) -> int:
    if isinstance(v, str):
        return int(e[v])
    return int(e(v))


def _str16(s: str) -> bytes:
    b = s.encode("utf-8")
    return _U16.pack(len(b)) + b


def _dim3(d) -> bytes:
    x, y, z = d
    return struct.pack("<III", x, y, z)


def enc_launch(module: int, kernel: str, grid, block, shared_bytes: int, args_blob: bytes) -> bytes:
    """LAUNCH payload; ``args_blob`` is an encoded argument section
    (:func:`enc_raw_args`, :func:`enc_typed_args`)."""
    return _U64.pack(module) + _str16(kernel) + _dim3(grid) + _dim3(block) + \
        _U32.pack(shared_bytes) + args_blob


def enc_raw_args(sizes, blob: bytes) -> bytes:
    sizes = list(sizes)
    return (bytes([ARG_RAW]) + _U16.pack(len(sizes)) + struct.pack(f"<{len(sizes)}I", *sizes)
            + _U32.pack(len(blob)) + bytes(blob))


def enc_typed_args(args) -> bytes:
    out = [bytes([ARG_TYPED]), _U16.pack(len(args))]
    for a in args:
        if a["kind"] == "SCALAR":
            b = bytes(a["bytes"])
            out.append(bytes([TYPED_SCALAR]) + _U16.pack(len(b)) + b)
        elif a["kind"] == "BUFFER":
            out.append(bytes([TYPED_BUFFER]) + _U64.pack(a["handle"]) + _U64.pack(a.get("offset", 0)))
        else:
            raise ValueError(f"unknown typed argument kind {a['kind']!r}")
    return b"".join(out)


def _enc_submit_args(args) -> bytes:
    out = [_U16.pack(len(args))]
    for a in args:
        k = a["kind"]
        if k == "SCALAR":
            b = bytes(a["bytes"])
            out.append(bytes([SUBMIT_SCALAR]) + _U16.pack(len(b)) + b)
        elif k in ("IN", "INOUT"):
            b = bytes(a["bytes"])
            out.append(bytes([SUBMIT_IN if k == "IN" else SUBMIT_INOUT]) + _U32.pack(len(b)) + b)
        elif k == "OUT":
            out.append(bytes([SUBMIT_OUT]) + _U64.pack(a["size"]))
        else:
            raise ValueError(f"unknown submit argument kind {k!r}")
    return b"".join(out)


def _enc_lease_info(m) -> bytes:
    return struct.pack("<QBBHQQQQII", m["lease_id"], _enum_value(LeaseState, m["state"]),
                       _enum_value(Exclusivity, m["exclusivity"]), m["device"], m["quota_bytes"],
                       m["used_bytes"], m["expires_at_ms"], m["remaining_ms"], m["buffers"],
                       m["modules"])


def encode_request(op: int, m: dict) -> bytes:
    if op == Opcode.HELLO:
        return _U16.pack(m["min_version"]) + _U16.pack(m["max_version"]) + _str16(m["client_name"])
    if op == Opcode.PING:
        return bytes(m["data"])
    if op == Opcode.LEASE_ACQUIRE:
        key = bytes(m.get("idempotency_key", bytes(16)))
        if len(key) != 16:
            raise ValueError("idempotency_key must be 16 bytes")
        flags = ACQUIRE_RELEASE_ON_DISCONNECT if m.get("release_on_disconnect") else 0
        return struct.pack("<QIBBH", m["min_vram"], m["ttl_s"],
                           _enum_value(Exclusivity, m["exclusivity"]), flags,
                           m.get("device", ANY_DEVICE)) + key
    if op == Opcode.LEASE_RENEW:
        return _U32.pack(m["ttl_s"])
    if op in (Opcode.LEASE_RELEASE, Opcode.LEASE_QUERY, Opcode.LEASE_LIST, Opcode.SYNC):
        return b""
    if op == Opcode.CAP_REQUEST:
        return struct.pack("<II", m["permissions"], m["ttl_s"])
    if op == Opcode.MEM_ALLOC:
        return _U64.pack(m["size"])
    if op in (Opcode.MEM_FREE, Opcode.MODULE_UNLOAD):
        return _U64.pack(m["handle"])
    if op == Opcode.MEM_WRITE:
        return struct.pack("<QQ", m["handle"], m["offset"]) + bytes(m["data"])
    if op == Opcode.MEM_READ:
        return struct.pack("<QQI", m["handle"], m["offset"], m["length"])
    if op == Opcode.MODULE_LOAD:
        return bytes([_enum_value(ImageFormat, m["format"])]) + bytes(m["image"])
    if op == Opcode.LAUNCH:
        a = m["args"]
        blob = (enc_raw_args(a["sizes"], a["blob"]) if a["form"] == "RAW"
                else enc_typed_args(a["args"]))
        return enc_launch(m["module"], m["kernel"], m["grid"], m["block"], m["shared_bytes"], blob)
    if op == Opcode.MODULE_GLOBAL:
        return _U64.pack(m["module"]) + _str16(m["name"])
    if op == Opcode.GPU_SUBMIT:
        image = bytes(m["image"])
        return (bytes([_enum_value(ImageFormat, m["format"])]) + _U32.pack(len(image)) + image
                + _str16(m["kernel"]) + _dim3(m["grid"]) + _dim3(m["block"])
                + _U32.pack(m["shared_bytes"]) + _enc_submit_args(m["args"]))
    raise ValueError(f"unknown opcode 0x{op:04x}")


def encode_reply(op: int, m: dict) -> bytes:
    if op == Opcode.HELLO:
        lim = m["limits"]
        out = [_U16.pack(m["version"]), _str16(m["node_id"]), _str16(m["backend"]),
               struct.pack("<7I", *(lim[k] for k in _LIMIT_NAMES)), _U16.pack(len(m["devices"]))]
        for d in m["devices"]:
            out.append(_U16.pack(d["index"]) + _str16(d["name"]) + bytes(d["uuid"])
                       + struct.pack("<BBIQQ", d["cc_major"], d["cc_minor"], d["sm_count"],
                                     d["total_bytes"], d["free_bytes"]))
        return b"".join(out)
    if op in (Opcode.PING, Opcode.MEM_READ):
        return bytes(m["data"])
    if op == Opcode.LEASE_ACQUIRE:
        return struct.pack("<QHQQ", m["lease_id"], m["device"], m["granted_bytes"],
                           m["expires_at_ms"])
    if op == Opcode.LEASE_RENEW:
        return _U64.pack(m["expires_at_ms"])
    if op in (Opcode.LEASE_RELEASE, Opcode.MEM_FREE, Opcode.MEM_WRITE, Opcode.MODULE_UNLOAD):
        return b""
    if op == Opcode.LEASE_QUERY:
        return _enc_lease_info(m)
    if op == Opcode.LEASE_LIST:
        return _U32.pack(len(m["leases"])) + b"".join(_enc_lease_info(x) for x in m["leases"])
    if op == Opcode.CAP_REQUEST:
        t = bytes(m["token"])
        return _U32.pack(len(t)) + t
    if op in (Opcode.MEM_ALLOC, Opcode.MODULE_LOAD):
        return _U64.pack(m["handle"])
    if op == Opcode.LAUNCH:
        return _U64.pack(m["launch_seq"])
    if op == Opcode.SYNC:
        return _U64.pack(m["completed"])
    if op == Opcode.MODULE_GLOBAL:
        return struct.pack("<QQB", m["handle"], m["size"], _enum_value(GlobalSpace, m["space"]))
    if op == Opcode.GPU_SUBMIT:
        return _U16.pack(len(m["outputs"])) + b"".join(
            _U16.pack(o["arg_index"]) + _U32.pack(len(o["data"])) + bytes(o["data"])
            for o in m["outputs"])
    raise ValueError(f"unknown opcode 0x{op:04x}")


def encode_payload(opcode: int, fields: dict, *, reply: bool, status: int = 0) -> bytes:
    if reply and status != 0:
        return fields.get("message", "").encode("utf-8")
    return encode_reply(opcode, fields) if reply else encode_request(opcode, fields)
