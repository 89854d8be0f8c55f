#!/usr/bin/env python3
"""Writes small seed inputs for the archive and image fuzz targets into corpus/<target>/.

The seeds are valid inputs of every shape the readers handle (so the fuzzer starts past the
format checks) plus the hostile shapes the extractors must contain: `..` and absolute names,
symlinks leading out followed by writes through them, hardlinks, whiteouts and opaque markers,
PAX records (xattrs, long paths), GNU long names, devices, and each compression.

Usage: python3 seeds.py [corpus-dir]   (default: corpus/ next to this script)
"""

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))


def tar_bytes(members, fmt=tarfile.PAX_FORMAT):
    """members: list of (name, kind, extra) where kind is file/dir/symlink/hardlink/char/fifo."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name, kind, extra in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            info.mode = 0o755 if kind == "dir" else 0o644
            data = None
            if kind == "file":
                data = extra if isinstance(extra, bytes) else b""
                info.size = len(data)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = extra
            elif kind == "hardlink":
                info.type = tarfile.LNKTYPE
                info.linkname = extra
            elif kind == "char":
                info.type = tarfile.CHRTYPE
                info.devmajor, info.devminor = extra
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            if kind == "xattr":
                info.size = 0
                info.pax_headers = {
                    "SCHILY.xattr.user.note": "hello",
                    "SCHILY.xattr.trusted.overlay.opaque": "y",
                }
                data = b""
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return trim(buf.getvalue())


def trim(tar):
    """Drops tarfile's padding to a 10 KiB record: the entries and one end-of-archive marker."""
    body = tar.rstrip(b"\0")
    return body + b"\0" * (-len(body) % 512 + 1024)


LONG = "deep/" + "n" * 120 + "/" + "m" * 120 + "/file"

LAYERS = {
    "basic": [
        ("etc", "dir", None),
        ("etc/passwd", "file", b"root:x:0:0:root:/root:/bin/sh\n"),
        ("etc/link", "symlink", "passwd"),
        ("etc/abs", "symlink", "/etc/passwd"),
        ("etc/hard", "hardlink", "etc/passwd"),
        ("dev", "dir", None),
        ("dev/null", "char", (1, 3)),
        ("run", "dir", None),
        ("run/pipe", "fifo", None),
        ("attrs", "xattr", None),
    ],
    "whiteouts": [
        ("d", "dir", None),
        ("d/.wh..wh..opq", "file", b""),
        ("d/.wh.gone", "file", b""),
        (".wh..wh.plnk", "file", b""),
        ("d/kept", "file", b"k"),
    ],
    "long-names": [
        (LONG, "file", b"long"),
        ("short", "symlink", LONG),
        ("hl", "hardlink", LONG),
    ],
    "hostile": [
        ("../../escaped", "file", b"x"),
        ("/abs-escaped", "file", b"x"),
        ("up", "symlink", "../../.."),
        ("abs", "symlink", "/"),
        ("up/through", "file", b"x"),
        ("abs/tmp/through", "file", b"x"),
        ("pw", "symlink", "/../../../blob"),
        ("pw", "file", b"over"),
    ],
    "replaced-parent": [
        ("d", "dir", None),
        ("d/x", "dir", None),
        ("d", "symlink", "../sibling"),
        ("loop", "symlink", "loop"),
        ("loop/f", "file", b""),
    ],
}


def write(dirname, name, data):
    os.makedirs(dirname, exist_ok=True)
    with open(os.path.join(dirname, name), "wb") as f:
        f.write(data)


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def image_parts():
    """A one-layer image: (layer tar, config bytes, manifest bytes, index bytes)."""
    layer = tar_bytes(LAYERS["basic"][:3])
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "User": "0"},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha256(layer)]},
            "history": [{"created_by": "ADD . /"}],
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": "sha256:" + sha256(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": "sha256:" + sha256(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": "sha256:" + sha256(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": arch, "os": "linux", **extra},
                    "annotations": {
                        "io.containerd.image.name": "example.com/fuzz/img:latest",
                        "org.opencontainers.image.ref.name": "latest",
                    },
                }
                for arch, extra in [("amd64", {}), ("arm64", {"variant": "v8"})]
            ],
        }
    ).encode()
    return layer, config, manifest, index


def file_tar(files):
    """A tar of regular files (and symlinks given as ('->', target)) from a dict."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            if isinstance(data, tuple):
                info.type = tarfile.SYMTYPE
                info.linkname = data[1]
                t.addfile(info)
            else:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return trim(buf.getvalue())


def main():
    corpus = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")
    layers = {name: tar_bytes(m) for name, m in LAYERS.items()}
    layers["gnu-long-names"] = tar_bytes(LAYERS["long-names"], tarfile.GNU_FORMAT)
    compressed = {
        "basic.gz": gzip.compress(layers["basic"], mtime=0),
        "basic.bz2": bz2.compress(layers["basic"]),
        "basic.xz": lzma.compress(layers["basic"]),
    }
    out = os.path.join(corpus, "unpack_layer")
    for name, data in {**layers, **compressed}.items():
        write(out, name, data)

    out = os.path.join(corpus, "add_archive")
    for name, data in {**layers, **compressed}.items():
        write(out, name + ".keep-ids", b"\x00" + data)
        write(out, name + ".chown", b"\x01" + data)

    layer, config, manifest, index = image_parts()
    oci = file_tar(
        {
            "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
            "index.json": index,
            "blobs/sha256/" + sha256(manifest): manifest,
            "blobs/sha256/" + sha256(config): config,
            "blobs/sha256/" + sha256(layer): layer,
        }
    )
    docker = file_tar(
        {
            "manifest.json": json.dumps(
                [
                    {
                        "Config": "cfg.json",
                        "RepoTags": ["fuzz/img:1"],
                        "Layers": ["l1/layer.tar"],
                    }
                ]
            ).encode(),
            "cfg.json": config,
            "l1/layer.tar": layer,
            "l2/layer.tar": ("->", "../l1/layer.tar"),
        }
    )
    legacy_v1 = json.dumps(
        {"id": "a" * 64, "created": "2020-01-01T00:00:00Z", "os": "linux",
         "container_config": {"Cmd": ["/bin/sh", "-c", "true"]}}
    ).encode()
    legacy = file_tar(
        {
            "repositories": json.dumps({"fuzz/old": {"latest": "a" * 64}}).encode(),
            "a" * 64 + "/json": legacy_v1,
            "a" * 64 + "/layer.tar": layer,
        }
    )
    out = os.path.join(corpus, "image_load")
    write(out, "config", b"\x00" + config)
    write(out, "manifest", b"\x01" + manifest)
    write(out, "index", b"\x02" + index)
    write(out, "oci-layout", b"\x03" + oci)
    write(out, "oci-layout.gz", b"\x03" + gzip.compress(oci, mtime=0))
    write(out, "docker-archive", b"\x03" + docker)
    write(out, "docker-legacy", b"\x03" + legacy)
    write(out, "oci-layout-dir", b"\x04" + oci)
    write(out, "docker-archive-dir", b"\x04" + docker)


if __name__ == "__main__":
    main()
