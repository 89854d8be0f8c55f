#!/bin/sh
# Image store throughput: `builder load` of a docker-archive with one large uncompressed layer
# (random bytes, so nothing compresses), then `builder save` of it as docker-archive and as OCI
# archive, then a second `load` of the same archive (every blob already present). Cold page
# cache is not forced; figures are wall-clock seconds on whatever disk holds $TMPDIR.
# Usage: bench/image-store.sh [layer-MiB] [--release]
set -eu
cd "$(dirname "$0")/.."
mib="${1:-256}"
profile=debug
if [ "${2:-}" = "--release" ]; then profile=release; fi
if [ "$profile" = release ]; then cargo build -q -p cli --release; else cargo build -q -p cli; fi
bin="${CARGO_TARGET_DIR:-target}/$profile/builder"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 - "$work" "$mib" <<'PY'
import hashlib, io, json, os, sys, tarfile
work, mib = sys.argv[1], int(sys.argv[2])
layer = os.path.join(work, "layer.tar")
with tarfile.open(layer, "w", format=tarfile.GNU_FORMAT) as t:
    for i in range(mib // 64 or 1):
        data = os.urandom(64 << 20)
        info = tarfile.TarInfo(f"data/blob{i}"); info.size = len(data); info.mtime = 0
        t.addfile(info, io.BytesIO(data))
h = hashlib.sha256()
with open(layer, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""): h.update(chunk)
diff_id = "sha256:" + h.hexdigest()
config = json.dumps({"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
    "config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    "history": [{"created_by": "bench"}]}).encode()
cfg_hex = hashlib.sha256(config).hexdigest()
manifest = json.dumps([{"Config": f"{cfg_hex}.json", "RepoTags": ["bench:1"], "Layers": ["l/layer.tar"]}]).encode()
with tarfile.open(os.path.join(work, "in.tar"), "w") as t:
    for name, data in [(f"{cfg_hex}.json", config), ("manifest.json", manifest)]:
        info = tarfile.TarInfo(name); info.size = len(data); t.addfile(info, io.BytesIO(data))
    t.add(layer, "l/layer.tar")
os.remove(layer)
PY
root="$work/root"
t() { s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc; }
echo "profile: $profile, layer: ${mib} MiB, disk: $(df -h "$work" | awk 'NR==2{print $1}')"
echo "load (cold store):   $(t "$bin" --root "$root" load -i "$work/in.tar") s"
echo "load (blobs present): $(t "$bin" --root "$root" load -i "$work/in.tar") s"
echo "save docker-archive: $(t "$bin" --root "$root" save -o "$work/out-docker.tar" bench:1) s"
echo "save OCI archive:    $(t "$bin" --root "$root" save --format oci -o "$work/out-oci.tar" bench:1) s"
