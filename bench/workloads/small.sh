#!/bin/sh
# Workload "small": a small app (about 60 files, 400 KB): config first, sources last.
# Usage: small.sh CTX   — writes the context into CTX (created; must not exist).
# Edits used by run.sh: EDIT_LATE (used only by the last COPY), EDIT_EARLY (used by an early step).
set -eu
ctx=$1
mkdir -p "$ctx/src/lib" "$ctx/src/cmd"
cat > "$ctx/Dockerfile" <<'DF'
FROM busybox:local
WORKDIR /app
COPY config.ini /app/config.ini
RUN sed -n 's/^name=//p' /app/config.ini > /app/name && mkdir -p /app/bin
COPY src/ /app/src/
RUN cat /app/src/lib/*.sh /app/src/cmd/*.sh | sha256sum > /app/bin/build-id && wc -l /app/src/*/* > /app/bin/lines
CMD ["/bin/sh", "/app/src/cmd/main.sh"]
DF
printf 'name=bench-small\nport=8080\n' > "$ctx/config.ini"
i=0
while [ $i -lt 30 ]; do
  awk -v n=$i 'BEGIN { for (l = 0; l < 200; l++) printf "f%d_%d() { echo \"line %d of module %d\"; }\n", n, l, l, n }' > "$ctx/src/lib/mod$i.sh"
  awk -v n=$i 'BEGIN { for (l = 0; l < 20; l++) printf "echo cmd %d step %d\n", n, l }' > "$ctx/src/cmd/cmd$i.sh"
  i=$((i + 1))
done
echo 'echo hello from bench-small' > "$ctx/src/cmd/main.sh"
cat > "$ctx/../edits" <<'ED'
EDIT_LATE=src/cmd/main.sh
EDIT_EARLY=config.ini
LATE_LAYER=src
ED
