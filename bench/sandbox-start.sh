#!/bin/sh
# Sandbox start-up time: the median of 50 sandboxed `true` runs (helper re-exec, namespaces,
# overlay over a busybox rootfs, /dev, /proc, /sys, pivot_root, exec, cleanup), measured from
# spawning the helper to its report. Run as root for the root figure, or as a user with
# /etc/subuid entries for the rootless one.
# Usage: bench/sandbox-start.sh [runs] [--release]
set -eu
cd "$(dirname "$0")/.."
runs="${1:-50}"
profile=debug
if [ "${2:-}" = "--release" ]; then profile=release; fi
if [ "$profile" = release ]; then
    cargo build -q -p engine --bin sandbox-test-helper --release
else
    cargo build -q -p engine --bin sandbox-test-helper
fi
target="${CARGO_TARGET_DIR:-target}"
echo "profile: $profile, kernel: $(uname -r)"
"$target/$profile/sandbox-test-helper" bench-start "$runs"
