#!/usr/bin/env bash
# Builds the zkaudit image from a host-compiled binary, without pulling any
# base image: a root filesystem with the binary, the shared libraries it links
# (from ldd) and empty /data /params /keys /work /tmp, on `FROM scratch`.
# Usage: deploy/build-local-image.sh [BINARY] [TAG]
#   BINARY defaults to target/release/zkaudit (built if missing), TAG to zkaudit:latest.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/zkaudit}
TAG=${2:-zkaudit:latest}
if [ ! -x "$BIN" ]; then
    cargo build --release -p zkaudit-cli
fi
ROOT=deploy/rootfs
rm -rf "$ROOT"
mkdir -p "$ROOT/usr/local/bin" "$ROOT/data" "$ROOT/params" "$ROOT/keys" "$ROOT/work" "$ROOT/tmp" "$ROOT/etc"
chmod 1777 "$ROOT/tmp"
cp "$BIN" "$ROOT/usr/local/bin/zkaudit"
# Every shared library the binary needs, at the path the loader expects.
ldd "$BIN" | awk '/=> \// { print $3 } /^[ \t]*\/[^ ]+/ { print $1 }' | sort -u | while read -r lib; do
    mkdir -p "$ROOT$(dirname "$lib")"
    cp -L "$lib" "$ROOT$lib"
done
# Name resolution for the service names on compose networks.
printf 'hosts: files dns\n' > "$ROOT/etc/nsswitch.conf"
printf 'root:x:0:0:root:/work:/usr/local/bin/zkaudit\n' > "$ROOT/etc/passwd"
docker build -q -f deploy/Dockerfile.local -t "$TAG" deploy >/dev/null
echo "built $TAG from $BIN ($(du -sh "$ROOT" | cut -f1) root filesystem)"
