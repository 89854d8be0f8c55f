//! The same Dockerfiles built by `builder` and by BuildKit give the same image: the same root
//! filesystem, file by file (path, type, mode, owner, content hash, symlink target, and which
//! paths are hardlinks of each other), as the image's layers give it when applied in order, and
//! the same image config, field by field, with the same history.
//!
//! The oracle comes from the environment:
//! - `BUILDCTL` and `BUILDKIT_ADDR` set: a current BuildKit (`buildkitd` with the OCI worker),
//!   driven by that `buildctl`. The base image reaches it as an OCI layout saved by `builder`,
//!   passed as a named context (`--oci-layout`, `--opt context:busybox:local=oci-layout://...`).
//!   Against it there is no accepted difference at all.
//! - otherwise: the BuildKit inside a private dockerd 20.10 (`DOCKER_BUILDKIT=1 docker
//!   build`), which CI runs. That BuildKit is v0.8 with its built-in Dockerfile frontend, older
//!   than the BuildKit this project follows; the differences below exist only because of that,
//!   and are normalised (or the case skipped) in dockerd mode only:
//!   - `ArgsEscaped`: v0.8 sets it for every CMD/ENTRYPOINT; current BuildKit only on Windows.
//!     It is not among the compared fields.
//!   - COPY/ADD history: current BuildKit records `--chown=`/`--chmod=` in `created_by`, v0.8
//!     left them out; they are removed from our strings before comparing.
//!   - HEALTHCHECK history: current BuildKit prints the config struct with its `StartInterval`
//!     field (five values where v0.8 printed four); our extra duration is removed.
//!   - RUN mount stubs: v0.8 leaves the empty directories and files it created as mount targets
//!     in the layer; current BuildKit removes them after the step, as we do. Each case lists
//!     its targets.
//!   - Cases marked `current_only` guard a rule v0.8 did not have yet (its frontend predates
//!     `--link` and `--parents`; it applied `--chmod` to files only, left `--chown` off files
//!     extracted by ADD, gave a RUN user no supplementary primary group, left inherited ARGs
//!     out of the RUN history); each gives its reason (checked with `BUILDKIT_COMPARE_ALL=1`),
//!     and dockerd mode skips it.
//!
//! mtimes and `created` timestamps differ by nature and are not compared. A difference found
//! and not fixed yet is not accepted either: its case stays out of the list, kept with what was
//! observed in the comment before `heredoc_cases`.
//!
//! Run against a current BuildKit:
//! `BUILDCTL=/path/to/buildctl BUILDKIT_ADDR=unix:///path/to/buildkitd.sock cargo test -p cli
//! --test buildkit_compare -- --nocapture`. `BUILDKIT_COMPARE_ONLY=name,name` runs only those
//! cases; `BUILDKIT_COMPARE_ALL=1` runs the `current_only` ones against dockerd too.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use common::dockerd::Dockerd;
use common::{base_archive, examples_dir, Fixture, Need};

/// One Dockerfile to build both ways.
struct Case {
    /// Named after the rule the case guards.
    name: &'static str,
    /// The context: an example directory, or files written for the case.
    context: Context,
    /// Hardlinks made in a written context: (new path, existing path).
    hardlinks: &'static [(&'static str, &'static str)],
    /// Symlinks made in a written context: (path, target as written).
    symlinks: &'static [(&'static str, &'static str)],
    /// Paths v0.8 leaves behind as RUN mount stubs (see the module doc).
    mount_stubs: &'static [&'static str],
    /// `--secret` arguments, given to both builders.
    secrets: &'static [(&'static str, &'static str)],
    /// Both builds must fail, ours saying the first text, BuildKit the second.
    fails_with: Option<(&'static str, &'static str)>,
    /// Why v0.8 cannot take part, when it cannot (see the module doc).
    current_only: Option<&'static str>,
}

impl Case {
    fn new(name: &'static str, context: Context) -> Case {
        Case {
            name,
            context,
            hardlinks: &[],
            symlinks: &[],
            mount_stubs: &[],
            secrets: &[],
            fails_with: None,
            current_only: None,
        }
    }

    fn current_only(mut self, why: &'static str) -> Case {
        self.current_only = Some(why);
        self
    }
}

enum Context {
    Example(&'static str),
    Files(Vec<(&'static str, Vec<u8>)>),
}

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

/// In a written Dockerfile, this stands for the test's HTTP server (`http://127.0.0.1:PORT`).
const HTTP: &str = "{HTTP}";

/// What the test's HTTP server answers to every GET.
const REMOTE_BODY: &[u8] = b"remote body\n";

fn tar_of(entries: &[(&str, &[u8], u32, u64, u64)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data, mode, uid, gid) in entries {
        let mut h = tar::Header::new_gnu();
        if path.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(data.len() as u64);
        }
        h.set_mode(*mode);
        h.set_uid(*uid);
        h.set_gid(*gid);
        h.set_mtime(1_600_000_000);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A tar holding a directory, a file, a symlink and a hardlink to the file, and a nested
/// directory whose entry comes after its contents.
fn tar_with_links() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, data: &[u8], mode: u32, link: Option<&str>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        b.append_data(&mut h, path, data).unwrap();
    };
    add("top/", tar::EntryType::Directory, b"", 0o755, None);
    add("top/file", tar::EntryType::Regular, b"data\n", 0o640, None);
    add("top/sym", tar::EntryType::Symlink, b"", 0o777, Some("file"));
    add(
        "top/hard",
        tar::EntryType::Link,
        b"",
        0o640,
        Some("top/file"),
    );
    add(
        "top/late/inner",
        tar::EntryType::Regular,
        b"inner\n",
        0o600,
        None,
    );
    add("top/late/", tar::EntryType::Directory, b"", 0o711, None);
    b.into_inner().unwrap()
}

fn dockerfile(text: &str) -> (&'static str, Vec<u8>) {
    ("Dockerfile", text.as_bytes().to_vec())
}

fn file(path: &'static str, text: &str) -> (&'static str, Vec<u8>) {
    (path, text.as_bytes().to_vec())
}

fn cases() -> Vec<Case> {
    let archive = tar_of(&[
        ("pkg/", b"", 0o755, 0, 0),
        ("pkg/bin/", b"", 0o700, 0, 0),
        ("pkg/bin/tool", b"#!/bin/sh\necho tool\n", 0o755, 0, 0),
        ("pkg/README", b"readme\n", 0o600, 0, 0),
    ]);
    let owned_archive = tar_of(&[
        ("pkg/", b"", 0o750, 1234, 5678),
        ("pkg/x", b"x\n", 0o640, 42, 43),
        ("pkg/y", b"y\n", 0o644, 0, 0),
    ]);
    let busybox = std::fs::read("/usr/bin/busybox").unwrap();
    let base_dockerfile = std::fs::read(examples_dir().join("base/Dockerfile")).unwrap();
    let mut cases = vec![
        Case::new(
            "base",
            Context::Files(vec![("Dockerfile", base_dockerfile), ("busybox", busybox)]),
        ),
        Case::new("hello", Context::Example("hello")),
        Case::new("multistage", Context::Example("multistage")),
        Case::new(
            "files",
            Context::Files(vec![
                dockerfile(
                    r#"FROM busybox:local AS build
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
"#,
                ),
                file("f.txt", "hello\n"),
                file("dir/a.txt", "a\n"),
                file("dir/sub/b.txt", "b\n"),
                ("pkg.tar", archive),
            ]),
        ),
        Case::new(
            "config",
            Context::Files(vec![dockerfile(
                r#"FROM busybox:local
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
"#,
            )]),
        ),
        Case::new(
            "entrypoint-shell-form",
            Context::Files(vec![dockerfile(
                "FROM busybox:local\nENV GREETING=hi\nENTRYPOINT echo $GREETING\nHEALTHCHECK NONE\n",
            )]),
        ),
        Case::new(
            "cmd-then-entrypoint",
            Context::Files(vec![dockerfile(
                r#"FROM busybox:local AS first
CMD echo first
ENTRYPOINT ["/bin/sh", "-c"]
FROM first
CMD ["echo second"]
USER 1000:1000
"#,
            )]),
        ),
        // Steps with identical (empty) diffs share one snapshot in the layer stack.
        Case::new(
            "empty-runs",
            Context::Files(vec![dockerfile(
                "FROM busybox:local\nRUN true\nRUN true # again\nRUN true # and again\nRUN echo done > /done\n",
            )]),
        ),
        Case {
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
            ..Case::new(
                "run-mounts",
                Context::Files(vec![
                    dockerfile(
                        r#"FROM busybox:local AS tools
RUN mkdir -p /tools && echo tool > /tools/t.txt
FROM busybox:local
ARG V=7
RUN --mount=type=cache,target=/var/cache/c echo x > /var/cache/c/y && echo cached > /cache.txt
RUN --mount=type=bind,from=tools,source=/tools,target=/mnt/tools cat /mnt/tools/t.txt > /bound.txt
RUN --mount=type=bind,source=ctx.txt,target=/ctx.txt cat /ctx.txt > /from-ctx.txt
RUN --mount=type=tmpfs,target=/scratch echo t > /scratch/t && echo "v=$V" > /tmpfs.txt
RUN --mount=type=secret,id=token cat /run/secrets/token | wc -c > /secret-size.txt
"#,
                    ),
                    file("ctx.txt", "from the context\n"),
                ]),
            )
        },
        // 1: HOME comes from the passwd entry of the step's uid; `/` without one; ENV wins.
        // (BuildKit adds the trace context of its own tracing, `OTEL_*` and `TRACEPARENT`,
        // when it traces; they depend on the daemon, not on the Dockerfile, and are left out.)
        Case::new(
            "run_env_home_from_passwd",
            Context::Files(vec![dockerfile(
                r#"FROM busybox:local
RUN echo "$HOME" > /home-root.txt && env | grep -v -e ^OTEL_ -e ^TRACEPARENT= | sort > /env-root.txt
USER app
RUN echo "$HOME" > /tmp/home-app.txt
USER 4242
RUN echo "$HOME" > /tmp/home-4242.txt
USER nobody:app
RUN echo "$HOME" > /tmp/home-nobody.txt
USER 0
ENV HOME=/custom
RUN echo "$HOME" > /home-env.txt
ENV HOME=
RUN echo "[$HOME]" > /home-env-empty.txt
"#,
            )]),
        ),
        // 2: a stage built on another sees the ARGs that stage declared.
        Case::new(
            "stage_inherits_parent_stage_args",
            Context::Files(vec![dockerfile(
                r#"FROM busybox:local AS first
ARG A=1
ARG B
ARG C=c
FROM first AS second
ARG C=own
RUN echo "A=$A B=$B C=$C" > /args.txt
WORKDIR /w-$A
FROM second
RUN echo "A=$A C=$C" > /args-again.txt
"#,
            )]),
        )
        .current_only(
            "v0.8 passes the parent stage's ARG values on but leaves them out of the RUN \
             history's `|N K=V` list",
        ),
        // 3: ADD of a local archive keeps the archive's owners; --chown applies to them too.
        Case::new(
            "add_archive_keeps_tar_owners",
            Context::Files(vec![
                dockerfile("FROM busybox:local\nADD own.tar /own/\nADD own.tar f.txt /mixed/\n"),
                ("own.tar", owned_archive.clone()),
                file("f.txt", "f\n"),
            ]),
        ),
        Case::new(
            "add_archive_chown_applies_to_extracted_files",
            Context::Files(vec![
                dockerfile("FROM busybox:local\nADD --chown=7:8 own.tar f.txt /own-chown/\n"),
                ("own.tar", owned_archive),
                file("f.txt", "f\n"),
            ]),
        )
        .current_only("v0.8 leaves the archive's owners on extracted files whatever --chown says"),
        Case::new(
            "add_archive_with_chmod",
            Context::Files(vec![
                dockerfile("FROM busybox:local\nADD --chmod=600 own.tar f.txt /own-mode/\n"),
                ("own.tar", tar_of(&[("pkg/", b"", 0o750, 1, 2), ("pkg/x", b"x\n", 0o644, 3, 4)])),
                file("f.txt", "f\n"),
            ]),
        ),
        // 4: every documented --chown form, names resolved in the image.
        Case::new(
            "chown_every_form_group_only_included",
            Context::Files(vec![
                dockerfile(
                    r#"FROM busybox:local
COPY --chown=:1234 f.txt /chown/group-id.txt
COPY --chown=:app f.txt /chown/group-name.txt
COPY --chown=app f.txt /chown/user.txt
COPY --chown=app:nogroup f.txt /chown/user-group.txt
COPY --chown=1001 f.txt /chown/uid.txt
COPY --chown=1001:1002 f.txt /chown/uid-gid.txt
COPY --chown=app:1002 f.txt /chown/user-gid.txt
COPY --chown=0:app f.txt /chown/uid-group.txt
COPY --chown=root:root dir /chown/root-tree
COPY --chown=app dir /chown/app-tree
"#,
                ),
                file("f.txt", "f\n"),
                file("dir/a.txt", "a\n"),
                file("dir/sub/b.txt", "b\n"),
            ]),
        ),
        // 5: several sources, one wildcard matching nothing: the others are copied.
        Case::new(
            "copy_wildcard_matching_nothing_beside_other_sources",
            Context::Files(vec![
                dockerfile("FROM busybox:local\nCOPY f.txt nothing-* /dst/\n"),
                file("f.txt", "f\n"),
            ]),
        ),
        // 6: `.dockerignore` with exceptions sends only re-included files and their parents.
        Case::new(
            "dockerignore_exceptions_leave_no_empty_directories",
            Context::Files(vec![
                dockerfile("FROM busybox:local\nCOPY . /ctx/\n"),
                file(
                    ".dockerignore",
                    "dir\n!dir/keep/k.txt\nother/*\n!other/o.txt\n**/*.log\n!keep.log\n",
                ),
                file("dir/keep/k.txt", "k\n"),
                file("dir/drop/d.txt", "d\n"),
                file("dir/x.txt", "x\n"),
                file("other/o.txt", "o\n"),
                file("other/gone/g.txt", "g\n"),
                file("logs/a.log", "a\n"),
                file("deep/er/b.log", "b\n"),
                file("keep.log", "k\n"),
            ]),
        ),
        Case::new(
            "dockerignore_star_with_exceptions_sends_only_reincluded_files",
            Context::Files(vec![
                dockerfile("FROM busybox:local\nCOPY . /ctx/\nCOPY dir /only-dir/\n"),
                file(
                    ".dockerignore",
                    "*\n!dir/keep/k.txt\n!other/o.txt\n!keep.log\n!Dockerfile\n",
                ),
                file("dir/keep/k.txt", "k\n"),
                file("dir/drop/d.txt", "d\n"),
                file("other/o.txt", "o\n"),
                file("other/gone/g.txt", "g\n"),
                file("logs/a.log", "a\n"),
                file("keep.log", "k\n"),
            ]),
        ),
        // 7: COPY onto an existing symlink writes through it, resolved inside the root.
        Case::new(
            "copy_onto_existing_symlink_writes_through",
            Context::Files(vec![
                dockerfile(
                    r#"FROM busybox:local
RUN mkdir /real && ln -s /real/target /dest-link && ln -s /real /dir-link && ln -s /nowhere/t /dangling
COPY f.txt /dest-link
COPY f.txt /dir-link/via-dir.txt
COPY f.txt /dangling
COPY dir /dir-link
"#,
                ),
                file("f.txt", "f\n"),
                file("dir/a.txt", "a\n"),
            ]),
        ),
        // 8a: files hardlinked in the context stay one inode after COPY.
        Case {
            hardlinks: &[("dir/b-link.txt", "dir/a.txt"), ("top-link.txt", "dir/a.txt")],
            ..Case::new(
                "context_hardlinks_stay_hardlinked",
                Context::Files(vec![
                    dockerfile("FROM busybox:local\nCOPY . /ctx/\nCOPY dir /dir-only/\n"),
                    file("dir/a.txt", "a\n"),
                ]),
            )
        },
        // 8b: a RUN hardlinking a lower layer's file records the new name alone.
        Case::new(
            "run_hardlink_to_lower_layer_file",
            Context::Files(vec![dockerfile(
                r#"FROM busybox:local
RUN echo data > /lower.txt && ln /lower.txt /same-layer-link.txt
RUN ln /etc/group /group-hardlink && ln /lower.txt /lower-link.txt
RUN chmod 644 /etc/passwd && touch -c /nothing
"#,
            )]),
        ),
        // 9: a numeric --chmod applies to copied directories and those COPY creates.
        Case::new(
            "copy_chmod_applies_to_directories",
            Context::Files(vec![
                dockerfile(
                    r#"FROM busybox:local
COPY --chmod=700 dir /chmod-dir/
COPY --chmod=750 dir /deep/er/chmod-dir/
COPY --chmod=0640 f.txt /deep2/er/f.txt
COPY --chmod=u+x,g-r dir /symbolic/made/
"#,
                ),
                file("f.txt", "f\n"),
                file("dir/a.txt", "a\n"),
                file("dir/sub/b.txt", "b\n"),
            ]),
        )
        .current_only(
            "v0.8 applies --chmod to copied files only (directories, created ones included, \
             stay 0755) and ignores symbolic modes",
        ),
        // 10: a JSON array holding something other than strings is an error.
        Case {
            fails_with: Some((
                "when using JSON array syntax, arrays must be comprised of strings only",
                "when using JSON array syntax, arrays must be comprised of strings only",
            )),
            ..Case::new(
                "json_array_of_non_strings_is_an_error",
                Context::Files(vec![dockerfile(
                    "FROM busybox:local\nCMD [\"echo\", [\"nested\"]]\n",
                )]),
            )
        },
        // Same families, more rules.
        Case::new(
            "copy_from_stage_keeps_owners_of_the_tree",
            Context::Files(vec![dockerfile(
                r#"FROM busybox:local AS src
RUN mkdir -p /t/sub && echo a > /t/a && echo b > /t/sub/b && chown -R 1000:1000 /t && chown 42:43 /t/sub/b && chmod 4755 /t/a
FROM busybox:local
COPY --from=src /t /kept
COPY --from=src --chown=7 /t /chowned
COPY --from=src /t/sub/ /into/
"#,
            )]),
        ),
        Case::new(
            "copy_link_gives_the_same_tree",
            Context::Files(vec![
                dockerfile(
                    r#"FROM busybox:local
COPY --link f.txt /linked/f.txt
COPY --link --chown=1000:1000 dir /linked-dir/
COPY --link --chmod=600 f.txt /etc/linked-mode
"#,
                ),
                file("f.txt", "f\n"),
                file("dir/a.txt", "a\n"),
            ]),
        )
        .current_only("v0.8's frontend has no --link"),
        Case {
            // BuildKit's message names the missing input, not the name.
            fails_with: Some((
                "COPY --link cannot look up the name \"app\"",
                "invalid user index: -1",
            )),
            ..Case::new(
                "copy_link_with_a_named_chown_fails",
                Context::Files(vec![
                    dockerfile("FROM busybox:local\nCOPY --link --chown=app f.txt /f.txt\n"),
                    file("f.txt", "f\n"),
                ]),
            )
            .current_only("v0.8's frontend has no --link")
        },
        Case::new(
            "copy_parents_with_wildcards",
            Context::Files(vec![
                dockerfile(
                    "FROM busybox:local\nCOPY --parents src/*/x.txt /p/\nCOPY --parents ./src/./a/*.txt /q/\n",
                ),
                file("src/a/x.txt", "ax\n"),
                file("src/a/y.txt", "ay\n"),
                file("src/b/x.txt", "bx\n"),
                file("src/c/z.txt", "cz\n"),
            ]),
        )
        .current_only("v0.8's frontend has no --parents"),
        Case::new(
            "add_remote_file",
            Context::Files(vec![dockerfile(&format!(
                "FROM busybox:local\nADD {HTTP}/remote.txt /remote/\nADD --chown=app:app {HTTP}/remote.txt /remote-owned.txt\n"
            ))]),
        ),
        Case::new(
            "add_remote_file_chmod",
            Context::Files(vec![dockerfile(&format!(
                "FROM busybox:local\nADD --chmod=640 {HTTP}/remote.txt /remote-mode.txt\n"
            ))]),
        )
        .current_only("v0.8 ignores ADD --chmod of a URL (the file stays 0600)"),
        Case::new(
            "workdir_through_symlinks",
            Context::Files(vec![dockerfile(
                r#"FROM busybox:local
RUN mkdir -p /real && ln -s /real /wd-link && ln -s real /rel-link
WORKDIR /wd-link/sub
RUN echo here > here.txt
WORKDIR /rel-link/other
COPY Dockerfile ./
"#,
            )]),
        ),
        Case::new(
            "user_with_a_group",
            Context::Files(vec![
                dockerfile(
                    r#"FROM busybox:local
USER app:nogroup
RUN id -u > /tmp/id-names.txt && id -g >> /tmp/id-names.txt && touch /tmp/by-app-nogroup
USER 1000:50
RUN id -u > /tmp/id-ids.txt && id -g >> /tmp/id-ids.txt && touch /tmp/by-ids
USER app
RUN id -u > /tmp/id-app.txt && id -g >> /tmp/id-app.txt
COPY f.txt /after-user.txt
"#,
                ),
                file("f.txt", "f\n"),
            ]),
        ),
        Case::new(
            "run_user_supplementary_groups_include_the_primary_group",
            Context::Files(vec![dockerfile(
                r#"FROM busybox:local
USER app:nogroup
RUN id > /tmp/id-names.txt
USER 1000:50
RUN id > /tmp/id-ids.txt
USER app
RUN id > /tmp/id-app.txt
USER 0
RUN id > /id-root.txt
"#,
            )]),
        )
        .current_only("v0.8 gives a RUN user no supplementary groups unless /etc/group lists it"),
        Case::new(
            "shell_does_not_change_healthcheck",
            Context::Files(vec![dockerfile(
                r#"FROM busybox:local
SHELL ["/bin/sh", "-ec"]
HEALTHCHECK --interval=10s CMD echo healthy
RUN echo shell > /shell.txt
CMD echo run
"#,
            )]),
        ),
    ];
    cases.extend(heredoc_cases());
    cases.extend(run_flag_cases());
    cases.extend(variable_cases());
    cases.extend(metadata_cases());
    cases.extend(copy_add_cases());
    cases.extend(parsing_cases());
    cases.extend(stage_and_error_cases());
    cases.extend(everyday_cases());
    for case in &mut cases {
        if let Some(why) = not_in_v08(case.name) {
            case.current_only = Some(why);
        }
        if let Some(stubs) = v08_mount_stubs(case.name) {
            case.mount_stubs = stubs;
        }
    }
    cases
}

/// Why v0.8 cannot take part in a case added with the wider net (see the module doc), each
/// checked against dockerd 20.10 with `BUILDKIT_COMPARE_ALL=1`.
fn not_in_v08(name: &str) -> Option<&'static str> {
    Some(match name {
        n if n.starts_with("heredoc_") => "v0.8's built-in frontend has no heredocs",
        "run_mount_tmpfs_leaves_nothing" => "v0.8 has no tmpfs `size=`",
        "run_network_none_has_only_loopback" | "run_network_host_needs_the_entitlement" => {
            "v0.8's built-in frontend has no RUN --network"
        }
        "run_security_insecure_needs_the_entitlement" => {
            "v0.8's built-in frontend has no RUN --security"
        }
        "platform_args_are_automatic_in_from_and_declared_stages"
        | "arg_redeclared_after_from_takes_the_global_default" => {
            "v0.8 records a bare ARG without the value it inherits (`ARG TARGETARCH`)"
        }
        "arg_default_expansion_modifiers" => "v0.8 has no `${X#pat}`/`${X%pat}` expansions",
        "healthcheck_every_flag" => "v0.8 has no HEALTHCHECK --start-interval",
        "healthcheck_exec_form_and_zero_durations" => "v0.8 refuses `--interval=0s`",
        "copy_exclude_patterns" => "v0.8's frontend has no --exclude",
        "add_checksum_of_a_remote_file" | "add_wrong_checksum_fails" => {
            "v0.8's frontend has no ADD --checksum"
        }
        "add_keep_git_dir_is_accepted_for_a_local_file" => "v0.8's frontend has no --keep-git-dir",
        "run_secret_as_an_environment_variable" => "v0.8 has no secret `env=`",
        "add_local_compressed_archives_are_extracted" => "v0.8 does not extract zstd archives",
        "user_numeric_without_passwd_entry" | "user_root_with_a_named_group_and_expose_sctp" => {
            "v0.8 gives a RUN user other groups (no primary group among the supplementary ones)"
        }
        "copy_chown_and_chmod_from_variables" | "copy_chmod_special_bits" => {
            "v0.8 applies --chmod to files only, without special bits or variables"
        }
        "add_archive_with_links_and_late_directory_entries" => {
            "v0.8 leaves the archive's owners on extracted files whatever --chown says"
        }
        "env_path_extension_and_arg_env_interplay"
        | "arg_scoping_across_stages_and_targets"
        | "child_stage_applies_the_config_env_over_inherited_arg_values" => {
            "v0.8 records another value for an ARG an ENV of the same name shadows"
        }
        "app_image_with_user_workdir_and_chown" => {
            "v0.8 gives a RUN user other groups (no primary group among the supplementary ones)"
        }
        "add_local_file_with_chown_and_chmod_and_link" => "v0.8's frontend has no COPY --link",
        "copy_chmod_symbolic_and_octal_forms" => {
            "v0.8 has no symbolic --chmod and applies --chmod to files only"
        }
        "copy_missing_file_fails"
        | "failing_run_reports_the_exit_code"
        | "copy_from_a_variable_is_refused"
        | "copy_wildcard_in_a_missing_directory_fails"
        | "copy_from_an_image_wildcard_in_a_missing_directory_fails"
        | "context_symlink_leading_outside_is_resolved_inside"
        | "run_required_secret_missing_fails" => "v0.8 fails with another message",
        _ => return None,
    })
}

/// The RUN mount stubs v0.8 leaves in the layer, for cases added with the wider net.
fn v08_mount_stubs(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "run_mount_cache_options" => &[
            "/c1",
            "/c2",
            "/c3",
            "/var",
            "/var/lib",
            "/var/lib/deep",
            "/var/lib/deep/c4",
        ],
        "run_mount_cache_from_a_stage_is_seeded_with_it" => &["/c"],
        "run_mount_bind_of_the_context_respects_dockerignore" => &["/ctx", "/s"],
        "cache_mount_survives_between_steps_of_one_build" => &["/cache"],
        "run_mount_bind_rw_writes_are_discarded" => &["/ctx", "/ctx2", "/mnt"],
        "run_mounts_from_an_image_and_optional_secrets" => &[
            "/bb",
            "/ro-cache",
            "/run",
            "/run/secrets",
            "/run/secrets/absent",
        ],
        _ => return None,
    })
}

// Differences from current BuildKit found by these cases and not fixed yet. Each is left out
// of `cases()` (the comparison has no accepted difference) until it is fixed, and listed here
// with its case and what was observed. None at the moment.

/// Heredocs in RUN and COPY: quoting, expansion, `<<-`, several at once, a shebang.
fn heredoc_cases() -> Vec<Case> {
    vec![
        // A lone heredoc is the shell's script: the shell expands it, quoted or not.
        Case::new(
            "heredoc_run_lone_document_is_the_script",
            Context::Files(vec![dockerfile(
                "FROM busybox:local\nARG NAME=world\nRUN <<EOF\necho \"hello $NAME\" > /unquoted.txt\necho second >> /unquoted.txt\nEOF\nRUN <<'EOF'\necho \"quoted $NAME\" > /quoted.txt\nEOF\nRUN <<-EOF\n\techo tab-stripped > /dash.txt\n\tEOF\n",
            )]),
        ),
        Case::new(
            "heredoc_run_as_stdin_of_a_command",
            Context::Files(vec![dockerfile(
                "FROM busybox:local\nARG NAME=world\nRUN cat <<EOF > /stdin.txt\nstdin $NAME\nEOF\nRUN cat <<'EOF' > /stdin-quoted.txt\nstdin $NAME\nEOF\nRUN cat <<A > /a.txt && cat <<B > /b.txt\nfirst\nA\nsecond\nB\n",
            )]),
        ),
        Case::new(
            "heredoc_run_with_tab_stripping_reaches_the_shell_as_written",
            Context::Files(vec![dockerfile(
                "FROM busybox:local\nRUN <<-EOT sh\n\techo tab > /t1.txt\n\tEOT\nRUN cat <<-A > /t2.txt\n\tindented\n\t\tdouble\n\tA\n",
            )]),
        ),
        Case::new(
            "heredoc_run_with_a_shebang_runs_as_a_file",
            Context::Files(vec![dockerfile(
                "FROM busybox:local\nRUN <<EOF\n#!/bin/sh\necho \"$0\" > /shebang.txt\nEOF\n",
            )]),
        ),
        Case::new(
            "heredoc_copy_expands_unless_quoted",
            Context::Files(vec![dockerfile(
                "FROM busybox:local\nARG NAME=world\nENV WHO=env\nCOPY <<EOF /doc/unquoted.txt\nname=$NAME who=${WHO} \\$ kept\nEOF\nCOPY <<\"EOF\" /doc/quoted.txt\nname=$NAME\nEOF\nCOPY <<-EOF /doc/dash.txt\n\ttabbed\n\t\tdeeper\n\tEOF\n",
            )]),
        ),
        Case::new(
            "heredoc_copy_several_documents_into_a_directory",
            Context::Files(vec![dockerfile(
                "FROM busybox:local\nCOPY <<one <<two /multi/\nfirst\none\nsecond\ntwo\nCOPY --chmod=755 --chown=1000:1000 <<EOF /run.sh\n#!/bin/sh\necho run\nEOF\nRUN /run.sh > /ran.txt\n",
            )]),
        ),
    ]
}

/// RUN flags: cache, tmpfs and writable bind mounts, networks.
fn run_flag_cases() -> Vec<Case> {
    vec![
        Case::new(
            "run_mount_cache_options",
            Context::Files(vec![dockerfile(
                r#"FROM busybox:local
RUN --mount=type=cache,id=fidelity-shared,target=/c1,uid=1000,gid=1001,mode=0700 stat -c '%u:%g %a' /c1 > /cache-owner.txt && echo x > /c1/f
RUN --mount=type=cache,id=fidelity-shared,target=/c2,sharing=locked ls /c2 > /cache-shared.txt
RUN --mount=type=cache,target=/c3,sharing=private echo p > /c3/p && echo ok > /private.txt
RUN --mount=type=cache,target=/var/lib/deep/c4,id=fidelity-deep stat -c '%u:%g %a' /var/lib/deep/c4 > /cache-default.txt
"#,
            )]),
        ),
        Case::new(
            "run_mount_cache_from_a_stage_is_seeded_with_it",
            Context::Files(vec![dockerfile(
                r#"FROM busybox:local AS seed
RUN mkdir -p /data/sub && echo seeded > /data/sub/f && chown -R 1000:1000 /data && ln -s sub/f /data/link
FROM busybox:local
RUN --mount=type=cache,from=seed,source=/data,target=/c,id=fidelity-seeded find /c | sort > /seeded.txt && stat -c '%u:%g %a' /c/sub /c/sub/f >> /seeded.txt && readlink /c/link >> /seeded.txt
RUN --mount=type=cache,from=seed,target=/c,id=fidelity-seeded cat /c/data/sub/f > /whole-stage.txt
"#,
            )]),
        ),
        Case::new(
            "run_mount_tmpfs_leaves_nothing",
            Context::Files(vec![dockerfile(
                r#"FROM busybox:local
RUN --mount=type=tmpfs,target=/tmp touch /tmp/gone && ls -a /tmp > /tmpfs-ls.txt
RUN --mount=type=tmpfs,target=/new/tmpfs,size=1m stat -c '%a' /new/tmpfs > /tmpfs-mode.txt
"#,
            )]),
        ),
        Case::new(
            "run_mount_bind_rw_writes_are_discarded",
            Context::Files(vec![
                dockerfile(
                    r#"FROM busybox:local AS src
RUN mkdir /data && echo orig > /data/f
FROM busybox:local
RUN --mount=type=bind,from=src,source=/data,target=/mnt,rw echo changed > /mnt/f && cat /mnt/f > /bind-rw.txt
RUN --mount=type=bind,from=src,source=/data,target=/mnt cat /mnt/f > /bind-after.txt
RUN --mount=type=bind,target=/ctx,rw rm -f /ctx/f.txt && ls /ctx > /ctx-ls.txt
RUN --mount=target=/ctx2 ls /ctx2 > /ctx2-ls.txt
"#,
                ),
                file("f.txt", "f\n"),
            ]),
        ),
        Case::new(
            "run_network_none_has_only_loopback",
            Context::Files(vec![dockerfile(
                "FROM busybox:local\nRUN --network=none tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' > /net.txt\nRUN --network=default echo default > /default.txt\n",
            )]),
        ),
        Case {
            fails_with: Some((
                "RUN --network=host needs the network.host entitlement",
                "network.host is not allowed",
            )),
            ..Case::new(
                "run_network_host_needs_the_entitlement",
                Context::Files(vec![dockerfile(
                    "FROM busybox:local\nRUN --network=host true\n",
                )]),
            )
        },
        Case::new(
            "run_exec_form_and_shell_override",
            Context::Files(vec![dockerfile(
                r#"FROM busybox:local
RUN ["/bin/sh", "-c", "echo exec > /exec.txt"]
SHELL ["/bin/sh", "-xc"]
RUN echo shell-x > /shell-x.txt
CMD echo under the shell
ENTRYPOINT echo also under the shell
"#,
            )]),
        ),
    ]
}

/// ARG, ENV and the automatic platform ARGs.
fn variable_cases() -> Vec<Case> {
    vec![
        Case::new(
            "platform_args_are_automatic_in_from_and_declared_stages",
            Context::Files(vec![dockerfile(
                r#"ARG BASE=busybox:local
FROM --platform=$BUILDPLATFORM $BASE AS build
ARG TARGETPLATFORM
ARG BUILDPLATFORM
ARG TARGETARCH
ARG TARGETOS
ARG TARGETVARIANT
RUN echo "$TARGETPLATFORM $BUILDPLATFORM $TARGETARCH $TARGETOS [$TARGETVARIANT]" > /declared.txt
FROM $BASE
RUN echo "[$TARGETPLATFORM] [$BUILDARCH]" > /undeclared.txt
ARG TARGETARCH
ENV ARCH=$TARGETARCH
COPY --from=build /declared.txt /
"#,
            )]),
        ),
        Case::new(
            "arg_default_expansion_modifiers",
            Context::Files(vec![dockerfile(
                r#"FROM busybox:local
ARG SET=value.tar.gz
ARG EMPTY=
ARG A=${UNSET:-fallback}
ARG B=${SET:+alt}
ARG C=${SET#*.}
ARG D=${SET##*.}
ARG E=${SET%.*}
ARG F=${SET%%.*}
ARG G=${EMPTY:-empty-fallback}
ARG H=${EMPTY-kept-empty}
ARG I=${UNSET:+never}
ENV ALL="$A|$B|$C|$D|$E|$F|$G|[$H]|[$I]"
RUN echo "$ALL" > /all.txt
"#,
            )]),
        ),
        Case::new(
            "env_pairs_old_form_and_same_line_references",
            Context::Files(vec![dockerfile(
                r#"FROM busybox:local
ENV ONE 1
ENV SPACED with several   words
ENV A=a B=b-$A C="quoted $A" D='single $A' E=escaped\ space
ENV A=again F=$A
ENV PATH=/opt/bin:$PATH
RUN env | grep -e ^ONE= -e ^SPACED= -e ^[A-F]= -e ^PATH= | sort > /env.txt
"#,
            )]),
        ),
        Case::new(
            "arg_redeclared_after_from_takes_the_global_default",
            Context::Files(vec![dockerfile(
                r#"ARG GLOBAL=global-default
ARG NOVALUE
ARG TAG=local
FROM busybox:$TAG AS first
ARG GLOBAL=overridden
RUN echo "[$GLOBAL]" > /args1.txt
FROM busybox:$TAG
ARG GLOBAL
ARG NOVALUE
ARG TARGETOS
RUN echo "[$GLOBAL] [$NOVALUE] [$TAG] [$TARGETOS]" > /args.txt
COPY --from=first /args1.txt /
"#,
            )]),
        ),
        Case::new(
            "expansions_in_every_instruction",
            Context::Files(vec![
                dockerfile(
                    r#"FROM busybox:local
ARG DIR=/exp WHO=1000 PORT=8080 SIG=SIGINT NAME=lbl VOL=/data
WORKDIR $DIR/${NAME}
USER ${WHO}:$WHO
EXPOSE $PORT ${PORT}/udp
STOPSIGNAL $SIG
LABEL $NAME=$DIR "${NAME}2"="v $PORT"
VOLUME $VOL ["${VOL}2"]
COPY --chown=$WHO:${WHO} f.txt $DIR/
ENV HERE=$DIR
"#,
                ),
                file("f.txt", "f\n"),
            ]),
        ),
    ]
}

/// The image config written by metadata instructions.
fn metadata_cases() -> Vec<Case> {
    vec![
        Case::new(
            "label_multiple_and_quoted",
            Context::Files(vec![dockerfile(
                "FROM busybox:local\nLABEL \"com.example.a\"=\"x\" b='single $X' c=with\\ space d=\"multi\\\n  line\"\nLABEL e=\"quote \\\" inside\" empty=\"\"\nLABEL b=override\n",
            )]),
        ),
        Case::new(
            "expose_protocols_and_duplicates",
            Context::Files(vec![dockerfile(
                "FROM busybox:local\nEXPOSE 80/udp 8080\nEXPOSE 80/tcp 8080/TCP 9000-9002\nEXPOSE 80/udp\n",
            )]),
        ),
        Case::new(
            "volume_json_and_plain_forms",
            Context::Files(vec![dockerfile(
                "FROM busybox:local\nVOLUME /a /b\nVOLUME [\"/c\"]\nVOLUME /a\nRUN mkdir -p /a && echo in-volume > /a/f\n",
            )]),
        ),
        Case::new(
            "stopsignal_numeric_and_named",
            Context::Files(vec![dockerfile(
                "FROM busybox:local AS a\nSTOPSIGNAL 9\nFROM a\nSTOPSIGNAL SIGQUIT\n",
            )]),
        ),
        Case::new(
            "healthcheck_every_flag",
            Context::Files(vec![dockerfile(
                r#"FROM busybox:local AS a
HEALTHCHECK --interval=1m30s --timeout=10s --start-period=2s --start-interval=1s --retries=7 CMD ["/bin/true", "x"]
FROM a AS b
HEALTHCHECK CMD true
FROM b
HEALTHCHECK NONE
"#,
            )]),
        ),
        Case::new(
            "entrypoint_resets_the_inherited_cmd",
            Context::Files(vec![dockerfile(
                r#"FROM busybox:local AS a
ENTRYPOINT ["/bin/echo"]
FROM a AS b
CMD ["kept"]
FROM b AS c
ENTRYPOINT ["/bin/printf"]
FROM c
CMD []
"#,
            )]),
        ),
        Case::new(
            "onbuild_triggers_run_in_a_child_stage",
            Context::Files(vec![
                dockerfile(
                    r#"FROM busybox:local AS parent
ONBUILD RUN echo triggered > /onbuild.txt
ONBUILD ENV FROM_ONBUILD=1
ONBUILD COPY f.txt /from-onbuild/
RUN echo parent > /parent.txt
FROM parent AS child
RUN echo "child $FROM_ONBUILD" > /child.txt
ONBUILD RUN echo next
"#,
                ),
                file("f.txt", "f\n"),
            ]),
        ),
        Case::new(
            "maintainer_sets_author",
            Context::Files(vec![dockerfile(
                "FROM busybox:local\nMAINTAINER Jane Doe <jane@example.com>\n",
            )]),
        ),
        Case::new(
            "workdir_relative_chain_and_owner_under_user",
            Context::Files(vec![dockerfile(
                r#"FROM busybox:local
WORKDIR a
WORKDIR b
WORKDIR ../c/./d
RUN pwd > /pwd.txt
USER app
WORKDIR /home/app/wd/deeper
USER 1234:5678
WORKDIR /numeric/wd
USER 0
WORKDIR /
"#,
            )]),
        ),
        Case::new(
            "user_numeric_without_passwd_entry",
            Context::Files(vec![dockerfile(
                r#"FROM busybox:local
USER 1234:5678
RUN id > /tmp/id.txt && touch /tmp/mine
USER 4321
RUN id > /tmp/id2.txt && touch /tmp/mine2
"#,
            )]),
        ),
    ]
}

/// COPY and ADD: sources, destinations, flags and errors.
fn copy_add_cases() -> Vec<Case> {
    let files = || {
        vec![
            file("f.txt", "f\n"),
            file("g.txt", "g\n"),
            file("dir/a.txt", "a\n"),
            file("dir/sub/b.txt", "b\n"),
        ]
    };
    let with = |df: &str| {
        let mut v = files();
        v.push(dockerfile(df));
        Context::Files(v)
    };
    let pkg = [
        ("pkg/", &b""[..], 0o755, 0, 0),
        ("pkg/bin/", b"", 0o700, 0, 0),
        ("pkg/bin/tool", b"#!/bin/sh\necho tool\n", 0o755, 0, 0),
        ("pkg/README", b"readme\n", 0o600, 0, 0),
    ];
    let plain = tar_of(&pkg);
    let xz = {
        let mut e = xz2::write::XzEncoder::new(Vec::new(), 6);
        e.write_all(&plain).unwrap();
        e.finish().unwrap()
    };
    let bz2 = {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        e.write_all(&plain).unwrap();
        e.finish().unwrap()
    };
    let zst = zstd::encode_all(&plain[..], 3).unwrap();
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&plain).unwrap();
        e.finish().unwrap()
    };
    let body_sha = hex(&Sha256::digest(REMOTE_BODY));
    vec![
        Case::new(
            "copy_from_an_image_reference_and_stage_index",
            Context::Files(vec![dockerfile(
                r#"FROM busybox:local AS zero
RUN echo zero > /zero.txt
FROM busybox:local
COPY --from=busybox:local /etc/passwd /from-image/passwd
COPY --from=0 /zero.txt /from-index.txt
COPY --from=ZERO /zero.txt /from-upper-name.txt
"#,
            )]),
        ),
        Case::new(
            "copy_destination_trailing_slash_rules",
            with(
                r#"FROM busybox:local
COPY f.txt /as-file
COPY f.txt /as-dir/
COPY f.txt g.txt /both/
COPY dir /dir-no-slash
COPY dir/ /dir-slash/
COPY dir/* /dir-star/
COPY *.txt /star-dest/
WORKDIR /wd
COPY f.txt .
COPY f.txt rel/
COPY f.txt rel-file
"#,
            ),
        ),
        Case::new(
            "copy_directory_onto_existing_directory_merges",
            with(
                r#"FROM busybox:local
RUN mkdir -p /target/sub && echo old > /target/old.txt && echo keep > /target/sub/keep.txt && chmod 700 /target
COPY dir /target
COPY f.txt /target/sub/keep.txt
"#,
            ),
        ),
        Case {
            fails_with: Some((
                "cannot copy directory \"dir\" to non-directory \"/etc/passwd\"",
                "cannot copy to non-directory",
            )),
            ..Case::new(
                "copy_directory_onto_an_existing_file_fails",
                with("FROM busybox:local\nCOPY dir /etc/passwd\n"),
            )
        },
        // Current BuildKit no longer asks for the trailing slash: the destination is made a
        // directory.
        Case::new(
            "copy_several_sources_to_a_name_without_slash_are_copied_in_turn",
            with("FROM busybox:local\nCOPY f.txt g.txt /not-a-dir\nCOPY dir f.txt /mixed\nCOPY [fg].txt /wild\nCOPY d* /wild-dirs\nCOPY *.txt dir /existing-dir-first/\nRUN mkdir /made && echo keep > /made/k\nCOPY [fg].txt /made\n"),
        ),
        Case::new(
            "copy_chown_and_chmod_from_variables",
            with(
                r#"FROM busybox:local
ARG U=1000 G=app MODE=0640
ENV OWNER=app
COPY --chown=$U:$G f.txt /vars/ug.txt
COPY --chown=${OWNER} --chmod=$MODE f.txt /vars/env.txt
"#,
            ),
        ),
        Case::new(
            "copy_exclude_patterns",
            with(
                r#"FROM busybox:local
COPY --exclude=*.txt --exclude=!dir . /ex1/
COPY --exclude=dir/sub . /ex2/
COPY --exclude=**/b.txt dir /ex3/
COPY --exclude=g.txt *.txt /ex4/
"#,
            ),
        ),
        Case::new(
            "add_checksum_of_a_remote_file",
            Context::Files(vec![dockerfile(&format!(
                "FROM busybox:local\nADD --checksum=sha256:{body_sha} {HTTP}/remote.txt /checked.txt\n"
            ))]),
        ),
        Case {
            fails_with: Some(("checksum", "digest mismatch")),
            ..Case::new(
                "add_wrong_checksum_fails",
                Context::Files(vec![dockerfile(&format!(
                    "FROM busybox:local\nADD --checksum=sha256:{} {HTTP}/remote.txt /checked.txt\n",
                    "0".repeat(64)
                ))]),
            )
        },
        Case::new(
            "add_local_compressed_archives_are_extracted",
            Context::Files(vec![
                dockerfile(
                    "FROM busybox:local\nADD a.tar.xz /xz/\nADD a.tar.bz2 /bz2/\nADD a.tar.zst /zst/\nADD a.tgz /tgz/\nADD a.tar.xz /named/kept.tar.xz\n",
                ),
                ("a.tar.xz", xz),
                ("a.tar.bz2", bz2),
                ("a.tar.zst", zst),
                ("a.tgz", gz),
            ]),
        ),
        Case::new(
            "add_keep_git_dir_is_accepted_for_a_local_file",
            with("FROM busybox:local\nADD --keep-git-dir=true f.txt /kept.txt\n"),
        ),
        Case::new(
            "add_remote_to_a_directory_and_a_name",
            Context::Files(vec![dockerfile(&format!(
                "FROM busybox:local\nADD {HTTP}/dir/name.txt /r/\nADD {HTTP}/x.tar.gz /r2/\nADD {HTTP}/ /r3/\nADD {HTTP}/q.txt?x=1 /r4/\n"
            ))]),
        ),
        Case {
            fails_with: Some((
                "file not found in build context: \"/missing.txt\"",
                "\"/missing.txt\": not found",
            )),
            ..Case::new(
                "copy_missing_file_fails",
                with("FROM busybox:local\nCOPY missing.txt /m\n"),
            )
        },
        Case::new(
            "dockerignore_double_star_and_dockerfile_specific_file",
            Context::Files(vec![
                dockerfile("FROM busybox:local\nCOPY . /ctx/\n"),
                file(".dockerignore", "*\n"),
                file(
                    "Dockerfile.dockerignore",
                    "**/*.tmp\nsrc/**/gen\n!src/keep/gen\n*.md\n!README.md\n",
                ),
                file("a.tmp", "t\n"),
                file("deep/er/b.tmp", "t\n"),
                file("src/x/gen/g.txt", "g\n"),
                file("src/x/y/gen", "g\n"),
                file("src/keep/gen", "k\n"),
                file("src/main.rs", "m\n"),
                file("README.md", "r\n"),
                file("NOTES.md", "n\n"),
            ]),
        ),
    ]
}

/// The parser: directives, continuations, comments, and its errors.
fn parsing_cases() -> Vec<Case> {
    vec![
        Case::new(
            "continuation_lines_with_comments_and_blank_lines",
            Context::Files(vec![dockerfile(
                "FROM busybox:local\nRUN echo one \\\n# a comment inside\n    two \\\n\n    three > /cont.txt\nENV A=1 \\\n    # comment\n    B=2\nLABEL x=1 \\\n  \\\n  y=2\n",
            )]),
        ),
        Case::new(
            "escape_directive_backtick",
            Context::Files(vec![dockerfile(
                "# escape=`\nFROM busybox:local\nRUN echo one `\n    two > /esc.txt\nENV P=C:\\path\\to\nCOPY Dockerfile C:\\\\win\\\\\n",
            )]),
        ),
        Case::new(
            "instruction_keywords_are_case_insensitive",
            Context::Files(vec![dockerfile(
                "from busybox:local as Lower\nrun echo lower > /lower.txt\nFrom lower\nenv X=1\ncopy --from=LOWER /lower.txt /copied.txt\n",
            )]),
        ),
        Case {
            fails_with: Some(("unknown instruction `FOO`", "unknown instruction: FOO")),
            ..Case::new(
                "unknown_instruction_fails",
                Context::Files(vec![dockerfile("FROM busybox:local\nFOO bar\n")]),
            )
        },
        Case {
            fails_with: Some((
                "did not complete successfully: exit code: 3",
                "did not complete successfully: exit code: 3",
            )),
            ..Case::new(
                "failing_run_reports_the_exit_code",
                Context::Files(vec![dockerfile(
                    "FROM busybox:local\nRUN echo before && exit 3\n",
                )]),
            )
        },
        Case {
            fails_with: Some((
                "invalid base image `${NOPE}`: it expands to an empty string",
                "base name (${NOPE}) should not be blank",
            )),
            ..Case::new(
                "from_an_empty_expansion_fails",
                Context::Files(vec![dockerfile("FROM ${NOPE}\n")]),
            )
        },
    ]
}

/// Stages, inheritance, scratch and the errors of names that do not resolve.
/// Dockerfiles as users write them: the common instructions in the combinations seen in the wild.
fn everyday_cases() -> Vec<Case> {
    let app = || {
        vec![
            file("src/main.sh", "#!/bin/sh\necho main\n"),
            file("src/lib/util.sh", "util() { :; }\n"),
            file("README.md", "readme\n"),
            file(".env", "SECRET=1\n"),
            file("config/app.conf", "port=80\n"),
            file("docs/a.md", "a\n"),
            file("docs/b.txt", "b\n"),
        ]
    };
    let with = |df: &str, ignore: Option<&str>| {
        let mut v = app();
        v.push(dockerfile(df));
        if let Some(i) = ignore {
            v.push(file(".dockerignore", i));
        }
        Context::Files(v)
    };
    vec![
        Case::new(
            "app_image_with_user_workdir_and_chown",
            with(
                r#"FROM busybox:local
RUN echo 'web:x:1001:1001::/home/web:/bin/sh' >> /etc/passwd && echo 'web:x:1001:' >> /etc/group && mkdir -p /home/web && chown web:web /home/web
WORKDIR /app
COPY --chown=web:web src/ ./src/
COPY --chown=1001 config/app.conf /etc/app/
USER web
RUN id > /tmp/id.txt && echo $HOME > /tmp/home.txt && touch /app/owned-by-web || true
ENV PATH=$PATH:/app/src
CMD ["main.sh"]
"#,
                None,
            ),
        ),
        Case::new(
            "dockerignore_of_a_typical_project",
            with(
                "FROM busybox:local\nCOPY . /ctx/\n",
                Some("# comment\n.env\n/docs/*.md\n**/*.sh\n!src/main.sh\nDockerfile\n.dockerignore\n"),
            ),
        ),
        Case::new(
            "copy_dotfiles_and_hidden_wildcards",
            with(
                "FROM busybox:local\nCOPY .* /dots/\nCOPY .env* /env/\nCOPY docs/*.m? /docs/\n",
                None,
            ),
        ),
        Case::new(
            "workdir_created_under_a_user_is_root_owned",
            with(
                "FROM busybox:local\nUSER 1000:1000\nWORKDIR /made/by/workdir\nUSER root\nWORKDIR /made/by/workdir/again\nRUN stat -c '%n %a %u %g' /made/by/* > /made/listing.txt\n",
                None,
            ),
        ),
        Case::new(
            "copy_chown_creates_missing_parent_directories",
            with(
                "FROM busybox:local\nCOPY --chown=1234:5678 src/main.sh /deep/new/parents/\nCOPY --chown=42:42 src /other/new/\n",
                None,
            ),
        ),
        Case::new(
            "env_path_extension_and_arg_env_interplay",
            with(
                r#"FROM busybox:local
ARG VERSION=1.0
ARG UNSET
ENV VERSION=${VERSION}-env APP_HOME=/opt/app
ENV PATH="${APP_HOME}/bin:${PATH}" EMPTY=${UNSET:-fallback}
ARG VERSION=2.0
RUN echo "$VERSION $APP_HOME $EMPTY" > /env.txt && echo "$PATH" > /path.txt
"#,
                None,
            ),
        ),
        Case::new(
            "builder_stage_then_runtime_stage",
            with(
                r#"FROM busybox:local AS build
WORKDIR /build
COPY src ./src
RUN mkdir -p out && cp src/main.sh out/app && chmod 755 out/app && ln -s app out/app-link
FROM busybox:local AS runtime
COPY --from=build /build/out/ /usr/local/bin/
COPY --from=build /build/out/app-link /link-kept
ENTRYPOINT ["/usr/local/bin/app"]
CMD ["--help"]
"#,
                None,
            ),
        ),
        Case::new(
            "shell_form_cmd_and_entrypoint_under_a_custom_shell",
            with(
                "FROM busybox:local\nSHELL [\"/bin/sh\", \"-ec\"]\nRUN echo shell > /s.txt\nENTRYPOINT exec /bin/echo hi\nCMD echo ignored\n",
                None,
            ),
        ),
        Case::new(
            "expose_ranges_and_variables",
            with(
                "FROM busybox:local\nARG PORT=8080\nEXPOSE ${PORT} 9000-9002/udp 53/tcp 53/udp\n",
                None,
            ),
        ),
        Case::new(
            "labels_with_spaces_empty_values_and_variables",
            with(
                "FROM busybox:local\nARG REV=abc\nLABEL \"org.opencontainers.image.title\"=\"my app\" empty= rev=$REV multi=\"line one \\\n line two\"\n",
                None,
            ),
        ),
        Case::new(
            "copy_into_a_symlinked_directory_of_the_image",
            with(
                "FROM busybox:local\nRUN mkdir -p /real && ln -s /real /link && ln -s real /rel\nCOPY README.md /link/\nCOPY docs /rel/docs\n",
                None,
            ),
        ),
        Case::new(
            "add_local_file_with_chown_and_chmod_and_link",
            with(
                "FROM busybox:local\nADD --chown=5:6 --chmod=640 README.md /r/\nCOPY --link --chmod=700 src/main.sh /linked/\nCOPY --link config /cfg\n",
                None,
            ),
        ),
        Case::new(
            "run_removes_and_recreates_files_of_lower_layers",
            with(
                "FROM busybox:local\nRUN mkdir -p /a/b && echo 1 > /a/b/f && echo 2 > /a/g\nRUN rm -rf /a/b && mkdir /a/b && echo 3 > /a/b/new && rm /a/g && ln -s /etc /a/g\n",
                None,
            ),
        ),
        Case::new(
            "volume_then_run_writes_are_kept",
            with(
                "FROM busybox:local\nRUN mkdir /data && echo before > /data/before.txt\nVOLUME /data\nRUN echo written > /data/after-volume.txt && rm /data/before.txt\n",
                None,
            ),
        ),
        Case::new(
            "onbuild_copy_and_run_in_a_child_stage",
            with(
                "FROM busybox:local AS base\nONBUILD COPY README.md /onbuild/\nONBUILD RUN echo triggered > /onbuild/ran.txt\nFROM base\nRUN ls /onbuild > /listing.txt\n",
                None,
            ),
        ),
        Case::new(
            "run_environment_is_in_the_order_of_last_assignment",
            with(
                "FROM busybox:local\nENV A=1 B=2\nARG C=3\nENV A=4\nARG B=5\nRUN env | grep -e ^A= -e ^B= -e ^C= -e ^PATH= > /env.txt\n",
                None,
            ),
        ),
        Case::new(
            "arg_scoping_across_stages_and_targets",
            with(
                r#"ARG GLOBAL=g
FROM busybox:local AS one
ARG GLOBAL
ARG LOCAL=l1
RUN echo "$GLOBAL $LOCAL" > /one.txt
FROM one AS two
ARG LOCAL
RUN echo "${GLOBAL:-none} ${LOCAL:-unset}" > /two.txt
"#,
                None,
            ),
        ),
        Case::new(
            "healthcheck_none_disables_the_inherited_one",
            with(
                "FROM busybox:local AS base\nHEALTHCHECK --interval=5s CMD true\nFROM base\nHEALTHCHECK NONE\n",
                None,
            ),
        ),
        Case::new(
            "user_by_uid_and_gid_numbers_and_names",
            with(
                "FROM busybox:local\nUSER 0:0\nRUN id -u > /u0\nUSER nobody\nRUN id > /nobody.txt || true\nUSER 65534:65534\n",
                None,
            ),
        ),
        Case::new(
            "copy_chmod_symbolic_and_octal_forms",
            with(
                "FROM busybox:local\nCOPY --chmod=755 src/main.sh /a/\nCOPY --chmod=0640 README.md /b/\nCOPY --chmod=u+x,g-r README.md /c/\nCOPY --chmod=a=rX src /d/\n",
                None,
            ),
        ),
        Case::new(
            "heredoc_run_with_tab_stripping_and_a_custom_shell",
            with(
                "FROM busybox:local\nSHELL [\"/bin/sh\", \"-c\"]\nRUN <<-EOT\n\techo one > /one.txt\n\techo two > /two.txt\n\tEOT\nCOPY --chmod=755 <<EOF /usr/local/bin/hello\n#!/bin/sh\necho hello\nEOF\n",
                None,
            ),
        ),
        Case::new(
            "config_values_with_variables_and_odd_forms",
            with(
                "FROM busybox:local\nARG SIG=SIGINT\nARG WHO=nobody\nSTOPSIGNAL $SIG\nUSER ${WHO}\nEXPOSE 80/TCP\nLABEL eq=\"a=b=c\" dollar=\"\\$HOME\"\nENTRYPOINT []\nCMD [\"echo\", \"$HOME\"]\n",
                None,
            ),
        ),
        Case::new(
            "from_with_an_arg_default_and_platform_flag",
            with(
                "ARG BASE=busybox:local\nFROM --platform=$BUILDPLATFORM ${BASE} AS build\nARG TARGETOS TARGETARCH\nRUN echo \"$TARGETOS/$TARGETARCH\" > /target.txt\nFROM ${BASE}\nCOPY --from=build /target.txt /\n",
                None,
            ),
        ),
        Case::new(
            "run_mount_bind_of_the_context_respects_dockerignore",
            with(
                "FROM busybox:local\nRUN --mount=type=bind,target=/ctx find /ctx | sort > /seen.txt\nRUN --mount=type=bind,source=src,target=/s cat /s/main.sh > /main-copy.sh\n",
                Some(".env\ndocs\n"),
            ),
        ),
        Case::new(
            "copy_from_a_stage_with_wildcards_and_a_missing_optional_glob",
            with(
                "FROM busybox:local AS gen\nRUN mkdir -p /out && echo 1 > /out/a.log && echo 2 > /out/b.log && echo 3 > /out/c.txt\nFROM busybox:local\nCOPY --from=gen /out/*.log /logs/\nCOPY --from=gen /out/*.none /out/c.txt /mixed/\n",
                None,
            ),
        ),
        Case::new(
            "workdir_then_relative_copy_and_run",
            with(
                "FROM busybox:local\nENV DIR=/srv\nWORKDIR $DIR/app\nCOPY README.md ./\nCOPY docs docs\nRUN pwd > where.txt && stat -c '%n %a %u %g' * > listing.txt\nWORKDIR ..\nRUN pwd > /up.txt\n",
                None,
            ),
        ),
        Case::new(
            "cache_mount_survives_between_steps_of_one_build",
            with(
                "FROM busybox:local\nRUN --mount=type=cache,target=/cache echo first > /cache/f\nRUN --mount=type=cache,target=/cache cat /cache/f > /seen.txt\nRUN --mount=type=cache,target=/cache,id=other ls /cache > /other.txt\n",
                None,
            ),
        ),
        Case::new(
            "env_with_escapes_quotes_and_self_references",
            with(
                "FROM busybox:local\nENV A=\"quoted value\" B='single $A' C=plain\\ space D=$A-$C\nENV A=${A}+more\nRUN echo \"$A|$B|$C|$D\" > /env.txt\n",
                None,
            ),
        ),
        Case::new(
            "add_archive_into_an_existing_directory_keeps_its_files",
            Context::Files(vec![
                dockerfile("FROM busybox:local\nRUN mkdir -p /opt/pkg && echo keep > /opt/pkg/keep.txt\nADD pkg.tar /opt/\nADD pkg.tar /opt/again\n"),
                ("pkg.tar", tar_of(&[
                    ("pkg/", &b""[..], 0o755, 0, 0),
                    ("pkg/new.txt", b"new\n", 0o644, 0, 0),
                    ("./pkg/dot.txt", b"dot\n", 0o600, 0, 0),
                ])),
            ]),
        ),
        Case::new(
            "child_stage_applies_the_config_env_over_inherited_arg_values",
            with(
                "FROM busybox:local AS one\nENV B=env-value C=c\nARG B=arg-value\nARG D=d\nRUN echo \"$B $C $D\" > /one.txt\nFROM one\nRUN echo \"$B $C $D\" > /two.txt && env | grep -e ^B= -e ^C= -e ^D= -e ^PATH= > /env.txt\n",
                None,
            ),
        ),
        Case::new(
            "copy_json_form_expands_variables",
            with(
                "FROM busybox:local\nARG DEST=/json-dest\nENV SRC=README.md\nCOPY [\"$SRC\", \"config/app.conf\", \"${DEST}/\"]\nCOPY [\"README.md\", \"$UNSET/\"]\n",
                None,
            ),
        ),
        Case::new(
            "workdir_that_expands_to_nothing_keeps_the_current_one",
            with(
                "FROM busybox:local\nWORKDIR /w/$UNSET\nENV EMPTY=\"\"\nWORKDIR $EMPTY\nRUN pwd > /pwd.txt\nFROM busybox:local AS second\nWORKDIR $EMPTY\nRUN pwd > /pwd2.txt\n",
                None,
            ),
        ),
        Case {
            fails_with: Some((
                "no such directory \"nodir\" for the wildcard",
                "lstat /nodir: no such file or directory",
            )),
            ..Case::new(
                "copy_wildcard_in_a_missing_directory_fails",
                with("FROM busybox:local\nCOPY README.md nodir/*.txt /x/\n", None),
            )
        },
        Case {
            fails_with: Some((
                "no such directory \"nodir\" for the wildcard",
                "lstat /nodir: no such file or directory",
            )),
            ..Case::new(
                "copy_from_an_image_wildcard_in_a_missing_directory_fails",
                with(
                    "FROM busybox:local AS s\nFROM busybox:local\nCOPY --from=s /nodir/*.txt /x/\n",
                    None,
                ),
            )
        },
        Case::new(
            "copy_wildcard_matching_nothing_in_existing_or_wild_directories",
            with(
                "FROM busybox:local AS s\nFROM busybox:local\nCOPY --from=s /etc/*.none /x/\nCOPY */nodir/*.txt /y/\n",
                None,
            ),
        ),
        Case::new(
            "copy_directory_contents_with_a_trailing_dot",
            with(
                "FROM busybox:local\nWORKDIR /w\nCOPY src/. .\nCOPY ./config/./ ./cfg/\nCOPY docs/ /docs\n",
                None,
            ),
        ),
    ]
}

fn stage_and_error_cases() -> Vec<Case> {
    vec![
        Case::new(
            "scratch_stage_config_and_copy",
            Context::Files(vec![
                dockerfile(
                    "FROM scratch\nCOPY f.txt /\nENV A=1\nWORKDIR /w\nCMD [\"/f.txt\"]\n",
                ),
                file("f.txt", "f\n"),
            ]),
        ),
        Case::new(
            "child_stage_merges_inherited_config",
            Context::Files(vec![dockerfile(
                r#"FROM busybox:local AS base
ENV A=1 B=2
LABEL x=1 y=2
EXPOSE 80
VOLUME /v
USER app
WORKDIR /base
FROM base
ENV B=3 C=4
LABEL y=3 z=4
EXPOSE 443
VOLUME /w
WORKDIR sub
"#,
            )]),
        ),
        Case {
            fails_with: Some((
                "variable expansion is not supported for --from",
                "variable expansion is not supported for --from",
            )),
            ..Case::new(
                "copy_from_a_variable_is_refused",
                Context::Files(vec![dockerfile(
                    r#"ARG SRC=build
FROM busybox:local AS build
RUN echo built > /built.txt
FROM busybox:local
ARG SRC
COPY --from=${SRC} /built.txt /copied.txt
"#,
                )]),
            )
        },
        Case::new(
            "env_empty_and_escaped_values",
            Context::Files(vec![dockerfile(
                r#"FROM busybox:local
ENV A= B="" C=\$HOME D='$HOME' E="\$HOME" F="a\"b" G=x\ y
LABEL l1=\$x l2='$x' l3="\"q\""
RUN env | grep -e ^[A-G]= | sort > /env.txt
"#,
            )]),
        ),
        Case::new(
            "dockerignore_can_ignore_the_dockerfile_and_itself",
            Context::Files(vec![
                dockerfile("FROM busybox:local\nCOPY . /ctx/\n"),
                file(".dockerignore", "Dockerfile\n.dockerignore\n"),
                file("f.txt", "f\n"),
            ]),
        ),
        Case::new(
            "add_local_file_that_is_not_an_archive_is_copied",
            Context::Files(vec![
                dockerfile("FROM busybox:local\nADD fake.tar.gz /x/\nADD fake.tar /y/\n"),
                file("fake.tar.gz", "not gzip\n"),
                file("fake.tar", "not a tar either\n"),
            ]),
        ),
        Case {
            secrets: &[("token", "mounts/token.txt")],
            ..Case::new(
                "run_secret_as_an_environment_variable",
                Context::Files(vec![dockerfile(
                    "FROM busybox:local\nRUN --mount=type=secret,id=token,env=TOKEN echo ${#TOKEN} > /len.txt && test ! -e /run/secrets/token && echo absent > /file.txt\n",
                )]),
            )
        },
        Case::new(
            "healthcheck_exec_form_and_zero_durations",
            Context::Files(vec![dockerfile(
                "FROM busybox:local\nHEALTHCHECK --interval=0s --retries=0 CMD [\"true\"]\n",
            )]),
        ),
        Case {
            fails_with: Some(("nosuch", "unable to find user nosuch")),
            ..Case::new(
                "run_as_an_unknown_user_fails",
                Context::Files(vec![dockerfile(
                    "FROM busybox:local\nUSER nosuch\nRUN true\n",
                )]),
            )
        },
        Case::new(
            "copy_chown_to_unknown_names_gives_root_or_keeps_the_gid",
            Context::Files(vec![
                dockerfile(
                    "FROM busybox:local\nCOPY --chown=nosuch f.txt /u.txt\nCOPY --chown=app:nosuchgroup f.txt /g.txt\nCOPY --chown=nosuch:7 f.txt /ug.txt\n",
                ),
                file("f.txt", "f\n"),
            ]),
        ),
        Case {
            fails_with: Some((
                "--chown cannot look up the name \"app\"",
                "invalid user index: -1",
            )),
            ..Case::new(
                "copy_chown_by_name_without_a_passwd_file_fails",
                Context::Files(vec![
                    dockerfile("FROM scratch\nCOPY --chown=app f.txt /f.txt\n"),
                    file("f.txt", "f\n"),
                ]),
            )
        },
        Case {
            symlinks: &[
                ("link.txt", "f.txt"),
                ("dir/in-dir-link", "../f.txt"),
                ("dirlink", "dir"),
            ],
            ..Case::new(
                "context_symlinks_followed_when_named_kept_inside_directories",
                Context::Files(vec![
                    dockerfile(
                        "FROM busybox:local\nCOPY link.txt /named-link.txt\nCOPY dir /dir/\nCOPY dirlink /via-dirlink/\nCOPY . /ctx/\nCOPY *link* /star/\n",
                    ),
                    file("f.txt", "f\n"),
                    file("dir/a.txt", "a\n"),
                ]),
            )
        },
        Case::new(
            "run_deletions_and_replaced_directories_are_whiteouts",
            Context::Files(vec![dockerfile(
                r#"FROM busybox:local
RUN mkdir -p /d/sub && echo a > /d/a && echo b > /d/sub/b && echo x > /x
RUN rm -rf /d && mkdir /d && echo new > /d/new && rm /x && ln -s /etc /x && rm -rf /tmp && mkdir -m 700 /tmp
RUN mkfifo /fifo && rm /bin/ls && mkdir /bin/ls-dir
"#,
            )]),
        ),
        Case::new(
            "nested_and_default_expansions",
            Context::Files(vec![dockerfile(
                r#"FROM busybox:local
ARG A=1
ARG B=${UNSET:-${A}-two}
ENV C=${B:+[$B]} D=${UNSET:-$A$A} E="${A}${UNSET}${A}" F=$${A}
RUN echo "$B $C $D $E $F" > /out.txt
"#,
            )]),
        ),
        Case {
            fails_with: Some(("ONBUILD", "isn't allowed")),
            ..Case::new(
                "onbuild_chaining_is_refused",
                Context::Files(vec![dockerfile(
                    "FROM busybox:local\nONBUILD ONBUILD RUN true\n",
                )]),
            )
        },
        Case {
            symlinks: &[("abs-link", "/etc/passwd")],
            fails_with: Some((
                "\"abs-link\" is a symlink to \"/etc/passwd\", which does not exist",
                "\"/abs-link\": not found",
            )),
            ..Case::new(
                "context_symlink_leading_outside_is_resolved_inside",
                Context::Files(vec![dockerfile(
                    "FROM busybox:local\nCOPY abs-link /abs-link-copy\n",
                )]),
            )
        },
        Case::new(
            "duplicate_stage_names_name_the_first",
            Context::Files(vec![dockerfile(
                "FROM busybox:local AS a\nRUN echo 1 > /one\nFROM busybox:local AS A\nRUN echo 2 > /two\nFROM busybox:local\nCOPY --from=a /one* /two* /got/\nCOPY --from=A /one* /two* /got-upper/\n",
            )]),
        ),
        Case::new(
            "workdir_trailing_slash_dot_and_variables",
            Context::Files(vec![dockerfile(
                "FROM busybox:local\nENV BASE=/srv\nWORKDIR $BASE/app/\nWORKDIR .\nWORKDIR ./x/../y/\nRUN pwd > /pwd.txt\n",
            )]),
        ),
        Case::new(
            "json_forms_with_escapes_and_unicode",
            Context::Files(vec![dockerfile(
                "FROM busybox:local\nLABEL unicode=\"caf\u{e9} \u{2603}\"\nENV GREETING=\"h\u{e9}llo\"\nCMD [\"echo\", \"a\\\"b\", \"\\u00e9\", \"tab\\there\"]\nENTRYPOINT [\"/bin/sh\", \"-c\", \"exec \\\"$@\\\"\", \"--\"]\n",
            )]),
        ),
        Case::new(
            "from_with_a_default_expansion",
            Context::Files(vec![dockerfile(
                "ARG TAG\nARG IMAGE=busybox\nFROM ${IMAGE}:${TAG:-local}\nRUN echo ok > /ok\n",
            )]),
        ),
        Case::new(
            "user_root_with_a_named_group_and_expose_sctp",
            Context::Files(vec![dockerfile(
                "FROM busybox:local\nUSER root:app\nRUN id > /id.txt && touch /by-root-app\nEXPOSE 80/sctp 7/udp\n",
            )]),
        ),
        Case::new(
            "add_archive_with_links_and_late_directory_entries",
            Context::Files(vec![
                dockerfile("FROM busybox:local\nADD links.tar /x/\nADD --chown=5:6 links.tar /y/\n"),
                ("links.tar", tar_with_links()),
            ]),
        ),
        Case::new(
            "copy_chmod_special_bits",
            Context::Files(vec![
                dockerfile(
                    "FROM busybox:local\nCOPY --chmod=4755 f.txt /suid\nCOPY --chmod=2750 f.txt /sgid\nCOPY --chmod=1777 dir /sticky/\nCOPY --chmod=a=rX,u+w dir /sym-x/\n",
                ),
                file("f.txt", "f\n"),
                file("dir/a.txt", "a\n"),
                file("dir/sub/b.txt", "b\n"),
            ]),
        ),
        Case::new(
            "heredoc_copy_to_a_relative_destination",
            Context::Files(vec![dockerfile(
                "FROM busybox:local\nWORKDIR /w\nCOPY <<EOF rel.txt\nrelative\nEOF\nCOPY <<EOF sub/\nin a dir\nEOF\n",
            )]),
        ),
        Case::new(
            "run_mounts_from_an_image_and_optional_secrets",
            Context::Files(vec![dockerfile(
                "FROM busybox:local\nRUN --mount=from=busybox:local,target=/bb ls /bb/etc > /bb-etc.txt\nRUN --mount=type=secret,id=absent,required=false test ! -e /run/secrets/absent && echo none > /no-secret.txt\nRUN --mount=type=cache,target=/ro-cache,ro ls -a /ro-cache > /ro.txt\n",
            )]),
        ),
        Case {
            fails_with: Some(("security.insecure", "security.insecure is not allowed")),
            ..Case::new(
                "run_security_insecure_needs_the_entitlement",
                Context::Files(vec![dockerfile(
                    "FROM busybox:local\nRUN --security=insecure true\n",
                )]),
            )
        },
        Case {
            fails_with: Some((
                "secret absent: not provided",
                "secret absent: not found",
            )),
            ..Case::new(
                "run_required_secret_missing_fails",
                Context::Files(vec![dockerfile(
                    "FROM busybox:local\nRUN --mount=type=secret,id=absent,required=true true\n",
                )]),
            )
        },
        Case {
            fails_with: Some(("/etc/passwd", "not a directory")),
            ..Case::new(
                "workdir_onto_a_file_fails",
                Context::Files(vec![dockerfile(
                    "FROM busybox:local\nWORKDIR /etc/passwd\nRUN true\n",
                )]),
            )
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
    /// The other paths of the same inode (hardlinks), sorted.
    same_inode: Vec<String>,
}

/// The tree and config of one built image.
struct Built {
    entries: BTreeMap<String, FileEntry>,
    config: serde_json::Value,
}

fn normalise(p: &str) -> String {
    let trimmed = p.trim_start_matches("./").trim_start_matches('/');
    format!("/{}", trimmed.trim_end_matches('/'))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_under(path: &str, dir: &str) -> bool {
    dir == "/" || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

/// The root filesystem the layers (uncompressed or gzip tars, bottom first) give when applied
/// in order, with OCI whiteouts, as an image is unpacked.
fn apply_layers(layers: &[Vec<u8>]) -> BTreeMap<String, FileEntry> {
    let mut tree: BTreeMap<String, (FileEntry, u64)> = BTreeMap::new();
    let mut next_inode = 0u64;
    for raw in layers {
        let data = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .unwrap();
            out
        } else {
            raw.clone()
        };
        let mut this_layer: HashSet<String> = HashSet::new();
        let mut archive = tar::Archive::new(&data[..]);
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = normalise(&entry.path().unwrap().to_string_lossy());
            if path == "/" {
                continue;
            }
            let (dir, base) = path.rsplit_once('/').unwrap();
            let dir = if dir.is_empty() { "/" } else { dir };
            if base == ".wh..wh..opq" {
                tree.retain(|p, _| !is_under(p, dir) || this_layer.contains(p));
                continue;
            }
            if let Some(hidden) = base.strip_prefix(".wh.") {
                let gone = format!("{}/{hidden}", dir.trim_end_matches('/'));
                tree.retain(|p, _| *p != gone && !is_under(p, &gone));
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
            this_layer.insert(path.clone());
            if kind == tar::EntryType::Link {
                let target = normalise(&link);
                let e = tree
                    .get(&target)
                    .cloned()
                    .unwrap_or_else(|| panic!("hard link {path} to missing {target}"));
                tree.retain(|p, _| !is_under(p, &path));
                tree.insert(path, e);
                continue;
            }
            let name = match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => "file",
                tar::EntryType::Directory => "dir",
                tar::EntryType::Symlink => "symlink",
                tar::EntryType::Char => "char",
                tar::EntryType::Block => "block",
                tar::EntryType::Fifo => "fifo",
                _ => "other",
            };
            if name != "dir" {
                tree.retain(|p, _| !is_under(p, &path));
            }
            next_inode += 1;
            tree.insert(
                path,
                (
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
                        same_inode: Vec::new(),
                    },
                    next_inode,
                ),
            );
        }
    }
    let mut by_inode: HashMap<u64, Vec<String>> = HashMap::new();
    for (p, (e, ino)) in &tree {
        if e.kind != "dir" {
            by_inode.entry(*ino).or_default().push(p.clone());
        }
    }
    tree.into_iter()
        .map(|(p, (mut e, ino))| {
            if let Some(group) = by_inode.get(&ino) {
                e.same_inode = group.iter().filter(|o| **o != p).cloned().collect();
            }
            (p, e)
        })
        .collect()
}

/// Every file of a tar archive, by name; a symlink (`docker save` stores a layer it already
/// holds as a link to it) stands for what it points to.
fn tar_files(path: &Path) -> HashMap<String, Vec<u8>> {
    let data = std::fs::read(path).unwrap();
    let mut files = HashMap::new();
    let mut links = Vec::new();
    let mut a = tar::Archive::new(&data[..]);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        match e.header().entry_type() {
            tar::EntryType::Regular => {
                let mut b = Vec::new();
                e.read_to_end(&mut b).unwrap();
                files.insert(p, b);
            }
            tar::EntryType::Symlink => {
                let target = e
                    .link_name()
                    .unwrap()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let dir = Path::new(&p).parent().unwrap_or(Path::new(""));
                let mut parts: Vec<String> = dir
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                for c in target.split('/') {
                    match c {
                        ".." => {
                            parts.pop();
                        }
                        "" | "." => {}
                        c => parts.push(c.to_string()),
                    }
                }
                links.push((p, parts.join("/")));
            }
            _ => {}
        }
    }
    for (link, target) in links {
        if let Some(b) = files.get(&target).cloned() {
            files.insert(link, b);
        }
    }
    files
}

/// The image of an OCI layout archive (its only image, or its linux/amd64 one).
fn read_oci(path: &Path) -> Built {
    let files = tar_files(path);
    let blob = |digest: &str| -> &Vec<u8> {
        let hex = digest.strip_prefix("sha256:").unwrap();
        files
            .get(&format!("blobs/sha256/{hex}"))
            .unwrap_or_else(|| panic!("{}: no blob {digest}", path.display()))
    };
    let mut doc: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
    while let Some(manifests) = doc["manifests"].as_array() {
        let pick = manifests
            .iter()
            .find(|m| m["platform"]["architecture"] == "amd64")
            .unwrap_or(&manifests[0]);
        doc = serde_json::from_slice(blob(pick["digest"].as_str().unwrap())).unwrap();
    }
    let layers: Vec<Vec<u8>> = doc["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| blob(l["digest"].as_str().unwrap()).clone())
        .collect();
    Built {
        entries: apply_layers(&layers),
        config: serde_json::from_slice(blob(doc["config"]["digest"].as_str().unwrap())).unwrap(),
    }
}

/// The image of a docker-archive (`docker save`) holding one image.
fn read_docker_archive(path: &Path) -> Built {
    let files = tar_files(path);
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let layers: Vec<Vec<u8>> = manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| files[l.as_str().unwrap()].clone())
        .collect();
    Built {
        entries: apply_layers(&layers),
        config: serde_json::from_slice(&files[manifest[0]["Config"].as_str().unwrap()]).unwrap(),
    }
}

/// A history string as both sides can be compared with v0.8 (see the module doc): `--chown=`
/// and `--chmod=` left out of COPY/ADD, EXPOSE as the sorted set of its ports, and v0.8's
/// HEALTHCHECK rendering (`&{["CMD-SHELL" "x"] "5s" "3s" "0s" '\x04'}`) turned into the current
/// one.
fn as_v08_history(created_by: &str) -> String {
    if created_by.starts_with("COPY ") || created_by.starts_with("ADD ") {
        return created_by
            .split(' ')
            .filter(|w| !w.starts_with("--chown=") && !w.starts_with("--chmod="))
            .collect::<Vec<_>>()
            .join(" ");
    }
    if let Some(rest) = created_by.strip_prefix("EXPOSE ") {
        // Current: `[80/tcp 53/udp]` in instruction order; v0.8: `map[53/udp:{} 80/tcp:{}]`.
        let inner = rest
            .trim_start_matches("map")
            .trim_start_matches('[')
            .trim_end_matches(']');
        let mut ports: Vec<&str> = inner
            .split(' ')
            .map(|p| p.trim_end_matches(":{}"))
            .collect();
        ports.sort();
        ports.dedup();
        return format!("EXPOSE {}", ports.join(" "));
    }
    if let Some(rest) = created_by.strip_prefix("HEALTHCHECK &{[") {
        let mut test = Vec::new();
        let mut rest = rest;
        while let Some(r) = rest.strip_prefix('"') {
            // A Go-quoted string: up to the first unescaped quote.
            let mut end = 0;
            let bytes = r.as_bytes();
            while end < bytes.len() && bytes[end] != b'"' {
                end += if bytes[end] == b'\\' { 2 } else { 1 };
            }
            let quoted = format!("\"{}\"", &r[..end]);
            test.push(serde_json::from_str::<String>(&quoted).unwrap_or(quoted));
            rest = r[end + 1..].trim_start_matches(' ');
        }
        let rest = rest.trim_start_matches(']').trim();
        let parts: Vec<&str> = rest.trim_end_matches('}').split(' ').collect();
        if parts.len() == 4 {
            let d = |s: &str| s.trim_matches('"').to_string();
            let rune = parts[3].trim_matches('\'');
            let retries = match rune.strip_prefix("\\x") {
                Some(hex) => u32::from_str_radix(hex, 16).unwrap_or(0),
                None => rune.chars().next().map_or(0, |c| c as u32),
            };
            return format!(
                "HEALTHCHECK {{Test:[{}] Interval:{} Timeout:{} StartPeriod:{} StartInterval:0s Retries:{retries}}}",
                test.join(" "),
                d(parts[0]),
                d(parts[1]),
                d(parts[2]),
            );
        }
    }
    created_by.to_string()
}

fn history(config: &serde_json::Value, as_v08: bool) -> Vec<(String, bool)> {
    config["history"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|h| {
            let by = h["created_by"].as_str().unwrap_or("");
            (
                if as_v08 {
                    as_v08_history(by)
                } else {
                    by.to_string()
                },
                h["empty_layer"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

/// A current BuildKit reached through `buildctl`, with our base image as an OCI layout.
struct BuildKit {
    buildctl: PathBuf,
    addr: String,
    layout: PathBuf,
    digest: String,
}

impl BuildKit {
    /// The oracle named by `BUILDCTL` and `BUILDKIT_ADDR`, when both are set.
    fn from_env(f: &Fixture) -> Option<BuildKit> {
        let buildctl = PathBuf::from(std::env::var_os("BUILDCTL")?);
        let addr = std::env::var("BUILDKIT_ADDR").ok()?;
        let out = Command::new(&buildctl)
            .args(["--addr", &addr, "debug", "workers"])
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", buildctl.display()));
        assert!(
            out.status.success(),
            "BuildKit at {addr} does not answer:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The base image as an OCI layout directory.
        let saved = f.dir.path().join("base.oci.tar");
        let out = f
            .cmd()
            .args(["save", "--format", "oci", "-o"])
            .arg(&saved)
            .arg("busybox:local")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "save failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let layout = f.dir.path().join("base-layout");
        tar::Archive::new(std::fs::File::open(&saved).unwrap())
            .unpack(&layout)
            .unwrap();
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let digest = index["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        Some(BuildKit {
            buildctl,
            addr,
            layout,
            digest,
        })
    }

    /// Builds `ctx`; the image, or BuildKit's error output.
    fn build(
        &self,
        name: &str,
        ctx: &Path,
        secrets: &[String],
        out: &Path,
    ) -> Result<Built, String> {
        let dest = out.join(format!("{name}.bk.oci.tar"));
        let mut c = Command::new(&self.buildctl);
        c.args(["--addr", &self.addr, "build", "--progress=plain"])
            .args(["--frontend", "dockerfile.v0"])
            .arg("--local")
            .arg(format!("context={}", ctx.display()))
            .arg("--local")
            .arg(format!("dockerfile={}", ctx.display()))
            .arg("--oci-layout")
            .arg(format!("base={}", self.layout.display()))
            .arg("--opt")
            .arg(format!(
                "context:busybox:local=oci-layout://base@{}",
                self.digest
            ))
            .arg("--output")
            .arg(format!("type=oci,dest={}", dest.display()));
        for s in secrets {
            c.arg("--secret").arg(s);
        }
        let o = c.output().unwrap();
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr).into_owned());
        }
        Ok(read_oci(&dest))
    }
}

/// The BuildKit the comparison runs against.
enum Oracle {
    Current(BuildKit),
    Dockerd(Dockerd),
}

impl Oracle {
    fn is_v08(&self) -> bool {
        matches!(self, Oracle::Dockerd(_))
    }

    fn build(
        &self,
        name: &str,
        ctx: &Path,
        secrets: &[String],
        out: &Path,
    ) -> Result<Built, String> {
        let d = match self {
            Oracle::Current(bk) => return bk.build(name, ctx, secrets, out),
            Oracle::Dockerd(d) => d,
        };
        let tag = format!("bk-{name}:cmp");
        let run = || {
            let mut build = d.command();
            build.env("DOCKER_BUILDKIT", "1").args([
                "build",
                "--network=host",
                "--progress=plain",
                "-t",
                &tag,
            ]);
            for s in secrets {
                build.arg("--secret").arg(s);
            }
            build.arg(ctx).output().unwrap()
        };
        // v0.8 sometimes starts a RUN before its parallel stage's snapshot is mounted ("exec:
        // /bin/sh: stat /bin/sh: no such file or directory"): a fault of the reference, so
        // its build is tried again, at most twice.
        let mut o = run();
        for _ in 0..2 {
            let stderr = String::from_utf8_lossy(&o.stderr);
            if o.status.success() || !stderr.contains("stat /bin/sh: no such file or directory") {
                break;
            }
            o = run();
        }
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr).into_owned());
        }
        let archive = d.scratch().join(format!("{name}.save.tar"));
        d.docker_ok(&["save", "-o", archive.to_str().unwrap(), &tag]);
        Ok(read_docker_archive(&archive))
    }
}

/// A tiny HTTP server answering every GET with [`REMOTE_BODY`]; its base URL.
fn serve() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Sun, 13 Sep 2020 12:26:40 GMT\r\nConnection: close\r\n\r\n",
                REMOTE_BODY.len()
            );
            let _ = stream.write_all(REMOTE_BODY);
        }
    });
    format!("http://127.0.0.1:{port}")
}

/// Writes a case's context; its directory.
fn write_context(f: &Fixture, case: &Case, http: &str) -> PathBuf {
    let files = match &case.context {
        Context::Example(name) => return examples_dir().join(name),
        Context::Files(files) => files,
    };
    let dir = f.dir.path().join(format!("ctx-{}", case.name));
    for (path, data) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        if *path == "Dockerfile" {
            let text = String::from_utf8_lossy(data).replace(HTTP, http);
            std::fs::write(&p, text).unwrap();
        } else {
            std::fs::write(&p, data).unwrap();
        }
        if *path == "busybox" {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    for (path, target) in case.symlinks {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
    }
    for (new, existing) in case.hardlinks {
        std::fs::hard_link(dir.join(existing), dir.join(new)).unwrap();
    }
    dir
}

/// Builds one case both ways and lists every difference.
fn compare(f: &Fixture, oracle: &Oracle, case: &Case, http: &str) -> Vec<String> {
    let name = case.name;
    let ctx = write_context(f, case, http);
    let secrets: Vec<String> = case
        .secrets
        .iter()
        .map(|(id, src)| format!("id={id},src={}", examples_dir().join(src).display()))
        .collect();

    // Ours.
    let our_oci = f.dir.path().join(format!("{name}.oci.tar"));
    let mut args = vec![
        "-t".to_string(),
        format!("ours-{name}:cmp"),
        "-o".to_string(),
        format!("type=oci,dest={}", our_oci.display()),
    ];
    for s in &secrets {
        args.push("--secret".into());
        args.push(s.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (out, _) = f.build(&ctx, &args);
    let ours = if out.status.success() {
        Ok(read_oci(&our_oci))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let theirs = oracle.build(name, &ctx, &secrets, f.dir.path());

    let (ours, mut theirs) = match (ours, theirs, case.fails_with) {
        (Err(a), Err(b), Some((our_text, their_text))) => {
            let mut diffs = Vec::new();
            for (who, message, text) in [("ours", &a, our_text), ("BuildKit", &b, their_text)] {
                if !message.contains(text) {
                    diffs.push(format!("{name}: {who} failed without {text:?}:\n{message}"));
                }
            }
            return diffs;
        }
        (Ok(_), _, Some(text)) | (_, Ok(_), Some(text)) => {
            return vec![format!(
                "{name}: a build succeeded; both must fail with {text:?}"
            )]
        }
        (Ok(a), Ok(b), None) => (a, b),
        (Err(e), _, None) => return vec![format!("{name}: our build failed:\n{e}")],
        (_, Err(e), None) => return vec![format!("{name}: BuildKit's build failed:\n{e}")],
    };

    let mut diffs = Vec::new();
    if oracle.is_v08() {
        for p in case.mount_stubs {
            if !ours.entries.contains_key(*p) {
                if let Some(e) = theirs.entries.get(*p) {
                    if e.kind == "dir"
                        || (e.kind == "file" && e.sha256 == hex(&Sha256::digest(b"")))
                    {
                        theirs.entries.remove(*p);
                    }
                }
            }
        }
    }
    let paths: std::collections::BTreeSet<&String> =
        ours.entries.keys().chain(theirs.entries.keys()).collect();
    for p in paths {
        match (ours.entries.get(p), theirs.entries.get(p)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => diffs.push(format!("{name}: {p}: ours {a:?}, BuildKit {b:?}")),
        }
    }
    for field in CONFIG_FIELDS {
        let a = &ours.config["config"][field];
        let b = &theirs.config["config"][field];
        if a != b {
            diffs.push(format!("{name}: config {field}: ours {a}, BuildKit {b}"));
        }
    }
    let (a, b) = (
        history(&ours.config, oracle.is_v08()),
        history(&theirs.config, oracle.is_v08()),
    );
    if a != b {
        diffs.push(format!(
            "{name}: history differs:\n  ours     {a:?}\n  BuildKit {b:?}"
        ));
    }
    diffs
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns, missing_docker),
    ignore = "needs root, /usr/bin/busybox and dockerd"
)]
fn builder_and_buildkit_build_the_same_images() {
    // A current BuildKit (BUILDCTL and BUILDKIT_ADDR) needs no dockerd: on a machine without
    // one, run this test with `--include-ignored`.
    let current =
        std::env::var_os("BUILDCTL").is_some() && std::env::var_os("BUILDKIT_ADDR").is_some();
    if current {
        common::require(&[Need::Root, Need::Busybox, Need::Slirp4netns]);
    } else {
        common::require(&[Need::Root, Need::Busybox, Need::Slirp4netns, Need::Docker]);
    }
    let f = Fixture::new();
    let oracle = match BuildKit::from_env(&f) {
        Some(bk) => Oracle::Current(bk),
        None => {
            let d = Dockerd::start();
            d.docker_ok(&["load", "-i", base_archive().to_str().unwrap()]);
            Oracle::Dockerd(d)
        }
    };
    let http = serve();
    let only: Option<String> = std::env::var("BUILDKIT_COMPARE_ONLY").ok();
    let mut diffs = Vec::new();
    let (mut ran, mut skipped) = (0, 0);
    for case in cases() {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|n| n == case.name))
        {
            continue;
        }
        // BUILDKIT_COMPARE_ALL runs them anyway, to check what v0.8 does.
        let all = std::env::var_os("BUILDKIT_COMPARE_ALL").is_some();
        if let (true, false, Some(why)) = (oracle.is_v08(), all, case.current_only) {
            eprintln!(
                "skip {} against dockerd 20.10 (BuildKit v0.8): {why}",
                case.name
            );
            skipped += 1;
            continue;
        }
        let found = compare(&f, &oracle, &case, &http);
        eprintln!(
            "{}: {}",
            case.name,
            if found.is_empty() { "same" } else { "DIFFERS" }
        );
        ran += 1;
        diffs.extend(found);
    }
    eprintln!(
        "{ran} cases compared against {}, {skipped} skipped",
        if oracle.is_v08() {
            "dockerd 20.10 (BuildKit v0.8)"
        } else {
            "the BuildKit of BUILDCTL/BUILDKIT_ADDR"
        }
    );
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}
