#!/usr/bin/env bash
# A/B timing of a span leaf proof with two zkaudit binaries, alternated
# (A B A B ...) because this machine's speed drifts between series.
#   scripts/bench_span_ab.sh BIN_A BIN_B [RUNS] [SPAN] [K]
# Trains the digits MLP (1 epoch, batch 8, seed 42) once, writes a k = K
# insecure SRS, warms each binary's own key cache (keygen, not timed), then
# times `prove --mode succinct --span SPAN --steps SPAN` (one leaf: no
# aggregation) RUNS times per binary, and verifies each certificate.
set -euo pipefail
A=$1 B=$2 RUNS=${3:-3} SPAN=${4:-4} K=${5:-17}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W"
"$A" train --model "$ROOT/examples/models/digits_mlp.toml" --data "$ROOT/examples/data/digits.csv.gz" \
    --epochs 1 --batch-size 8 --lr 0.1 --seed 42 --out run >/dev/null 2>&1
"$A" srs --k "$K" --out srs.bin >/dev/null 2>&1
one() { # binary, label
    local t0 t1
    t0=$(date +%s.%N)
    ZKAUDIT_SRS=srs.bin ZKAUDIT_KEYS=keys-$2 RUST_LOG=warn "$1" prove --run run --steps "$SPAN" \
        --mode succinct --span "$SPAN" --k "$K" --agg-k "$K" --workers 0 --out "$2.cert" >/dev/null 2>&1
    t1=$(date +%s.%N)
    ZKAUDIT_SRS=srs.bin ZKAUDIT_KEYS=keys-$2 "$1" verify "$2.cert" 2>/dev/null | grep -q VALID
    echo "$(echo "$t1 - $t0" | bc)"
}
one "$A" a >/dev/null
one "$B" b >/dev/null
for i in $(seq "$RUNS"); do
    echo "A run $i: $(one "$A" a) s"
    echo "B run $i: $(one "$B" b) s"
done
