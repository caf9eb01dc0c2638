"""The Python ports of recipes 30 and 34 run against a gpuleased and pass
their CPU reference checks (each exits non-zero on a mismatch)."""
import os
import subprocess
import sys

import numpy as np

from conftest import ROOT

EXAMPLES = os.path.join(ROOT, "examples", "python")


def run(node, script, *args):
    env = dict(os.environ, GPULEASE_NODE=node.address, GPULEASE_TOKEN=node.token(),
               PYTHONPATH=os.path.join(ROOT, "client", "python"))
    return subprocess.run([sys.executable, os.path.join(EXAMPLES, script), *args], env=env,
                          capture_output=True, text=True, timeout=240)


def test_recipe30(node):
    r = run(node, "recipe30_scale_bias.py")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "recipe 30: OK: all 1024 elements equal 2i + 10" in r.stdout


def test_recipe34_retries_a_lost_lease(node):
    r = run(node, "recipe34_pipeline.py", "--segments", "40", "--kill-after", "10")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "will be retried on a fresh lease" in r.stdout
    assert "recipe 34: OK: all 40 segments match the CPU reference; every lease released" in r.stdout


def test_recipe34_reference_matches_a_scalar_float32_model():
    """The numpy reference against a plain per-element model of pipeline.cu."""
    sys.path.insert(0, EXAMPLES)
    from recipe34_pipeline import reference
    raw = np.random.default_rng(1).integers(0, 256, 300, dtype=np.uint8)
    f = np.float32
    d = [f(x) / f(255) for x in raw]
    want = []
    for i in range(len(d)):
        c = d[i]
        l_ = d[i - 1] if i > 0 else c
        r_ = d[i + 1] if i + 1 < len(d) else c
        v = (l_ + c + r_) / f(3)
        s = v if v > f(0.1) else f(0)
        s = min(max(s, f(0)), f(1))
        want.append(int(f(float(s) * 255.0 + 0.5)))
    assert reference(raw).tolist() == want


def test_example_reports_a_bad_token(node):
    env = dict(os.environ, GPULEASE_NODE=node.address, GPULEASE_TOKEN="glt1.AAAA",
               PYTHONPATH=os.path.join(ROOT, "client", "python"))
    r = subprocess.run([sys.executable, os.path.join(EXAMPLES, "recipe30_scale_bias.py")], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "UNAUTHENTICATED" in r.stderr
