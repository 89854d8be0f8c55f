#!/bin/sh
# Workload "large": a large context copied whole (default 20,000 files / 300 MB, half random
# and half text so gzip has real work). BENCH_LARGE_FILES and BENCH_LARGE_MB shrink it.
# Usage: large.sh CTX
set -eu
ctx=$1
files=${BENCH_LARGE_FILES:-20000}
mb=${BENCH_LARGE_MB:-300}
mkdir -p "$ctx"
cat > "$ctx/Dockerfile" <<'DF'
FROM busybox:local
COPY settings.conf /etc/app/settings.conf
RUN cp /etc/app/settings.conf /etc/app/settings.effective
COPY . /ctx/
DF
echo 'level=1' > "$ctx/settings.conf"
python3 - "$ctx" "$files" "$mb" <<'PY'
import os, random, sys, base64
ctx, files, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(42)
avg = mb * 1024 * 1024 // files
for i in range(files):
    d = os.path.join(ctx, "data", "d%03d" % (i % 200), "e%02d" % (i % 7))
    os.makedirs(d, exist_ok=True)
    size = max(1, int(rng.expovariate(1.0 / avg))) if i % 10 else avg
    raw = os.urandom(size // 2)
    text = base64.b64encode(os.urandom(size // 8)) * 2
    with open(os.path.join(d, "f%05d.bin" % i), "wb") as f:
        f.write(raw + text[: size - len(raw)])
PY
cat > "$ctx/../edits" <<'ED'
EDIT_LATE=data/d000/e00/f00000.bin
EDIT_EARLY=settings.conf
LATE_LAYER=.
ED
