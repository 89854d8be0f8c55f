#!/bin/sh
# Workload "deps": the dependency-manifest-then-source layout. The "install" RUN takes ~3 s
# (sleep 2 plus writing 8 x 4 MiB "packages"), the build RUN hashes the sources.
# Usage: deps.sh CTX
set -eu
ctx=$1
mkdir -p "$ctx/src"
cat > "$ctx/Dockerfile" <<'DF'
FROM busybox:local
WORKDIR /app
COPY requirements.txt /app/
RUN sleep 2 && mkdir -p /deps && while read -r pkg; do dd if=/dev/urandom of=/deps/$pkg.so bs=1M count=4 2>/dev/null; done < requirements.txt
COPY src/ /app/src/
RUN find /app/src -type f | sort | xargs cat | sha256sum > /app/build.out && ls /deps > /app/deps.list
DF
for p in alpha beta gamma delta epsilon zeta eta theta; do echo "$p"; done > "$ctx/requirements.txt"
i=0
while [ $i -lt 200 ]; do
  d="$ctx/src/pkg$((i % 10))"
  mkdir -p "$d"
  awk -v n=$i 'BEGIN { for (l = 0; l < 100; l++) printf "def f%d_%d(x):\n    return x * %d + %d\n", n, l, n, l }' > "$d/m$i.py"
  i=$((i + 1))
done
cat > "$ctx/../edits" <<'ED'
EDIT_LATE=src/pkg0/m0.py
EDIT_EARLY=requirements.txt
LATE_LAYER=src
ED
