#!/bin/sh
# Layer export throughput: builder's chunked parallel gzip/zstd export against `tar -c | gzip`
# and `tar -c | zstd` of the same tree, in the same run, page cache warm.
# Usage: bench/layer-export.sh [dir] [threads...]   (default dir: /usr/share, ~650 MB)
set -eu
cd "$(dirname "$0")/.."
dir=${1:-/usr/share}
[ $# -gt 0 ] && shift
cargo build --release -q -p engine --example layer_export_bench
target=${CARGO_TARGET_DIR:-target}
exec "$target/release/examples/layer_export_bench" "$dir" "$@"
