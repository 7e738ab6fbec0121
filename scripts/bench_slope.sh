#!/usr/bin/env bash
# How a step proof's cost grows with batch and model size: one binary,
# several MODEL:BATCH configurations proved in turn (C1 C2 C3 C1 C2 C3 ...),
# because this machine's speed drifts between series.
#   ZKAUDIT_SRS=FILE scripts/bench_slope.sh RUNS OUTDIR CONFIG...
# e.g. scripts/bench_slope.sh 3 /tmp/slope mnist_mlp128:32 mnist_mlp128:16 mnist_mlp:16
#      scripts/bench_slope.sh 3 /tmp/models digits_cnn:8:digits.csv.gz cancer_sigmoid:16:breast_cancer.csv
# Trains each model once on synthetic MNIST-shape data
# (scripts/make_mnist_shape.py), or on examples/data/DATA when a
# configuration names it (MODEL:BATCH:DATA), proves its step 0 once (key generation,
# not part of the series), then proves step 1 RUNS times per
# configuration with the automatic shape; prints each proof's own figures
# (k, cells, columns, prove time, proof size) with wall time and peak RSS,
# and verifies every proof.
set -euo pipefail
RUNS=$1 OUT=$2
shift 2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
Z=${Z:-$ROOT/target/release/zkaudit}
: "${ZKAUDIT_SRS:?set ZKAUDIT_SRS to an SRS file (k >= 17)}"
mkdir -p "$OUT"
[ -f "$OUT/mnist_shape.npy" ] || python3 "$ROOT/scripts/make_mnist_shape.py" "$OUT/mnist_shape.npy" 640
one() { # name, step
    ZKAUDIT_KEYS="$OUT/keys-$1" /usr/bin/time -f "$1 step $2: wall %e s, peak RSS %M KB" \
        "$Z" prove-step --run "$OUT/$1" --step "$2" --out "$OUT/$1.proof" 2>&1 |
        grep -v '^warning' | sed "s/^/$1: /"
    ZKAUDIT_KEYS="$OUT/keys-$1" "$Z" verify-step "$OUT/$1.proof" 2>&1 | grep -q VALID ||
        { echo "$1: proof of step $2 did not verify" >&2; exit 1; }
}
names=()
for cfg in "$@"; do
    IFS=: read -r model batch data <<<"$cfg"
    name=$model-b$batch
    data=${data:+$ROOT/examples/data/$data}
    names+=("$name")
    "$Z" train --model "$ROOT/examples/models/$model.toml" --data "${data:-$OUT/mnist_shape.npy}" --epochs 1 \
        --batch-size "$batch" --lr 0.05 --seed 42 --out "$OUT/$name" >"$OUT/$name.train.log"
    rm -rf "$OUT/keys-$name"
    one "$name" 0
done
for i in $(seq "$RUNS"); do
    for name in "${names[@]}"; do
        one "$name" 1
    done
done
