"""``python3 -m gpulease``: key and token tools, and a node check.

    python3 -m gpulease keygen --out NAME
    python3 -m gpulease token mint --key NAME.key --tenant T --audience NODE --ttl 3600
                                   [--perms all|none|mem,module,...] [--lease ID] [--max-vram BYTES]
    python3 -m gpulease token inspect TOKEN|- [--pub NAME.pub]
    python3 -m gpulease info --node HOST:PORT

Key files and tokens are those of ``gpulease keygen`` / ``gpulease token``
(docs/TOKENS.md); errors print ``gpulease: error: ...`` and exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from . import tokens
from .status import GpuleaseError


def _mint(a):
    sk = tokens.load_secret_key_file(a.key)
    nbf = a.not_before if a.not_before is not None else int(time.time())
    t = tokens.mint(sk, tenant=a.tenant, audience=a.audience, perms=tokens.parse_perms(a.perms),
                    not_before=nbf, expires_at=nbf + a.ttl, lease_id=a.lease, max_vram=a.max_vram)
    print(t.text())


def _inspect(a):
    text = sys.stdin.read() if a.token == "-" else a.token
    raw = tokens.token_bytes(text.strip())
    info = tokens.inspect(raw)
    if a.pub:
        tokens.verify_signature(raw, tokens.load_public_key_file(a.pub))
        info["signature"] = "valid"
    print(json.dumps(info, indent=2))


def _keygen(a):
    sk = tokens.SecretKey.generate()
    tokens.write_key_pair(a.out, sk)
    print(f"{a.out}.key {a.out}.pub key id {sk.key_id:016x}")


def _info(a):
    from .connection import connect
    with connect(a.node) as c:
        n = c.node_info
        print(json.dumps({"node_id": n.node_id, "backend": n.backend, "version": n.version,
                          "limits": n.limits,
                          "devices": [{"index": d.index, "name": d.name, "total_bytes": d.total_bytes,
                                       "free_bytes": d.free_bytes} for d in n.devices]}, indent=2))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m gpulease", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("keygen", help="create NAME.key (0600) and NAME.pub")
    k.add_argument("--out", "-o", required=True)
    k.set_defaults(fn=_keygen)
    t = sub.add_parser("token", help="mint and inspect tokens")
    tsub = t.add_subparsers(dest="tcmd", required=True)
    m = tsub.add_parser("mint", help="sign a token with a secret key and print it")
    m.add_argument("--key", "-k", required=True)
    m.add_argument("--tenant", "-t", required=True)
    m.add_argument("--audience", "-a", required=True)
    m.add_argument("--perms", "-p", default="all")
    m.add_argument("--ttl", type=int, required=True)
    m.add_argument("--lease", type=int, default=0)
    m.add_argument("--max-vram", type=int, default=0)
    m.add_argument("--not-before", type=int, default=None)
    m.set_defaults(fn=_mint)
    i = tsub.add_parser("inspect", help="decode a token (and verify it with --pub)")
    i.add_argument("token")
    i.add_argument("--pub")
    i.set_defaults(fn=_inspect)
    n = sub.add_parser("info", help="HELLO a node: id, backend, limits, devices")
    n.add_argument("--node", default="127.0.0.1:7070")
    n.set_defaults(fn=_info)
    a = p.parse_args(argv)
    try:
        if getattr(a, "ttl", 1) <= 0:
            raise ValueError("--ttl must be > 0")
        a.fn(a)
        return 0
    except (GpuleaseError, ValueError, OSError) as e:
        print(f"gpulease: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
