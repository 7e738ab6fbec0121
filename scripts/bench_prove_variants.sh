#!/usr/bin/env bash
# Whole `zkaudit prove` commands on one run, alternated (A B A B ...)
# because this machine's speed drifts between series: spans, leaf sizes,
# modes compared on the same model and steps.
#   ZKAUDIT_SRS=FILE scripts/bench_prove_variants.sh BIN RUNS OUTDIR CONFIG ARGS...
# CONFIG is MODEL:BATCH, a model under examples/models/, trained once (1
# epoch, lr 0.05, seed 42) on synthetic MNIST-shape data
# (scripts/make_mnist_shape.py, 640 rows) or on ZKAUDIT_DATA when set. Each
# further argument is one variant's `prove` options (quoted, e.g. '--steps 4
# --span auto --mode succinct --agg-k 17 --workers 0'); the SRS must cover
# its sizes. Each variant has its own key cache, so its first run includes
# key generation. Per run: the command's own figures, wall time and peak
# RSS, and a trace of resident memory every 5 s (OUTDIR/vN.rM.rss:
# seconds since start, KiB) to read the peak of a part of the run off its
# progress lines (OUTDIR/vN.rM.log). Every certificate is verified.
# Example (BENCHMARKS.md, "Several leaves"):
#   ZKAUDIT_SRS=srs20.bin scripts/bench_prove_variants.sh zkaudit 1 /tmp/leaves \
#     mnist_mlp128:32 '--steps 6 --span auto --mode succinct --workers 0' \
#     '--steps 6 --span 3 --k 19 --mode succinct --workers 0'
set -euo pipefail
BIN=$1 RUNS=$2 OUT=$3 CFG=$4
shift 4
[ $# -ge 1 ] || { echo "give at least one variant's prove options" >&2; exit 2; }
: "${ZKAUDIT_SRS:?set ZKAUDIT_SRS to an SRS file covering the sizes of the variants}"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
model=${CFG%%:*} batch=${CFG##*:}
[[ $CFG == *:* && $batch =~ ^[1-9][0-9]*$ && -f $ROOT/examples/models/$model.toml ]] ||
    { echo "CONFIG must be MODEL:BATCH with examples/models/MODEL.toml, got '$CFG'" >&2; exit 2; }
mkdir -p "$OUT"
data=${ZKAUDIT_DATA:-$OUT/mnist_shape.npy}
[ -n "${ZKAUDIT_DATA:-}" ] || [ -f "$data" ] ||
    python3 "$ROOT/scripts/make_mnist_shape.py" "$data" 640
run="$OUT/run-$model-b$batch"
[ -d "$run" ] || "$BIN" train --model "$ROOT/examples/models/$model.toml" --data "$data" \
    --epochs 1 --batch-size "$batch" --lr 0.05 --seed 42 --out "$run" >"$run.train.log"
one() { # variant number, run number, options
    local tag="v$1.r$2" start pid
    start=$(date +%s)
    # shellcheck disable=SC2086 # the options are meant to split
    /usr/bin/time -f "v$1 run $2: wall %e s, peak RSS %M KB" "$BIN" prove --run "$run" $3 \
        --keys "$OUT/keys-v$1" --out "$OUT/$tag.cert" >"$OUT/$tag.log" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        ps -o rss= --ppid "$pid" 2>/dev/null | awk -v t=$(($(date +%s) - start)) \
            '{s += $1} END {if (s > 0) print t, s}' >>"$OUT/$tag.rss"
        sleep 5
    done
    wait "$pid" || { echo "v$1 run $2 failed:" >&2; tail -5 "$OUT/$tag.log" >&2; exit 1; }
    grep -v '^warning' "$OUT/$tag.log" | grep -E '^(proved|v[0-9]+ run|--span)' | sed "s/^/v$1: /"
    local verdict
    verdict=$("$BIN" verify --keys "$OUT/keys-v$1" "$OUT/$tag.cert" 2>&1) &&
        grep -q '^VALID' <<<"$verdict" ||
        { echo "v$1 run $2: the certificate did not verify:" >&2; echo "$verdict" >&2; exit 1; }
}
for r in $(seq "$RUNS"); do
    v=0
    for opts in "$@"; do
        v=$((v + 1))
        one "$v" "$r" "$opts"
    done
done
