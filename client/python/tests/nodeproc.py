"""A real gpuleased (sim backend) on a free loopback port, with a fresh
authority key written by the package's own key tools; used by the tests and
the benchmark. The binary comes from $GPULEASE_BIN_DIR, else <repo>/build/bin."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.abspath(os.path.join(HERE, "..")))

from gpulease import tokens  # noqa: E402

BIN_DIR = os.environ.get("GPULEASE_BIN_DIR", os.path.join(ROOT, "build", "bin"))
PTX_DIR = os.path.join(ROOT, "kernels", "ptx")


class Node:
    def __init__(self, node_id="py-node", extra=(), threads=2, sim_bytes=1 << 30):
        self.node_id = node_id
        self.dir = tempfile.mkdtemp(prefix="gpulease-py-test-")
        self.authority = tokens.SecretKey.generate()
        tokens.write_key_pair(os.path.join(self.dir, "authority"), self.authority)
        self.log_path = os.path.join(self.dir, "node.log")
        exe = os.path.join(BIN_DIR, "gpuleased")
        if not os.access(exe, os.X_OK):
            raise RuntimeError(f"no gpuleased at {exe} (build first, or set GPULEASE_BIN_DIR)")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [exe, "--backend", "sim", "--listen", "127.0.0.1:0", "--node-id", node_id,
             "--authority-key", os.path.join(self.dir, "authority.pub"),
             "--sim-device-bytes", str(sim_bytes), "--reaper-interval-ms", "50",
             "--network-threads", str(threads), "--device-threads", str(threads), *extra],
            stdout=subprocess.DEVNULL, stderr=self.log)
        self.port = 0
        for _ in range(600):  # bounded: 30 s
            m = re.search(r"msg=listening addr=127\.0\.0\.1:([0-9]+)", open(self.log_path).read())
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if not self.port:
            log = open(self.log_path).read()
            self.stop()
            raise RuntimeError("gpuleased did not start:\n" + log)
        self.address = f"127.0.0.1:{self.port}"

    def token(self, tenant="tenant-a", ttl_s=3600, perms=tokens.ALL_PERMS, **kw):
        now = int(time.time())
        return tokens.mint(self.authority, tenant=tenant, audience=self.node_id, perms=perms,
                           not_before=now - 5, expires_at=now + ttl_s, **kw).text()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
