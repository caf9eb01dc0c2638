"""The client against a real gpuleased (sim backend) on loopback: every op,
errors at sync, pipelining, chunked transfers, grants, renewal, an expired
lease."""
import struct
import threading
import time

import numpy as np
import pytest

import gpulease as gl
from gpulease import tokens
from conftest import Node, ptx


def lease_for(conn, mib=64, ttl=120):
    return gl.LeaseBuilder(conn).min_vram(mib << 20).lease_secs(ttl).acquire()


def test_hello_ping_and_node_info(conn, node):
    info = conn.node_info
    assert info.node_id == node.node_id and info.backend == "sim" and info.version == 1
    assert len(info.devices) == 1 and info.devices[0].total_bytes == 1 << 30
    assert conn.ping(b"hello") == b"hello"
    assert conn.chunk_bytes == min(4 << 20, info.limits["max_payload_bytes"] - 16)


def test_recipe30_flow_every_session_op(conn):
    with lease_for(conn) as lease:
        assert lease.lease_id != 0 and lease.granted_bytes >= 64 << 20
        assert lease.expires_at > time.time()
        s = gl.Session(lease)
        x = np.arange(1024, dtype=np.float32)
        buf = s.mem_alloc(x.nbytes)
        s.mem_write(buf, x)
        m = s.module_load(ptx("transform.ptx"))
        s.launch_with_args(m, "scale", 4, 256, gl.KernelArgs().push_buffer(buf).push_i32(1024).push_f32(2.0))
        raw = struct.pack("<Qif", buf.address, 1024, 10.0)
        s.launch(m, "bias", (4, 1, 1), (256, 1, 1), raw, (8, 4, 4))
        assert s.sync() == 2
        out = s.mem_read(buf, dtype=np.float32)
        np.testing.assert_array_equal(out, x * 2 + 10)
        info = lease.query()
        assert info.state == gl.LeaseState.ACTIVE and info.buffers == 1 and info.modules == 1
        assert [l.lease_id for l in gl.list_leases(conn)] == [lease.lease_id]
        s.module_unload(m)
        s.mem_free(buf)
        info = lease.query()
        assert info.buffers == 0 and info.modules == 0
        with pytest.raises(gl.InvalidHandleError) as e:
            s.mem_free(buf)
        assert e.value.status == gl.Status.INVALID_HANDLE and "MEM_FREE" in str(e.value)
        lid = lease.lease_id
    # released on exit
    assert lid not in [l.lease_id for l in gl.list_leases(conn)]
    with pytest.raises(gl.LeaseExpiredError):
        gl.Lease.adopt(conn, lid).query()


def test_module_globals_set_read_and_pass_as_pointers(conn):
    """MODULE_GLOBAL (kernels/globals.cu): a __constant__ table set from numpy,
    __device__ counters read back, a variable passed as a kernel pointer."""
    with lease_for(conn) as lease:
        s = gl.Session(lease)
        m = s.module_load(ptx("globals.ptx"))
        table = s.module_global(m, "kTable")
        assert isinstance(table, gl.ModuleGlobal)
        assert table.size == 64 and table.space == "CONST" and table.is_const
        count = s.module_global(m, "gCount")
        assert count.size == 4 and count.space == "GLOBAL" and not count.is_const
        calls = s.module_global(m, "gCalls")
        assert s.mem_read(calls, dtype=np.uint32)[0] == 7
        coeffs = np.zeros(16, np.float32)
        coeffs[:3] = [1.0, 0.5, 0.25]
        s.mem_write(table, coeffs)
        s.mem_write(s.module_global(m, "kTerms"), np.array([3], np.int32))
        x = np.arange(256, dtype=np.float32) * 0.5
        dx, dy = s.mem_alloc(x.nbytes), s.mem_alloc(x.nbytes)
        s.mem_write(dx, x)
        s.launch_with_args(m, "poly_table", 1, 256,
                           gl.KernelArgs().push_buffer(dx).push_buffer(dy).push_i32(256))
        s.sync()
        np.testing.assert_array_equal(s.mem_read(dy, dtype=np.float32), 1 + 0.5 * x + 0.25 * x * x)
        np.testing.assert_array_equal(s.mem_read(table, dtype=np.float32), coeffs)
        assert s.mem_read(count, dtype=np.uint32)[0] == 256
        assert s.mem_read(calls, dtype=np.uint32)[0] == 8
        s.launch_with_args(m, "bump", 1, 32, gl.KernelArgs().push_buffer(count).push_u32(2))
        s.sync()
        assert s.mem_read(count, dtype=np.uint32)[0] == 256 + 64
        with pytest.raises(gl.InvalidArgumentError) as e:
            s.module_global(m, "nope")
        assert "nope" in str(e.value) and e.value.op.startswith("MODULE_GLOBAL")
        with pytest.raises(gl.InvalidHandleError):
            s.module_global(gl.Module(m.handle + 99), "kTable")
        with pytest.raises(ValueError):
            s.module_global(m, "")
        s.mem_write(count, b"\0" * 8)  # past its 4 bytes
        with pytest.raises(gl.OutOfRangeError):
            s.sync()
        s.module_unload(m)
        with pytest.raises(gl.InvalidHandleError):
            s.mem_read(count, dtype=np.uint32)


def test_errors_surface_at_sync_naming_the_op(conn):
    with lease_for(conn) as lease:
        s = gl.Session(lease)
        buf = s.mem_alloc(64)
        s.mem_write(buf, b"\0" * 128)  # past the end: pipelined, no error yet
        m = s.module_load(ptx("transform.ptx"))
        s.launch_with_args(m, "scale", 1, 16, gl.KernelArgs().push_buffer(buf).push_i32(16).push_f32(2.0))
        with pytest.raises(gl.OutOfRangeError) as e:
            s.sync()
        assert e.value.status == gl.Status.OUT_OF_RANGE
        assert e.value.op.startswith("MEM_WRITE buffer 0x%x (128 bytes" % buf.handle)
        assert e.value.message  # the node's message
        assert s.sync() == 1  # reported once; the launch ran
        # a launch error surfaces at the next read
        s.launch_with_args(m, "no_such_kernel", 1, 1, gl.KernelArgs().push_buffer(buf))
        with pytest.raises(gl.LaunchFailedError) as e:
            s.mem_read(buf, length=4)
        assert "no_such_kernel" in e.value.op
        # a fault: SYNC_FAILED, then the lease is Faulted
        f = s.module_load(ptx("faults.ptx"))
        out = s.mem_alloc(64)
        s.launch_with_args(f, "oob_read", 1, 16, gl.KernelArgs().push_buffer(buf).push_buffer(out)
                           .push_i32(16).push_i32(1 << 20))
        with pytest.raises(gl.SyncFailedError) as e:
            s.sync()
        assert "oob_read" in e.value.message
        assert lease.query().state == gl.LeaseState.FAULTED
        with pytest.raises(gl.LeaseFaultedError) as e:
            s.mem_alloc(16)
        assert isinstance(e.value, gl.LeaseLostError)


def test_bad_input_is_refused_before_sending(conn):
    with lease_for(conn) as lease:
        s = gl.Session(lease)
        with pytest.raises(ValueError):
            s.launch(gl.Module(1), "scale", 1, 1, b"\0" * 12, (8, 8))
        with pytest.raises(ValueError):
            s.mem_write(gl.DeviceBuffer(1, 16), np.zeros((4, 4), np.float32)[:, ::2])
        with pytest.raises(gl.WireError) as e:
            s.module_load(b"x" * (conn.limits.max_payload_bytes + 1))
        assert e.value.status == gl.Status.FRAME_TOO_LARGE
        with pytest.raises(gl.InvalidArgumentError):
            s.mem_alloc(0)
        assert s.sync() == 0  # the connection is still fine


def test_pipelining_many_launches_and_writes(conn):
    with lease_for(conn) as lease:
        s = gl.Session(lease)
        buf = s.mem_alloc(4)
        s.mem_write(buf, np.ones(1, np.float32))
        m = s.module_load(ptx("transform.ptx"))
        args = gl.KernelArgs().push_buffer(buf).push_i32(1).push_f32(1.0)
        for _ in range(300):  # more than max_inflight: send() waits for slots
            s.launch_with_args(m, "bias", 1, 1, args)
            s.mem_write(buf, b"")  # an empty write is one (empty) frame
        assert s.sync() == 300
        assert s.mem_read(buf, dtype=np.float32)[0] == 301.0
        assert conn.outstanding() == 0


def test_chunked_transfers_numpy_roundtrip(conn):
    with lease_for(conn, mib=128) as lease:
        s = gl.Session(lease)
        n = 20 * 1024 * 1024 + 12345  # several chunks and a partial one
        data = np.random.default_rng(7).integers(0, 255, n, dtype=np.uint8)
        buf = s.mem_alloc(n)
        seen = []
        s.mem_write(buf, data, progress=lambda a, b: seen.append(a))
        assert len(seen) == (n + conn.chunk_bytes - 1) // conn.chunk_bytes and seen[-1] == n
        back = s.mem_read(buf, dtype=np.uint8)
        np.testing.assert_array_equal(back, data)
        # into a caller's array, at an offset, with a shape
        out = np.empty((1024, 1024), np.float32)
        s.mem_read(buf, offset=4096, out=out)
        assert out.tobytes() == data[4096:4096 + (4 << 20)].tobytes()
        m = s.mem_read(buf, offset=8, dtype=np.uint16, shape=(16, 8))
        assert m.shape == (16, 8) and m.tobytes() == data[8:264].tobytes()
        assert bytes(s.mem_read(buf, offset=n - 3)) == data[-3:].tobytes()
        with pytest.raises(gl.OutOfRangeError):
            s.mem_read(buf, offset=n - 3, length=4)


def test_submit_one_shot(conn):
    with lease_for(conn) as lease:
        x = np.arange(8, dtype=np.float32)
        y = np.ones(8, dtype=np.float32)
        args = gl.SubmitArgs().i32(8).f32(3.0).in_(x).inout(y)
        r = gl.submit(lease, ptx("vector.ptx"), "saxpy", 1, 8, args)
        np.testing.assert_array_equal(r.output(3, np.float32), 3 * x + 1)
        assert lease.query().buffers == 0


def test_scoped_grant(conn, node):
    with lease_for(conn) as lease:
        s = gl.Session(lease)
        buf = s.mem_alloc(4096)
        m = s.module_load(ptx("transform.ptx"))
        grant = gl.request_scoped_token(lease, gl.Perm.TASKLET_SUBMIT | gl.Perm.LEASE_QUERY, 60)
        c = grant.token.claims
        assert c.lease_id == lease.lease_id and c.audience == node.node_id
        assert c.perms == gl.Perm.TASKLET_SUBMIT | gl.Perm.LEASE_QUERY and c.origin_id != bytes(16)
        gl.check_scoped_token(grant, lease.lease_id, node.node_id, gl.Perm.TASKLET_SUBMIT)
        with pytest.raises(tokens.TokenError):
            gl.check_scoped_token(grant, lease.lease_id + 1, node.node_id, gl.Perm.TASKLET_SUBMIT)
        with pytest.raises(tokens.TokenError):
            gl.check_scoped_token(grant, lease.lease_id, node.node_id, gl.Perm.MEM)
        # a worker with only the grant, on its own connection
        with gl.connect(node.address, grant.text()) as wconn:
            w = gl.Session(gl.Lease.adopt(wconn, lease.lease_id, owned=False))
            w.launch_with_args(m, "scale", 16, 256, gl.KernelArgs().push_buffer(buf).push_i32(1024).push_f32(2.0))
            assert w.sync() == 1
            with pytest.raises(gl.PermissionDeniedError):
                w.mem_alloc(16)
            with pytest.raises(gl.PermissionDeniedError):
                gl.list_leases(wconn)
            with pytest.raises(gl.PermissionDeniedError):
                gl.LeaseBuilder(wconn).min_vram(1 << 20).acquire()
        # asking for more than the token has is refused
        narrow = gl.Session(lease, token=grant)
        with pytest.raises(gl.PermissionDeniedError):
            gl.request_scoped_token(gl.Lease.adopt(conn, lease.lease_id, token=grant.raw, owned=False),
                                    gl.Perm.MEM, 60)
        assert narrow.sync() == 1


def test_renewal_helper_and_expired_lease(conn):
    lease = lease_for(conn, ttl=2)
    kept = lease_for(conn, ttl=4)
    first = kept.expires_at_ms
    gave_up = []
    # renews `kept` whenever less than 90% of its 4 s remains: never close to expiry
    with gl.RenewalManager(fraction=0.9, tick_s=0.05, on_give_up=lambda l, e: gave_up.append(e)) as rm:
        rm.register(kept)
        # wait (bounded) for the unrenewed lease to expire
        s = gl.Session(lease)
        err = None
        for _ in range(100):
            try:
                s.mem_alloc(16)
            except gl.LeaseExpiredError as e:
                err = e
                break
            time.sleep(0.1)
        assert err is not None and err.status == gl.Status.LEASE_EXPIRED
        assert isinstance(err, gl.LeaseLostError)
        assert rm.renewals > 0 and kept.expires_at_ms > first
        assert kept.query().state == gl.LeaseState.ACTIVE
    lease.release()  # an ended lease counts as released
    assert lease.released
    kept.renew(60)
    assert kept.remaining_s() > 30
    kept.release()
    assert not gave_up


def test_idempotent_acquire_and_conflict(conn):
    key = bytes(range(16))
    a = gl.LeaseBuilder(conn).min_vram(1 << 20).lease_secs(60).idempotency_key(key).acquire()
    b = gl.LeaseBuilder(conn).min_vram(1 << 20).lease_secs(60).idempotency_key(key).acquire()
    assert a.lease_id == b.lease_id
    try:
        c = gl.LeaseBuilder(conn).min_vram(2 << 20).lease_secs(60).idempotency_key(key).acquire()
    except gl.IdempotencyConflictError as e:  # DECISIONS.md: same key, other parameters
        assert e.status == gl.Status.IDEMPOTENCY_CONFLICT == 24 and not e.retryable
    else:  # a node that predates that rule answers with the first lease
        assert c.lease_id == a.lease_id
    a.release()


def test_token_errors_and_unsupported(node):
    with pytest.raises(gl.UnauthenticatedError):
        with gl.connect(node.address, b"") as c:
            gl.list_leases(c)
    other = tokens.SecretKey.generate()
    bad = tokens.mint(other, tenant="t", audience=node.node_id, ttl_s=60).text()
    with gl.connect(node.address, bad) as c:
        with pytest.raises(gl.UnauthenticatedError):
            gl.list_leases(c)
    with gl.connect(node.address, node.token(perms=tokens.Perm.LEASE_QUERY)) as c:
        with pytest.raises(gl.PermissionDeniedError):
            gl.LeaseBuilder(c).min_vram(1 << 20).acquire()
    with gl.connect(node.address, node.token()) as c:
        with pytest.raises(gl.UnsupportedError):
            gl.LeaseBuilder(c).min_vram(1 << 20).exclusivity("session").acquire()
        with pytest.raises(gl.LeaseNotFoundError):
            gl.Lease.adopt(c, 12345).query()
        # another tenant's lease reads as an absent one (TOKENS.md step 9)
        with lease_for(c) as mine:
            with gl.connect(node.address, node.token(tenant="tenant-b")) as other_c:
                for probe in (lambda l: l.query(), lambda l: gl.Session(l).mem_alloc(16),
                              lambda l: l.renew(60)):
                    with pytest.raises(gl.LeaseNotFoundError) as foreign:
                        probe(gl.Lease.adopt(other_c, mine.lease_id, owned=False))
                    assert foreign.value.message == "no such lease"
            assert mine.query().state == gl.LeaseState.ACTIVE


def test_absent_lease_message_is_no_such_lease(node):
    with gl.connect(node.address, node.token()) as c:
        with pytest.raises(gl.LeaseNotFoundError) as absent:
            gl.Lease.adopt(c, 12345).query()
    assert absent.value.message == "no such lease"


def test_threads_share_one_connection(conn):
    errors = []

    def work(i):
        try:
            with lease_for(conn, mib=8) as lease:
                s = gl.Session(lease)
                x = np.full(50000, i, np.int32)
                b = s.mem_alloc(x.nbytes)
                for _ in range(5):
                    s.mem_write(b, x)
                np.testing.assert_array_equal(s.mem_read(b, dtype=np.int32), x)
        except Exception as e:  # collected and asserted below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not errors


def test_connection_loss_fails_outstanding_requests():
    n = Node(node_id="doomed")
    try:
        c = gl.connect(n.address, n.token())
        lease = lease_for(c)
        s = gl.Session(lease)
        buf = s.mem_alloc(16)
        n.proc.kill()
        n.proc.wait()
        with pytest.raises(gl.ConnectionLostError):
            for _ in range(100):  # bounded: the loss shows on a send or at the sync
                s.mem_write(buf, b"x" * 16)
            s.sync()
        assert c.closed
        with pytest.raises(gl.ConnectionLostError):
            c.ping()
    finally:
        n.stop()


def test_cli_key_files_and_tokens_interoperate(node, tmp_path):
    import os
    import subprocess
    from conftest import BIN_DIR
    cli = os.path.join(BIN_DIR, "gpulease")
    if not os.access(cli, os.X_OK):
        pytest.skip("gpulease CLI not built")
    subprocess.run([cli, "keygen", "--out", str(tmp_path / "k")], check=True, capture_output=True)
    sk = tokens.load_secret_key_file(tmp_path / "k.key")
    assert tokens.load_public_key_file(tmp_path / "k.pub") == sk.public_key
    out = subprocess.run([cli, "token", "mint", "--key", str(tmp_path / "k.key"), "--tenant", "bob",
                          "--audience", "n1", "--perms", "mem,module", "--ttl", "60", "--lease", "9"],
                         check=True, capture_output=True, text=True).stdout.strip()
    info = tokens.inspect(out.split()[-1])
    assert info["tenant"] == "bob" and info["lease_id"] == "9" and info["perm_names"] == "mem,module"
    assert info["key_id"] == f"{sk.key_id:016x}"
    tokens.Verifier([sk.public_key], node_id="n1").check(out.split()[-1], opcode=gl.Opcode.MEM_ALLOC,
                                                         frame_lease_id=9)
    # and a Python-minted token inspected by the CLI
    t = tokens.mint(sk, tenant="carol", audience="n1", ttl_s=60).text()
    r = subprocess.run([cli, "token", "inspect", t, "--pub", str(tmp_path / "k.pub")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "carol" in r.stdout


def test_load_and_alloc_failures_are_typed(conn):
    with lease_for(conn, mib=1) as lease:
        s = gl.Session(lease)
        with pytest.raises(gl.LoadFailedError) as e:
            s.module_load(".version 7.5\n.target sm_75\nthis is not ptx\n")
        assert e.value.status == gl.Status.LOAD_FAILED and e.value.message  # the loader's log
        with pytest.raises(gl.AllocFailedError) as e:
            s.mem_alloc(lease.granted_bytes + 1)
        assert e.value.retryable
        b = s.mem_alloc(16)
        with pytest.raises(gl.OutOfRangeError):
            s.mem_read(b, offset=8, length=16)
        with pytest.raises(gl.InvalidHandleError):
            s.module_unload(gl.Module(0xdead))
        assert lease.query().state == gl.LeaseState.ACTIVE
