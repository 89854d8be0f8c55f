#!/bin/bash
# builder against BuildKit (dockerd's embedded BuildKit) and Buildah, in one run, on the same
# work. Writes bench/results/{runs,summary,env}.json and regenerates the results section of
# bench/BENCHMARKS.md (method: see that file).
#
# Usage: bench/run.sh
# Environment:
#   BENCH_RUNS=5            runs per tool, workload and scenario
#   BENCH_LARGE_RUNS=3      runs for the large-context workload
#   BENCH_LARGE_FILES=20000 BENCH_LARGE_MB=300   size of the large context
#   BENCH_WORKLOADS="small parallel deps large"
#   BENCH_DOCKER_DRIVER=overlay2  BENCH_BUILDAH_DRIVER=overlay   storage drivers
#   BENCH_TMP=/var/tmp      where the scratch dir (contexts, daemon data roots) goes
#   BUILDER=path            a builder binary (default: cargo build --release -p cli)
# Needs (Debian): docker.io, buildah, busybox-static, python3, time (GNU /usr/bin/time); root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
RUNS=${BENCH_RUNS:-5}
LARGE_RUNS=${BENCH_LARGE_RUNS:-3}
WORKLOADS=${BENCH_WORKLOADS:-"small parallel deps large"}
SCENARIOS="cold noop edit-late edit-early"
DOCKER_DRIVER=${BENCH_DOCKER_DRIVER:-overlay2}
BUILDAH_DRIVER=${BENCH_BUILDAH_DRIVER:-overlay}
results=$here/results
mkdir -p "$results" && rm -f "$results"/*.json

for t in dockerd docker curl buildah busybox python3 /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "run.sh: $t is missing (see the header)" >&2; exit 1; }
done

builder_kind="binary ${BUILDER:-}"
if [ -z "${BUILDER:-}" ]; then
  builder_kind=release
  (cd "$repo" && cargo build --release -q -p cli)
  BUILDER=${CARGO_TARGET_DIR:-$repo/target}/release/builder
fi
BUILDER=$(realpath "$BUILDER")

work=$(mktemp -d "${BENCH_TMP:-/var/tmp}/builder-bench.XXXXXX")
dockerd_pid=
cleanup() {
  set +e
  if [ -n "$dockerd_pid" ]; then
    kill "$dockerd_pid"
    wait "$dockerd_pid" 2>/dev/null
  fi
  bah rm --all >/dev/null 2>&1
  # Overlay mounts left by dockerd or buildah under the scratch dir, deepest first.
  awk -v w="$work" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r | xargs -r -n1 umount -l
  rm -rf "$work"
}
trap cleanup EXIT

elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
log() { echo "[$(date +%T)] $*" >&2; }

# --- the three tools -------------------------------------------------------------------------
broot=$work/builder-root
export DOCKER_HOST=unix://$work/docker/docker.sock
bah() {
  buildah --root "$work/buildah/root" --runroot "$work/buildah/run" \
    --storage-driver "$BUILDAH_DRIVER" "$@"
}

mkdir -p "$work/docker"
dockerd --host "$DOCKER_HOST" --data-root "$work/docker/root" --exec-root "$work/docker/exec" \
  --pidfile "$work/docker/pid" --bridge=none --iptables=false --ip-masq=false \
  --storage-driver="$DOCKER_DRIVER" >"$work/docker/log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 120); do docker version >/dev/null 2>&1 && break; sleep 0.5; done
docker version >/dev/null || { tail "$work/docker/log" >&2; exit 1; }

# --- the base image, made locally and loaded into all three ------------------------------------
log "making busybox:local"
printf '#!/bin/sh\nexec %s --root %s "$@"\n' "$BUILDER" "$work/base-root" >"$work/builder-base"
chmod +x "$work/builder-base"
"$repo/examples/base/make-base.sh" "$work/builder-base" busybox:local >/dev/null
"$work/builder-base" save -o "$work/base.tar" busybox:local
docker load -q -i "$work/base.tar" >/dev/null
bah pull -q "docker-archive:$work/base.tar" >/dev/null
base_buildah=$(bah images -q --no-trunc busybox:local)

# BuildKit build through the Engine API (`POST /build?version=2`), the context sent as a tar
# stream: Debian's docker.io ships a docker CLI (28.x) whose `docker build` needs the buildx
# plugin for BuildKit, and no registry reachable here has buildx. See BENCHMARKS.md.
bk_build() {
  local tag=$1 ctx=$2 sock=${DOCKER_HOST#unix://}
  tar -C "$ctx" -cf - . | curl -sS --fail --unix-socket "$sock" -X POST -T - \
    -H 'Content-Type: application/x-tar' \
    "http://docker/v1.41/build?version=2&t=$tag&networkmode=host&rm=1" >"$work/bk.json" || return 1
  if grep -q '"error"' "$work/bk.json"; then grep -o '"error":"[^"]*"' "$work/bk.json"; return 1; fi
}
reset_builder() { rm -rf "$broot" && "$BUILDER" --root "$broot" load -q -i "$work/base.tar" >/dev/null; }
reset_buildkit() {
  docker rmi -f "bench-$1" >/dev/null 2>&1 || true
  docker builder prune -af >/dev/null 2>&1
}
reset_buildah() {
  bah rm --all >/dev/null
  local ids
  ids=$(bah images -a -q --no-trunc | grep -v "^${base_buildah}$" || true)
  # shellcheck disable=SC2086
  [ -z "$ids" ] || bah rmi -f $ids >/dev/null
}

# One build; prints "seconds rss_kb" (rss only for builder). Fails loudly with the tool's log.
build() {
  local tool=$1 wl=$2 ctx=$3 tag=bench-$2 out=$work/build.log t0 t1 rss=null
  t0=$EPOCHREALTIME
  case $tool in
    builder) /usr/bin/time -f %M -o "$work/rss" "$BUILDER" --root "$broot" build -q -t "$tag" \
      --metadata-file "$work/meta.json" "$ctx" >"$out" 2>&1 ;;
    buildkit) bk_build "$tag" "$ctx" >"$out" 2>&1 ;;
    buildah) bah bud -q --layers --isolation chroot --network host --pull=false -t "$tag" \
      "$ctx" >"$out" 2>&1 ;;
  esac || { echo "run.sh: $tool build of $wl failed:" >&2; tail -20 "$out" >&2; exit 1; }
  t1=$EPOCHREALTIME
  [ "$tool" = builder ] && rss=$(tail -1 "$work/rss")
  echo "$(elapsed "$t0" "$t1") $rss"
}

# Floors: a parallel stat walk of the context (no-op), tar | gzip of the last COPY's source.
floor() {
  local kind=$1 ctx=$2 late=$3 t0 t1
  t0=$EPOCHREALTIME
  case $kind in
    stat) (cd "$ctx" && find . -type f -print0 | xargs -0 -P2 -n 1000 stat >/dev/null) ;;
    targz) tar -cf - -C "$ctx" "$late" | gzip >/dev/null ;;
    tar) tar -cf - -C "$ctx" . | cat >/dev/null ;;
  esac
  t1=$EPOCHREALTIME
  elapsed "$t0" "$t1"
}

# Writes runs.json and env.json and regenerates BENCHMARKS.md (after every workload, so an
# interrupted run still leaves the workloads it finished).
report() {
python3 - "$runs_json" "$results/runs.json" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
json.dump(rows, open(sys.argv[2], "w"), indent=1)
PY

cpu=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
python3 - "$results/env.json" <<PY
import json, sys
json.dump({
  "date": "$(date -u +%FT%TZ)",
  "cpu": "$cpu", "cores": $(nproc), "mem_gib": $(awk '/MemTotal/ { printf "%.1f", $2/1048576 }' /proc/meminfo),
  "kernel": "$(uname -r)",
  "builder": "$(cd "$repo" && git rev-parse --short HEAD) ($builder_kind)",
  "dockerd": "$(docker version -f '{{.Server.Version}}')",
  "docker_storage": "$DOCKER_DRIVER",
  "buildah": "$(buildah --version | awk '{ print $3 }')",
  "buildah_storage": "$BUILDAH_DRIVER",
  "runs": $RUNS, "large_runs": $LARGE_RUNS,
  "large_files": ${BENCH_LARGE_FILES:-20000}, "large_mb": ${BENCH_LARGE_MB:-300},
  "load_at_end": "$(cut -d' ' -f1-3 /proc/loadavg)",
}, open(sys.argv[1], "w"), indent=1)
PY
python3 "$here/report.py" "$results" "$here/BENCHMARKS.md"
}

runs_json=$work/runs.jsonl
: >"$runs_json"
record() { # workload scenario tool run seconds rss
  printf '{"workload":"%s","scenario":"%s","tool":"%s","run":%d,"seconds":%s,"rss_kb":%s,"load":%s}\n' \
    "$1" "$2" "$3" "$4" "$5" "$6" "$(cut -d' ' -f1 /proc/loadavg)" >>"$runs_json"
}

tools=(builder buildkit buildah)
for wl in $WORKLOADS; do
  n=$RUNS
  [ "$wl" = large ] && n=$LARGE_RUNS
  rm -rf "$work/wl" && mkdir -p "$work/wl"
  log "$wl: generating the context"
  sh "$here/workloads/$wl.sh" "$work/wl/ctx"
  # shellcheck disable=SC1091
  . "$work/wl/edits"
  ctx=$work/wl/ctx
  for sc in $SCENARIOS; do
    log "$wl: $sc x$n (load $(cut -d' ' -f1-3 /proc/loadavg))"
    for i in $(seq "$n"); do
      case $sc in
        edit-late) echo "e${i}x" >>"$ctx/$EDIT_LATE" ;;
        edit-early) echo "e${i}x" >>"$ctx/$EDIT_EARLY" ;;
      esac
      for k in 0 1 2; do
        tool=${tools[$(((i + k) % 3))]}
        [ "$sc" = cold ] && "reset_$tool" "$wl"
        build "$tool" "$wl" "$ctx" >"$work/result"
        read -r secs rss <"$work/result"
        record "$wl" "$sc" "$tool" "$i" "$secs" "$rss"
        [ "$tool" = builder ] && cp "$work/meta.json" "$results/meta-$wl-$sc.json"
      done
      case $sc in
        noop)
          record "$wl" "$sc" floor "$i" "$(floor stat "$ctx" "$LATE_LAYER")" null
          record "$wl" "$sc" upload "$i" "$(floor tar "$ctx" "$LATE_LAYER")" null
          ;;
        edit-late) record "$wl" "$sc" floor "$i" "$(floor targz "$ctx" "$LATE_LAYER")" null ;;
      esac
    done
  done
  docker rmi -f "bench-$wl" >/dev/null 2>&1 || true
  report
done

log "done: $results, $here/BENCHMARKS.md"
