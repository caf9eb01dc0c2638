"""Leases: acquire (LeaseBuilder), renew, query, release; LEASE_LIST; a
background renewal helper; scoped grants (CAP_REQUEST)."""

from __future__ import annotations

import dataclasses
import secrets
import struct
import threading
import time
import weakref

from . import tokens as _tokens
from . import wire
from .status import GpuleaseError, LeaseLostError, Status
from .wire import Exclusivity, LeaseState, Opcode


@dataclasses.dataclass
class LeaseInfo:
    """A LEASE_QUERY / LEASE_LIST record."""
    lease_id: int
    state: LeaseState
    exclusivity: Exclusivity
    device: int
    quota_bytes: int
    used_bytes: int
    expires_at_ms: int
    remaining_ms: int
    buffers: int
    modules: int

    @classmethod
    def from_fields(cls, m: dict) -> "LeaseInfo":
        m = dict(m)
        m["state"] = LeaseState[m["state"]]
        m["exclusivity"] = Exclusivity[m["exclusivity"]]
        return cls(**m)


def _excl(v) -> Exclusivity:
    if isinstance(v, str):
        key = v.upper().replace("-", "_")
        key = {"SESSION": "SESSION_EXCLUSIVE", "DEVICE": "DEVICE_EXCLUSIVE"}.get(key, key)
        return Exclusivity[key]
    return Exclusivity(v)


class LeaseBuilder:
    """``LeaseBuilder(conn).min_vram(64 << 20).lease_secs(120).acquire()``; or
    ``LeaseBuilder(fleet)`` (gpulease.Fleet): placed by best fit on the fleet."""

    def __init__(self, conn):
        self._conn = conn
        self._min_cc = None
        self._backend = None
        self._min_vram = 0
        self._ttl = 300
        self._excl = Exclusivity.SHARED
        self._device = wire.ANY_DEVICE
        self._rod = False
        self._key = None
        self._retries = 0
        self._backoff = 0.05
        self._token = None

    def min_vram(self, nbytes: int) -> "LeaseBuilder":
        self._min_vram = int(nbytes)
        return self

    def lease_secs(self, seconds: int) -> "LeaseBuilder":
        self._ttl = int(seconds)
        return self

    def exclusivity(self, e) -> "LeaseBuilder":
        """``Exclusivity.SHARED`` / ``"shared"``, ``"session"``, ``"device"``."""
        self._excl = _excl(e)
        return self

    def device(self, index: int) -> "LeaseBuilder":
        self._device = int(index)
        return self

    def release_on_disconnect(self, on: bool = True) -> "LeaseBuilder":
        self._rod = bool(on)
        return self

    def idempotency_key(self, key: bytes) -> "LeaseBuilder":
        if len(key) != 16:
            raise ValueError("an idempotency key is 16 bytes")
        self._key = bytes(key)
        return self

    def retry(self, attempts: int, backoff_s: float = 0.05) -> "LeaseBuilder":
        """Retry CAPACITY_EXCEEDED / BUSY up to ``attempts`` times (same idempotency key)."""
        self._retries = int(attempts)
        self._backoff = float(backoff_s)
        return self

    def token(self, token) -> "LeaseBuilder":
        self._token = token
        return self

    def min_compute_capability(self, major: int, minor: int = 0) -> "LeaseBuilder":
        """Fleet placement: only devices of at least this compute capability."""
        self._min_cc = (int(major), int(minor))
        return self

    def backend(self, name: str) -> "LeaseBuilder":
        """Fleet placement: only nodes of this backend ("cuda", "sim")."""
        self._backend = name
        return self

    def _constraints(self) -> dict:
        c = {}
        if self._device != wire.ANY_DEVICE:
            c["device"] = self._device
        if self._min_cc:
            c["min_compute_capability"] = self._min_cc
        if self._backend:
            c["backend"] = self._backend
        return c

    def acquire(self) -> "Lease":
        if self._min_vram <= 0:
            raise ValueError("min_vram must be > 0")
        if self._ttl <= 0:
            raise ValueError("lease_secs must be > 0")
        if hasattr(self._conn, "place"):  # a Fleet
            return self._conn.place(self)
        return self._acquire_on(self._conn, self._device)

    def _acquire_on(self, conn, device: int) -> "Lease":
        if self._min_vram <= 0:
            raise ValueError("min_vram must be > 0")
        key = self._key or secrets.token_bytes(16)
        payload = wire.encode_request(Opcode.LEASE_ACQUIRE, {
            "min_vram": self._min_vram, "ttl_s": self._ttl, "exclusivity": self._excl,
            "release_on_disconnect": self._rod, "device": device, "idempotency_key": key})
        backoff = self._backoff
        for attempt in range(self._retries + 1):
            try:
                m = wire.decode_payload(Opcode.LEASE_ACQUIRE, conn.request(
                    Opcode.LEASE_ACQUIRE, 0, payload, token=self._token, op="LEASE_ACQUIRE"),
                    reply=True)
                break
            except GpuleaseError as e:
                if attempt == self._retries or e.status not in (Status.CAPACITY_EXCEEDED,
                                                                Status.BUSY):
                    raise
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
        if m["lease_id"] == 0:
            raise GpuleaseError(Status.BAD_FRAME, "node granted lease id 0", "LEASE_ACQUIRE")
        return Lease(conn, m["lease_id"], device=m["device"],
                     granted_bytes=m["granted_bytes"], expires_at_ms=m["expires_at_ms"],
                     ttl_s=self._ttl, token=self._token)


class Lease:
    """A held lease; a context manager that releases it on exit."""

    def __init__(self, conn, lease_id: int, *, device: int = 0, granted_bytes: int = 0,
                 expires_at_ms: int = 0, ttl_s: int = 300, token=None, owned: bool = True):
        self.conn = conn
        self.lease_id = lease_id
        self.device = device
        self.granted_bytes = granted_bytes
        self.expires_at_ms = expires_at_ms
        self.ttl_s = ttl_s
        self.token = token
        self.released = False
        self._owned = owned
        self.lost: GpuleaseError | None = None

    @classmethod
    def adopt(cls, conn, lease_id: int, **kw) -> "Lease":
        """A lease acquired elsewhere (another connection, the CLI)."""
        return cls(conn, lease_id, **kw)

    @property
    def expires_at(self) -> float:
        """Unix time in seconds when the lease ends unless renewed."""
        return self.expires_at_ms / 1000.0

    def remaining_s(self) -> float:
        return max(0.0, self.expires_at - time.time())

    def _request(self, opcode, payload=b"", op=None, timeout=None):
        try:
            return self.conn.request(opcode, self.lease_id, payload, token=self.token,
                                     op=op or Opcode(opcode).name, timeout=timeout)
        except LeaseLostError as e:
            self.lost = e
            raise

    def renew(self, ttl_s: int | None = None) -> int:
        """LEASE_RENEW; returns the new expiry in Unix ms."""
        ttl = int(ttl_s or self.ttl_s)
        out = self._request(Opcode.LEASE_RENEW, struct.pack("<I", ttl), f"LEASE_RENEW {ttl}s")
        self.expires_at_ms = wire.decode_payload(Opcode.LEASE_RENEW, out, reply=True)["expires_at_ms"]
        return self.expires_at_ms

    def query(self) -> LeaseInfo:
        out = self._request(Opcode.LEASE_QUERY)
        return LeaseInfo.from_fields(wire.decode_payload(Opcode.LEASE_QUERY, out, reply=True))

    def release(self, timeout: float | None = None) -> None:
        """LEASE_RELEASE: the node answers once the context is gone. Releasing a
        lease that already ended (LEASE_EXPIRED) counts as released."""
        if self.released:
            return
        try:
            self._request(Opcode.LEASE_RELEASE, timeout=timeout)
        except GpuleaseError as e:
            if e.status != Status.LEASE_EXPIRED:
                raise
        self.released = True

    def detach(self) -> int:
        """Give up ownership: the lease is not released on exit."""
        self._owned = False
        return self.lease_id

    def session(self, token=None):
        from .session import Session
        return Session(self, token=token)

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc):
        if self._owned and not self.released and not self.conn.closed:
            try:
                self.release(timeout=5.0)
            except (GpuleaseError, TimeoutError):
                pass  # the node's reaper ends it at expiry anyway

    def __repr__(self):
        return f"<gpulease.Lease {self.lease_id} device={self.device} bytes={self.granted_bytes}>"


def list_leases(conn, token=None) -> list[LeaseInfo]:
    out = conn.request(Opcode.LEASE_LIST, 0, b"", token=token, op="LEASE_LIST")
    return [LeaseInfo.from_fields(m)
            for m in wire.decode_payload(Opcode.LEASE_LIST, out, reply=True)["leases"]]


# ---- Renewal -------------------------------------------------------------------------

class RenewalManager:
    """Renews registered leases in a background thread when their remaining
    time falls below ``fraction`` of their TTL. Holds leases weakly; a lease
    that is released, lost, or whose renewal fails with a final error drops out
    (``on_give_up(lease, error)`` is called). Use as a context manager."""

    def __init__(self, *, fraction: float = 0.5, tick_s: float = 0.1,
                 request_timeout: float = 5.0, on_give_up=None):
        self.fraction = fraction
        self.tick_s = tick_s
        self.request_timeout = request_timeout
        self.on_give_up = on_give_up
        self.renewals = 0
        self._leases: list[weakref.ref] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpulease-renewal", daemon=True)
        self._thread.start()

    def register(self, lease: Lease) -> Lease:
        with self._lock:
            self._leases.append(weakref.ref(lease))
        return lease

    def unregister(self, lease: Lease) -> None:
        with self._lock:
            self._leases = [r for r in self._leases if r() is not None and r() is not lease]

    def _run(self):
        while not self._stop.wait(self.tick_s):
            with self._lock:
                refs = list(self._leases)
            for r in refs:
                lease = r()
                if lease is None or lease.released or lease.lost is not None:
                    self._drop(r)
                    continue
                if lease.remaining_s() > self.fraction * lease.ttl_s:
                    continue
                try:
                    out = lease.conn.request(Opcode.LEASE_RENEW, lease.lease_id,
                                             struct.pack("<I", lease.ttl_s), token=lease.token,
                                             op="LEASE_RENEW", timeout=self.request_timeout)
                    lease.expires_at_ms = wire.decode_payload(Opcode.LEASE_RENEW, out,
                                                              reply=True)["expires_at_ms"]
                    self.renewals += 1
                except GpuleaseError as e:
                    if e.retryable and not isinstance(e, LeaseLostError):
                        continue
                    if isinstance(e, LeaseLostError):
                        lease.lost = e
                    self._drop(r)
                    if self.on_give_up:
                        self.on_give_up(lease, e)
                except TimeoutError:
                    continue

    def _drop(self, ref):
        with self._lock:
            self._leases = [r for r in self._leases if r is not ref]

    def close(self):
        self._stop.set()
        self._thread.join(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- Scoped grants (CAP_REQUEST) ------------------------------------------------------

DEFAULT_GRANT_PERMS = _tokens.Perm.TASKLET_SUBMIT | _tokens.Perm.LEASE_QUERY


@dataclasses.dataclass
class Grant:
    """A token the node minted through CAP_REQUEST, bound to one lease."""
    token: _tokens.Token
    requested_perms: int

    @property
    def raw(self) -> bytes:
        return self.token.raw

    def text(self) -> str:
        return self.token.text()


def request_scoped_token(lease: Lease, perms: int = DEFAULT_GRANT_PERMS, ttl_s: int = 300) -> Grant:
    """CAP_REQUEST: a narrower token bound to ``lease``, signed by the node."""
    out = lease._request(Opcode.CAP_REQUEST, struct.pack("<II", int(perms), int(ttl_s)),
                         f"CAP_REQUEST perms 0x{int(perms):x}")
    raw = wire.decode_payload(Opcode.CAP_REQUEST, out, reply=True)["token"]
    return Grant(_tokens.parse_token(raw), int(perms))


def check_scoped_token(grant: Grant, lease_id: int, audience: str, needed: int,
                       now: float | None = None) -> None:
    """Checks a grant before handing it on: its lease, audience, the needed
    permissions, nothing beyond what was asked, and its time window. Raises
    :class:`~gpulease.tokens.TokenError`."""
    c = grant.token.claims
    now = time.time() if now is None else now
    if c.lease_id != lease_id:
        raise _tokens.TokenError(Status.PERMISSION_DENIED, "wrong_lease")
    if c.audience != audience:
        raise _tokens.TokenError(Status.PERMISSION_DENIED, "wrong_audience")
    if (c.perms & needed) != needed:
        raise _tokens.TokenError(Status.PERMISSION_DENIED, "missing_permission")
    if c.perms & ~grant.requested_perms:
        raise _tokens.TokenError(Status.PERMISSION_DENIED, "missing_permission",
                                 "grant carries permissions that were not asked for")
    if not c.not_before - _tokens.DEFAULT_CLOCK_SKEW_S <= now < c.expires_at:
        raise _tokens.TokenError(Status.TOKEN_EXPIRED, "expired")
