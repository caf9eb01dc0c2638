"""A fleet of nodes registered in etcd: read and watch the directory, place a
lease by best fit (docs/FLEET.md, "Placement"; the C++ client's Fleet does the
same).

    import gpulease as gl
    fleet = gl.Fleet("etcd://127.0.0.1:2379", fleet="prod", token=fleet_token)
    with gl.LeaseBuilder(fleet).min_vram(1 << 30).lease_secs(120).acquire() as lease:
        print(lease.conn.node_id)            # where it landed
        ...
    fleet.close()

etcd is reached through its JSON gRPC-gateway (``POST /v3/kv/range``,
``/v3/watch``) with urllib from the standard library; keys and values are
base64 in the JSON, 64-bit numbers are strings. A watch thread follows the
node prefix from the revision read and reconnects (next endpoint) from the
revision after the last event it saw; on "compacted" it reads everything
again.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request

from .connection import Connection
from .status import ConnectionLostError, GpuleaseError, Status

MAX_RECORD_BYTES = 64 << 10
MAX_DEVICES = 256
MAX_STRING_BYTES = 256
_FLEET_NAME = re.compile(r"^[A-Za-z0-9._-]{1,58}$")


def _b64(s: bytes | str) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def _unb64(s: str) -> bytes:
    return base64.b64decode(s or "")


def _prefix_end(prefix: bytes) -> bytes:
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def parse_registry_url(url: str) -> list[tuple[str, int]]:
    """``etcd://HOST:PORT[,HOST:PORT...]`` -> [(host, port), ...]. ValueError otherwise."""
    rest = url
    if "://" in rest:
        scheme, rest = rest.split("://", 1)
        if scheme != "etcd":
            raise ValueError(f"bad registry {url!r}: unknown scheme {scheme!r}")
    if not rest:
        raise ValueError(f"bad registry {url!r}: no endpoint")
    out = []
    for item in rest.split(","):
        m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([^:\[\]]+):([0-9]{1,5})", item)
        if not m:
            raise ValueError(f"bad registry {url!r}: endpoint {item!r} is not HOST:PORT")
        host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        if not 1 <= int(port) <= 65535:
            raise ValueError(f"bad registry {url!r}: port {port} out of range")
        out.append((host, int(port)))
    if len(out) > 32:
        raise ValueError(f"bad registry {url!r}: more than 32 endpoints")
    return out


def check_fleet_name(name: str) -> str:
    if not _FLEET_NAME.match(name or ""):
        raise ValueError(f"fleet name {name!r}: expected 1..58 characters of A-Z a-z 0-9 . _ -")
    return name


def nodes_prefix(fleet: str) -> str:
    return f"/gpulease/{fleet}/nodes/"


@dataclasses.dataclass
class FleetDevice:
    index: int
    name: str
    cc_major: int
    cc_minor: int
    total_vram: int
    free_vram: int


@dataclasses.dataclass
class FleetNode:
    node_id: str
    fleet: str
    address: str
    backend: str
    devices: list
    version: int = 1
    updated_ms: int = 0

    @property
    def free_vram(self) -> int:
        return sum(d.free_vram for d in self.devices)

    @property
    def total_vram(self) -> int:
        return sum(d.total_vram for d in self.devices)


def parse_node_record(raw: bytes | str) -> FleetNode:
    """A node record (DECISIONS.md / docs/FLEET.md), checked with the C++
    client's bounds. ValueError naming the field otherwise."""
    if isinstance(raw, str):
        raw = raw.encode()
    if len(raw) > MAX_RECORD_BYTES:
        raise ValueError(f"node record: larger than {MAX_RECORD_BYTES} bytes")
    try:
        j = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError("node record: not JSON") from e
    if not isinstance(j, dict):
        raise ValueError("node record: not a JSON object")

    def string(d, key, at="", required=True):
        if key not in d:
            if required:
                raise ValueError(f"node record: {at}no {key!r}")
            return ""
        v = d[key]
        if not isinstance(v, str):
            raise ValueError(f"node record: {at}{key!r} is not a string")
        if len(v.encode()) > MAX_STRING_BYTES:
            raise ValueError(f"node record: {at}{key!r} is longer than {MAX_STRING_BYTES} bytes")
        return v

    def uint(d, key, at="", limit=(1 << 64) - 1):
        v = d.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"node record: {at}{key!r} is not a non-negative integer")
        if v > limit:
            raise ValueError(f"node record: {at}{key!r} is over {limit}")
        return v

    node_id = string(j, "node_id")
    if not node_id:
        raise ValueError("node record: 'node_id' is empty")
    address = string(j, "address")
    if not re.fullmatch(r"\[[0-9A-Fa-f:.]+\]:[0-9]{1,5}|[^:\[\]]+:[0-9]{1,5}", address) or \
            not 1 <= int(address.rsplit(":", 1)[1]) <= 65535:
        raise ValueError(f"node record: 'address' {address!r} is not HOST:PORT")
    version = uint(j, "version")
    if version != 1:
        raise ValueError(f"node record: version {version} (this client reads 1)")
    devs = j.get("devices")
    if not isinstance(devs, list):
        raise ValueError("node record: no 'devices' array")
    if len(devs) > MAX_DEVICES:
        raise ValueError(f"node record: more than {MAX_DEVICES} devices")
    devices, seen = [], set()
    for i, d in enumerate(devs):
        at = f"device {i}: "
        if not isinstance(d, dict):
            raise ValueError(f"node record: {at}not an object")
        cc = d.get("compute_capability")
        if not (isinstance(cc, list) and len(cc) == 2 and
                all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 255 for x in cc)):
            raise ValueError(f"node record: {at}'compute_capability' is not [major, minor]")
        dev = FleetDevice(uint(d, "index", at, 0xFFFE), string(d, "name", at, False), cc[0],
                          cc[1], uint(d, "total_vram", at), uint(d, "free_vram", at))
        if dev.free_vram > dev.total_vram:
            raise ValueError(f"node record: {at}free_vram is over total_vram")
        if dev.index in seen:
            raise ValueError(f"node record: {at}index {dev.index} twice")
        seen.add(dev.index)
        devices.append(dev)
    updated = uint(j, "updated_ms") if "updated_ms" in j else 0
    return FleetNode(node_id, string(j, "fleet"), address, string(j, "backend"), devices, version,
                     updated)


@dataclasses.dataclass
class Candidate:
    node_id: str
    address: str
    device: int
    free_vram: int


def rank_candidates(nodes, min_vram: int = 0, *, device: int | None = None,
                    min_compute_capability: tuple | None = None, backend: str | None = None,
                    load: dict | None = None, exclude=()) -> list[Candidate]:
    """Every device that satisfies the constraints, best first: the caller's
    load on the node (only when ``load`` is given), then free VRAM ascending
    (best fit), then node id, then device index (a total order)."""
    by_id: dict[str, FleetNode] = {}
    for n in nodes:
        if n.node_id not in by_id or n.updated_ms > by_id[n.node_id].updated_ms:
            by_id[n.node_id] = n
    ranked = []
    for nid, n in by_id.items():
        if nid in exclude or (backend and n.backend != backend):
            continue
        for d in n.devices:
            if device is not None and d.index != device:
                continue
            if min_compute_capability and (d.cc_major, d.cc_minor) < tuple(min_compute_capability):
                continue
            if d.free_vram < min_vram:
                continue
            ranked.append(((load or {}).get(nid, 0), d.free_vram, nid, d.index,
                           Candidate(nid, n.address, d.index, d.free_vram)))
    ranked.sort(key=lambda r: r[:4])
    return [r[4] for r in ranked]


def placement_skips(e: Exception) -> bool:
    """CAPACITY_EXCEEDED, BUSY and an unreachable node move placement on."""
    if isinstance(e, (ConnectionLostError, OSError, TimeoutError)):
        return True
    return isinstance(e, GpuleaseError) and e.status in (Status.CAPACITY_EXCEEDED, Status.BUSY,
                                                         Status.CONNECTION_LOST)


class Fleet:
    """The directory of one fleet, kept current by a watch thread, and a
    connection per node (made on first use, shared). Thread-safe.

    ``token``: used on every node (audience ``fleet:<name>``); ``node_tokens``:
    ``{node_id: token}``, wins on its node. A node with neither is not a
    candidate. ``nodes=[FleetNode, ...]`` instead of a registry: a fixed list.
    """

    def __init__(self, registry: str | None = None, fleet: str | None = None, token=None, *,
                 node_tokens: dict | None = None, timeout: float = 2.0, watch: bool = True,
                 nodes=None):
        self.name = check_fleet_name(fleet or os.environ.get("GPULEASE_FLEET") or "default")
        self.token = token
        self.node_tokens = dict(node_tokens or {})
        self.timeout = timeout
        self._cv = threading.Condition()
        self._nodes: dict[str, FleetNode] = {}
        self._conns: dict[str, Connection] = {}
        self.revision = 0
        self.bad_records = 0
        self._stop = threading.Event()
        self._thread = None
        self._resp = None
        if nodes is not None:
            self._nodes = {n.node_id: n for n in nodes}
            return
        registry = registry or os.environ.get("GPULEASE_REGISTRY")
        if not registry:
            raise ValueError("no registry: give etcd://HOST:PORT[,...] or set GPULEASE_REGISTRY")
        self._endpoints = [f"http://{'[%s]' % h if ':' in h else h}:{p}"
                           for h, p in parse_registry_url(registry)]
        self._current = 0
        self._prefix = nodes_prefix(self.name).encode()
        self._read_all()
        if watch:
            self._thread = threading.Thread(target=self._watch_loop, daemon=True,
                                            name="gpulease-fleet-watch")
            self._thread.start()

    # -- etcd ----------------------------------------------------------------

    def _post(self, path: str, body: dict) -> dict:
        """One request, failing over through the endpoints (each once)."""
        last = None
        for i in range(len(self._endpoints)):
            ep = self._endpoints[(self._current + i) % len(self._endpoints)]
            req = urllib.request.Request(ep + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as r:
                    out = json.loads(r.read(64 << 20))
                self._current = (self._current + i) % len(self._endpoints)
                return out
            except (urllib.error.URLError, OSError, ValueError) as e:
                last = e
        raise ConnectionLostError(f"registry: no etcd endpoint answered {path}: {last}")

    def _record(self, kv: dict) -> FleetNode | None:
        key = _unb64(kv.get("key", ""))
        try:
            n = parse_node_record(_unb64(kv.get("value", "")))
            nid = key[len(self._prefix):].decode()
            if n.node_id != nid:
                raise ValueError(f"node record: node_id {n.node_id!r} under the key of {nid!r}")
            if n.fleet != self.name:
                raise ValueError(f"node record: fleet {n.fleet!r} under fleet {self.name!r}")
            return n
        except (ValueError, UnicodeDecodeError):
            self.bad_records += 1
            return None

    def _read_all(self) -> None:
        r = self._post("/v3/kv/range", {"key": _b64(self._prefix),
                                        "range_end": _b64(_prefix_end(self._prefix))})
        nodes = {}
        for kv in r.get("kvs", []):
            n = self._record(kv)
            if n:
                nodes[n.node_id] = n
        with self._cv:
            self._nodes = nodes
            self.revision = int(r.get("header", {}).get("revision", 0))
            self._cv.notify_all()

    def _watch_loop(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            ep = self._endpoints[self._current]
            body = {"create_request": {"key": _b64(self._prefix),
                                       "range_end": _b64(_prefix_end(self._prefix)),
                                       "start_revision": str(self.revision + 1)}}
            req = urllib.request.Request(ep + "/v3/watch", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            try:
                # A read timeout bounds how long a dead member holds us; etcd
                # sends progress only on events, so a quiet stream is re-opened.
                with urllib.request.urlopen(req, timeout=max(self.timeout, 5.0)) as r:
                    self._resp = r
                    backoff = 0.05
                    while not self._stop.is_set():
                        line = r.readline(64 << 20)
                        if not line:
                            break
                        self._on_message(json.loads(line).get("result", {}))
            except (urllib.error.URLError, OSError, ValueError):
                if self._stop.is_set():
                    return
                self._current = (self._current + 1) % len(self._endpoints)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 1.0)
            finally:
                self._resp = None

    def _on_message(self, res: dict) -> None:
        if int(res.get("compact_revision", 0) or 0) > 0:
            self._read_all()  # events were lost: read everything again
            return
        with self._cv:
            for ev in res.get("events", []):
                kv = ev.get("kv", {})
                key = _unb64(kv.get("key", ""))
                if len(key) <= len(self._prefix):
                    continue
                nid = key[len(self._prefix):].decode(errors="replace")
                n = None if ev.get("type") == "DELETE" else self._record(kv)
                if n:
                    self._nodes[nid] = n
                else:
                    self._nodes.pop(nid, None)
                self.revision = max(self.revision, int(kv.get("mod_revision", 0) or 0))
            self._cv.notify_all()

    # -- the view --------------------------------------------------------------

    def nodes(self) -> list[FleetNode]:
        with self._cv:
            return [self._nodes[k] for k in sorted(self._nodes)]

    def wait_until(self, pred, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cv:
            while not pred([self._nodes[k] for k in sorted(self._nodes)]):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.1))
            return True

    def token_for(self, node_id: str):
        return self.node_tokens.get(node_id, self.token)

    def connect(self, node_id: str) -> Connection:
        with self._cv:
            n = self._nodes.get(node_id)
            c = self._conns.get(node_id)
        if n is None:
            raise ConnectionLostError(f"node {node_id!r} is not registered in fleet {self.name!r}")
        if c is not None and not c.closed and c.address == tuple(_split(n.address)):
            return c
        try:
            c = Connection(n.address, self.token_for(node_id), connect_timeout=self.timeout)
        except OSError as e:
            raise ConnectionLostError(f"node {node_id!r} at {n.address}: {e}") from e
        with self._cv:
            self._conns[node_id] = c
        return c

    def forget(self, node_id: str) -> None:
        with self._cv:
            c = self._conns.pop(node_id, None)
        if c is not None:
            c.close()

    def candidates(self, min_vram: int, **constraints) -> list[Candidate]:
        nodes = self.nodes()
        exclude = set(constraints.pop("exclude", ())) | {
            n.node_id for n in nodes if not self.token_for(n.node_id)}
        return rank_candidates(nodes, min_vram, exclude=exclude, **constraints)

    def place(self, builder) -> "Lease":  # noqa: F821 (lease.Lease)
        """LeaseBuilder(fleet).acquire(): best fit, moving on past full,
        busy and unreachable nodes."""
        c = builder._constraints()
        cands = self.candidates(builder._min_vram, **c)
        where = f"LEASE_ACQUIRE on fleet {self.name!r}"
        if not cands:
            raise GpuleaseError(Status.CAPACITY_EXCEEDED,
                                f"no registered node has a device with {builder._min_vram} bytes "
                                f"of free VRAM and {c or 'no other constraint'} "
                                f"({len(self.nodes())} nodes registered)", where)
        tried, unreachable, full = [], set(), False
        for cand in cands:
            if cand.node_id in unreachable:
                continue
            try:
                conn = self.connect(cand.node_id)
                return builder._acquire_on(conn, cand.device)
            except Exception as e:  # noqa: BLE001 (only the skippable ones are kept)
                if not placement_skips(e):
                    raise
                tried.append(f"{cand.node_id}/{cand.device}: {e}")
                if isinstance(e, GpuleaseError) and e.status in (Status.CAPACITY_EXCEEDED,
                                                                 Status.BUSY):
                    full = True
                else:
                    unreachable.add(cand.node_id)
                    self.forget(cand.node_id)
        msg = "no candidate could take the lease (" + "; ".join(tried) + ")"
        if full:
            raise GpuleaseError(Status.CAPACITY_EXCEEDED, msg, where)
        raise ConnectionLostError(msg, where)

    def close(self) -> None:
        self._stop.set()
        r = self._resp
        if r is not None:
            try:
                r.close()
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._cv:
            conns, self._conns = list(self._conns.values()), {}
        for c in conns:
            c.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _split(address: str):
    host, port = address.rsplit(":", 1)
    return host.strip("[]"), int(port)
