#!/usr/bin/env bash
# Checks the monitoring configuration against a real Prometheus: validates
# deploy/prometheus.yml with promtool, scrapes a live coordinator with it, and
# runs every query of the Grafana dashboard (deploy/grafana/dashboards) through
# Prometheus's API, failing on a query error or a query with no series.
# Skips (exit 0, with the reason) without Prometheus (Debian: apt-get install prometheus).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
    echo "monitoring check SKIPPED: no prometheus/promtool (Debian: apt-get install prometheus)"
    exit 0
fi
promtool check config deploy/prometheus.yml >/dev/null
. deploy/host-processes.sh
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP=$(free_port)
PROM=$(free_port)
"$Z" coordinator --allow-unauthenticated --listen 127.0.0.1:0 --http "127.0.0.1:$HTTP" \
    --data "$WORK/data" --srs "$WORK/none.srs" 2>"$WORK/coordinator.log" &
pids+=($!)
sed "s/coordinator:9100/127.0.0.1:$HTTP/" deploy/prometheus.yml > "$WORK/prometheus.yml"
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
    --web.listen-address="127.0.0.1:$PROM" 2>"$WORK/prometheus.log" &
pids+=($!)
python3 - "$PROM" deploy/grafana/dashboards/zkaudit.json <<'PY'
import json, sys, time, urllib.parse, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}/api/v1"
def get(path):
    return json.load(urllib.request.urlopen(base + path, timeout=5))
deadline = time.time() + 60
while True:
    try:
        if get("/query?query=up")["data"]["result"][0]["value"][1] == "1":
            break
    except Exception:
        pass
    if time.time() > deadline:
        sys.exit("monitoring check FAILED: Prometheus never scraped the coordinator")
    time.sleep(1)
time.sleep(6)  # a second scrape, so that rate() has two samples
dash = json.load(open(sys.argv[2]))
n = 0
for panel in dash["panels"]:
    for t in panel["targets"]:
        r = get("/query?" + urllib.parse.urlencode({"query": t["expr"]}))
        if r["status"] != "success" or not r["data"]["result"]:
            sys.exit(f"monitoring check FAILED: panel {panel['title']!r}: {t['expr']} -> {r}")
        n += 1
print(f"monitoring check PASSED: prometheus.yml valid, coordinator scraped, {n} dashboard queries answered")
PY
