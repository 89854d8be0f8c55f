#!/bin/sh
# Layer export throughput: builder's chunked parallel gzip/zstd export against `tar -c | gzip`
# and `tar -c | zstd` of the same tree, in the same run, page cache warm.
# Usage: bench/layer-export.sh [dir] [threads...]   (default dir: /usr/share, ~650 MB)
#
# Method: release build; page cache warmed by a first `tar -c`; every variant reads the same
# tree in the same run; MB/s is uncompressed tar bytes per second. Compare within one run only.
# Measured 2026-11-23 on /usr/share/doc (116 MB tar, many pre-compressed files), 2-core VM under
# load average ~20 from parallel builds, so absolute figures are low and noisy:
#   builder gzip x1   10.9-16.2 MB/s   vs  tar -c | gzip -6   6.3-9.9 MB/s
#   builder zstd x1   40-75 MB/s       vs  tar -c | zstd -3   78-85 MB/s
#   builder unpack gzip (diffID checked) 30.1 MB/s  vs  tar -xzf 28.4 MB/s
set -eu
cd "$(dirname "$0")/.."
dir=${1:-/usr/share}
[ $# -gt 0 ] && shift
cargo build --release -q -p engine --example layer_export_bench
target=${CARGO_TARGET_DIR:-target}
exec "$target/release/examples/layer_export_bench" "$dir" "$@"
