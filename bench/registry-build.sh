#!/bin/sh
# Registry round trips of `builder build`: push of a built image, a push with nothing to send,
# a build on a fresh root whose base must be pulled, the same build with `--pull` (base up to
# date: one manifest request), and a `--cache-to`/`--cache-from type=registry` round trip.
# Usage: bench/registry-build.sh [builder binary]   (default: target/release/builder; run as root)
#
# Method: a local /usr/bin/docker-registry on 127.0.0.1, wall-clock seconds of each command;
# the base is the examples' busybox image (one ~2 MB layer). Compare within one run only.
# Measured 2026-11-23 with a debug build on the shared 2-core VM (load average 6-9), two runs:
#   build (one RUN) + push (base layers + 1 + config)           0.17-0.20 s
#   push again (nothing to send)                                0.04 s
#   fresh root: pull base (~2 MB) + build with one RUN          0.39-0.48 s
#   same build, --pull, base up to date                         0.05-0.06 s
#   --cache-to type=registry (mode=max), cached build           0.20-0.36 s
#   fresh root: pull base, --cache-from, every step cached      0.19-0.20 s
set -eu
builder=${1:-target/release/builder}
case $builder in /*) ;; *) builder=$(pwd)/$builder ;; esac
work=$(mktemp -d)
registry_pid=
cleanup() {
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/storage
http:
  addr: 127.0.0.1:$port
EOF
/usr/bin/docker-registry serve "$work/config.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
i=0
until curl -sf "http://127.0.0.1:$port/v2/" >/dev/null 2>&1; do
  i=$((i + 1)); [ $i -gt 100 ] && { echo "registry did not start" >&2; exit 1; }
  sleep 0.1
done
export DOCKER_CONFIG="$work/docker-config"
reg=127.0.0.1:$port

timed() {
  label=$1; shift
  start=$(date +%s.%N)
  "$@" >"$work/last.log" 2>&1 || { cat "$work/last.log" >&2; exit 1; }
  end=$(date +%s.%N)
  printf '%-40s %6.2f s\n' "$label" "$(echo "$end - $start" | bc)"
}

a="$work/root-a"
ctx="$work/base"; mkdir -p "$ctx"
cp /usr/bin/busybox "$ctx/busybox"
cp "$(dirname "$0")/../examples/base/Dockerfile" "$ctx/Dockerfile"
"$builder" --root "$a" build -q -t busybox:local "$ctx" >/dev/null
"$builder" --root "$a" tag busybox:local "$reg/base:1"
"$builder" --root "$a" push -q "$reg/base:1"

app="$work/app"; mkdir -p "$app"
printf 'FROM %s/base:1\nRUN echo hello > /hello\n' "$reg" > "$app/Dockerfile"
timed "push image (base layers + 1 + config)" "$builder" --root "$a" build --progress plain -t "$reg/app:1" --push "$app"
timed "push again (nothing to send)" "$builder" --root "$a" push -q "$reg/app:1"
b="$work/root-b"
timed "fresh root: pull base + build" "$builder" --root "$b" build --progress plain "$app"
timed "same build, --pull, base up to date" "$builder" --root "$b" build --progress plain --pull "$app"
timed "--cache-to type=registry (mode=max)" "$builder" --root "$a" build --progress plain --cache-to "type=registry,ref=$reg/cache:1,mode=max" "$app"
c="$work/root-c"
timed "fresh root: pull base, --cache-from" "$builder" --root "$c" build --progress plain --cache-from "type=registry,ref=$reg/cache:1" "$app"
