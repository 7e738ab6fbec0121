#!/usr/bin/env bash
# Offline check of the Kubernetes manifests (deploy/k8s): renders the
# kustomize base and the autoscale overlay with `kubectl kustomize`,
# validates every object against the Kubernetes schema (strict: unknown
# fields are errors) with the kubernetes-validate package, and checks what
# a schema cannot: one coordinator replica, workers pointed at the
# coordinator's Service and port, token files on mounted secret keys,
# probes on the coordinator's /healthz port.
# Skips (exit 0, with the reason) only where no kubectl or kustomize can be
# found or installed.
# Usage: deploy/k8s-check.sh [KUBERNETES_VERSION]   (default 1.30.0)
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${1:-1.30.0}
if command -v kubectl >/dev/null; then
    render() { kubectl kustomize "$1"; }
elif command -v kustomize >/dev/null; then
    render() { kustomize build "$1"; }
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
    && apt-get install -y -qq kubernetes-client >/dev/null 2>&1 && command -v kubectl >/dev/null; then
    render() { kubectl kustomize "$1"; }
else
    echo "k8s check SKIPPED: neither kubectl nor kustomize is installed or installable here"
    exit 0
fi
if ! command -v kubernetes-validate >/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for overlay in base autoscale; do
    render "deploy/k8s/$overlay" > "$WORK/$overlay.yaml"
    kubernetes-validate --strict --quiet -k "$VERSION" "$WORK/$overlay.yaml"
    python3 - "$WORK/$overlay.yaml" "$overlay" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
def fail(msg):
    sys.exit(f"k8s check FAILED ({sys.argv[2]}): {msg}")
sts = by.get(("StatefulSet", "zkaudit-coordinator")) or fail("no coordinator StatefulSet")
dep = by.get(("Deployment", "zkaudit-worker")) or fail("no worker Deployment")
svc = by.get(("Service", sts["spec"]["serviceName"])) or fail("no Service named by the StatefulSet")
if sts["spec"]["replicas"] != 1:
    fail("the coordinator must be exactly one replica (one sled store)")
if svc["spec"].get("clusterIP") != "None":
    fail("the coordinator's Service must be headless")
if not all(svc["spec"]["selector"].get(k) == v for k, v in sts["spec"]["template"]["metadata"]["labels"].items()
           if k in svc["spec"]["selector"]):
    fail("the Service does not select the coordinator pod")
ports = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
if "metrics" not in ports:
    fail("no port named metrics for Prometheus")
def env(c):
    return {e["name"]: e.get("value") for e in c.get("env", [])}
def check_files(pod, c):
    mounts = {}
    for m in c.get("volumeMounts", []):
        vol = next((v for v in pod.get("volumes", []) if v["name"] == m["name"]), {})
        if "secret" in vol:
            items = vol["secret"].get("items")
            keys = [i["path"] for i in items] if items else ["client-token", "worker-token"]
            mounts[m["mountPath"]] = keys
    for name, value in env(c).items():
        if name.endswith("_TOKEN_FILE"):
            d, _, f = value.rpartition("/")
            if f not in mounts.get(d, []):
                fail(f"{c['name']}: {name}={value} is not a mounted secret key")
coord = sts["spec"]["template"]["spec"]["containers"][0]
work = dep["spec"]["template"]["spec"]["containers"][0]
check_files(sts["spec"]["template"]["spec"], coord)
check_files(dep["spec"]["template"]["spec"], work)
url = env(work).get("ZKAUDIT_COORDINATOR", "")
host, _, port = url.removeprefix("http://").partition(":")
if host != svc["metadata"]["name"] or int(port) != ports.get("grpc"):
    fail(f"workers connect to {url}, the coordinator's Service is {svc['metadata']['name']}:{ports.get('grpc')}")
cports = {p["name"] for p in coord["ports"]}
for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
    p = coord.get(probe) or fail(f"the coordinator has no {probe}")
    if p["httpGet"]["path"] != "/healthz" or p["httpGet"]["port"] not in cports:
        fail(f"{probe} is not on the coordinator's /healthz port")
if "limits" not in work.get("resources", {}) or "memory" not in work["resources"]["limits"]:
    fail("workers need a memory limit (they offer it to memory-aware leasing)")
print(f"{sys.argv[2]}: {len(docs)} objects valid ({', '.join(sorted(k for k, _ in by))})")
PY
done
echo "k8s check PASSED: deploy/k8s renders and validates against Kubernetes $VERSION"
