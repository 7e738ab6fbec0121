#!/usr/bin/env bash
# Renders the coordinator's status page in headless Chromium against a live
# coordinator and worker proving a small digits job, checks that the rendered
# page (after its script ran) shows the job, its progress and the worker, and
# saves a screenshot. Skips (exit 0, with the reason) without Chromium.
# Usage: deploy/status-page-test.sh [SCREENSHOT.png]
set -euo pipefail
cd "$(dirname "$0")/.."
SHOT=${1:-}
CHROME=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$CHROME" ]; then
    echo "status page test SKIPPED: no chromium (Debian: apt-get install chromium)"
    exit 0
fi
. deploy/host-processes.sh
fail() { echo "status page test FAILED: $*" >&2; exit 1; }
export ZKAUDIT_TOKEN=status-test-token ZKAUDIT_WORKER_TOKEN=status-test-worker-token ZKAUDIT_SRS=$WORK/srs ZKAUDIT_KEYS=$WORK/keys
"$Z" srs --k 14 --out "$ZKAUDIT_SRS" >/dev/null 2>&1
"$Z" coordinator --listen 127.0.0.1:0 --http 127.0.0.1:0 --data "$WORK/data" 2>"$WORK/coordinator.log" &
pids+=($!)
for _ in $(seq 100); do grep -q "listening on" "$WORK/coordinator.log" && break; sleep 0.1; done
line=$(grep "listening on" "$WORK/coordinator.log") || fail "coordinator did not start"
GRPC=$(echo "$line" | sed -E 's/.*listening on ([^ ]+).*/\1/')
HTTP=$(echo "$line" | sed -E 's|.*http://([^/]+)/metrics.*|\1|')
export ZKAUDIT_COORDINATOR=http://$GRPC
"$Z" worker --threads 1 --name page-worker 2>"$WORK/worker.log" &
pids+=($!)
"$Z" train --model examples/models/digits_mlp.toml --data examples/data/digits.csv.gz \
    --epochs 1 --batch-size 8 --lr 0.1 --seed 42 --out "$WORK/run" >/dev/null
JOB=$("$Z" submit --run "$WORK/run" --steps 2 --k 14 --name page-test | awk '{print $2; exit}')
"$Z" watch "$JOB" >/dev/null || fail "job failed"
render() {
    "$CHROME" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,800 \
        --virtual-time-budget=4000 "$@" "http://$HTTP/" 2>/dev/null
}
DOM=$(render --dump-dom)
for want in "$JOB" "page-test" "page-worker" ">done<" "2/2" "steps 0-0\|step 0"; do
    echo "$DOM" | grep -q "$want" || fail "rendered page lacks '$want'"
done
if [ -n "$SHOT" ]; then
    mkdir -p "$(dirname "$SHOT")"
    (cd "$WORK" && render --screenshot="$WORK/shot.png" >/dev/null)
    [ -s "$WORK/shot.png" ] || fail "no screenshot"
    cp "$WORK/shot.png" "$SHOT"
    echo "screenshot: $SHOT"
fi
echo "status page test PASSED: $JOB rendered with its tasks and worker in headless Chromium"
