"""Every token vector of vectors/tokens/, both ways: valid vectors decode to
their fields and re-encode (mint with the context's key) to exactly their
bytes and text; invalid vectors are refused with exactly their status and
reason. Files and vectors are iterated generically, so new ones are picked up."""
import glob
import json
import os

import pytest

from gpulease import tokens
from gpulease.status import Status
from gpulease.wire import Opcode

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
FILES = sorted(glob.glob(os.path.join(ROOT, "vectors", "tokens", "*.json")))


def _load():
    out = []
    for f in FILES:
        doc = json.load(open(f))
        for v in doc["vectors"]:
            out.append(pytest.param(doc["context"], v, id=f"{os.path.basename(f)}:{v['id']}"))
    return out


VECTORS = _load()


def test_vector_files_present():
    assert {"valid.json", "invalid.json"} <= {os.path.basename(f) for f in FILES}
    assert len(VECTORS) > 50


def _verifier(ctx, node_id):
    keys = [bytes.fromhex(k["public_key_hex"]) for k in ctx["trusted_keys"]]
    return tokens.Verifier(keys, node_id=node_id, clock_skew_s=ctx["clock_skew_s"],
                           revocations=tokens.Revocations.parse(ctx["revocation_file"]))


def _check(ctx, v):
    vf = v["verify"]
    ver = _verifier(ctx, vf["node_id"])
    return ver.check(bytes.fromhex(v["token_hex"]), opcode=Opcode[vf["opcode"]],
                     frame_lease_id=int(vf["frame_lease_id"]), now=int(vf["now"]),
                     lease_owner=vf.get("lease_owner"),
                     acquire_bytes=int(vf["acquire_bytes"]) if "acquire_bytes" in vf else None)


def test_context_keys_and_key_files(tmp_path):
    ctx = json.load(open(FILES[0]))["context"]
    for k in ctx["trusted_keys"] + ctx["untrusted_keys"]:
        sk = tokens.SecretKey(bytes.fromhex(k["seed_hex"]))
        assert sk.public_key.hex() == k["public_key_hex"]
        assert f"{sk.key_id:016x}" == k["key_id"]
        assert tokens.public_key_line(sk.public_key).strip() == k["public_key_file"]
        p = tmp_path / (k["key_id"] + ".pub")
        p.write_text(k["public_key_file"] + "\n")
        assert tokens.load_public_key_file(p) == sk.public_key


@pytest.mark.parametrize("ctx,v", VECTORS)
def test_token_vector(ctx, v):
    raw = bytes.fromhex(v["token_hex"])
    if v["expected_status"] != "OK":
        with pytest.raises(tokens.TokenError) as e:
            _check(ctx, v)
        assert e.value.status == Status[v["expected_status"]]
        assert e.value.reason == v["reason"]
        return
    # decode: fields, signed message, signature, text
    t = _check(ctx, v)
    assert t.describe() == v["fields"]
    assert t.signed_message().hex() == v["signed_message_hex"]
    assert t.signature.hex() == v["signature_hex"]
    assert t.text() == v["token_text"]
    assert tokens.decode_text(v["token_text"]) == raw
    assert len(raw) == v["size"]
    # encode: mint the fields with the context key of that key id -> the same bytes
    f = v["fields"]
    seeds = {k["key_id"]: k["seed_hex"] for k in ctx["trusted_keys"] + ctx["untrusted_keys"]}
    sk = tokens.SecretKey(bytes.fromhex(seeds[f["key_id"]]))
    c = tokens.Claims(tenant=f["tenant"], audience=f["audience"], perms=f["perms"],
                      not_before=int(f["not_before"]), expires_at=int(f["expires_at"]),
                      lease_id=int(f["lease_id"]), token_id=bytes.fromhex(f["token_id"]),
                      origin_id=bytes.fromhex(f["origin_id"]), max_vram=int(f["max_vram"]))
    assert sk.mint(c).raw == raw
    assert tokens.parse_perms(f["perm_names"]) == f["perms"]


def test_text_form_rejections():
    good = json.load(open(FILES[-1]))["vectors"][0]["token_text"]
    assert tokens.decode_text("  " + good + "\n")
    for bad in ["", "glt1", "glt2." + good[5:], good + "=", good[:-1] + "*", "glt1." + "A" * 364]:
        with pytest.raises(tokens.TokenError):
            tokens.decode_text(bad)
    # non-canonical: last char with unused bits set
    body = good[5:]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    i = alphabet.index(body[-1])
    if len(body) % 4 == 2:
        noncanon = body[:-1] + alphabet[i | 1]
    else:
        noncanon = body[:-1] + alphabet[i ^ 1]
    if noncanon != body:
        with pytest.raises(tokens.TokenError):
            tokens.decode_text("glt1." + noncanon)


def test_secret_key_file_roundtrip_and_mode(tmp_path):
    sk = tokens.SecretKey.generate()
    tokens.write_key_pair(tmp_path / "auth", sk)
    assert (os.stat(tmp_path / "auth.key").st_mode & 0o777) == 0o600
    assert tokens.load_secret_key_file(tmp_path / "auth.key").seed == sk.seed
    assert tokens.load_public_key_file(tmp_path / "auth.pub") == sk.public_key
    with pytest.raises(tokens.KeyFileError):
        tokens.write_key_pair(tmp_path / "auth", sk)
    os.chmod(tmp_path / "auth.key", 0o640)
    with pytest.raises(tokens.KeyFileError) as e:
        tokens.load_secret_key_file(tmp_path / "auth.key")
    assert sk.seed.hex() not in str(e.value)
    # a key id that does not match the key
    line = (tmp_path / "auth.pub").read_text().split()
    line[1] = "0" * 16
    (tmp_path / "bad.pub").write_text(" ".join(line) + "\n")
    with pytest.raises(tokens.KeyFileError):
        tokens.load_public_key_file(tmp_path / "bad.pub")


def test_mint_and_inspect():
    sk = tokens.SecretKey.generate()
    t = tokens.mint(sk, tenant="alice", audience="node-a", perms=tokens.parse_perms("mem,module"),
                    ttl_s=60, lease_id=7)
    info = tokens.inspect(t.text())
    assert info["tenant"] == "alice" and info["lease_id"] == "7"
    assert info["perm_names"] == "mem,module"
    v = tokens.Verifier([sk.public_key], node_id="node-a")
    v.check(t.text(), opcode=Opcode.MEM_ALLOC, frame_lease_id=7)
    with pytest.raises(tokens.TokenError) as e:
        v.check(t.text(), opcode=Opcode.MEM_ALLOC, frame_lease_id=8)
    assert e.value.reason == "wrong_lease"
    with pytest.raises(ValueError):
        tokens.mint(sk, tenant="", audience="node-a")


def test_steps_8_and_9_lease_rule_binding_and_owner():
    """TOKENS.md "Validation" 8a (a lease-bound token on a lease-0 opcode), 8b
    (the header lease rule), 8c (the bound lease) and 9 (another tenant's
    lease reads as absent, message exactly "no such lease")."""
    sk = tokens.SecretKey.generate()
    v = tokens.Verifier([sk.public_key], node_id="n")
    any_lease = tokens.mint(sk, tenant="a", audience="n", ttl_s=60)
    bound = tokens.mint(sk, tenant="a", audience="n", ttl_s=60, lease_id=5)
    P, I, N = Status.PERMISSION_DENIED, Status.INVALID_ARGUMENT, Status.LEASE_NOT_FOUND
    cases = [(bound, Opcode.LEASE_ACQUIRE, 0, None, P, "wrong_lease"),       # 8a
             (bound, Opcode.LEASE_ACQUIRE, 5, None, P, "wrong_lease"),       # 8a before 8b
             (bound, Opcode.LEASE_LIST, 0, None, P, "wrong_lease"),          # 8a
             (bound, Opcode.HELLO, 0, None, P, "wrong_lease"),               # 8a
             (any_lease, Opcode.LEASE_ACQUIRE, 3, None, I, "lease_rule"),    # 8b
             (any_lease, Opcode.PING, 3, None, I, "lease_rule"),             # 8b
             (any_lease, Opcode.MEM_ALLOC, 0, None, I, "lease_rule"),        # 8b
             (bound, Opcode.MEM_ALLOC, 0, None, I, "lease_rule"),            # 8b before 8c
             (bound, Opcode.MEM_ALLOC, 6, None, P, "wrong_lease"),           # 8c
             (bound, Opcode.MEM_ALLOC, 6, "b", P, "wrong_lease"),            # 8c before 9
             (any_lease, Opcode.MEM_ALLOC, 6, "b", N, "not_lease_owner"),    # 9
             (bound, Opcode.LEASE_QUERY, 5, "b", N, "not_lease_owner")]      # 9
    for t, op, lease, owner, status, reason in cases:
        with pytest.raises(tokens.TokenError) as e:
            v.check(t.raw, opcode=op, frame_lease_id=lease, lease_owner=owner)
        assert (e.value.status, e.value.reason) == (status, reason), (op, lease, owner)
        if status == N:
            assert e.value.message == "no such lease"
        else:
            assert e.value.message.startswith(reason)
    v.check(bound.raw, opcode=Opcode.MEM_ALLOC, frame_lease_id=5, lease_owner="a")
    v.check(any_lease.raw, opcode=Opcode.LEASE_ACQUIRE, frame_lease_id=0)
    v.check(any_lease.raw, opcode=Opcode.LEASE_LIST, frame_lease_id=0)
    v.check(any_lease.raw, opcode=Opcode.MEM_ALLOC, frame_lease_id=9, lease_owner="a")


def test_command_line_tools(tmp_path, capsys):
    from gpulease.__main__ import main
    assert main(["keygen", "--out", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    assert main(["token", "mint", "--key", str(tmp_path / "a.key"), "--tenant", "t1", "--audience",
                 "n1", "--perms", "mem,module", "--ttl", "60", "--lease", "4"]) == 0
    text = capsys.readouterr().out.strip()
    assert main(["token", "inspect", text, "--pub", str(tmp_path / "a.pub")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["tenant"] == "t1" and info["lease_id"] == "4" and info["signature"] == "valid"
    # another key: refused, exit 1, message on stderr
    assert main(["keygen", "--out", str(tmp_path / "b")]) == 0
    assert main(["token", "inspect", text, "--pub", str(tmp_path / "b.pub")]) == 1
    assert "unknown_key" in capsys.readouterr().err
    assert main(["token", "mint", "--key", str(tmp_path / "a.key"), "--tenant", "t", "--audience",
                 "n", "--ttl", "0"]) == 1
    assert main(["token", "inspect", "glt1.!!"]) == 1
    assert main(["keygen", "--out", str(tmp_path / "a")]) == 1  # exists: refused
