"""The Python Fleet: node records, best-fit ranking (pure), and against a real
etcd (tests/etcd-cluster) with three registered gpuleased processes: the
directory view, placement by best fit past a full node, a node leaving the
view. The etcd part is skipped without an etcd binary."""
import json
import os
import shutil
import subprocess
import tempfile

import pytest

import gpulease as gl
from gpulease.fleet import placement_skips
from conftest import ROOT, Node

MiB = 1 << 20
RECORD = {"node_id": "gpu-a", "fleet": "prod", "address": "10.0.0.7:7070", "backend": "cuda",
          "version": 1, "devices": [{"index": 0, "name": "H200", "compute_capability": [9, 0],
                                     "total_vram": 150 << 30, "free_vram": 140 << 30}],
          "updated_ms": 1764579000000}


def node(nid, *devs, backend="sim"):
    return gl.FleetNode(nid, "default", "127.0.0.1:1", backend,
                        [gl.FleetDevice(i, "d", cc[0], cc[1], 4096 * MiB, free * MiB)
                         for i, (free, cc) in enumerate(devs)])


def test_a_record_parses_and_bad_fields_are_refused_by_name():
    n = gl.parse_node_record(json.dumps(RECORD))
    assert n.node_id == "gpu-a" and n.devices[0].cc_major == 9 and n.free_vram == 140 << 30
    raw = json.dumps(RECORD)
    for cut in range(len(raw)):
        with pytest.raises(ValueError):
            gl.parse_node_record(raw[:cut])
    for field, value in [("node_id", 7), ("address", "10.0.0.7"), ("version", 2),
                         ("backend", "x" * 300)]:
        with pytest.raises(ValueError, match=field):
            gl.parse_node_record(json.dumps({**RECORD, field: value}))
    for field, value in [("free_vram", 151 << 30), ("compute_capability", [9]),
                         ("index", 65535), ("total_vram", -1)]:
        bad = json.loads(raw)
        bad["devices"][0][field] = value
        with pytest.raises(ValueError, match="device 0"):
            gl.parse_node_record(json.dumps(bad))


def test_registry_urls():
    assert gl.parse_registry_url("etcd://a:1,[::1]:2") == [("a", 1), ("::1", 2)]
    for bad in ["", "http://a:1", "etcd://", "etcd://a", "etcd://a:0", "etcd://a:1,"]:
        with pytest.raises(ValueError):
            gl.parse_registry_url(bad)


def test_best_fit_constraints_and_spreading():
    nodes = [node("a", (8000, (8, 0)), (900, (7, 5))), node("b", (1200, (9, 0)), backend="cuda"),
             node("c", (500, (8, 0)))]
    ids = lambda cs: [f"{c.node_id}/{c.device}" for c in cs]  # noqa: E731
    assert ids(gl.rank_candidates(nodes, 800 * MiB)) == ["a/1", "b/0", "a/0"]
    assert ids(gl.rank_candidates(nodes, 800 * MiB, min_compute_capability=(8, 0))) == ["b/0", "a/0"]
    assert ids(gl.rank_candidates(nodes, 1, backend="sim", device=0)) == ["c/0", "a/0"]
    assert ids(gl.rank_candidates(nodes, 1, load={"c": 1, "a": 1})) == ["b/0", "c/0", "a/1", "a/0"]
    assert ids(gl.rank_candidates(list(reversed(nodes)), 800 * MiB)) == ["a/1", "b/0", "a/0"]
    assert placement_skips(gl.GpuleaseError(gl.Status.CAPACITY_EXCEEDED, "full"))
    assert placement_skips(gl.ConnectionLostError("gone"))
    assert not placement_skips(gl.GpuleaseError(gl.Status.UNAUTHENTICATED, "bad token"))


ETCD = os.environ.get("GPULEASE_ETCD") or shutil.which("etcd") or (
    "/usr/bin/etcd" if os.access("/usr/bin/etcd", os.X_OK) else None)


@pytest.fixture(scope="module")
def registry():
    if not ETCD:
        pytest.skip("etcd binary not found (Debian etcd-server; scripts/install-deps)")
    d = tempfile.mkdtemp(prefix="gpulease-py-etcd-")
    script = os.path.join(ROOT, "tests", "etcd-cluster")
    url = subprocess.run([script, "start", d, "1"], check=True, capture_output=True,
                         text=True, timeout=60).stdout.strip().splitlines()[-1]
    yield url
    subprocess.run([script, "stop", d], timeout=60)


def test_a_fleet_reads_the_directory_places_by_best_fit_and_follows_changes(registry):
    sizes = {"py-a": 256 * MiB, "py-b": 512 * MiB, "py-c": 1024 * MiB}
    nodes = {nid: Node(nid, extra=("--registry", registry, "--fleet", "py",
                                   "--registry-ttl-s", "2"), sim_bytes=b)
             for nid, b in sizes.items()}
    try:
        fleet = gl.Fleet(registry, fleet="py",
                         node_tokens={nid: n.token() for nid, n in nodes.items()})
        assert fleet.wait_until(lambda ns: len(ns) == 3, 20)
        assert {n.node_id: n.free_vram for n in fleet.nodes()} == sizes
        assert [n.address for n in fleet.nodes()] == [nodes[k].address for k in sorted(nodes)]
        with gl.LeaseBuilder(fleet).min_vram(200 * MiB).lease_secs(30).acquire() as small:
            assert small.conn.node_id == "py-a"
            # py-a now has 56 MiB left: a 100 MiB lease goes to the next fit,
            # whether or not py-a's record has caught up.
            with gl.LeaseBuilder(fleet).min_vram(100 * MiB).lease_secs(30).acquire() as nxt:
                assert nxt.conn.node_id == "py-b"
        with pytest.raises(gl.GpuleaseError) as e:
            gl.LeaseBuilder(fleet).min_vram(4096 * MiB).lease_secs(30).acquire()
        assert e.value.status == gl.Status.CAPACITY_EXCEEDED
        nodes.pop("py-b").stop()  # drained: its record is deleted at once
        assert fleet.wait_until(lambda ns: [n.node_id for n in ns] == ["py-a", "py-c"], 20)
        fleet.close()
    finally:
        for n in nodes.values():
            n.stop()
