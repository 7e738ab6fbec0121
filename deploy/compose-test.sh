#!/usr/bin/env bash
# End-to-end test of the compose deployment: builds the image from local
# files, starts a coordinator and 2 workers, submits the digits example job,
# kills one worker while it proves, and checks that the job still completes
# and that its certificate verifies. Tears everything down on exit.
# Skips (exit 0, with the reason) when no Docker engine or Compose is usable.
# Usage: deploy/compose-test.sh [STEPS]   (default 8)
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-8}
if ! docker info >/dev/null 2>&1; then
    echo "compose test SKIPPED: no usable Docker engine (docker info failed)"
    exit 0
fi
if docker compose version >/dev/null 2>&1; then
    DC=(docker compose)
elif command -v docker-compose >/dev/null; then
    DC=(docker-compose)
else
    echo "compose test SKIPPED: neither 'docker compose' nor docker-compose is installed"
    exit 0
fi
Z=$PWD/target/release/zkaudit
[ -x "$Z" ] || cargo build --release -q -p zkaudit-cli
WORK=$(mktemp -d)
export COMPOSE_PROJECT_NAME=zkaudit-ci-$$
export ZKAUDIT_IMAGE=zkaudit:ci-$$
export ZKAUDIT_ENV_FILE=$WORK/zkaudit.env
export ZKAUDIT_PORT=$((20000 + $$ % 20000))
export ZKAUDIT_HTTP_PORT=$((ZKAUDIT_PORT + 1))
export ZKAUDIT_LEASE_SECS=6
export ZKAUDIT_WORKER_THREADS=1
TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
WORKER_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf 'ZKAUDIT_TOKEN=%s\nZKAUDIT_WORKER_TOKEN=%s\n' "$TOKEN" "$WORKER_TOKEN" > "$ZKAUDIT_ENV_FILE"
cleanup() {
    rc=$?
    if [ $rc -ne 0 ]; then
        echo "--- compose logs (test failed) ---"
        "${DC[@]}" logs --no-color --tail 60 || true
    fi
    "${DC[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
    docker rmi "$ZKAUDIT_IMAGE" >/dev/null 2>&1 || true
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
fail() { echo "compose test FAILED: $*" >&2; exit 1; }
. deploy/cluster-test-lib.sh

deploy/build-local-image.sh "$Z" "$ZKAUDIT_IMAGE"
"${DC[@]}" up -d --scale worker=2
for _ in $(seq 60); do
    "$Z" healthcheck "http://127.0.0.1:$ZKAUDIT_HTTP_PORT/healthz" >/dev/null 2>&1 && break
    sleep 1
done
"$Z" healthcheck "http://127.0.0.1:$ZKAUDIT_HTTP_PORT/healthz" || fail "coordinator not healthy"

# Workers must not be able to replace the SRS or plant keys the coordinator reads.
mounts() { docker inspect -f '{{range .Mounts}}{{.Destination}}={{.RW}}={{.Name}} {{end}}' "$1"; }
coord_keys=$(mounts "$("${DC[@]}" ps -q coordinator)" | tr ' ' '\n' | grep '^/keys=' | cut -d= -f3)
[ -n "$coord_keys" ] || fail "the coordinator has no /keys volume"
for c in $("${DC[@]}" ps -q worker); do
    m=$(mounts "$c")
    echo "$m" | tr ' ' '\n' | grep -qx '/params=false=.*' || fail "worker ${c:0:12} can write /params: $m"
    echo "$m" | grep -q "=$coord_keys " && fail "worker ${c:0:12} mounts the coordinator's key volume: $m"
done
echo "workers mount the SRS read-only and keys of their own"

export ZKAUDIT_COORDINATOR=http://127.0.0.1:$ZKAUDIT_PORT ZKAUDIT_TOKEN=$TOKEN
JOB=$(submit_digits_job "$STEPS" compose-test)
echo "submitted $JOB ($STEPS steps)"
victim=$(kill_busy_worker "http://127.0.0.1:$ZKAUDIT_HTTP_PORT" "$JOB" "${DC[@]}" ps -q worker)
echo "killed worker container ${victim:0:12} mid-task"
verify_job "$JOB" "$STEPS" "$("${DC[@]}" ps -q coordinator)"
expiries=$(python3 -c 'import sys, urllib.request; print(next(l.split()[1] for l in urllib.request.urlopen(sys.argv[1]).read().decode().splitlines() if l.startswith("zkaudit_lease_expiries_total")))' "http://127.0.0.1:$ZKAUDIT_HTTP_PORT/metrics")
[ "$expiries" != "0" ] || fail "the killed worker's lease never expired"
echo "compose test PASSED: $STEPS steps, one worker killed mid-task (lease expiries: ${expiries:-?}), certificate VALID"
