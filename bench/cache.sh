#!/usr/bin/env bash
# The cache's fast paths on a large context, measured in one run:
#   - the no-op rebuild of a COPY of the whole context, next to a bare parallel stat walk of the
#     same tree (the physical floor: a no-op must at least look at every file);
#   - the rebuild after editing one file, split into walk / hash / keys / execute / export
#     (from `--metadata-file`'s `builder.timings`).
# Usage: bench/cache.sh            (20,000 files, 300 MB)
#        FILES=2000 MB=30 RUNS=3 bench/cache.sh   (a quick run)
# Needs root (overlay mounts) and /usr/bin/busybox.
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=${FILES:-20000}
MB=${MB:-300}
RUNS=${RUNS:-5}
B=${BUILDER:-target/release/builder}
if [ ! -x "$B" ]; then
  cargo build --release -q -p cli
fi
work=$(mktemp -d /var/tmp/builder-bench-cache.XXXXXX)
trap 'rm -rf "$work"' EXIT
export BUILDER_ROOT="$work/root"

examples/base/make-base.sh "$B" >/dev/null 2>&1

echo "generating $FILES files, $MB MB in $work/ctx ..."
python3 - "$work/ctx" "$FILES" "$MB" <<'PY'
import os, sys
root, files, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
per = max(1, mb * 1024 * 1024 // files)
for i in range(files):
    d = os.path.join(root, f"dir{i % 200:03d}", f"sub{(i // 200) % 10}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"file{i:06d}.bin"), "wb") as f:
        f.write(os.urandom(per))
PY
cat > "$work/ctx/Dockerfile" <<'DF'
FROM busybox:local
COPY . /ctx/
RUN find /ctx -type f | wc -l > /count
DF

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
now_ms() { date +%s%3N; }
build() { "$B" build -q --metadata-file "$work/meta.json" "$work/ctx" >/dev/null; }

t0=$(now_ms); build; t1=$(now_ms)
echo "cold build: $((t1 - t0)) ms"

noop=(); floor=()
for _ in $(seq "$RUNS"); do
  t0=$(now_ms); build; t1=$(now_ms); noop+=($((t1 - t0)))
  # The floor: lstat every entry of the tree, two walkers in parallel (the machine's cores).
  t0=$(now_ms)
  find "$work/ctx" -mindepth 1 -maxdepth 1 -type d -print0 \
    | xargs -0 -P2 -n 100 sh -c 'find "$@" -printf "%s\n"' _ >/dev/null
  t1=$(now_ms); floor+=($((t1 - t0)))
done
noop_med=$(printf '%s\n' "${noop[@]}" | median)
floor_med=$(printf '%s\n' "${floor[@]}" | median)
echo "no-op rebuild: median $noop_med ms of $RUNS (whole process, solve and image write included)"
echo "parallel stat walk (floor): median $floor_med ms"
awk -v a="$noop_med" -v b="$floor_med" 'BEGIN { printf "no-op / floor: %.2fx (target: <= 2x)\n", a / b }'
python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print("no-op split (ms):", json.dumps(m["builder.timings"]))' "$work/meta.json"

edit=()
for i in $(seq "$RUNS"); do
  echo "edit $i" >> "$work/ctx/dir007/sub3/file001407.bin" 2>/dev/null || echo "edit $i" >> "$(find "$work/ctx" -name '*.bin' | head -1)"
  t0=$(now_ms); build; t1=$(now_ms); edit+=($((t1 - t0)))
  python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print("  edit split (ms):", json.dumps(m["builder.timings"]))' "$work/meta.json"
done
edit_med=$(printf '%s\n' "${edit[@]}" | median)
echo "one-file edit rebuild: median $edit_med ms of $RUNS (re-copies the whole context: the COPY layer changed)"
ps -o rss= -p $$ >/dev/null 2>&1 || true
/usr/bin/time -f "peak RSS of a no-op rebuild: %M KB" "$B" build -q "$work/ctx" >/dev/null
