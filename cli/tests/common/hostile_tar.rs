//! Hand-made tar archives for the hostile-input tests: raw header fields, so that `..`,
//! absolute names and whiteout names (which the tar crate refuses to write) can be made.
#![allow(dead_code)]

/// A unique name for this run's marker files and directories.
pub fn marker(what: &str) -> String {
    format!(
        "bh{what}{}x{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

/// One tar entry, written with raw header fields so that `..` and absolute names (which the tar
/// crate refuses to write) can be made.
#[derive(Clone, Copy)]
pub struct Raw<'a> {
    pub name: &'a str,
    pub kind: tar::EntryType,
    pub mode: u32,
    pub data: &'a [u8],
    pub link: &'a str,
}

pub fn raw_tar(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().unwrap();
            assert!(e.name.len() < 100 && e.link.len() < 100, "name too long");
            gnu.name[..e.name.len()].copy_from_slice(e.name.as_bytes());
            gnu.linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
        }
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(e.data.len() as u64);
        h.set_cksum();
        b.append(&h, e.data).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn file<'a>(name: &'a str, data: &'a [u8]) -> Raw<'a> {
    Raw {
        name,
        kind: tar::EntryType::Regular,
        mode: 0o644,
        data,
        link: "",
    }
}

pub fn dir(name: &str) -> Raw<'_> {
    Raw {
        name,
        kind: tar::EntryType::Directory,
        mode: 0o755,
        data: b"",
        link: "",
    }
}

pub fn symlink<'a>(name: &'a str, link: &'a str) -> Raw<'a> {
    Raw {
        name,
        kind: tar::EntryType::Symlink,
        mode: 0o777,
        data: b"",
        link,
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a docker-archive holding one image `name` made of `layers` (plain tars, bottom first)
/// and loads it into `f`'s root with `builder load`.
pub fn load_layers(f: &super::Fixture, name: &str, layers: &[Vec<u8>]) {
    use sha2::{Digest, Sha256};
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", hex(&Sha256::digest(l))))
        .collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"]
        },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": layers.iter().map(|_| serde_json::json!({"created_by": "hand-made"})).collect::<Vec<_>>()
    }))
    .unwrap();
    let config_name = format!("{}.json", hex(&Sha256::digest(&config)));
    let layer_names: Vec<String> = (0..layers.len())
        .map(|i| format!("l{i}/layer.tar"))
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name,
        "RepoTags": [name],
        "Layers": layer_names,
    }]))
    .unwrap();
    let mut entries = vec![file(&config_name, &config)];
    let dirs: Vec<String> = (0..layers.len()).map(|i| format!("l{i}/")).collect();
    for (i, l) in layers.iter().enumerate() {
        entries.push(dir(&dirs[i]));
        entries.push(file(&layer_names[i], l));
    }
    entries.push(file("manifest.json", &manifest));
    let path = f.dir.path().join(format!("{}.tar", hex(name.as_bytes())));
    std::fs::write(&path, raw_tar(&entries)).unwrap();
    let out = f.cmd().args(["load", "-i"]).arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "load of {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A layer with a static busybox as `/bin/busybox` and `/bin/sh`, plus `extra` entries.
pub fn busybox_layer(extra: &[Raw<'_>]) -> Vec<u8> {
    let busybox = std::fs::read("/usr/bin/busybox").unwrap();
    let mut entries = vec![
        dir("bin/"),
        Raw {
            name: "bin/busybox",
            kind: tar::EntryType::Regular,
            mode: 0o755,
            data: &busybox,
            link: "",
        },
        symlink("bin/sh", "busybox"),
    ];
    for e in extra {
        entries.push(*e);
    }
    raw_tar(&entries)
}
