#!/usr/bin/env bash
# Step-circuit benchmarks: keygen (empty key cache) and prove/verify of three
# steps for each configuration; prints wall time and peak RSS per command.
# usage: scripts/bench_step.sh [OUTDIR]   (needs params/kzg_bn254.srs with k >= 18)
set -euo pipefail
cd "$(dirname "$0")/.."
Z=target/release/zkaudit
OUT=${1:-/tmp/zkaudit-bench}
mkdir -p "$OUT"
python3 scripts/make_mnist_shape.py "$OUT/mnist_shape.npy" 640
declare -A ARGS=(
  [digits]="--model examples/models/digits_mlp.toml --data examples/data/digits.csv.gz --epochs 1 --batch-size 8 --lr 0.1"
  [cancer]="--model examples/models/cancer_logreg.toml --data examples/data/breast_cancer.csv --epochs 1 --batch-size 16 --lr 0.5"
  [mnist]="--model examples/models/mnist_mlp.toml --data $OUT/mnist_shape.npy --epochs 1 --batch-size 16 --lr 0.05"
)
for name in ${NAMES:-digits cancer mnist}; do
  $Z train ${ARGS[$name]} --seed 42 --out "$OUT/$name" > "$OUT/$name.train.log"
  export ZKAUDIT_KEYS="$OUT/keys-$name"
  rm -rf "$ZKAUDIT_KEYS"
  for s in 0 1 2 3; do
    /usr/bin/time -f "$name step $s: wall %e s, peak RSS %M KB" $Z prove-step --run "$OUT/$name" --step $s --out "$OUT/$name.s$s.proof" 2>&1 | grep -v '^warning'
  done
  for s in 1 2 3; do
    /usr/bin/time -f "$name verify $s: wall %e s, peak RSS %M KB" $Z verify-step "$OUT/$name.s$s.proof" 2>&1 | cut -c1-40
  done
  ls -l "$OUT/$name.s1.proof" | awk -v n=$name '{print n " proof file bytes: " $5}'
done
