#!/bin/sh
# Workload "parallel": four independent stages, each doing 1 s of sleep and ~1 s of CPU
# (sha256 of 96 MiB of zeros), joined into the final stage by COPY --from.
# Usage: parallel.sh CTX
set -eu
ctx=$1
mkdir -p "$ctx"
{
  for s in 1 2 3 4; do
    echo "FROM busybox:local AS s$s"
    echo "COPY s$s.txt /in.txt"
    echo "RUN sleep 1 && dd if=/dev/zero bs=1M count=96 2>/dev/null | sha256sum > /out.txt && cat /in.txt >> /out.txt"
    echo
  done
  echo "FROM busybox:local"
  for s in 1 2 3 4; do echo "COPY --from=s$s /out.txt /out/s$s.txt"; done
  echo "COPY app.txt /app.txt"
} > "$ctx/Dockerfile"
for s in 1 2 3 4; do echo "stage $s" > "$ctx/s$s.txt"; done
echo 'app' > "$ctx/app.txt"
cat > "$ctx/../edits" <<'ED'
EDIT_LATE=app.txt
EDIT_EARLY=s1.txt
LATE_LAYER=app.txt
ED
