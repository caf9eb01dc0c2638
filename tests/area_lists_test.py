#!/usr/bin/env python3
"""Every area file (tests/, bench/, vectors/, fuzz/ *.cmake) is included by
name from its folder's CMakeLists.txt. The lists are explicit (no glob), so a
new area file that is not listed would silently build and run nothing."""
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1])
failures = []
for folder in ("tests", "bench", "vectors", "fuzz"):
    d = root / folder
    text = (d / "CMakeLists.txt").read_text()
    m = re.search(r"foreach\(f\s+(.*?)\)", text, re.S)
    if not m:
        failures.append(f"{folder}/CMakeLists.txt: no foreach(f ...) list of area files")
        continue
    listed = set(m.group(1).split())
    present = {p.name for p in d.glob("*.cmake")}
    for name in sorted(present - listed):
        failures.append(f"{folder}/{name} exists but {folder}/CMakeLists.txt does not include it")
    for name in sorted(listed - present):
        failures.append(f"{folder}/CMakeLists.txt lists {name}, which does not exist")
for f in failures:
    print(f)
sys.exit(1 if failures else 0)
