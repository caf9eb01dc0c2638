#!/usr/bin/env python3
"""Recipe 34 in Python: parallel GPU sessions for a multi-kernel burst.

100 segments go through decode -> denoise -> encode (kernels/pipeline.cu)
over several leases at once: a thread pool of workers, each holding one
lease (renewed in the background) with its module loaded once, runs the
three kernels per segment on buffers in device memory. Mid-run one lease is
released behind the workers' backs (as an expiry or an operator would); the
segment that was to run on it is retried on a fresh lease and the job still
finishes. Every output is checked against a CPU reference.
"""
import queue
import sys
import threading
import time

import numpy as np

import example_common as ex
from example_common import gl

THRESHOLD = np.float32(0.1)


def reference(raw: np.ndarray) -> np.ndarray:
    """CPU reference of pipeline.cu, operation for operation in float32
    (encode's v * 255 + 0.5 is one fused multiply-add: exact in float64, then
    rounded once to float32)."""
    d = raw.astype(np.float32) / np.float32(255.0)
    left = np.concatenate([d[:1], d[:-1]])
    right = np.concatenate([d[1:], d[-1:]])
    v = (left + d + right) / np.float32(3.0)
    s = np.where(v > THRESHOLD, v, np.float32(0.0)).astype(np.float32)
    c = np.minimum(np.maximum(s, np.float32(0.0)), np.float32(1.0))
    return (c.astype(np.float64) * 255.0 + 0.5).astype(np.float32).astype(np.uint8)


def run_pipeline(s: gl.Session, module: gl.Module, raw: np.ndarray) -> np.ndarray:
    """One segment on one session: upload, three kernels, one sync, read back."""
    n = raw.size
    bufs = [s.mem_alloc(size) for size in (n, n * 4, n * 4, n)]  # raw u8, float a, b, out u8
    try:
        rawb, a, b, out = bufs
        s.mem_write(rawb, raw)
        grid, block = ((n + 255) // 256, 1, 1), (256, 1, 1)
        s.launch_with_args(module, "decode", grid, block,
                           gl.KernelArgs().push_buffer(rawb).push_buffer(a).push_u32(n))
        s.launch_with_args(module, "denoise", grid, block,
                           gl.KernelArgs().push_buffer(a).push_buffer(b).push_u32(n)
                           .push_f32(float(THRESHOLD)))
        s.launch_with_args(module, "encode", grid, block,
                           gl.KernelArgs().push_buffer(b).push_buffer(out).push_u32(n))
        s.sync()  # a pipelined error surfaces here
        return s.mem_read(out, dtype=np.uint8)
    finally:
        for buf in bufs:
            try:
                s.mem_free(buf)
            except gl.GpuleaseError:
                pass  # the lease is gone: so are its buffers


def main():
    p = ex.parser("Recipe 34: segments through decode/denoise/encode over parallel leased sessions")
    p.add_argument("--segments", type=int, default=100)
    p.add_argument("--segment-bytes", type=int, default=4096)
    p.add_argument("--leases", type=int, default=4, help="leases (sessions) in parallel")
    p.add_argument("--kill-after", type=int, default=10,
                   help="release one lease behind the workers' back after this many segments (0 = never)")
    p.add_argument("--max-retries", type=int, default=3)
    args = p.parse_args()

    def body():
        conn = ex.connect(args)
        saboteur = ex.connect(args)  # the outside party that ends a lease
        image = ex.ptx(args, "pipeline.ptx")
        rng = np.random.default_rng(34)
        inputs = [rng.integers(0, 256, args.segment_bytes, dtype=np.uint8)
                  for _ in range(args.segments)]
        outputs = [None] * args.segments
        work = queue.Queue()
        for i in range(args.segments):
            work.put(i)
        lock = threading.Lock()
        stats = {"done": 0, "retries": 0, "leases": 0, "killed": 0}
        attempts = [0] * args.segments
        failures = []
        min_vram = max(16 << 20, args.segment_bytes * 10)

        def acquire():
            lease = gl.LeaseBuilder(conn).min_vram(min_vram).lease_secs(60).retry(20).acquire()
            renewals.register(lease)
            with lock:
                stats["leases"] += 1
            s = gl.Session(lease)
            return lease, s, s.module_load(image)

        def worker():
            lease = s = module = None
            try:
                while not failures:
                    try:
                        i = work.get_nowait()
                    except queue.Empty:
                        return
                    while True:
                        try:
                            if lease is None:
                                lease, s, module = acquire()
                            outputs[i] = run_pipeline(s, module, inputs[i])
                            break
                        except (gl.LeaseLostError, gl.ConnectionLostError) as e:
                            attempts[i] += 1
                            with lock:
                                stats["retries"] += 1
                            print(f"recipe 34: segment {i} will be retried on a fresh lease ({e})")
                            lease = None
                            if attempts[i] > args.max_retries:
                                raise
                            time.sleep(0.02 * attempts[i])
                    with lock:
                        stats["done"] += 1
                        kill = args.kill_after and stats["done"] == args.kill_after
                    if kill:
                        victim = gl.Lease.adopt(saboteur, lease.lease_id, owned=False)
                        victim.release()
                        stats["killed"] = lease.lease_id
                        print(f"recipe 34: released lease {lease.lease_id} behind the workers' back")
            except Exception as e:  # the job fails; reported below
                failures.append(e)
            finally:
                if lease is not None:
                    lease.__exit__(None, None, None)

        start = time.monotonic()
        with gl.RenewalManager() as renewals:
            threads = [threading.Thread(target=worker) for _ in range(args.leases)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        ms = (time.monotonic() - start) * 1000
        if failures:
            raise failures[0]
        mismatches = sum(1 for i in range(args.segments)
                         if outputs[i] is None or not np.array_equal(outputs[i], reference(inputs[i])))
        print(f"recipe 34: {args.segments} segments of {args.segment_bytes} bytes over "
              f"{args.leases} parallel leases in {ms:.0f} ms")
        print(f"recipe 34: leases acquired {stats['leases']}, segment retries {stats['retries']}")
        left = gl.list_leases(conn)
        conn.close()
        saboteur.close()
        if mismatches:
            print(f"recipe 34: FAILED: {mismatches} of {args.segments} segments differ from the CPU reference")
            return 1
        if args.kill_after and args.kill_after < args.segments and (not stats["killed"] or not stats["retries"]):
            print("recipe 34: FAILED: the killed lease was not noticed and retried")
            return 1
        if left:
            print(f"recipe 34: FAILED: {len(left)} leases still held after the job")
            return 1
        print(f"recipe 34: OK: all {args.segments} segments match the CPU reference; every lease released")
        return 0

    return ex.run_main("recipe34", body)


if __name__ == "__main__":
    sys.exit(main())
