#!/usr/bin/env bash
# Issue 17's model sizes: the 784-32-10 MLP at batch 16 and the 784-128-10
# MLP (101,770 parameters) at batch 32, on synthetic MNIST-shape data.
# Trains each, empties its key cache, proves steps 0..RUNS (step 0 includes
# key generation) and verifies the last; prints the command's own figures
# (k, cells, columns, keys and prove time, proof bytes) with wall time and
# peak RSS from /usr/bin/time.
# K (default 20) fixes the circuit size, so that no SRS downsizing (minutes
# at k = 19, once) enters the figures; K= (empty) lets the shape choose.
# usage: ZKAUDIT_SRS=FILE (k >= K) [RUNS=3] [K=20] [CONFIGS="mnist_mlp:16 mnist_mlp128:32"] \
#        scripts/bench_real_size.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
Z=${Z:-target/release/zkaudit}
OUT=${1:-/tmp/zkaudit-size}
RUNS=${RUNS:-3}
K=${K-20}
mkdir -p "$OUT"
[ -f "$OUT/mnist_shape.npy" ] || python3 scripts/make_mnist_shape.py "$OUT/mnist_shape.npy" 640
for cfg in ${CONFIGS:-mnist_mlp:16 mnist_mlp128:32}; do
  model=${cfg%%:*} batch=${cfg##*:} name=${cfg/:/-b}
  $Z train --model "examples/models/$model.toml" --data "$OUT/mnist_shape.npy" --epochs 1 \
    --batch-size "$batch" --lr 0.05 --seed 42 --out "$OUT/$name" > "$OUT/$name.train.log"
  export ZKAUDIT_KEYS="$OUT/keys-$name"
  rm -rf "$ZKAUDIT_KEYS"
  for s in $(seq 0 "$RUNS"); do
    /usr/bin/time -f "$name step $s: wall %e s, peak RSS %M KB" \
      $Z prove-step --run "$OUT/$name" --step "$s" ${K:+--k "$K"} --out "$OUT/$name.s$s.proof" 2>&1 | grep -v '^warning'
  done
  /usr/bin/time -f "$name verify: wall %e s, peak RSS %M KB" \
    $Z verify-step "$OUT/$name.s$RUNS.proof" 2>&1 | grep -v '^warning' | cut -c1-120
done
