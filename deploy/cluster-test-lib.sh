# Steps shared by the deployment tests (compose-test.sh, swarm-test.sh);
# sourced, not run. They expect $Z (the zkaudit binary), $WORK (a scratch
# directory), ZKAUDIT_COORDINATOR and ZKAUDIT_TOKEN in the environment, and
# a `fail` function.

# Trains the digits example and submits its first STEPS steps; prints the job id.
submit_digits_job() { # STEPS NAME
    "$Z" train --model examples/models/digits_mlp.toml --data examples/data/digits.csv.gz \
        --epochs 1 --batch-size 8 --lr 0.1 --seed 42 --out "$WORK/run" >/dev/null
    "$Z" submit --run "$WORK/run" --steps "$1" --name "$2" | awk '{print $2; exit}'
}

# Kills (a crash, not a graceful stop) the worker container that holds a
# lease; the status API names each worker "<container hostname>-<pid>".
# LIST is a command printing the worker containers' ids. Prints the victim.
kill_busy_worker() { # API_URL JOB LIST...
    local api=$1 job=$2 host victim="" c
    shift 2
    for _ in $(seq 600); do
        host=$(python3 - "$api/api/status" <<'PY' || true
import json, sys, urllib.request
s = json.load(urllib.request.urlopen(sys.argv[1], timeout=5))
for w in s["workers"]:
    if w["live"] and w["current"]:
        print(w["name"].rsplit("-", 1)[0])
        break
PY
)
        if [ -n "$host" ]; then
            for c in $("$@"); do
                if [ "$(docker inspect -f '{{.Config.Hostname}}' "$c")" = "$host" ]; then victim=$c; break; fi
            done
            [ -n "$victim" ] && break
        fi
        sleep 0.5
    done
    [ -n "$victim" ] || fail "no worker was ever seen holding a lease: $("$Z" status "$job")"
    docker kill "$victim" >/dev/null
    echo "$victim"
}

# Waits for the job, checks that all STEPS were proven, fetches the
# certificate and verifies it with the SRS copied from the coordinator's
# container and keys derived here (never the cluster's).
verify_job() { # JOB STEPS COORDINATOR_CONTAINER
    "$Z" watch "$1" >/dev/null || fail "job did not complete: $("$Z" status "$1")"
    local st
    st=$("$Z" status "$1")
    echo "$st" | grep -q "$2/$2 steps proven" || fail "unexpected status: $st"
    "$Z" fetch "$1" --out "$WORK/job.cert"
    docker cp "$3:/params/kzg_bn254.srs" "$WORK/srs"
    ZKAUDIT_SRS=$WORK/srs ZKAUDIT_KEYS=$WORK/keys "$Z" verify "$WORK/job.cert" | tee "$WORK/verify.txt"
    grep -q "VALID" "$WORK/verify.txt" || fail "certificate did not verify"
}
