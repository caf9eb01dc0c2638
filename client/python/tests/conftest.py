"""Fixtures: a real gpuleased (sim backend) on a free loopback port (see
nodeproc.py), a connection to it, and the kernels' PTX."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from nodeproc import BIN_DIR, PTX_DIR, ROOT, Node  # noqa: E402,F401


@pytest.fixture(scope="module")
def node():
    n = Node()
    yield n
    n.stop()


@pytest.fixture
def conn(node):
    import gpulease
    c = gpulease.connect(node.address, node.token())
    yield c
    c.close()


def ptx(name):
    with open(os.path.join(PTX_DIR, name)) as f:
        return f.read()
