#!/usr/bin/env python3
"""Recipe 30 in Python: lease a slice of a GPU for a multi-kernel workload.

Leases 64 MiB for two minutes, uploads 1024 floats once, loads transform.ptx
once, launches scale(x2) then bias(+10) without waiting (pipelined), syncs
once, reads back and checks every element against the CPU reference
out[i] = 2i + 10. Leaving the `with` block releases the lease.
"""
import struct
import sys

import numpy as np

import example_common as ex
from example_common import gl


def main():
    args = ex.parser("Recipe 30: scale then bias on 1024 floats in one leased session").parse_args()

    def body():
        with ex.connect(args) as conn, \
                gl.LeaseBuilder(conn).min_vram(64 * 1024 * 1024).lease_secs(120).acquire() as lease:
            s = gl.Session(lease)
            print(f"recipe 30: lease {lease.lease_id} on {args.node} "
                  f"({conn.node_info.backend} backend)")
            n = 1024
            host = np.arange(n, dtype=np.float32)
            buf = s.mem_alloc(host.nbytes)
            s.mem_write(buf, host)
            print(f"recipe 30: mem_alloc {host.nbytes} bytes -> buffer 0x{buf.address:x}; "
                  f"mem_write 0, 1, ..., {n - 1}")
            module = s.module_load(ex.ptx(args, "transform.ptx"))
            print("recipe 30: module_load transform.ptx")
            # (float* data, int n, float param) in the raw form, as the recipe builds it
            grid, block = ((n + 255) // 256, 1, 1), (256, 1, 1)
            s.launch(module, "scale", grid, block, struct.pack("<Qif", buf.address, n, 2.0), (8, 4, 4))
            s.launch(module, "bias", grid, block, struct.pack("<Qif", buf.address, n, 10.0), (8, 4, 4))
            s.sync()
            print("recipe 30: launch scale(x2), launch bias(+10), sync: both kernels done")
            out = s.mem_read(buf, dtype=np.float32)
            reference = host * np.float32(2.0) + np.float32(10.0)
            bad = int(np.count_nonzero(out != reference))
            print(f"recipe 30: results[0] = {out[0]:g}, results[1] = {out[1]:g}, "
                  f"results[100] = {out[100]:g}, results[1023] = {out[1023]:g}")
            s.mem_free(buf)
            lease.release()
            print(f"recipe 30: mem_read {host.nbytes} bytes, mem_free, lease released")
        if bad:
            print(f"recipe 30: FAILED: {bad} of {n} elements differ from 2i + 10")
            return 1
        print(f"recipe 30: OK: all {n} elements equal 2i + 10")
        return 0

    return ex.run_main("recipe30", body)


if __name__ == "__main__":
    sys.exit(main())
