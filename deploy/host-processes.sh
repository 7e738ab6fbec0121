# Sourced by the deployment checks that run zkaudit processes on the host:
# sets Z (the release binary, built if missing) and WORK (a scratch
# directory), and on exit kills every PID the caller appended to `pids`,
# shows the tail of WORK/*.log when the check failed, and removes WORK.
Z=$PWD/target/release/zkaudit
[ -x "$Z" ] || cargo build --release -q -p zkaudit-cli
WORK=$(mktemp -d)
pids=()
cleanup() {
    rc=$?
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ $rc -ne 0 ] && tail -n 20 "$WORK"/*.log 2>/dev/null
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
