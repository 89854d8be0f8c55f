#!/bin/bash
# Where builder's time goes on the cold and early-edit rows: the same workload rebuilt with
# `--no-cache` under each layer compression (gzip, the default; zstd; uncompressed), runs
# alternated, median of N; plus the work of the RUN steps alone, timed on the host.
# Usage: bench/phases.sh [workload] [runs]     (default: deps 5; BUILDER=path as in run.sh)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
wl=${1:-deps}
runs=${2:-5}
if [ -z "${BUILDER:-}" ]; then
  (cd "$repo" && cargo build --release -q -p cli)
  BUILDER=${CARGO_TARGET_DIR:-$repo/target}/release/builder
fi
work=$(mktemp -d "${BENCH_TMP:-/var/tmp}/builder-phases.XXXXXX")
trap 'rm -rf "$work"' EXIT
b() { "$BUILDER" --root "$work/root" "$@"; }
printf '#!/bin/sh\nexec %s --root %s "$@"\n' "$BUILDER" "$work/root" >"$work/builder"
chmod +x "$work/builder"
"$repo/examples/base/make-base.sh" "$work/builder" busybox:local >/dev/null 2>&1
sh "$here/workloads/$wl.sh" "$work/ctx"
b build -q -t "bench-$wl" "$work/ctx" >/dev/null
declare -A times
for i in $(seq "$runs"); do
  for c in gzip zstd uncompressed; do
    t0=$EPOCHREALTIME
    b build -q --no-cache --compression "$c" -t "bench-$wl" --metadata-file "$work/m.json" \
      "$work/ctx" >/dev/null
    t1=$EPOCHREALTIME
    times[$c]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') "
    steps=$(jq -r '[."builder.steps"[] | "\(.duration_ms)"] | join("/")' "$work/m.json")
    times[$c-steps]+="$steps "
  done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
echo "workload $wl, $runs runs, load $(cut -d' ' -f1-3 /proc/loadavg)"
for c in gzip zstd uncompressed; do
  echo "  --compression $c: median $(echo "${times[$c]}" | median) s  (step ms per run: ${times[$c-steps]})"
done
if [ "$wl" = deps ]; then
  t0=$EPOCHREALTIME
  sh -c 'sleep 2; for p in 1 2 3 4 5 6 7 8; do dd if=/dev/urandom of=/dev/null bs=1M count=4 2>/dev/null; done'
  t1=$EPOCHREALTIME
  echo "  the install RUN's own work on the host: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') s"
  head -c 33554432 /dev/urandom >"$work/rand"
  t0=$EPOCHREALTIME; gzip -6 -c "$work/rand" >/dev/null; t1=$EPOCHREALTIME
  echo "  gzip -6 of its 32 MiB layer (one core): $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') s"
fi
