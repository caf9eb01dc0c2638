"""gpulease.aio against a real gpuleased: the recipe 30 flow, errors at
sync naming the op, chunked transfers, pipelining past max_inflight, submit,
and a lost connection."""
import asyncio
import struct

import numpy as np
import pytest

import gpulease as gl
from gpulease import aio
from conftest import Node, ptx


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def test_aio_session(node):
    async def main():
        async with await aio.connect(node.address, node.token()) as conn:
            assert conn.node_id == node.node_id and await conn.ping(b"x") == b"x"
            async with await aio.acquire(conn, min_vram=64 << 20, lease_secs=60) as lease:
                s = lease.session()
                x = np.arange(1024, dtype=np.float32)
                buf = await s.mem_alloc(x.nbytes)
                await s.mem_write(buf, x)
                m = await s.module_load(ptx("transform.ptx"))
                await s.launch_with_args(m, "scale", 4, 256,
                                         gl.KernelArgs().push_buffer(buf).push_i32(1024).push_f32(2.0))
                await s.launch(m, "bias", 4, 256, struct.pack("<Qif", buf.handle, 1024, 10.0), (8, 4, 4))
                assert await s.sync() == 2
                np.testing.assert_array_equal(await s.mem_read(buf, dtype=np.float32), x * 2 + 10)
                # an error of a pipelined write surfaces at the next sync, naming it
                await s.mem_write(buf, b"\0" * 8, offset=x.nbytes)
                with pytest.raises(gl.OutOfRangeError) as e:
                    await s.sync()
                assert e.value.op.startswith("MEM_WRITE")
                # pipelining past max_inflight, chunked transfers
                one = await s.mem_alloc(4)
                for _ in range(200):
                    await s.launch_with_args(m, "bias", 1, 1,
                                             gl.KernelArgs().push_buffer(one).push_i32(1).push_f32(1.0))
                await s.flush()
                big = np.random.default_rng(3).integers(0, 255, 9 << 20, dtype=np.uint8)
                b2 = await s.mem_alloc(big.nbytes)
                await s.mem_write(b2, big)
                np.testing.assert_array_equal(await s.mem_read(b2, dtype=np.uint8), big)
                r = await s.submit(ptx("vector.ptx"), "saxpy", 1, 4,
                                   gl.SubmitArgs().i32(4).f32(2.0).in_(np.ones(4, np.float32))
                                   .inout(np.ones(4, np.float32)))
                np.testing.assert_array_equal(r.output(3, np.float32), np.full(4, 3.0, np.float32))
                info = await lease.query()
                assert info.state == gl.LeaseState.ACTIVE and info.buffers == 3
                g = await s.module_load(ptx("globals.ptx"))
                calls = await s.module_global(g, "gCalls")
                assert calls.size == 4 and calls.space == "GLOBAL"
                assert (await s.mem_read(calls, dtype=np.uint32))[0] == 7
                with pytest.raises(gl.InvalidArgumentError):
                    await s.module_global(g, "nope")
                await s.module_unload(g)
                await s.module_unload(m)
                lid = lease.lease_id
            assert lid not in [l.lease_id for l in await aio.list_leases(conn)]

    run(main())


def test_aio_lost_connection():
    n = Node(node_id="aio-doomed")

    async def main():
        conn = await aio.connect(n.address, n.token())
        lease = await aio.acquire(conn, min_vram=1 << 20, lease_secs=60)
        s = lease.session()
        n.proc.kill()
        n.proc.wait()
        with pytest.raises(gl.ConnectionLostError):
            for _ in range(100):
                await s.mem_alloc(16)
        assert conn.closed
        await conn.close()

    try:
        run(main())
    finally:
        n.stop()
