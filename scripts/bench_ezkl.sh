#!/usr/bin/env bash
# Issue 17's peer comparison: a zkaudit step proof of the digits MLP
# (64-16-10, batch 8: forward pass, backward pass, SGD update, weight
# commitments, Merkle membership of the batch) against ezkl 23.0.5 (the
# Python package) proving only the forward pass of the same model, with the
# same weights (step 0's, exported by `zkaudit export`), on the same batch,
# weights and inputs private. Alternated (ezkl, zkaudit, ezkl, ...) in one
# series because this machine's speed drifts between series; each figure is
# the wall time of one whole command (key loading included), and every proof
# is verified.
#   scripts/bench_ezkl.sh [RUNS] [OUTDIR]
# Needs: python3 -m pip install ezkl==23.0.5 onnx; target/release/zkaudit.
set -euo pipefail
RUNS=${1:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
Z=${Z:-$ROOT/target/release/zkaudit}
OUT=${2:-/tmp/zkaudit-ezkl}
mkdir -p "$OUT"
cd "$OUT"
python3 -c 'import ezkl, sys; sys.exit(ezkl.__version__ != "23.0.5")' ||
    { echo "needs ezkl 23.0.5: python3 -m pip install ezkl==23.0.5 onnx" >&2; exit 1; }
data=$ROOT/examples/data/digits.csv.gz
"$Z" train --model "$ROOT/examples/models/digits_mlp.toml" --data "$data" --epochs 1 \
    --batch-size 8 --lr 0.1 --seed 42 --out run >train.log
"$Z" export --run run --step 0 --out step0.onnx >/dev/null
python3 "$ROOT/scripts/ezkl_forward.py" setup step0.onnx "$data" 8 ezkl >ezkl-setup.log 2>&1 ||
    { tail -20 ezkl-setup.log >&2; exit 1; }
grep 'ezkl setup' ezkl-setup.log
[ -f srs.bin ] || "$Z" srs --k 15 --out srs.bin >/dev/null 2>&1
export ZKAUDIT_SRS=$OUT/srs.bin ZKAUDIT_KEYS=$OUT/keys
"$Z" prove-step --run run --step 0 --out warm.proof >/dev/null 2>&1 # key generation, not timed
ez() {
    local t0 t1
    t0=$(date +%s.%N)
    python3 "$ROOT/scripts/ezkl_forward.py" prove ezkl >ezkl-prove.log 2>&1 ||
        { tail -5 ezkl-prove.log >&2; exit 1; }
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc
}
zk() {
    local t0 t1
    t0=$(date +%s.%N)
    "$Z" prove-step --run run --step 1 --out step1.proof >zk-prove.log 2>&1
    t1=$(date +%s.%N)
    "$Z" verify-step step1.proof 2>/dev/null | grep -q VALID || { echo "zkaudit proof did not verify" >&2; exit 1; }
    echo "$t1 - $t0" | bc
}
: >series.txt
for i in $(seq "$RUNS"); do
    e=$(ez) z=$(zk)
    echo "run $i: ezkl forward $e s, zkaudit step $z s" | tee -a series.txt
done
python3 - series.txt <<'PY'
import re, statistics, sys
e, z = [], []
for line in open(sys.argv[1]):
    a, b = map(float, re.findall(r"([0-9.]+) s", line))
    e.append(a); z.append(b)
me, mz = statistics.median(e), statistics.median(z)
print(f"medians over {len(e)} runs: ezkl forward {me:.2f} s, zkaudit step {mz:.2f} s, ratio {mz/me:.2f}")
PY
