#!/usr/bin/env bash
# A/B timing of one SGD step proof at issue 17's model sizes with two
# zkaudit binaries, alternated (A B A B ...) because this machine's speed
# drifts between series.
#   ZKAUDIT_SRS=FILE scripts/bench_step_ab.sh BIN_A BIN_B [CONFIG] [RUNS] [OUTDIR]
# CONFIG is MODEL:BATCH (default mnist_mlp128:32, a model under
# examples/models/). Trains it once on synthetic MNIST-shape data
# (scripts/make_mnist_shape.py), proves step 0 with each binary (key
# generation included, with its own key cache), then proves step 1 RUNS
# times per binary, alternating, with the shape's automatic k; prints each
# run's own figures (k, cells, columns, prove time, proof size) with wall
# time and peak RSS, and verifies every proof.
set -euo pipefail
A=$1 B=$2 CFG=${3:-mnist_mlp128:32} RUNS=${4:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${5:-/tmp/zkaudit-ab}
: "${ZKAUDIT_SRS:?set ZKAUDIT_SRS to an SRS file (k >= 17)}"
mkdir -p "$OUT"
model=${CFG%%:*} batch=${CFG##*:} name=${CFG/:/-b}
[ -f "$OUT/mnist_shape.npy" ] || python3 "$ROOT/scripts/make_mnist_shape.py" "$OUT/mnist_shape.npy" 640
"$A" train --model "$ROOT/examples/models/$model.toml" --data "$OUT/mnist_shape.npy" --epochs 1 \
    --batch-size "$batch" --lr 0.05 --seed 42 --out "$OUT/$name" >"$OUT/$name.train.log"
one() { # binary, label, step
    ZKAUDIT_KEYS="$OUT/keys-$name-$2" /usr/bin/time -f "$2 step $3: wall %e s, peak RSS %M KB" \
        "$1" prove-step --run "$OUT/$name" --step "$3" --out "$OUT/$name.$2.proof" 2>&1 |
        grep -v '^warning' | sed "s/^/$2: /"
    ZKAUDIT_KEYS="$OUT/keys-$name-$2" "$1" verify-step "$OUT/$name.$2.proof" 2>&1 | grep -q VALID ||
        { echo "$2: proof of step $3 did not verify" >&2; exit 1; }
}
rm -rf "$OUT/keys-$name-a" "$OUT/keys-$name-b"
one "$A" a 0
one "$B" b 0
for i in $(seq "$RUNS"); do
    one "$A" a 1
    one "$B" b 1
done
