#!/bin/sh
# End-to-end engine figures, all from one run of the release `builder` on a private root:
#  1. sandbox start overhead per RUN: 50 `RUN true #n` steps built with --no-cache; the median
#     of their step durations (from --metadata-file), and the build's total divided by 50;
#  2. layer export throughput: a generated ~100 MB tree copied by COPY (the step's duration,
#     which includes writing the layer blob), against `tar -cf - dir | gzip > /dev/null` of the
#     same tree in the same run;
#  3. the cold build time of examples/multistage (fresh root, base image loaded).
# Needs root (overlay mounts) and /usr/bin/busybox. Uses $CARGO_TARGET_DIR (or target/)
# /release/builder, building it if missing; BUILDER=path overrides.
# Usage: bench/engine.sh [size-in-MB]
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
size_mb=${1:-100}
target=${CARGO_TARGET_DIR:-$repo/target}
builder=${BUILDER:-$target/release/builder}
if [ ! -x "$builder" ]; then
    echo "building $builder" >&2
    (cd "$repo" && cargo build -q --release -p cli)
fi
work=$(mktemp -d /tmp/builder-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
# builder on the private root; its output is shown only when it fails.
b() {
    "$builder" --root "$root" "$@" > "$work/builder.log" 2>&1 || { cat "$work/builder.log" >&2; exit 1; }
}

now_ms() { date +%s%3N; }
# The durations (ms) of the steps whose name matches $2 in metadata file $1, sorted.
durations() { jq -r --arg re "$2" '."builder.steps"[] | select(.name | test($re)) | .duration_ms' "$1" | sort -n; }
median() { awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

echo "builder: $builder"
echo "kernel: $(uname -r), cpus: $(nproc)"
# The examples' base image (as examples/base/make-base.sh makes it), on the private root.
mkdir -p "$work/base"
cp /usr/bin/busybox "$repo/examples/base/Dockerfile" "$work/base/"
b build -q -t busybox:local "$work/base"
b save -o "$work/base.tar" busybox:local

# 1. Sandbox start overhead.
runs=50
mkdir -p "$work/runs"
{
    echo "FROM busybox:local"
    i=1
    while [ $i -le $runs ]; do echo "RUN true #$i"; i=$((i + 1)); done
} > "$work/runs/Dockerfile"
b build --progress quiet --no-cache --metadata-file "$work/runs.json" "$work/runs"
total=$(jq '."builder.duration_ms"' "$work/runs.json")
med=$(durations "$work/runs.json" '^\[.*\] RUN true' | median)
count=$(durations "$work/runs.json" '^\[.*\] RUN true' | wc -l)
echo "sandbox start per RUN: median ${med} ms over $count steps; build total ${total} ms / $runs = $(echo "$total $runs" | awk '{ printf "%.1f", $1 / $2 }') ms"

# 2. Layer export throughput.
mkdir -p "$work/copy/tree"
n=0
per=$((size_mb / 4))
while [ $n -lt 4 ]; do
    d="$work/copy/tree/d$n"
    mkdir -p "$d"
    # Half incompressible, half text-like (base64 of random bytes compresses to ~75%).
    head -c $((per * 512 * 1024)) /dev/urandom | split -b 256k - "$d/rand-"
    head -c $((per * 384 * 1024)) /dev/urandom | base64 | split -b 256k - "$d/text-"
    n=$((n + 1))
done
printf 'FROM busybox:local\nCOPY tree /tree\n' > "$work/copy/Dockerfile"
bytes=$(du -sb "$work/copy/tree" | cut -f1)
files=$(find "$work/copy/tree" -type f | wc -l)
b build --progress quiet --no-cache --metadata-file "$work/copy.json" "$work/copy"
copy_ms=$(durations "$work/copy.json" 'COPY tree' | head -1)
t0=$(now_ms)
tar -cf - -C "$work/copy" tree | gzip > /dev/null
t1=$(now_ms)
gzip_ms=$((t1 - t0))
mbps() { echo "$bytes $1" | awk '{ printf "%.1f", ($1 / 1048576) / ($2 / 1000) }'; }
echo "layer export: $((bytes / 1048576)) MB in $files files: COPY step ${copy_ms} ms ($(mbps "$copy_ms") MB/s); tar -c | gzip ${gzip_ms} ms ($(mbps "$gzip_ms") MB/s)"

# 3. Cold build of examples/multistage.
rm -rf "$root"
b load -i "$work/base.tar"
t0=$(now_ms)
b build --progress quiet -t multistage:bench "$repo/examples/multistage"
t1=$(now_ms)
echo "cold build of examples/multistage: $((t1 - t0)) ms (its two RUN steps each sleep 1 s, in parallel)"
