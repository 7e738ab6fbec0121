#!/usr/bin/env bash
# The main job on the bundled example data: train the digits MLP with
# fixed-point SGD, prove its first steps, write a training certificate and
# verify it. Usage: scripts/demo.sh [STEPS]   (default 4 steps, ~1 minute)
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-4}
cargo build --release -q -p zkaudit-cli
Z=target/release/zkaudit
$Z train --model examples/models/digits_mlp.toml --data examples/data/digits.csv.gz \
    --epochs 2 --batch-size 8 --lr 0.1 --seed 42 --out runs/digits
SRS=${ZKAUDIT_SRS:-params/kzg_bn254.srs}
if [ ! -f "$SRS" ]; then
    $Z srs --k 15 --out "$SRS"   # INSECURE local SRS, enough for the digits step circuit
fi
$Z prove --run runs/digits --steps "$STEPS" --out runs/digits/run.cert
$Z verify runs/digits/run.cert
