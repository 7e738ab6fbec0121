#!/usr/bin/env bash
# An audit through the proving cluster against the same audit proven locally:
# a coordinator on loopback and W workers (T threads each) on this machine,
# the diabetes composition audit (sex = 2 for at least 40%) REPEATS times
# each way, keys cached (the first, untimed run warms the cache).
# usage: scripts/bench_audit_cluster.sh RUN CERT [REPEATS] [WORKERS] [THREADS]
# (needs ZKAUDIT_SRS with k >= 15 and ZKAUDIT_KEYS)
set -euo pipefail
cd "$(dirname "$0")/.."
Z=$PWD/target/release/zkaudit
RUN=$1 CERT=$2 N=${3:-3} W=${4:-2} T=${5:-1}
OUT=$(mktemp -d /tmp/zkaudit-audit-cluster.XXXXXX)
export ZKAUDIT_TOKEN=bench-client-token-0001 ZKAUDIT_WORKER_TOKEN=bench-worker-token-0001
PORT=${PORT:-7791}
$Z coordinator --listen 127.0.0.1:$PORT --data "$OUT/data" >"$OUT/coordinator.log" 2>&1 &
PIDS=($!)
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
sleep 1
for i in $(seq "$W"); do
  $Z worker --coordinator http://127.0.0.1:$PORT --threads "$T" --name "w$i" >"$OUT/w$i.log" 2>&1 &
  PIDS+=($!)
done
A=(composition --run "$RUN" --cert "$CERT" --feature 1 --name sex --in 2 --at-least 40%)
$Z audit "${A[@]}" --out "$OUT/warm.audit" >/dev/null 2>&1
$Z audit "${A[@]}" --coordinator http://127.0.0.1:$PORT --out "$OUT/warm-c.audit" >/dev/null 2>&1
for i in $(seq "$N"); do
  /usr/bin/time -f "local run $i: wall %e s" $Z audit "${A[@]}" --out "$OUT/l$i.audit" 2>&1 >/dev/null | grep "run $i"
  /usr/bin/time -f "cluster ($W workers x $T threads) run $i: wall %e s" \
    $Z audit "${A[@]}" --coordinator http://127.0.0.1:$PORT --out "$OUT/c$i.audit" 2>&1 >/dev/null | grep "run $i"
done
$Z verify "$CERT" --audit "$OUT/c1.audit" | tail -2
ls -l "$OUT"/c1.audit "$OUT"/l1.audit | awk '{print $9 ": " $5 " bytes"}'
grep -h "proven in" "$OUT"/w*.log | tail -8 || true
