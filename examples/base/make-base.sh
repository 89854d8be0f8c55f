#!/bin/sh
# Builds the base image every example starts from: `FROM scratch` plus Debian's static busybox.
# Usage: examples/base/make-base.sh [builder binary] [image name]
# Needs /usr/bin/busybox (Debian: `apt-get install busybox-static`).
set -eu
builder=${1:-builder}
name=${2:-busybox:local}
busybox=$(command -v busybox || echo /usr/bin/busybox)
if [ ! -x "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then
  echo "make-base: $busybox is not a static binary; install busybox-static" >&2
  exit 1
fi
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$busybox" "$context/busybox"
cp "$(dirname "$0")/Dockerfile" "$context/Dockerfile"
"$builder" build -t "$name" "$context"
