"""What the Python recipes share: --node / --token flags (or GPULEASE_NODE /
GPULEASE_TOKEN), connecting, and reading PTX from kernels/ptx. Uses an
installed `gpulease` package, else the one in this source tree."""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
try:
    import gpulease  # noqa: F401
except ImportError:  # running from the source tree
    sys.path.insert(0, os.path.join(ROOT, "client", "python"))
import gpulease as gl  # noqa: E402


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--node", default=os.environ.get("GPULEASE_NODE", "127.0.0.1:7070"),
                   help="node HOST:PORT (default: $GPULEASE_NODE, else 127.0.0.1:7070)")
    p.add_argument("--token", default=None, help="capability token glt1.... (default: $GPULEASE_TOKEN)")
    p.add_argument("--token-file", default=None, help="file holding the token")
    p.add_argument("--ptx-dir", default=os.path.join(ROOT, "kernels", "ptx"),
                   help="directory of the PTX kernels")
    return p


def token(args):
    if args.token:
        return args.token
    if args.token_file:
        with open(args.token_file) as f:
            return f.read().strip()
    t = os.environ.get("GPULEASE_TOKEN")
    if not t:
        raise SystemExit("no token: pass --token or set GPULEASE_TOKEN")
    return t


def connect(args):
    return gl.connect(args.node, token(args))


def ptx(args, name):
    with open(os.path.join(args.ptx_dir, name)) as f:
        return f.read()


def run_main(name, body):
    try:
        return body()
    except gl.GpuleaseError as e:
        print(f"{name}: {e}", file=sys.stderr)
    except (OSError, ValueError) as e:
        print(f"{name}: {e}", file=sys.stderr)
    return 1
