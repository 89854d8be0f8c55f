//! The same Dockerfiles built by `builder` and by BuildKit (the one inside a private dockerd
//! 20.10, `DOCKER_BUILDKIT=1 docker build`) give the same root filesystem, file by file (path,
//! type, mode, owner, content hash, link target), and the same image config, field by field,
//! with the same history.
//!
//! Differences that remain are deliberate, and each is normalised below with its reason. They all
//! come from the BuildKit in dockerd 20.10 being v0.8, older than the BuildKit this project
//! follows (the current one):
//! - `ArgsEscaped`: v0.8 sets it for every CMD/ENTRYPOINT; current BuildKit only on Windows. It
//!   is not among the compared fields.
//! - COPY/ADD history: current BuildKit records `--chown=`/`--chmod=` in `created_by`, v0.8 left
//!   them out; they are removed from our strings before comparing.
//! - HEALTHCHECK history: current BuildKit prints the config struct with its `StartInterval`
//!   field (five values where v0.8 printed four); our extra duration is removed before comparing.
//! - RUN mount stubs: v0.8 leaves the empty directories it created as mount targets in the
//!   layer; current BuildKit removes them after the step, as we do. Each case lists its targets.
//! - `docker create` adds its container init files (/.dockerenv, /etc/hosts, /etc/hostname,
//!   /etc/resolv.conf, /etc/mtab, /dev, /proc, /sys); they are not part of either image.
//! - mtimes and `created` timestamps differ by nature and are not compared.
//!
//! Heredocs (`examples/heredoc-add`) are not compared: v0.8's built-in Dockerfile frontend predates
//! them, and a `# syntax=` line would make dockerd pull a frontend image from a registry.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use common::dockerd::Dockerd;
use common::{base_archive, examples_dir, Fixture, Need};

/// One Dockerfile to build both ways.
struct Case {
    name: &'static str,
    /// The context: an example directory, or files written for the case.
    context: Context,
    /// Directories v0.8 leaves behind as RUN mount stubs (see the module doc).
    mount_stubs: &'static [&'static str],
    /// `--secret` arguments, given to both builders.
    secrets: &'static [(&'static str, &'static str)],
}

enum Context {
    Example(&'static str),
    Files(Vec<(&'static str, Vec<u8>)>),
}

/// Files docker's container init layer adds (see the module doc).
const DOCKER_INIT_FILES: &[&str] = &[
    "/.dockerenv",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/etc/mtab",
    "/dev",
    "/dev/console",
    "/dev/pts",
    "/dev/shm",
    "/proc",
    "/sys",
];

/// The compared config fields.
const CONFIG_FIELDS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "StopSignal",
    "Healthcheck",
    "Shell",
    "OnBuild",
];

fn tar_of(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data, mode) in entries {
        let mut h = tar::Header::new_gnu();
        if path.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(data.len() as u64);
        }
        h.set_mode(*mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn cases() -> Vec<Case> {
    let s = |t: &str| t.as_bytes().to_vec();
    let archive = tar_of(&[
        ("pkg/", b"", 0o755),
        ("pkg/bin/", b"", 0o700),
        ("pkg/bin/tool", b"#!/bin/sh\necho tool\n", 0o755),
        ("pkg/README", b"readme\n", 0o600),
    ]);
    let busybox = std::fs::read("/usr/bin/busybox").unwrap();
    let base_dockerfile = std::fs::read(examples_dir().join("base/Dockerfile")).unwrap();
    vec![
        Case {
            name: "base",
            context: Context::Files(vec![("Dockerfile", base_dockerfile), ("busybox", busybox)]),
            mount_stubs: &[],
            secrets: &[],
        },
        Case {
            name: "hello",
            context: Context::Example("hello"),
            mount_stubs: &[],
            secrets: &[],
        },
        Case {
            name: "multistage",
            context: Context::Example("multistage"),
            mount_stubs: &[],
            secrets: &[],
        },
        Case {
            name: "files",
            context: Context::Files(vec![
                (
                    "Dockerfile",
                    s(r#"FROM busybox:local AS build
ARG FLAVOUR=plain
WORKDIR /src/deep
RUN echo "built $FLAVOUR" > out.txt && mkdir -p /data/sub && echo v > /data/sub/v && chmod 0750 /data/sub
FROM busybox:local
ENV A=1 B="two words"
WORKDIR work/dir
COPY --chown=1000:1000 f.txt ./owned.txt
COPY --chown=app:app f.txt /home/app/named.txt
COPY --chmod=0600 f.txt /etc/secretish
COPY --chmod=755 dir/ /copied-dir/
COPY f.txt /new/parent/dirs/f.txt
COPY dir /plain-dir
ADD pkg.tar /opt/
ADD pkg.tar /opt/again/pkg.tar
COPY --from=build /src/deep/out.txt /copied/
COPY --from=build --chown=1000:1000 /data /data2
COPY --from=0 /src /src-again
USER app
WORKDIR /home/app/made-by-app
RUN touch by-app.txt && mkdir sub
USER 0:0
RUN ln -s /etc/passwd /passwd-link && ln /etc/group /group-hardlink
"#),
                ),
                ("f.txt", s("hello\n")),
                ("dir/a.txt", s("a\n")),
                ("dir/sub/b.txt", s("b\n")),
                ("pkg.tar", archive),
            ]),
            mount_stubs: &[],
            secrets: &[],
        },
        Case {
            name: "config",
            context: Context::Files(vec![(
                "Dockerfile",
                s(r#"FROM busybox:local
EXPOSE 80 53/udp
EXPOSE 8080/tcp
VOLUME /vol ["/vol2", "/vol3"]
LABEL a=b c="d e"
LABEL multi.line="x y" \
      other=1
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=3s --retries=4 CMD wget -q localhost || exit 1
SHELL ["/bin/sh", "-ec"]
RUN echo under the custom shell > /shell.txt
ENTRYPOINT ["/bin/echo"]
CMD ["hi"]
ONBUILD RUN echo onbuild
ONBUILD COPY . /app
"#),
            )]),
            mount_stubs: &[],
            secrets: &[],
        },
        Case {
            name: "entrypoint-shell-form",
            context: Context::Files(vec![(
                "Dockerfile",
                s(r#"FROM busybox:local
ENV GREETING=hi
ENTRYPOINT echo $GREETING
HEALTHCHECK NONE
"#),
            )]),
            mount_stubs: &[],
            secrets: &[],
        },
        Case {
            name: "cmd-then-entrypoint",
            context: Context::Files(vec![(
                "Dockerfile",
                s(r#"FROM busybox:local AS first
CMD echo first
ENTRYPOINT ["/bin/sh", "-c"]
FROM first
CMD ["echo second"]
USER 1000:1000
"#),
            )]),
            mount_stubs: &[],
            secrets: &[],
        },
        Case {
            // Steps with identical (empty) diffs share one snapshot in the layer stack.
            name: "empty-runs",
            context: Context::Files(vec![(
                "Dockerfile",
                s("FROM busybox:local\nRUN true\nRUN true # again\nRUN true # and again\nRUN echo done > /done\n"),
            )]),
            mount_stubs: &[],
            secrets: &[],
        },
        Case {
            name: "run-mounts",
            context: Context::Files(vec![
                (
                    "Dockerfile",
                    s(r#"FROM busybox:local AS tools
RUN mkdir -p /tools && echo tool > /tools/t.txt
FROM busybox:local
ARG V=7
RUN --mount=type=cache,target=/var/cache/c echo x > /var/cache/c/y && echo cached > /cache.txt
RUN --mount=type=bind,from=tools,source=/tools,target=/mnt/tools cat /mnt/tools/t.txt > /bound.txt
RUN --mount=type=bind,source=ctx.txt,target=/ctx.txt cat /ctx.txt > /from-ctx.txt
RUN --mount=type=tmpfs,target=/scratch echo t > /scratch/t && echo "v=$V" > /tmpfs.txt
RUN --mount=type=secret,id=token cat /run/secrets/token | wc -c > /secret-size.txt
"#),
                ),
                ("ctx.txt", s("from the context\n")),
            ]),
            mount_stubs: &[
                "/var",
                "/var/cache",
                "/var/cache/c",
                "/mnt",
                "/mnt/tools",
                "/ctx.txt",
                "/scratch",
                "/run",
                "/run/secrets",
                "/run/secrets/token",
            ],
            secrets: &[("token", "mounts/token.txt")],
        },
    ]
}

/// A root filesystem entry as compared.
#[derive(Debug, PartialEq, Eq, Clone)]
struct FileEntry {
    kind: String,
    mode: u32,
    uid: u64,
    gid: u64,
    sha256: String,
    link: String,
}

/// The entries of a root filesystem tar, by absolute path. Hard links are listed with their
/// content (the path they link to is an export detail: docker's export and ours may pick a
/// different first name for the same inode).
fn rootfs_entries(tar_path: &Path) -> BTreeMap<String, FileEntry> {
    let data = std::fs::read(tar_path).unwrap();
    let mut by_path: BTreeMap<String, FileEntry> = BTreeMap::new();
    let mut hardlinks = Vec::new();
    let mut archive = tar::Archive::new(&data[..]);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = normalise(&entry.path().unwrap().to_string_lossy());
        if path == "/" {
            continue;
        }
        let h = entry.header().clone();
        let kind = h.entry_type();
        let link = entry
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        let name = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => "file",
            tar::EntryType::Directory => "dir",
            tar::EntryType::Symlink => "symlink",
            tar::EntryType::Link => {
                hardlinks.push((path.clone(), normalise(&link), h.mode().unwrap_or(0)));
                continue;
            }
            tar::EntryType::Char => "char",
            tar::EntryType::Block => "block",
            tar::EntryType::Fifo => "fifo",
            _ => "other",
        };
        by_path.insert(
            path,
            FileEntry {
                kind: name.to_string(),
                mode: h.mode().unwrap_or(0) & 0o7777,
                uid: h.uid().unwrap_or(u64::MAX),
                gid: h.gid().unwrap_or(u64::MAX),
                sha256: if name == "file" {
                    hex(&Sha256::digest(&content))
                } else {
                    String::new()
                },
                link: if name == "symlink" {
                    link
                } else {
                    String::new()
                },
            },
        );
    }
    for (path, target, _) in hardlinks {
        let e = by_path.get(&target).cloned().unwrap_or_else(|| {
            panic!(
                "{}: hard link {path} to missing {target}",
                tar_path.display()
            )
        });
        by_path.insert(path, e);
    }
    by_path
}

fn normalise(p: &str) -> String {
    let trimmed = p.trim_start_matches("./").trim_start_matches('/');
    format!("/{}", trimmed.trim_end_matches('/'))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The image config JSON of the only image in a docker-archive.
fn archive_config(archive: &Path) -> serde_json::Value {
    let data = std::fs::read(archive).unwrap();
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut a = tar::Archive::new(&data[..]);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        if p.ends_with(".json") {
            let mut b = Vec::new();
            e.read_to_end(&mut b).unwrap();
            files.insert(p, b);
        }
    }
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let config = manifest[0]["Config"].as_str().unwrap();
    serde_json::from_slice(&files[config]).unwrap()
}

/// Our history strings with the flags v0.8 did not record removed (see the module doc).
fn as_v08_history(created_by: &str) -> String {
    if created_by.starts_with("COPY ") || created_by.starts_with("ADD ") {
        return created_by
            .split(' ')
            .filter(|w| !w.starts_with("--chown=") && !w.starts_with("--chmod="))
            .collect::<Vec<_>>()
            .join(" ");
    }
    if let Some(rest) = created_by.strip_prefix("HEALTHCHECK &{") {
        // `[test] "interval" "timeout" "start-period" "start-interval" 'retries'}`: drop the
        // fourth duration.
        if let Some(end) = rest.find("] ") {
            let (test, durations) = rest.split_at(end + 2);
            let mut parts: Vec<&str> = durations.split(' ').collect();
            if parts.len() == 5 {
                parts.remove(3);
            }
            return format!("HEALTHCHECK &{{{test}{}", parts.join(" "));
        }
    }
    created_by.to_string()
}

fn history(config: &serde_json::Value, ours: bool) -> Vec<(String, bool)> {
    config["history"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|h| {
            let by = h["created_by"].as_str().unwrap_or("");
            (
                if ours {
                    as_v08_history(by)
                } else {
                    by.to_string()
                },
                h["empty_layer"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

/// Builds one case both ways and lists every difference.
fn compare(f: &Fixture, d: &Dockerd, case: &Case) -> Vec<String> {
    let ctx: PathBuf = match &case.context {
        Context::Example(name) => examples_dir().join(name),
        Context::Files(files) => {
            let dir = f.dir.path().join(format!("ctx-{}", case.name));
            for (path, data) in files {
                let p = dir.join(path);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, data).unwrap();
                if *path == "busybox" {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
                }
            }
            dir
        }
    };
    let secrets: Vec<String> = case
        .secrets
        .iter()
        .map(|(id, src)| format!("id={id},src={}", examples_dir().join(src).display()))
        .collect();

    // Ours.
    let our_rootfs = f.dir.path().join(format!("{}.rootfs.tar", case.name));
    let our_archive = f.dir.path().join(format!("{}.docker.tar", case.name));
    let mut args = vec![
        "-t".to_string(),
        format!("ours-{}:cmp", case.name),
        "-o".to_string(),
        format!("type=tar,dest={}", our_rootfs.display()),
        "-o".to_string(),
        format!("type=docker,dest={}", our_archive.display()),
    ];
    for s in &secrets {
        args.push("--secret".into());
        args.push(s.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    f.build_ok(&ctx, &args);

    // BuildKit's.
    let tag = format!("bk-{}:cmp", case.name);
    let mut build = d.command();
    build.env("DOCKER_BUILDKIT", "1").args([
        "build",
        "--network=host",
        "--progress=plain",
        "-t",
        &tag,
    ]);
    for s in &secrets {
        build.arg("--secret").arg(s);
    }
    let out = build.arg(&ctx).output().unwrap();
    assert!(
        out.status.success(),
        "{}: BuildKit build failed:\n{}",
        case.name,
        String::from_utf8_lossy(&out.stderr)
    );
    let container = d.docker_ok(&["create", &tag]).trim().to_string();
    let their_rootfs = d.scratch().join(format!("{}.export.tar", case.name));
    d.docker_ok(&["export", "-o", their_rootfs.to_str().unwrap(), &container]);
    d.docker_ok(&["rm", &container]);
    let their_archive = d.scratch().join(format!("{}.save.tar", case.name));
    d.docker_ok(&["save", "-o", their_archive.to_str().unwrap(), &tag]);

    let mut diffs = Vec::new();
    let name = case.name;

    // Root filesystems.
    let ours = rootfs_entries(&our_rootfs);
    let mut theirs = rootfs_entries(&their_rootfs);
    for p in DOCKER_INIT_FILES {
        if !ours.contains_key(*p) {
            theirs.remove(*p);
        }
    }
    for p in case.mount_stubs {
        if !ours.contains_key(*p) {
            if let Some(e) = theirs.get(*p) {
                if e.kind == "dir" || (e.kind == "file" && e.sha256 == hex(&Sha256::digest(b""))) {
                    theirs.remove(*p);
                }
            }
        }
    }
    let paths: std::collections::BTreeSet<&String> = ours.keys().chain(theirs.keys()).collect();
    for p in paths {
        match (ours.get(p), theirs.get(p)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => diffs.push(format!("{name}: {p}: ours {a:?}, BuildKit {b:?}")),
        }
    }

    // Configs.
    let our_config = archive_config(&our_archive);
    let their_config = archive_config(&their_archive);
    for field in CONFIG_FIELDS {
        let a = &our_config["config"][field];
        let b = &their_config["config"][field];
        if a != b {
            diffs.push(format!("{name}: config {field}: ours {a}, BuildKit {b}"));
        }
    }
    let (a, b) = (history(&our_config, true), history(&their_config, false));
    if a != b {
        diffs.push(format!(
            "{name}: history differs:\n  ours     {a:?}\n  BuildKit {b:?}"
        ));
    }
    diffs
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_docker),
    ignore = "needs root, /usr/bin/busybox and dockerd"
)]
fn builder_and_buildkit_build_the_same_images() {
    common::require(&[Need::Root, Need::Busybox, Need::Docker]);
    let f = Fixture::new();
    let d = Dockerd::start();
    d.docker_ok(&["load", "-i", base_archive().to_str().unwrap()]);
    let mut diffs = Vec::new();
    for case in cases() {
        diffs.extend(compare(&f, &d, &case));
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}
