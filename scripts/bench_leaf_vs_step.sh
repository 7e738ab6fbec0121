#!/usr/bin/env bash
# Per-step cost of a span leaf against a standalone step proof, alternated
# (leaf, step, leaf, step ...) because this machine's speed drifts between
# series.
#   scripts/bench_leaf_vs_step.sh [RUNS] [SPAN] [OUTDIR]
# Trains the digits MLP (1 epoch, batch 8, seed 42) once, writes a k = 17
# insecure SRS (smaller sizes are derived from it), warms both key caches
# (keygen, not timed; `--agg-k 17` only satisfies the SRS check: one leaf
# is not aggregated), then times RUNS times each: `prove-step` of one step
# with the automatic shape, and `prove --mode succinct --span SPAN --steps
# SPAN` (one leaf, no aggregation) with the automatic leaf shape. Each
# command's own figures (k, columns, cells) are printed with its wall time
# and peak RSS; every proof and certificate is verified.
set -euo pipefail
RUNS=${1:-3} SPAN=${2:-64}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
Z=${Z:-$ROOT/target/release/zkaudit}
OUT=${3:-/tmp/zkaudit-leaf}
mkdir -p "$OUT"
cd "$OUT"
[ -d run ] || "$Z" train --model "$ROOT/examples/models/digits_mlp.toml" \
    --data "$ROOT/examples/data/digits.csv.gz" --epochs 1 --batch-size 8 --lr 0.1 --seed 42 \
    --out run >/dev/null
[ -f srs.bin ] || "$Z" srs --k 17 --out srs.bin >/dev/null
export ZKAUDIT_SRS=$OUT/srs.bin
step() { # label
    ZKAUDIT_KEYS=keys-step /usr/bin/time -f "step $1: wall %e s, peak RSS %M KB" \
        "$Z" prove-step --run run --step 1 --out step.proof 2>&1 | grep -v '^warning' | sed "s/^/step $1: /"
    ZKAUDIT_KEYS=keys-step "$Z" verify-step step.proof 2>&1 | grep -q VALID ||
        { echo "step proof did not verify" >&2; exit 1; }
}
leaf() { # label
    ZKAUDIT_KEYS=keys-leaf RUST_LOG=warn,zkaudit_worker=info /usr/bin/time \
        -f "leaf $1: wall %e s, peak RSS %M KB" "$Z" prove --run run --steps "$SPAN" \
        --mode succinct --span "$SPAN" --agg-k 17 --workers 0 --out leaf.cert 2>&1 |
        grep -v '^warning' | sed "s/^/leaf $1: /"
    ZKAUDIT_KEYS=keys-leaf "$Z" verify leaf.cert 2>&1 | grep -q VALID ||
        { echo "leaf certificate did not verify" >&2; exit 1; }
}
step warm
leaf warm
for i in $(seq "$RUNS"); do
    leaf "$i"
    step "$i"
done
