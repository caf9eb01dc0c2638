#!/usr/bin/env python3
"""The Python client against the C++ client, same run, same node.

Starts one gpuleased (sim backend) on loopback, then alternates rounds of
the same four measurements through the C++ client (build/bin/
client_bench_peer, a separate process) and through this package:

- bulk MEM_WRITE: one mem_write of BULK bytes (chunked, pipelined) + flush;
- bulk MEM_READ: one mem_read of BULK bytes (chunked, into a new buffer);
- pipelined launches: BATCH one-thread `scale` launches + flush (kernels synced
  outside the timed region);
- round trip: PINGS sequential empty PINGs.

Prints the median of each side and the ratios against the issue's goals
(bulk >= 0.8x C++ throughput, launches >= 0.3x, round trip <= 2x).
Speed is never asserted: this is a benchmark, not a test.

    client/python/bench/bench_client.py [--rounds 9] [--bulk-mib 64] [--json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, ".."))

import numpy as np  # noqa: E402

import gpulease as gl  # noqa: E402
from nodeproc import BIN_DIR, PTX_DIR, Node  # noqa: E402


def python_round(conn, s, big, one, mod, args, data, bulk, batch, pings):
    t0 = time.perf_counter()
    s.mem_write(big, data)
    s.flush()
    w = time.perf_counter() - t0
    t0 = time.perf_counter()
    back = s.mem_read(big, length=bulk, dtype=np.uint8)
    rd = time.perf_counter() - t0
    assert back.nbytes == bulk
    t0 = time.perf_counter()
    for _ in range(batch):
        s.launch_with_args(mod, "scale", 1, 1, args)
    s.flush()
    ln = time.perf_counter() - t0
    s.sync()
    t0 = time.perf_counter()
    for _ in range(pings):
        conn.ping()
    p = time.perf_counter() - t0
    return {"write_s": w, "read_s": rd, "launch_s": ln, "ping_s": p}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--bulk-mib", type=int, default=64)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--pings", type=int, default=2000)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args()
    peer = os.path.join(BIN_DIR, "client_bench_peer")
    if not os.access(peer, os.X_OK):
        sys.exit(f"bench_client: no {peer} (build first: scripts/build)")
    bulk = a.bulk_mib << 20
    node = Node(node_id="bench-node", threads=0, sim_bytes=4 << 30)
    try:
        token = node.token(tenant="bench")
        conn = gl.connect(node.address, token)
        lease = gl.LeaseBuilder(conn).min_vram(bulk + (16 << 20)).lease_secs(600).acquire()
        s = gl.Session(lease)
        big = s.mem_alloc(bulk)
        one = s.mem_alloc(4)
        with open(os.path.join(PTX_DIR, "transform.ptx")) as f:
            mod = s.module_load(f.read())
        args = gl.KernelArgs().push_buffer(one).push_i32(1).push_f32(1.0)
        data = np.full(bulk, 7, np.uint8)
        py, cpp = [], []
        python_round(conn, s, big, one, mod, args, data, bulk, a.batch, a.pings)  # warm-up
        for _ in range(a.rounds):
            r = subprocess.run([peer, node.address, token, PTX_DIR, str(bulk), str(a.batch),
                                str(a.pings), "2"], capture_output=True, text=True, timeout=600)
            if r.returncode != 0:
                sys.exit(f"bench_client: client_bench_peer failed: {r.stderr.strip()}")
            cpp.append(json.loads(r.stdout.strip().splitlines()[-1]))  # its second round: warm
            py.append(python_round(conn, s, big, one, mod, args, data, bulk, a.batch, a.pings))
        lease.release()
        conn.close()
    finally:
        node.stop()

    def med(rows, k):
        return statistics.median(r[k] for r in rows)

    def paired(k, higher_is_better):
        # per round, C++ and Python ran back to back: their ratio cancels the
        # machine's load drift better than a ratio of medians
        rs = [(c[k] / p[k]) if higher_is_better else (p[k] / c[k]) for c, p in zip(cpp, py)]
        return statistics.median(rs), min(rs), max(rs)

    mib = bulk / 2**20
    rows = [
        ("bulk MEM_WRITE", "MiB/s", mib / med(cpp, "write_s"), mib / med(py, "write_s"),
         paired("write_s", True), ">= 0.8x", lambda r: r >= 0.8),
        ("bulk MEM_READ", "MiB/s", mib / med(cpp, "read_s"), mib / med(py, "read_s"),
         paired("read_s", True), ">= 0.8x", lambda r: r >= 0.8),
        ("pipelined launches", "launches/s", a.batch / med(cpp, "launch_s"),
         a.batch / med(py, "launch_s"), paired("launch_s", True), ">= 0.3x", lambda r: r >= 0.3),
        ("PING round trip", "us", med(cpp, "ping_s") / a.pings * 1e6,
         med(py, "ping_s") / a.pings * 1e6, paired("ping_s", False), "<= 2x", lambda r: r <= 2.0),
    ]
    out = {}
    if not a.json:
        print(f"# {a.rounds} rounds, bulk {a.bulk_mib} MiB, batch {a.batch}, {a.pings} pings; "
              "medians; Py/C++ = median of per-round ratios [min-max]")
        print(f"{'measurement':22} {'unit':>10} {'C++':>10} {'Python':>10} {'Py/C++':>7} "
              f"{'range':>11}  goal")
    for name, unit, c, p, (ratio, lo, hi), goal, ok in rows:
        out[name] = {"unit": unit, "cpp": c, "python": p, "ratio": ratio, "ratio_min": lo,
                     "ratio_max": hi, "goal": goal, "met": ok(ratio)}
        if not a.json:
            print(f"{name:22} {unit:>10} {c:10.1f} {p:10.1f} {ratio:7.2f} {lo:5.2f}-{hi:<5.2f}  "
                  f"{goal} {'met' if ok(ratio) else 'NOT MET'}")
    if a.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
