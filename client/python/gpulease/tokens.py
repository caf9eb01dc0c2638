"""Capability tokens (docs/TOKENS.md): the binary layout, the text form
``glt1.<base64url>``, key ids, key files, minting, inspecting and the node's
validation order (used by the tests against the golden vectors, and by
gateways and operators that check a token before handing it on).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import hashlib
import os
import re
import secrets
import stat
import struct
import time

import nacl.exceptions
import nacl.signing

from .status import GpuleaseError, Status
from .wire import LEASE_NONE_OPCODES, Opcode

TOKEN_VERSION = 1
ALG_ED25519 = 1
DOMAIN = b"gpulease-token-v1\x00"
KEY_ID_DOMAIN = b"gpulease-key-id-v1\x00"
TEXT_PREFIX = "glt1."
MAX_NAME_BYTES = 64
MIN_TOKEN_BYTES = 146
MAX_TOKEN_BYTES = 272
MAX_TEXT_CHARS = 363  # base64url of 272 bytes, no padding
PUBLIC_KEY_TAG = "gpulease-ed25519-public-v1"
SECRET_KEY_TAG = "gpulease-ed25519-secret-v1"
DEFAULT_CLOCK_SKEW_S = 30
MAX_KEY_FILE_BYTES = 4096


class Perm(enum.IntFlag):
    LEASE_ACQUIRE = 0x001
    LEASE_QUERY = 0x002
    LEASE_RENEW = 0x004
    LEASE_RELEASE = 0x008
    MEM = 0x010
    MODULE = 0x020
    TASKLET_SUBMIT = 0x040
    CAP_REQUEST = 0x080
    ADMIN = 0x100


ALL_PERMS = 0x1FF
_RESERVED_PERMS = ~ALL_PERMS & 0xFFFFFFFF

#: The permission each opcode needs (TOKENS.md, "Opcode -> permission"); None: no token.
OPCODE_PERMISSION = {
    Opcode.HELLO: None, Opcode.PING: None,
    Opcode.LEASE_ACQUIRE: Perm.LEASE_ACQUIRE, Opcode.LEASE_RENEW: Perm.LEASE_RENEW,
    Opcode.LEASE_RELEASE: Perm.LEASE_RELEASE, Opcode.LEASE_QUERY: Perm.LEASE_QUERY,
    Opcode.LEASE_LIST: Perm.LEASE_QUERY, Opcode.CAP_REQUEST: Perm.CAP_REQUEST,
    Opcode.MEM_ALLOC: Perm.MEM, Opcode.MEM_FREE: Perm.MEM, Opcode.MEM_WRITE: Perm.MEM,
    Opcode.MEM_READ: Perm.MEM, Opcode.MODULE_LOAD: Perm.MODULE, Opcode.MODULE_UNLOAD: Perm.MODULE,
    Opcode.MODULE_GLOBAL: Perm.MODULE,
    Opcode.LAUNCH: Perm.TASKLET_SUBMIT, Opcode.SYNC: Perm.TASKLET_SUBMIT,
    Opcode.GPU_SUBMIT: Perm.TASKLET_SUBMIT,
}


#: The whole message of a LEASE_NOT_FOUND reply, whether the lease is absent
#: or another tenant's (TOKENS.md, "Validation" step 9).
NO_SUCH_LEASE = "no such lease"


class TokenError(GpuleaseError):
    """A token refused; ``reason`` is the spec's reason word (``malformed``,
    ``unknown_key``, ``bad_signature``, ``expired``, ...). ``message`` is the
    node's message: the reason, then ``": "`` and the detail if any; or, where
    the spec fixes the whole text (step 9, ``no such lease``), ``exact``."""

    def __init__(self, status: int, reason: str, detail: str = "", *, exact: str | None = None):
        self.reason = reason
        if exact is not None:
            text = exact
        else:
            text = f"{reason}: {detail}" if detail else reason
        super().__init__(status, text)


class KeyFileError(ValueError):
    """A key file that cannot be used (never includes key material)."""


def parse_perms(text: str) -> int:
    """``"mem,module"``, ``"all"`` (bits 0..8) or ``"none"``, case-insensitive."""
    t = text.strip().lower()
    if t == "all":
        return ALL_PERMS
    if t == "none":
        return 0
    v = 0
    for part in t.split(","):
        part = part.strip()
        try:
            v |= Perm[part.upper()]
        except KeyError:
            raise ValueError(f"unknown permission {part!r}") from None
    return v


def perm_names(perms: int) -> str:
    """``"mem,module"``; ``"none"`` for no bits (as the CLI and the vectors write them)."""
    return ",".join(p.name.lower() for p in Perm if perms & p) or "none"


def _valid_name(b: bytes) -> bool:
    if not 1 <= len(b) <= MAX_NAME_BYTES:
        return False
    try:
        s = b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in s)


@dataclasses.dataclass
class Claims:
    """The signed fields of a token."""
    tenant: str
    audience: str
    perms: int
    not_before: int
    expires_at: int
    lease_id: int = 0
    token_id: bytes = dataclasses.field(default_factory=lambda: secrets.token_bytes(16))
    origin_id: bytes = bytes(16)
    max_vram: int = 0
    key_id: int = 0  # set by minting

    def body(self) -> bytes:
        """Bytes [0, 80+T+A): everything the signature covers, after the domain."""
        t, a = self.tenant.encode("utf-8"), self.audience.encode("utf-8")
        if not _valid_name(t) or not _valid_name(a):
            raise ValueError("tenant and audience must be 1..64 bytes of printable UTF-8")
        if self.perms & _RESERVED_PERMS:
            raise ValueError("reserved permission bits set")
        if self.expires_at <= self.not_before:
            raise ValueError("expires_at must be after not_before")
        if len(self.token_id) != 16 or len(self.origin_id) != 16:
            raise ValueError("token_id and origin_id are 16 bytes")
        return (bytes([TOKEN_VERSION, ALG_ED25519]) + struct.pack("<Q", self.key_id)
                + bytes([len(t)]) + t + bytes([len(a)]) + a
                + struct.pack("<QIQQ", self.lease_id, self.perms, self.not_before, self.expires_at)
                + bytes(self.token_id) + bytes(self.origin_id) + struct.pack("<Q", self.max_vram))


@dataclasses.dataclass
class Token:
    claims: Claims
    signature: bytes
    raw: bytes

    @property
    def key_id(self) -> int:
        return self.claims.key_id

    def signed_message(self) -> bytes:
        return DOMAIN + self.raw[:-64]

    def text(self) -> str:
        return encode_text(self.raw)

    def describe(self) -> dict:
        """The fields as the vectors and ``gpulease token inspect`` show them."""
        c = self.claims
        return {"key_id": f"{c.key_id:016x}", "tenant": c.tenant, "audience": c.audience,
                "lease_id": str(c.lease_id), "perms": c.perms, "perm_names": perm_names(c.perms),
                "not_before": str(c.not_before), "expires_at": str(c.expires_at),
                "token_id": c.token_id.hex(), "origin_id": c.origin_id.hex(),
                "max_vram": str(c.max_vram)}


def _malformed(msg: str) -> TokenError:
    return TokenError(Status.UNAUTHENTICATED, "malformed", msg)


def parse_token(raw) -> Token:
    """Parses the binary form (TOKENS.md step 1); raises :class:`TokenError`
    (UNAUTHENTICATED, ``malformed``). Does not check the signature."""
    b = bytes(raw)
    n = len(b)
    if n < 11:
        raise _malformed("too short")
    if b[0] != TOKEN_VERSION:
        raise _malformed(f"version {b[0]}")
    if b[1] != ALG_ED25519:
        raise _malformed(f"algorithm {b[1]}")
    key_id = struct.unpack_from("<Q", b, 2)[0]
    tl = b[10]
    if n < 12 + tl:
        raise _malformed("too short")
    al = b[11 + tl]
    if n != 144 + tl + al:
        raise _malformed(f"{n} bytes, layout needs {144 + tl + al}")
    tenant_b, aud_b = b[11:11 + tl], b[12 + tl:12 + tl + al]
    if not _valid_name(tenant_b):
        raise _malformed("tenant")
    if not _valid_name(aud_b):
        raise _malformed("audience")
    o = 12 + tl + al
    lease_id, perms, nbf, exp = struct.unpack_from("<QIQQ", b, o)
    if perms & _RESERVED_PERMS:
        raise _malformed("reserved permission bits")
    if exp <= nbf:
        raise _malformed("expires_at not after not_before")
    token_id, origin_id = b[o + 28:o + 44], b[o + 44:o + 60]
    max_vram = struct.unpack_from("<Q", b, o + 60)[0]
    c = Claims(tenant=tenant_b.decode(), audience=aud_b.decode(), perms=perms, not_before=nbf,
               expires_at=exp, lease_id=lease_id, token_id=token_id, origin_id=origin_id,
               max_vram=max_vram, key_id=key_id)
    return Token(c, b[-64:], b)


def encode_text(raw: bytes) -> str:
    return TEXT_PREFIX + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode("ascii")


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def decode_text(text: str) -> bytes:
    """``glt1.<base64url>`` -> binary token bytes (canonical base64url, no padding)."""
    t = text.strip(" \t\r\n\v\f")
    if not t.startswith(TEXT_PREFIX):
        raise _malformed("text form must start with glt1.")
    body = t[len(TEXT_PREFIX):]
    if len(body) > MAX_TEXT_CHARS:
        raise _malformed("token text too long")
    if not _B64URL.fullmatch(body) or len(body) % 4 == 1:
        raise _malformed("not base64url")
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    if encode_text(raw) != TEXT_PREFIX + body:
        raise _malformed("non-canonical base64url")
    return raw


def token_bytes(token) -> bytes:
    """Accepts a token as text, bytes, a :class:`Token` or a grant (anything with ``.raw``)."""
    if isinstance(token, Token) or hasattr(token, "raw"):
        return bytes(token.raw)
    if isinstance(token, str):
        return decode_text(token)
    return bytes(token)


def inspect(token) -> dict:
    """The decoded fields of a token (text or bytes), without verifying it."""
    return parse_token(token_bytes(token)).describe()


# ---- Keys ---------------------------------------------------------------------------

def key_id(public_key: bytes) -> int:
    d = hashlib.blake2b(KEY_ID_DOMAIN + bytes(public_key), digest_size=32).digest()
    return struct.unpack("<Q", d[:8])[0]


class SecretKey:
    """An Ed25519 signing key (an authority's, or a node's)."""

    def __init__(self, seed: bytes):
        if len(seed) != 32:
            raise KeyFileError("an Ed25519 seed is 32 bytes")
        self._sk = nacl.signing.SigningKey(bytes(seed))

    @classmethod
    def generate(cls) -> "SecretKey":
        return cls(secrets.token_bytes(32))

    @property
    def public_key(self) -> bytes:
        return bytes(self._sk.verify_key)

    @property
    def key_id(self) -> int:
        return key_id(self.public_key)

    @property
    def seed(self) -> bytes:
        return bytes(self._sk)

    def sign(self, message: bytes) -> bytes:
        return self._sk.sign(message).signature

    def mint(self, claims: Claims) -> Token:
        c = dataclasses.replace(claims, key_id=self.key_id)
        body = c.body()
        sig = self.sign(DOMAIN + body)
        return Token(c, sig, body + sig)


def _read_key_line(path, tag: str, secret: bool) -> tuple[int, bytes]:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"{path}: not a regular file")
        if secret and (st.st_mode & 0o077):
            raise KeyFileError(f"{path}: secret key file is readable or writable by group/others "
                               "(chmod 600)")
        if st.st_size > MAX_KEY_FILE_BYTES:
            raise KeyFileError(f"{path}: larger than {MAX_KEY_FILE_BYTES} bytes")
        data = bytearray(os.read(fd, MAX_KEY_FILE_BYTES + 1))
    finally:
        os.close(fd)
    try:
        lines = [ln.strip() for ln in bytes(data).decode("ascii").splitlines()]
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: not ASCII") from None
    finally:
        data[:] = bytes(len(data))
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if len(lines) != 1:
        raise KeyFileError(f"{path}: expected one key line")
    parts = lines[0].split()
    if len(parts) != 3 or parts[0] != tag:
        raise KeyFileError(f"{path}: not a {tag} line")
    if not re.fullmatch(r"[0-9a-f]{16}", parts[1]):
        raise KeyFileError(f"{path}: bad key id")
    try:
        material = base64.b64decode(parts[2], validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(f"{path}: bad base64") from None
    if len(material) != 32:
        raise KeyFileError(f"{path}: key is not 32 bytes")
    return int(parts[1], 16), material


def load_public_key_file(path) -> bytes:
    kid, pub = _read_key_line(path, PUBLIC_KEY_TAG, secret=False)
    if key_id(pub) != kid:
        raise KeyFileError(f"{path}: key id does not match the key")
    return pub


def load_secret_key_file(path) -> SecretKey:
    kid, seed = _read_key_line(path, SECRET_KEY_TAG, secret=True)
    sk = SecretKey(seed)
    if sk.key_id != kid:
        raise KeyFileError(f"{path}: key id does not match the key")
    return sk


def public_key_line(pub: bytes) -> str:
    return f"{PUBLIC_KEY_TAG} {key_id(pub):016x} {base64.b64encode(pub).decode()}\n"


def write_key_pair(prefix, sk: SecretKey) -> None:
    """``PREFIX.key`` (0600, O_EXCL) and ``PREFIX.pub`` (0644), as ``gpulease keygen``;
    refuses, changing nothing, if either exists."""
    key_path, pub_path = f"{prefix}.key", f"{prefix}.pub"
    if os.path.lexists(key_path) or os.path.lexists(pub_path):
        raise KeyFileError(f"{prefix}: key files exist")
    line = f"{SECRET_KEY_TAG} {sk.key_id:016x} {base64.b64encode(sk.seed).decode()}\n"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(key_path, flags, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(line)
    fd = os.open(pub_path, flags, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(public_key_line(sk.public_key))


def mint(secret_key: SecretKey, *, tenant: str, audience: str, perms: int = ALL_PERMS,
         ttl_s: int | None = 3600, not_before: int | None = None, expires_at: int | None = None,
         lease_id: int = 0, max_vram: int = 0, token_id: bytes | None = None) -> Token:
    """Mints and signs a token (as ``gpulease token mint``)."""
    now = int(time.time())
    nbf = now if not_before is None else not_before
    exp = expires_at if expires_at is not None else nbf + int(ttl_s)
    c = Claims(tenant=tenant, audience=audience, perms=perms, not_before=nbf, expires_at=exp,
               lease_id=lease_id, max_vram=max_vram,
               token_id=token_id if token_id is not None else secrets.token_bytes(16))
    return secret_key.mint(c)


def verify_signature(token, public_key: bytes) -> Token:
    """Parses a token and checks that ``public_key`` signed it (steps 1-3 with a
    one-key ring); raises :class:`TokenError`."""
    t = parse_token(token_bytes(token))
    if t.key_id != key_id(public_key):
        raise TokenError(Status.UNAUTHENTICATED, "unknown_key", "signed by another key")
    try:
        nacl.signing.VerifyKey(bytes(public_key)).verify(t.signed_message(), t.signature)
    except (nacl.exceptions.BadSignatureError, ValueError):
        raise TokenError(Status.UNAUTHENTICATED, "bad_signature") from None
    return t


# ---- Validation (a node's order, TOKENS.md "Validation") ----------------------------

@dataclasses.dataclass
class Revocations:
    token_ids: frozenset = frozenset()
    tenants: frozenset = frozenset()

    @classmethod
    def parse(cls, text: str) -> "Revocations":
        toks, tenants = set(), set()
        for i, line in enumerate(text.splitlines(), 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            kind, _, rest = s.partition(" ")
            rest = rest.strip()
            if kind == "token" and re.fullmatch(r"[0-9a-fA-F]{32}", rest):
                toks.add(bytes.fromhex(rest))
            elif kind == "tenant" and _valid_name(rest.encode("utf-8")):
                tenants.add(rest)
            else:
                raise ValueError(f"line {i}: not 'token HEX32' or 'tenant NAME'")
        return cls(frozenset(toks), frozenset(tenants))


class Verifier:
    """Checks a token as a node does, step by step; :meth:`check` raises
    :class:`TokenError` with the status and reason of the first failing step."""

    def __init__(self, keys=(), *, node_id: str, clock_skew_s: int = DEFAULT_CLOCK_SKEW_S,
                 revocations: Revocations | None = None):
        self.ring = {key_id(k): bytes(k) for k in keys}
        self.node_id = node_id
        self.skew = clock_skew_s
        self.revocations = revocations or Revocations()

    def check(self, token, *, opcode: int, frame_lease_id: int = 0, now: int | None = None,
              lease_owner: str | None = None, acquire_bytes: int | None = None) -> Token:
        raw = token_bytes(token)
        t = parse_token(raw)
        c = t.claims
        pub = self.ring.get(c.key_id)
        if pub is None:
            raise TokenError(Status.UNAUTHENTICATED, "unknown_key", f"key {c.key_id:016x}")
        try:
            nacl.signing.VerifyKey(pub).verify(t.signed_message(), t.signature)
        except (nacl.exceptions.BadSignatureError, ValueError):
            raise TokenError(Status.UNAUTHENTICATED, "bad_signature") from None
        now = int(time.time()) if now is None else now
        if max(c.not_before - self.skew, 0) > now:
            raise TokenError(Status.TOKEN_EXPIRED, "not_yet_valid")
        if not now < c.expires_at + self.skew:
            raise TokenError(Status.TOKEN_EXPIRED, "expired")
        if c.audience != self.node_id:
            raise TokenError(Status.PERMISSION_DENIED, "wrong_audience")
        if opcode not in OPCODE_PERMISSION:
            raise TokenError(Status.PERMISSION_DENIED, "missing_permission", "unknown opcode")
        need = OPCODE_PERMISSION[opcode]
        if need is not None and not (c.perms & need):
            raise TokenError(Status.PERMISSION_DENIED, "missing_permission")
        rv = self.revocations
        if c.token_id in rv.token_ids or (c.origin_id != bytes(16) and c.origin_id in rv.token_ids):
            raise TokenError(Status.REVOKED, "revoked_token")
        if c.tenant in rv.tenants:
            raise TokenError(Status.REVOKED, "revoked_tenant")
        # 8. The header lease rule (PROTOCOL.md, "Opcodes") and the lease
        # binding: a lease-bound token acts on its lease and nothing else.
        name = Opcode(opcode).name
        acts_on_lease = opcode not in LEASE_NONE_OPCODES
        if c.lease_id != 0 and not acts_on_lease:                       # 8a
            raise TokenError(Status.PERMISSION_DENIED, "wrong_lease",
                             f"a lease-bound token cannot use {name}")
        if acts_on_lease and frame_lease_id == 0:                       # 8b
            raise TokenError(Status.INVALID_ARGUMENT, "lease_rule",
                             f"{name} needs the lease in the header's lease_id")
        if not acts_on_lease and frame_lease_id != 0:                   # 8b
            raise TokenError(Status.INVALID_ARGUMENT, "lease_rule",
                             f"lease_id must be 0 for {name}")
        if c.lease_id != 0 and frame_lease_id != c.lease_id:            # 8c
            raise TokenError(Status.PERMISSION_DENIED, "wrong_lease",
                             f"token is bound to lease {c.lease_id}")
        # 9. The lease's owner: another tenant's lease reads as absent.
        if lease_owner is not None and lease_owner != c.tenant:
            raise TokenError(Status.LEASE_NOT_FOUND, "not_lease_owner", exact=NO_SUCH_LEASE)
        if (opcode == Opcode.LEASE_ACQUIRE and acquire_bytes is not None and c.max_vram != 0
                and acquire_bytes > c.max_vram):
            raise TokenError(Status.PERMISSION_DENIED, "vram_ceiling")
        return t
