"""Every wire vector of vectors/wire/*.json, both ways: valid frames decode to
their `fields` and the fields encode back to exactly `hex`; invalid frames are
refused with exactly `error`. Files and vectors are iterated generically (new
files, vectors and documented field names are picked up: byte-string fields
are recognised by name, see BYTE_FIELDS)."""
import glob
import json
import os

import pytest

from gpulease import wire
from gpulease.status import Status, WireError, is_wire_status

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
FILES = sorted(glob.glob(os.path.join(ROOT, "vectors", "wire", "*.json")))

# Fields holding byte strings (lowercase hex in the vectors), per PROTOCOL.md
# "Golden vectors": token, data, image, uuid, idempotency key, scalar bytes, raw blob.
BYTE_FIELDS = {"token", "data", "image", "uuid", "idempotency_key", "bytes", "blob"}


def _load():
    out = []
    for f in FILES:
        doc = json.load(open(f))
        for v in doc["vectors"]:
            out.append(pytest.param(v, id=f"{os.path.basename(f)}:{v['id']}"))
    return out


VECTORS = _load()


def test_vector_files_present():
    names = {os.path.basename(f) for f in FILES}
    assert {"requests.json", "replies.json", "frames_invalid.json", "payloads_invalid.json"} <= names
    assert len(VECTORS) > 200


def from_json(x, key=None):
    """Vector JSON -> the codec's Python values (hex byte strings -> bytes)."""
    if isinstance(x, dict):
        return {k: from_json(v, k) for k, v in x.items()}
    if isinstance(x, list):
        return [from_json(v, key) for v in x]
    if key in BYTE_FIELDS and isinstance(x, str):
        return bytes.fromhex(x)
    return x


def to_json(x):
    if isinstance(x, dict):
        return {k: to_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_json(v) for v in x]
    if isinstance(x, (bytes, bytearray)):
        return x.hex()
    return x


def _opcode(v):
    name = v["opcode"]
    return int(name, 16) if name.startswith("0x") else int(wire.Opcode[name])


def decode(buf, reply):
    f = wire.decode_frame(buf, reply=reply)
    h = f.header
    fields = {"version": h.version, "request_id": h.request_id, "lease_id": h.lease_id}
    if reply:
        fields["status"] = Status(h.status).name
    else:
        fields["token"] = f.token
    fields["payload"] = wire.decode_payload(h.opcode, f.payload, reply=reply, status=h.status)
    return h, fields


def _status_defined_since(v):
    """The one vector the lead's pending decision changes: a reply with status 24,
    which DECISIONS.md defines as IDEMPOTENCY_CONFLICT (vectors not regenerated yet)."""
    buf = bytes.fromhex(v["hex"])
    if len(buf) >= 12 and v["direction"] == "reply":
        st = int.from_bytes(buf[10:12], "little")
        return st == Status.IDEMPOTENCY_CONFLICT and "not defined" in v.get("description", "")
    return False


@pytest.mark.parametrize("v", VECTORS)
def test_wire_vector(v):
    reply = v["direction"] == "reply"
    buf = bytes.fromhex(v["hex"])
    if v["result"] == "invalid":
        if _status_defined_since(v):
            pytest.skip("status 24 is IDEMPOTENCY_CONFLICT per DECISIONS.md; vector predates it")
        with pytest.raises(WireError) as e:
            decode(buf, reply)
        assert e.value.status == Status[v["error"]], str(e.value)
        return
    h, fields = decode(buf, reply)
    assert h.opcode == _opcode(v)
    assert to_json(fields) == v["fields"]
    # and back: the fields encode to exactly the vector's bytes
    f = from_json(v["fields"])
    status = int(Status[f["status"]]) if reply else 0
    payload = wire.encode_payload(h.opcode, f["payload"], reply=reply, status=status)
    out = wire.encode_frame(_opcode(v), f["request_id"], f["lease_id"],
                            b"" if reply else f["token"], payload, reply=reply, status=status)
    assert out.hex() == v["hex"]


def test_frame_parts_match_encode_frame_for_large_payloads():
    data = bytes(range(256)) * 40000
    head, tok, pay = wire.frame_parts(wire.Opcode.MEM_WRITE, 9, 42, b"tok", data)
    f = wire.decode_frame(head + tok + pay, reply=False)
    assert f.payload == data and f.token == b"tok"


def test_header_only_checks_reject_before_reading_a_body():
    # a reply header announcing more than the payload limit: FRAME_TOO_LARGE from 48 bytes
    h = wire.pack_header(wire.Opcode.MEM_READ, wire.FLAG_REPLY, 0, 0, 1, 2, 2**32 - 1)
    with pytest.raises(WireError) as e:
        wire.decode_header(h, reply=True)
    assert e.value.status == Status.FRAME_TOO_LARGE
    # the node's announced (lower) limit applies
    h = wire.pack_header(wire.Opcode.MEM_READ, wire.FLAG_REPLY, 0, 0, 1, 2, 5000)
    with pytest.raises(WireError):
        wire.decode_header(h, reply=True, limits=wire.Limits(max_payload_bytes=4096))
    assert is_wire_status(24) and not is_wire_status(25)


def test_header_check_order():
    """DECISIONS.md: magic, version, lengths (fatal) before flags, reserved, opcode, status."""
    def hdr(**kw):
        f = dict(opcode=wire.Opcode.PING, flags=0, status=0, token_len=0, request_id=1,
                 lease_id=0, payload_len=0)
        f.update(kw)
        return bytearray(wire.pack_header(**f))

    cases = [
        (dict(flags=2, payload_len=2**32 - 1), Status.FRAME_TOO_LARGE),
        (dict(flags=2, token_len=5000, opcode=0x7777), Status.FRAME_TOO_LARGE),
        (dict(flags=2, opcode=0x7777, status=3), Status.BAD_FRAME),
        (dict(opcode=0x7777, status=3), Status.UNKNOWN_OPCODE),
        (dict(status=3), Status.BAD_FRAME),
    ]
    for kw, want in cases:
        with pytest.raises(WireError) as e:
            wire.decode_header(bytes(hdr(**kw)), reply=False)
        assert e.value.status == want, kw
    b = hdr(flags=2, payload_len=2**32 - 1)
    b[4] = 2  # version 2 wins over everything after it
    with pytest.raises(WireError) as e:
        wire.decode_header(bytes(b), reply=False)
    assert e.value.status == Status.UNSUPPORTED_VERSION
    b = hdr(opcode=0x7777)
    b[36] = 1  # reserved before opcode
    with pytest.raises(WireError) as e:
        wire.decode_header(bytes(b), reply=False)
    assert e.value.status == Status.BAD_FRAME


def _refusal(op, payload, reply=False):
    with pytest.raises(WireError) as e:
        wire.decode_payload(op, payload, reply=reply)
    return e.value


def test_payload_decoding_order():
    """PROTOCOL.md "Decoding order": structure first, then values in field
    order; a refused value whose layout is sound is still consumed."""
    Op = wire.Opcode
    acquire = dict(min_vram=0, ttl_s=0, exclusivity=0, device=0xFFFF)
    p = bytearray(wire.encode_request(Op.LEASE_ACQUIRE, acquire))
    p[12] = 7  # exclusivity 7 as well: min_vram, the first field, is reported
    e = _refusal(Op.LEASE_ACQUIRE, bytes(p))
    assert e.status == Status.INVALID_ARGUMENT and "min_vram" in e.message
    p[13] = 0x80  # an undefined flag bit after all three: structure wins
    assert _refusal(Op.LEASE_ACQUIRE, bytes(p)).status == Status.BAD_FRAME
    p = bytearray(wire.encode_request(Op.LEASE_ACQUIRE, dict(acquire, min_vram=1)))
    p[12] = 7
    e = _refusal(Op.LEASE_ACQUIRE, bytes(p))
    assert "ttl_s" in e.message
    # a 300-byte SCALAR is read whole: a sound BUFFER after it keeps INVALID_ARGUMENT,
    # a byte too many after it is BAD_FRAME
    big = {"kind": "SCALAR", "bytes": bytes(300)}
    buf = {"kind": "BUFFER", "handle": 1, "offset": 0}
    launch = wire.enc_launch(1, "k", (1, 1, 1), (1, 1, 1), 0, wire.enc_typed_args([big, buf]))
    e = _refusal(Op.LAUNCH, launch)
    assert e.status == Status.INVALID_ARGUMENT and "300" in e.message
    assert _refusal(Op.LAUNCH, launch + b"\0").status == Status.BAD_FRAME
    # GPU_SUBMIT OUT: over the payload limit is FRAME_TOO_LARGE, 0 is INVALID_ARGUMENT
    sub = dict(format="PTX", image=b"x", kernel="k", grid=(1, 1, 1), block=(1, 1, 1),
               shared_bytes=0)
    for size, want in ((wire.DEFAULT_LIMITS.max_payload_bytes + 1, Status.FRAME_TOO_LARGE),
                       (0, Status.INVALID_ARGUMENT)):
        pl = wire.encode_request(Op.GPU_SUBMIT, dict(sub, args=[{"kind": "OUT", "size": size}]))
        assert _refusal(Op.GPU_SUBMIT, pl).status == want, size
    # two value errors: the empty image comes before the empty kernel name
    pl = wire.encode_request(Op.GPU_SUBMIT, dict(sub, image=b"", kernel="", args=[]))
    assert "image" in _refusal(Op.GPU_SUBMIT, pl).message


def test_hello_reply_announced_limits():
    """Each announced limit is 1..its protocol maximum (max_lease_ttl_s >= 1), else BAD_FRAME."""
    Op = wire.Opcode
    lim = {k: getattr(wire.DEFAULT_LIMITS, k) for k in wire._LIMIT_NAMES[:-1]}
    base = dict(version=1, node_id="n", backend="sim", devices=[],
                limits=dict(lim, max_lease_ttl_s=2**32 - 1))
    assert wire.decode_payload(Op.HELLO, wire.encode_reply(Op.HELLO, base), reply=True) \
        ["limits"]["max_lease_ttl_s"] == 2**32 - 1
    for k in wire._LIMIT_NAMES:
        bad_values = [0] if k == "max_lease_ttl_s" else [0, lim[k] + 1]
        for v in bad_values:
            m = dict(base, limits=dict(base["limits"], **{k: v}))
            e = _refusal(Op.HELLO, wire.encode_reply(Op.HELLO, m), reply=True)
            assert e.status == Status.BAD_FRAME, (k, v)
