#!/usr/bin/env bash
# End-to-end test of the Docker Swarm deployment (deploy/stack.yml): on this
# machine's engine, makes a single-node swarm (or uses the one it is in),
# builds the image from local files, deploys the stack with 2 worker
# replicas that have no SRS (they download the coordinator's), submits the
# digits example job, kills the worker container that holds a lease, checks
# that Swarm starts a replacement and that the job completes, and verifies
# the certificate with keys derived here. Removes the stack, its volumes and
# the image, and leaves the swarm if it made it (the engine is left as found).
# Skips (exit 0, with the reason) only where no Docker engine is usable.
# Usage: deploy/swarm-test.sh [STEPS]   (default 8)
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-8}
if ! docker info >/dev/null 2>&1; then
    echo "swarm test SKIPPED: no usable Docker engine (docker info failed)"
    exit 0
fi
Z=$PWD/target/release/zkaudit
[ -x "$Z" ] || cargo build --release -q -p zkaudit-cli
WORK=$(mktemp -d)
STACK=zkswarm$$
export ZKAUDIT_IMAGE=zkaudit:swarm-$$
export ZKAUDIT_SECRETS_DIR=$WORK/secrets
export ZKAUDIT_PORT=$((20000 + $$ % 20000))
export ZKAUDIT_HTTP_PORT=$((ZKAUDIT_PORT + 1))
export ZKAUDIT_LEASE_SECS=6
export ZKAUDIT_WORKERS=2
export ZKAUDIT_WORKER_THREADS=1
export ZKAUDIT_WORKER_CPUS=1
export ZKAUDIT_WORKER_MEMORY=4G
export ZKAUDIT_WORKER_MEMORY_RESERVED=256M
mkdir -p "$ZKAUDIT_SECRETS_DIR"
TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s' "$TOKEN" > "$ZKAUDIT_SECRETS_DIR/token"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$ZKAUDIT_SECRETS_DIR/worker_token"

made_swarm=0
labelled=""
cleanup() {
    rc=$?
    if [ $rc -ne 0 ]; then
        echo "--- service logs (test failed) ---"
        docker service ps --no-trunc "${STACK}_worker" "${STACK}_coordinator" 2>/dev/null | head -20 || true
        docker service logs --no-task-ids --tail 40 "${STACK}_coordinator" 2>&1 | tail -40 || true
        docker service logs --no-task-ids --tail 40 "${STACK}_worker" 2>&1 | tail -40 || true
    fi
    docker stack rm "$STACK" >/dev/null 2>&1 || true
    # Volumes can go only once the stack's containers have.
    for _ in $(seq 60); do
        [ -z "$(docker ps -aq --filter "label=com.docker.stack.namespace=$STACK")" ] && break
        sleep 1
    done
    docker volume ls -q --filter "label=com.docker.stack.namespace=$STACK" | xargs -r docker volume rm >/dev/null 2>&1 || true
    if [ -n "$labelled" ]; then
        docker node update --label-rm zkaudit.coordinator "$labelled" >/dev/null 2>&1 || true
    fi
    if [ $made_swarm = 1 ]; then
        docker swarm leave --force >/dev/null 2>&1 || true
    fi
    docker rmi "$ZKAUDIT_IMAGE" >/dev/null 2>&1 || true
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
fail() { echo "swarm test FAILED: $*" >&2; exit 1; }
. deploy/cluster-test-lib.sh

case "$(docker info -f '{{.Swarm.LocalNodeState}}')" in
    inactive)
        docker swarm init --advertise-addr 127.0.0.1 >/dev/null || fail "docker swarm init failed"
        made_swarm=1
        echo "made a single-node swarm (it is left at the end)"
        ;;
    active)
        [ "$(docker info -f '{{.Swarm.ControlAvailable}}')" = true ] \
            || fail "this node is a swarm worker; run the test on a manager"
        echo "using the swarm this engine is in"
        ;;
    *) fail "the engine's swarm state is $(docker info -f '{{.Swarm.LocalNodeState}}')" ;;
esac
node=$(docker info -f '{{.Swarm.NodeID}}')
if [ "$(docker node inspect -f '{{index .Spec.Labels "zkaudit.coordinator"}}' "$node")" != true ]; then
    docker node update --label-add zkaudit.coordinator=true "$node" >/dev/null
    labelled=$node
fi

deploy/build-local-image.sh "$Z" "$ZKAUDIT_IMAGE"
docker stack deploy -c deploy/stack.yml "$STACK" 2>&1 | grep -v "could not be accessed on a registry" || true
api=http://127.0.0.1:$ZKAUDIT_HTTP_PORT
for _ in $(seq 180); do
    "$Z" healthcheck "$api/healthz" >/dev/null 2>&1 && break
    sleep 1
done
"$Z" healthcheck "$api/healthz" >/dev/null || fail "the coordinator never became healthy"
echo "stack $STACK deployed: coordinator healthy"

# No volume is shared between the coordinator and the workers.
worker_containers() { docker ps -q --filter "label=com.docker.swarm.service.name=${STACK}_worker"; }
coord=$(docker ps -q --filter "label=com.docker.swarm.service.name=${STACK}_coordinator")
[ -n "$coord" ] || fail "no coordinator container"
coord_vols=$(docker inspect -f '{{range .Mounts}}{{.Name}} {{end}}' "$coord")
for c in $(worker_containers); do
    for v in $(docker inspect -f '{{range .Mounts}}{{.Name}} {{end}}' "$c"); do
        case " $coord_vols " in *" $v "*) fail "worker ${c:0:12} shares volume $v with the coordinator" ;; esac
    done
done
echo "workers share no volume with the coordinator"

export ZKAUDIT_COORDINATOR=http://127.0.0.1:$ZKAUDIT_PORT ZKAUDIT_TOKEN=$TOKEN
JOB=$(submit_digits_job "$STEPS" swarm-test)
echo "submitted $JOB ($STEPS steps)"
victim=$(kill_busy_worker "$api" "$JOB" worker_containers)
echo "killed worker container ${victim:0:12} mid-task"

# Swarm replaces the killed task.
replaced=""
for _ in $(seq 120); do
    running=$(worker_containers | grep -vc "^${victim:0:12}" || true)
    if [ "$running" -ge "$ZKAUDIT_WORKERS" ] && ! worker_containers | grep -q "^${victim:0:12}"; then
        replaced=yes
        break
    fi
    sleep 1
done
[ -n "$replaced" ] || fail "Swarm did not replace the killed worker: $(docker service ps "${STACK}_worker")"
echo "Swarm started a replacement worker ($(docker service ps -q "${STACK}_worker" | wc -l) tasks in the service's history)"

verify_job "$JOB" "$STEPS" "$coord"
worker_logs=$(docker service logs --no-task-ids "${STACK}_worker" 2>&1)
grep -q "SRS downloaded and checked" <<<"$worker_logs" \
    || fail "no worker logged downloading the coordinator's SRS"
echo "workers downloaded and checked the coordinator's SRS"

echo "swarm test PASSED: $STEPS steps on a $ZKAUDIT_WORKERS-worker stack, one worker killed mid-task and replaced by Swarm, certificate VALID"
