#!/usr/bin/env bash
# Audit benchmarks on the bundled examples: prove (keys cached from an earlier
# run unless KEYS is empty), verify, audit file size; then the accuracy audit's
# cost against the test-set size. Each line: wall time and peak RSS.
# usage: scripts/bench_audits.sh DIABETES_RUN DIABETES_CERT DIGITS_RUN DIGITS_CERT [REPEATS] [DIGITS_REPEATS]
# (needs ZKAUDIT_SRS with k >= 17; keys in ZKAUDIT_KEYS)
set -euo pipefail
cd "$(dirname "$0")/.."
Z=target/release/zkaudit
DR=$1 DC=$2 GR=$3 GC=$4 N=${5:-3} NG=${6:-1}
OUT=${OUT:-/tmp/zkaudit-audit-bench}
mkdir -p "$OUT"
t() { # repeats, name, command...
  local n=$1 name=$2; shift 2
  for i in $(seq "$n"); do
    /usr/bin/time -f "$name run $i: wall %e s, peak RSS %M KB" "$@" 2>&1 >/dev/null | grep -E "run $i:"
  done
}
t "$N" "diabetes composition sex=2 >=40%" $Z audit composition --run "$DR" --cert "$DC" --feature 1 --name sex --in 2 --at-least 40% --out "$OUT/sex.audit"
t "$N" "diabetes composition age 60..79 >=10% reveal" $Z audit composition --run "$DR" --cert "$DC" --feature 0 --name age --in 60..79 --at-least 10% --reveal --out "$OUT/age.audit"
t "$N" "diabetes fairness sex gap <=15%" $Z audit fairness --run "$DR" --cert "$DC" --group-feature 1 --name sex --group-in 2 --max-gap 15% --out "$OUT/fair.audit"
t "$NG" "digits exclusion (4-item blocklist)" $Z audit exclusion --run "$GR" --cert "$GC" --blocklist examples/data/digits_blocklist.csv --chunk 128 --out "$OUT/excl.audit"
t "$NG" "digits inclusion" $Z audit inclusion --run "$GR" --cert "$GC" --record examples/data/digits_consented.csv --out "$OUT/incl.audit"
t "$NG" "digits accuracy >=85% (359 test records)" $Z audit accuracy --run "$GR" --cert "$GC" --at-least 85% --out "$OUT/acc.audit"
t "$NG" "digits counterfactual pixel ${CF_FEATURE:-20} in {${CF_VALUES:-0,16}}, 64 inputs" $Z audit counterfactual --run "$GR" --cert "$GC" --feature "${CF_FEATURE:-20}" --values "${CF_VALUES:-0,16}" --limit 64 --chunk 16 --out "$OUT/cf.audit"
for a in sex age fair; do
  /usr/bin/time -f "verify $a: wall %e s, peak RSS %M KB" $Z verify "$DC" --audit "$OUT/$a.audit" 2>&1 | grep -E "^verify|AUDIT"
done
for a in excl incl acc cf; do
  /usr/bin/time -f "verify $a: wall %e s, peak RSS %M KB" $Z verify "$GC" --audit "$OUT/$a.audit" 2>&1 | grep -E "^verify|AUDIT"
done
ls -l "$OUT"/*.audit | awk '{print $9 ": " $5 " bytes"}'
for n in 64 128 256 359; do
  t "$NG" "digits accuracy, $n test records" $Z audit accuracy --run "$GR" --cert "$GC" --limit $n --at-least 0 --out "$OUT/acc$n.audit"
done
