#!/usr/bin/env python3
"""Syntax and consistency of server/deploy/kubernetes/*.yaml (issue 16).

Every document parses (python3-yaml), has apiVersion, kind and metadata.name;
the DaemonSet's registry names the etcd StatefulSet's members on the client
port of its Service; every gpuleased flag in the container args and every key
of the embedded gpuleased.toml is documented in docs/OPERATING.md, and the
embedded TOML parses. Exit status 0 = OK; each failure is printed.
"""
import glob
import os
import re
import sys

import yaml

try:
    import tomllib  # Python 3.11+
except ImportError:  # pragma: no cover
    tomllib = None

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
kdir = os.path.join(root, "server", "deploy", "kubernetes")
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


docs = []
files = sorted(glob.glob(os.path.join(kdir, "*.yaml")))
check(len(files) >= 3, "expected namespace.yaml, etcd.yaml, gpuleased.yaml in " + kdir)
for path in files:
    with open(path) as f:
        try:
            loaded = [d for d in yaml.safe_load_all(f) if d is not None]
        except yaml.YAMLError as e:
            failures.append(f"{path}: not YAML: {e}")
            continue
    for d in loaded:
        where = f"{os.path.basename(path)}:{d.get('kind')}/{(d.get('metadata') or {}).get('name')}"
        check(isinstance(d.get("apiVersion"), str), where + ": no apiVersion")
        check(isinstance(d.get("kind"), str), where + ": no kind")
        check(isinstance((d.get("metadata") or {}).get("name"), str), where + ": no metadata.name")
        if d.get("kind") != "Namespace":
            check((d.get("metadata") or {}).get("namespace") == "gpulease", where + ": not in namespace gpulease")
        docs.append((where, d))

by_kind = {}
for where, d in docs:
    by_kind.setdefault(d["kind"], []).append(d)
for kind in ("Namespace", "Service", "StatefulSet", "DaemonSet", "ConfigMap"):
    check(kind in by_kind, f"no {kind} among the manifests")

if not failures:
    sts = by_kind["StatefulSet"][0]
    svc = [s for s in by_kind["Service"] if s["metadata"]["name"] == sts["spec"]["serviceName"]]
    check(len(svc) == 1, "the StatefulSet's serviceName has no Service")
    client_port = [p["port"] for p in svc[0]["spec"]["ports"] if p["name"] == "client"][0] if svc else None
    members = [f"{sts['metadata']['name']}-{i}.{sts['spec']['serviceName']}.gpulease.svc:{client_port}"
               for i in range(sts["spec"]["replicas"])]
    # Selectors match their templates.
    for d in by_kind["StatefulSet"] + by_kind["DaemonSet"]:
        sel = d["spec"]["selector"]["matchLabels"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        check(all(labels.get(k) == v for k, v in sel.items()),
              f"{d['kind']}/{d['metadata']['name']}: selector does not match the pod labels")
    etcd_cmd = " ".join(sts["spec"]["template"]["spec"]["containers"][0]["command"])
    for i in range(sts["spec"]["replicas"]):
        check(f"etcd-{i}=http://" in etcd_cmd, f"etcd --initial-cluster lacks member etcd-{i}")

    cm = by_kind["ConfigMap"][0]
    toml_text = cm["data"]["gpuleased.toml"]
    if tomllib is not None:
        try:
            conf = tomllib.loads(toml_text)
        except Exception as e:  # noqa: BLE001
            failures.append(f"gpuleased.toml in the ConfigMap does not parse: {e}")
            conf = {}
    else:
        conf = dict(re.findall(r'^(\w+)\s*=\s*(.+)$', toml_text, re.M))
    registry = str(conf.get("registry", "")).strip('"')
    check(registry == "etcd://" + ",".join(members),
          f"registry {registry!r} is not the etcd members {members}")

    with open(os.path.join(root, "docs", "OPERATING.md")) as f:
        operating = f.read()
    aliases = {"authority_keys": "authority_key", "metrics": "metrics"}  # array key / flag name
    for key in conf:
        flag = aliases.get(key, key).replace("_", "-")
        check("`--" + flag in operating or f"`{key}`" in operating,
              f"config key {key} is not documented in docs/OPERATING.md")
    ds = by_kind["DaemonSet"][0]
    container = ds["spec"]["template"]["spec"]["containers"][0]
    for arg in container.get("args", []):
        flag = arg.split("=", 1)[0]
        check(flag.startswith("--") and ("`" + flag) in operating,
              f"gpuleased flag {flag} is not documented in docs/OPERATING.md")
    mounts = {m["name"] for m in container["volumeMounts"]}
    vols = {v["name"] for v in ds["spec"]["template"]["spec"]["volumes"]}
    check(mounts <= vols, f"volume mounts {mounts - vols} have no volume")
    check(any(a.startswith("--config=/etc/gpuleased/") for a in container["args"]),
          "the DaemonSet does not read the ConfigMap's gpuleased.toml")
    ports = {p["containerPort"] for p in container["ports"]}
    listen_port = int(str(conf.get("listen", ":0")).rsplit(":", 1)[1])
    check(listen_port in ports, f"listen port {listen_port} is not a container port")

for f in failures:
    print("FAIL:", f)
print(f"{len(docs)} documents checked, {len(failures)} failures")
sys.exit(1 if failures else 0)
