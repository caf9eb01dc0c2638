"""The connection against a scripted fake node on loopback: every reply check
(checksum, unknown request id, limits from the header alone, opcode echo, a
node that closes mid-frame) fails the outstanding requests with the right
typed error and closes the connection."""
import socket
import struct
import threading

import pytest

import gpulease as gl
from gpulease import wire
from gpulease.wire import Opcode

HELLO = {"version": 1, "node_id": "fake", "backend": "sim",
         "limits": {"max_token_bytes": 1024, "max_payload_bytes": 1 << 20, "max_inflight": 4,
                    "max_kernel_args": 128, "max_arg_bytes": 4096, "max_name_bytes": 256,
                    "max_lease_ttl_s": 60},
         "devices": []}


def read_request(c):
    head = b""
    while len(head) < 48:
        got = c.recv(48 - len(head))
        if not got:
            return None
        head += got
    h = wire.decode_header(head, reply=False)
    body = b""
    while len(body) < h.token_len + h.payload_len:
        body += c.recv(h.token_len + h.payload_len - len(body))
    return h, body[h.token_len:]


def fake_node(script):
    """Serves one connection: HELLO, then `script(conn, header, payload)` per request."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def run():
        c, _ = srv.accept()
        with c:
            h, _ = read_request(c)
            c.sendall(wire.encode_frame(Opcode.HELLO, h.request_id, 0,
                                        payload=wire.encode_reply(Opcode.HELLO, HELLO), reply=True))
            while True:
                r = read_request(c)
                if r is None or script(c, *r) is False:
                    return
        srv.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return "127.0.0.1:%d" % srv.getsockname()[1], t


def reply(h, payload=b"", status=0, opcode=None, rid=None):
    return wire.encode_frame(opcode if opcode is not None else h.opcode,
                             h.request_id if rid is None else rid, h.lease_id, payload=payload,
                             reply=True, status=status)


def test_hello_limits_are_used():
    addr, t = fake_node(lambda c, h, p: c.sendall(reply(h, p)))
    with gl.connect(addr) as conn:
        assert conn.node_id == "fake" and conn.max_inflight == 4
        assert conn.chunk_bytes == (1 << 20) - 16
        # pipelining beyond max_inflight waits for slots instead of overrunning
        ps = [conn.send(Opcode.PING, 0, bytes([i])) for i in range(20)]
        assert [bytes(p.result()) for p in ps] == [bytes([i]) for i in range(20)]
        with pytest.raises(gl.WireError) as e:
            conn.send(Opcode.PING, 0, b"x" * ((1 << 20) + 1))
        assert e.value.status == gl.Status.FRAME_TOO_LARGE
        assert not conn.closed  # refused before sending: the connection is fine


@pytest.mark.parametrize("case,status,cls", [
    ("bad_checksum", gl.Status.CHECKSUM_MISMATCH, gl.WireError),
    ("unknown_id", gl.Status.BAD_FRAME, gl.WireError),
    ("too_large", gl.Status.FRAME_TOO_LARGE, gl.WireError),
    ("wrong_opcode", gl.Status.BAD_FRAME, gl.WireError),
    ("token_in_reply", gl.Status.BAD_FRAME, gl.WireError),
    ("bad_utf8_message", gl.Status.BAD_FRAME, gl.WireError),
    ("closed_mid_frame", gl.Status.CONNECTION_LOST, gl.ConnectionLostError),
])
def test_malformed_replies_fail_and_close(case, status, cls):
    def script(c, h, p):
        if case == "bad_checksum":
            f = bytearray(reply(h, p))
            f[40] ^= 1
            c.sendall(f)
        elif case == "unknown_id":
            c.sendall(reply(h, p, rid=h.request_id + 1000))
        elif case == "too_large":  # only the header: the client must not wait for a body
            c.sendall(wire.pack_header(h.opcode, 1, 0, 0, h.request_id, 0, (1 << 20) + 1))
        elif case == "wrong_opcode":
            c.sendall(reply(h, b"", opcode=Opcode.SYNC))
        elif case == "token_in_reply":
            head = bytearray(wire.pack_header(h.opcode, 1, 0, 1, h.request_id, 0, len(p)))
            body = b"t" + p
            head[40:48] = struct.pack("<Q", wire.checksum(bytes(head), body))
            c.sendall(bytes(head) + body)
        elif case == "bad_utf8_message":
            c.sendall(reply(h, b"\xff\xfe", status=gl.Status.INTERNAL))
        elif case == "closed_mid_frame":
            c.sendall(reply(h, p)[:30])
            return False
        return None

    addr, t = fake_node(script)
    conn = gl.connect(addr)
    other = conn.send(Opcode.PING, 0, b"a")
    with pytest.raises(cls) as e:
        other.result(timeout=10)
    assert e.value.status == status
    assert conn.closed
    with pytest.raises(gl.ConnectionLostError):
        conn.ping(b"again")
    conn.close()


def test_error_reply_with_message_is_typed():
    def script(c, h, p):
        c.sendall(reply(h, "lease 42 expired \u2014 gone".encode(), status=gl.Status.LEASE_EXPIRED))

    addr, t = fake_node(script)
    with gl.connect(addr) as conn:
        with pytest.raises(gl.LeaseExpiredError) as e:
            conn.request(Opcode.LEASE_QUERY, 42, b"", op="LEASE_QUERY")
        assert e.value.message == "lease 42 expired \u2014 gone" and e.value.op == "LEASE_QUERY"
        assert not conn.closed  # an error reply is a well-formed reply


def test_timeout_leaves_the_request_outstanding():
    gate = threading.Event()

    def script(c, h, p):
        gate.wait(10)
        c.sendall(reply(h, p))

    addr, t = fake_node(script)
    with gl.connect(addr) as conn:
        p = conn.send(Opcode.PING, 0, b"late")
        with pytest.raises(TimeoutError):
            p.result(timeout=0.2)
        gate.set()
        assert bytes(p.result(timeout=10)) == b"late"
        assert not conn.closed


def test_lease_rule_is_checked_before_sending():
    addr, t = fake_node(lambda c, h, p: c.sendall(reply(h, p)))
    with gl.connect(addr) as conn:
        for op, lease in ((Opcode.LEASE_ACQUIRE, 7), (Opcode.LEASE_LIST, 1), (Opcode.PING, 2),
                          (Opcode.MEM_ALLOC, 0), (Opcode.SYNC, 0)):
            with pytest.raises(gl.WireError) as e:
                conn.send(op, lease, b"")
            assert e.value.status == gl.Status.INVALID_ARGUMENT
        assert conn.outstanding() == 0 and conn.ping(b"ok") == b"ok"
