use super::*;
use crate::parser::parse;
use engine::graph::{ExecOp, FileAction, FileOp, MountKind, NetworkMode, Op, SourceOp, Vertex};

fn amd64() -> Platform {
    "linux/amd64".parse().unwrap()
}

fn opts() -> LowerOptions<'static> {
    LowerOptions {
        platform: Some(amd64()),
        build_platform: Some(amd64()),
        ..LowerOptions::default()
    }
}

fn lower_with(src: &str, o: LowerOptions) -> Result<Lowered, Diagnostic> {
    let df = parse(src).expect("test Dockerfile parses");
    lower(
        &df,
        &LowerOptions {
            source: Some(src),
            ..o
        },
    )
}

fn lower_ok(src: &str) -> Definition {
    lower_with(src, opts()).unwrap().definition
}

fn with_args(src: &str, args: &[(&str, &str)]) -> Definition {
    let mut o = opts();
    o.build_args = args
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    lower_with(src, o).unwrap().definition
}

fn err(src: &str) -> Diagnostic {
    lower_with(src, opts()).unwrap_err()
}

fn target(def: &Definition) -> &Vertex {
    def.vertex(def.target().unwrap()).unwrap()
}

fn execs(def: &Definition) -> Vec<&ExecOp> {
    def.vertices()
        .filter_map(|v| match &v.op {
            Op::Exec(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn last_exec(def: &Definition) -> &ExecOp {
    execs(def).into_iter().last().expect("an exec vertex")
}

fn env_of<'a>(e: &'a ExecOp, k: &str) -> Option<&'a str> {
    e.env
        .iter()
        .rev()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.as_str())
}

#[test]
fn single_stage_chain_names_and_history() {
    let def = lower_ok("FROM alpine:3.19\nENV A=b\nRUN make\nCOPY . /app\nCMD [\"x\"]\n");
    let chain = def.chain(def.target().unwrap());
    let names: Vec<&str> = chain
        .iter()
        .map(|&v| def.vertex(v).unwrap().name.as_str())
        .filter(|n| !n.is_empty())
        .collect();
    assert_eq!(
        names,
        [
            "[1/3] FROM docker.io/library/alpine:3.19",
            "[2/3] RUN make",
            "[3/3] COPY . /app"
        ]
    );
    let history: Vec<String> = chain
        .iter()
        .filter_map(|&v| def.vertex(v).unwrap().history.clone())
        .map(|h| h.created_by)
        .collect();
    assert_eq!(
        history,
        [
            "ENV A=b",
            "RUN /bin/sh -c make # buildkit",
            "COPY . /app # buildkit",
            "CMD [\"x\"]"
        ]
    );
    let run = last_exec(&def);
    assert_eq!(run.args, ["/bin/sh", "-c", "make"]);
    assert_eq!(env_of(run, "A"), Some("b"));
    let stage = def.target_stage().unwrap();
    assert!(!stage.base_config_resolved);
    assert_eq!(def.stages().len(), 1);
}

#[test]
fn parallel_stages_and_copy_from_name_index_and_image() {
    let src = "FROM alpine AS a\nRUN echo a > /a\n\
               FROM alpine AS b\nRUN echo b > /b\n\
               FROM scratch\nCOPY --from=a /a /a\nCOPY --from=1 /b /b\nCOPY --from=busybox:1.36 /bin/busybox /bin/\n";
    let def = lower_ok(src);
    let stage_a = def.stages().iter().find(|s| s.name == "a").unwrap();
    let stage_b = def.stages().iter().find(|s| s.name == "b").unwrap();
    // The two stages are independent: neither needs the other.
    assert!(!def
        .ancestors(stage_a.final_vertex)
        .contains(&stage_b.final_vertex));
    assert!(!def
        .ancestors(stage_b.final_vertex)
        .contains(&stage_a.final_vertex));
    let needed = def.ancestors(def.target().unwrap());
    assert!(needed.contains(&stage_a.final_vertex));
    assert!(needed.contains(&stage_b.final_vertex));
    let busybox = def
        .vertices()
        .find(|v| {
            matches!(&v.op, Op::Source(SourceOp::Image { reference, .. })
                if reference == "docker.io/library/busybox:1.36")
        })
        .expect("external image source");
    assert!(needed.contains(&busybox.id));
    // Copy names carry the unnamed stage's display name.
    assert!(def
        .vertices()
        .any(|v| v.name == "[stage-2 1/3] COPY --from=a /a /a"));
}

#[test]
fn copy_from_later_stage_is_allowed_but_from_later_stage_is_not() {
    let mut o = opts();
    o.target = Some("first".into());
    let def = lower_with(
        "FROM alpine AS first\nCOPY --from=second /x /x\nFROM busybox AS second\nRUN true\n",
        o,
    )
    .unwrap()
    .definition;
    assert_eq!(def.stages().len(), 2);
    assert_eq!(
        def.stages()[0].name,
        "second",
        "dependencies are lowered first"
    );
    let e = err("FROM later\nRUN true\nFROM alpine AS later\n");
    assert!(matches!(*e.kind, ErrorKind::StageUsedBeforeDefinition(_)));
}

#[test]
fn target_prunes_unneeded_stages() {
    let src = "FROM alpine AS build\nRUN make\nFROM alpine AS test\nRUN make test\nFROM build AS release\nRUN strip\n";
    let mut o = opts();
    o.target = Some("build".into());
    let def = lower_with(src, o).unwrap().definition;
    assert_eq!(def.stages().len(), 1);
    assert!(!def.vertices().any(|v| v.name.contains("make test")));
    let def = lower_ok(src);
    // Default target: the last stage, which needs `build` but not `test`.
    let names: Vec<&str> = def.stages().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["build", "release"]);
    assert_eq!(def.target_stage().unwrap().name, "release");
}

#[test]
fn identical_stages_dedupe() {
    let src = "FROM alpine AS one\nRUN make\nFROM alpine AS two\nRUN make\nFROM scratch\nCOPY --from=one /x /1\nCOPY --from=two /x /2\n";
    let def = lower_ok(src);
    let one = &def.stages()[0];
    let two = &def.stages()[1];
    assert_eq!(one.final_vertex, two.final_vertex);
    assert_eq!(execs(&def).len(), 1);
}

#[test]
fn arg_scoping_table() {
    // (Dockerfile, build args, variable, expected value in the last RUN's env)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, Option<&'a str>);
    let cases: &[Case] = &[
        ("ARG V=1\nFROM alpine\nRUN x\n", &[], "V", None),
        ("ARG V=1\nFROM alpine\nARG V\nRUN x\n", &[], "V", Some("1")),
        (
            "ARG V=1\nFROM alpine\nARG V\nRUN x\n",
            &[("V", "2")],
            "V",
            Some("2"),
        ),
        (
            "FROM alpine\nARG V=3\nRUN x\n",
            &[("V", "2")],
            "V",
            Some("2"),
        ),
        ("FROM alpine\nARG V=3\nRUN x\n", &[], "V", Some("3")),
        ("FROM alpine\nARG V\nRUN x\n", &[], "V", None),
        (
            "FROM alpine\nARG V=3\nENV V=env\nRUN x\n",
            &[("V", "2")],
            "V",
            Some("env"),
        ),
        // The last assignment wins, an ARG after an ENV included (current BuildKit's build
        // state, whatever older documentation says).
        (
            "FROM alpine\nENV V=env\nARG V=3\nRUN x\n",
            &[],
            "V",
            Some("3"),
        ),
        (
            "FROM alpine\nENV V=env\nARG V\nRUN x\n",
            &[],
            "V",
            Some("env"),
        ),
        // A stage built on another applies the image config's Env over the step environment
        // it inherits: the parent's ENV wins again over its later ARG.
        (
            "FROM alpine AS a\nENV V=env\nARG V=3\nFROM a\nRUN x\n",
            &[],
            "V",
            Some("env"),
        ),
        // A bare ARG in a stage built on another keeps the value that stage gave it.
        (
            "FROM alpine AS a\nARG V=1\nFROM a\nARG V\nRUN x\n",
            &[],
            "V",
            Some("1"),
        ),
        ("FROM alpine\nRUN x\n", &[("V", "2")], "V", None),
        ("FROM alpine\nRUN x\n", &[], "TARGETARCH", None),
        (
            "FROM alpine\nARG TARGETARCH\nRUN x\n",
            &[],
            "TARGETARCH",
            Some("amd64"),
        ),
        (
            "FROM alpine\nARG TARGETPLATFORM\nRUN x\n",
            &[],
            "TARGETPLATFORM",
            Some("linux/amd64"),
        ),
        (
            "FROM alpine\nARG BUILDOS\nRUN x\n",
            &[],
            "BUILDOS",
            Some("linux"),
        ),
        // A stage built on another inherits the ARGs it declared (as BuildKit).
        (
            "FROM alpine AS a\nARG V=1\nFROM a\nRUN x\n",
            &[],
            "V",
            Some("1"),
        ),
        (
            "FROM alpine AS a\nARG V=1\nFROM alpine\nRUN x\n",
            &[],
            "V",
            None,
        ),
        // One ARG line is expanded as a whole before it declares anything (as BuildKit).
        ("FROM alpine\nARG A=1 B=$A\nRUN x\n", &[], "B", Some("")),
        (
            "FROM alpine\nARG A=1\nARG B=$A\nRUN x\n",
            &[],
            "B",
            Some("1"),
        ),
        (
            "FROM alpine\nRUN x\n",
            &[("HTTP_PROXY", "http://p:3128")],
            "HTTP_PROXY",
            None,
        ),
    ];
    for (src, args, var, want) in cases {
        let def = with_args(src, args);
        let run = last_exec(&def);
        assert_eq!(env_of(run, var), *want, "{var} in {src:?} with {args:?}");
    }
}

#[test]
fn global_args_feed_from_lines_only() {
    let def = lower_ok("ARG BASE=busybox\nARG TAG=1.36\nFROM ${BASE}:$TAG\nRUN echo $BASE\n");
    assert!(def.vertices().any(|v| matches!(&v.op,
        Op::Source(SourceOp::Image { reference, .. }) if reference == "docker.io/library/busybox:1.36")));
    let def = with_args("ARG BASE=busybox\nFROM $BASE\n", &[("BASE", "alpine")]);
    assert!(def.vertices().any(|v| matches!(&v.op,
        Op::Source(SourceOp::Image { reference, .. }) if reference == "docker.io/library/alpine:latest")));
    let def = lower_ok("FROM --platform=$BUILDPLATFORM alpine\nRUN x\n");
    assert_eq!(target(&def).platform, amd64());
    let mut o = opts();
    o.platform = Some("linux/arm64".parse().unwrap());
    let def = lower_with("FROM --platform=$BUILDPLATFORM alpine AS b\nFROM alpine\nARG TARGETARCH\nCOPY --from=b / /\nRUN echo $TARGETARCH\n", o).unwrap().definition;
    assert_eq!(def.stages()[0].platform, amd64());
    assert_eq!(target(&def).platform.architecture, "arm64");
    assert_eq!(env_of(last_exec(&def), "TARGETARCH"), Some("arm64"));
}

#[test]
fn invisible_args_do_not_change_digests_but_visible_ones_do() {
    let src = "FROM alpine\nRUN make\nARG V\nRUN use\n";
    let base = with_args(src, &[]);
    let changed = with_args(src, &[("V", "2")]);
    let first = |d: &Definition| {
        d.vertices()
            .find(|v| v.name.ends_with("RUN make"))
            .unwrap()
            .digest
    };
    assert_eq!(
        first(&base),
        first(&changed),
        "RUN before `ARG V` cannot see V"
    );
    assert_ne!(target(&base).digest, target(&changed).digest);
    // Undeclared build args and proxies change nothing.
    let other = with_args(src, &[("UNUSED", "x"), ("https_proxy", "http://p")]);
    assert_eq!(target(&base).digest, target(&other).digest);
    assert_eq!(
        last_exec(&other).proxy_env,
        [("https_proxy".to_string(), "http://p".to_string())]
    );
    let warnings = lower_with(src, {
        let mut o = opts();
        o.build_args.insert("UNUSED".into(), "x".into());
        o
    })
    .unwrap()
    .warnings;
    assert!(warnings[0].message.contains("UNUSED"));
}

#[test]
fn digests_are_stable_and_sensitive_to_every_instruction_field() {
    let base = "FROM alpine:3.19\nWORKDIR /src\nENV A=1\nUSER app\nCOPY --chown=app:app --chmod=644 a.txt b/ /dst/\nRUN --network=none --mount=type=cache,target=/root/.cache make\n";
    let d0 = target(&lower_ok(base)).digest;
    assert_eq!(d0, target(&lower_ok(base)).digest);
    // Pinned: a change here means every cache key changes, so it must be deliberate.
    assert_eq!(
        d0.to_string(),
        PINNED_DIGEST,
        "the canonical form of the graph changed"
    );
    let variants = [
        base.replace("alpine:3.19", "alpine:3.20"),
        base.replace("WORKDIR /src", "WORKDIR /source"),
        base.replace("A=1", "A=2"),
        base.replace("USER app", "USER root"),
        base.replace("--chown=app:app", "--chown=app"),
        base.replace("--chmod=644", "--chmod=600"),
        base.replace("a.txt", "c.txt"),
        base.replace("/dst/", "/dest/"),
        base.replace("--network=none", "--network=host"),
        base.replace("target=/root/.cache", "target=/cache"),
        base.replace("type=cache,", "type=cache,sharing=locked,"),
        base.replace("make\n", "make all\n"),
        // `--link` takes effect only without `--chmod`, as in BuildKit.
        base.replace("--chmod=644 ", ""),
        // (A linked copy needs numeric ids: it has no passwd to look names up in.)
        base.replace("--chown=app:app --chmod=644 ", "--chown=1000:1000 "),
        base.replace("--chown=app:app --chmod=644 ", "--chown=1000:1000 --link "),
        base.replace("COPY", "ADD"),
    ];
    let mut seen = std::collections::HashSet::new();
    seen.insert(d0);
    for v in &variants {
        let d = target(&lower_ok(v)).digest;
        assert!(seen.insert(d), "digest unchanged for:\n{v}");
    }
}

const PINNED_DIGEST: &str =
    "sha256:6b8f177899b73e12a5052dacf26d5d76396a6bc3b745973c7dabc3ed3b93350c";

#[test]
fn run_mounts_are_lowered_with_defaults() {
    let src = "FROM alpine AS deps\nRUN fetch\nFROM alpine\nWORKDIR /app\n\
        RUN --mount=type=bind,from=deps,source=/out,target=vendor \
            --mount=type=cache,target=/root/.cache,id=go,sharing=locked,mode=0700,uid=1 \
            --mount=type=tmpfs,target=/tmp,size=64m \
            --mount=type=secret,id=npmrc \
            --mount=type=secret,id=tok,env=TOKEN \
            --mount=type=ssh \
            --mount=type=bind,target=/ctx \
            build\n";
    let def = lower_ok(src);
    let run = last_exec(&def);
    let kinds: Vec<(&str, &MountKind)> = run
        .mounts
        .iter()
        .map(|m| (m.target.as_str(), &m.kind))
        .collect();
    assert!(
        matches!(kinds[0], ("/app/vendor", MountKind::Bind { source, readonly: true }) if source == "/out")
    );
    assert!(
        matches!(kinds[1], ("/root/.cache", MountKind::Cache { id, sharing: engine::graph::CacheSharing::Locked, mode: 0o700, uid: 1, gid: 0, readonly: false, .. }) if id == "go")
    );
    assert!(matches!(kinds[2], ("/tmp", MountKind::Tmpfs { size }) if *size == 64 << 20));
    assert!(
        matches!(kinds[3], ("/run/secrets/npmrc", MountKind::Secret { id, required: false, mode: 0o400, .. }) if id == "npmrc")
    );
    assert!(matches!(kinds[4], ("", MountKind::Secret { env: Some(e), .. }) if e == "TOKEN"));
    assert!(
        matches!(kinds[5], ("/run/buildkit/ssh_agent.0", MountKind::Ssh { id, mode: 0o600, .. }) if id == "default")
    );
    let exec_vertex = def.vertex(def.target().unwrap()).unwrap();
    let deps = def.stages().iter().find(|s| s.name == "deps").unwrap();
    assert_eq!(
        exec_vertex.inputs[run.mounts[0].input.unwrap() as usize],
        deps.final_vertex
    );
    let ctx = def
        .vertex(exec_vertex.inputs[run.mounts[6].input.unwrap() as usize])
        .unwrap();
    assert!(matches!(ctx.op, Op::Source(SourceOp::Context { .. })));
    assert_eq!(run.cwd, "/app");
}

#[test]
fn heredocs_become_commands_and_files() {
    let def = lower_ok("FROM alpine\nRUN <<EOF\necho hi\nEOF\n");
    assert_eq!(last_exec(&def).args, ["/bin/sh", "-c", "echo hi\n"]);
    let def = lower_ok("FROM alpine\nRUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\n");
    let run = last_exec(&def);
    assert_eq!(run.args, ["/bin/sh", "-c", "/dev/pipes/EOF"]);
    assert_eq!(run.mounts[0].target, "/dev/pipes/");
    let def = lower_ok("FROM alpine\nRUN cat <<A > /a\nx\nA\n");
    assert_eq!(last_exec(&def).args[2], "cat <<A > /a\nx\nA");
    let def =
        lower_ok("# escape=`\nFROM alpine\nARG NAME=world\nCOPY <<EOF /hello.txt\nhello $NAME \"q\" \\$NAME `$NAME\nEOF\n");
    let mkfile = def
        .vertices()
        .find_map(|v| match &v.op {
            Op::File(FileOp { actions, .. }) => actions.iter().find_map(|a| match a {
                FileAction::Mkfile { data, .. } => Some(data.clone()),
                _ => None,
            }),
            _ => None,
        })
        .unwrap();
    // Quotes stay; a backslash escape is consumed whatever `# escape=` says.
    assert_eq!(mkfile, "hello world \"q\" $NAME `world\n");
    assert_eq!(
        target(&def).history.as_ref().unwrap().created_by,
        "COPY <<EOF /hello.txt # buildkit"
    );
}

#[test]
fn onbuild_triggers_of_a_base_stage_run_first() {
    let src = "FROM alpine AS base\nONBUILD RUN echo triggered\nFROM base\nRUN after\n";
    let def = lower_ok(src);
    let chain = def.chain(def.target().unwrap());
    let cmds: Vec<String> = chain
        .iter()
        .filter_map(|&v| match &def.vertex(v).unwrap().op {
            Op::Exec(e) => Some(e.args[2].clone()),
            _ => None,
        })
        .collect();
    assert_eq!(cmds, ["echo triggered", "after"]);
    // Folding the chain: the base's trigger is recorded, then cleared when it has run.
    let changes: Vec<String> = def
        .config_steps(def.target().unwrap())
        .iter()
        .filter_map(|s| s.change.map(|c| format!("{c:?}")))
        .collect();
    assert_eq!(changes, ["Onbuild(\"RUN echo triggered\")", "ClearOnbuild"]);
}

struct FakeResolver;

impl BaseImageResolver for FakeResolver {
    fn resolve(&self, reference: &str, _: &Platform) -> Result<Option<BaseImageConfig>, String> {
        if reference.ends_with("node:20") {
            Ok(Some(BaseImageConfig {
                env: vec![("NODE_VERSION".into(), "20".into())],
                working_dir: "/usr/src".into(),
                user: "node".into(),
                shell: vec![],
                onbuild: vec!["RUN echo from-image".into()],
            }))
        } else {
            Ok(None)
        }
    }
}

#[test]
fn resolver_supplies_base_config_and_image_triggers() {
    let mut o = opts();
    o.resolver = Some(&FakeResolver);
    let def = lower_with("FROM node:20\nWORKDIR app\nRUN npm ci\n", o)
        .unwrap()
        .definition;
    let runs = execs(&def);
    assert_eq!(runs[0].args[2], "echo from-image");
    let run = runs[1];
    assert_eq!(run.cwd, "/usr/src/app");
    assert_eq!(run.user, "node");
    assert_eq!(env_of(run, "NODE_VERSION"), Some("20"));
    assert!(env_of(run, "PATH").is_some());
    assert!(def.target_stage().unwrap().base_config_resolved);
}

#[test]
fn link_copies_merge_and_add_handles_urls_and_git() {
    let def = lower_ok("FROM alpine\nCOPY --link a /a\n");
    assert!(matches!(target(&def).op, Op::Merge(_)));
    assert_eq!(target(&def).name, "[2/2] LINK COPY --link a /a");
    let sum = format!("sha256:{}", "a".repeat(64));
    let def = lower_ok(&format!(
        "FROM alpine\nADD --checksum={sum} https://example.com/x/tool.tar.gz /opt/\nADD https://github.com/o/r.git#v1:sub /src\n"
    ));
    assert!(def.vertices().any(|v| matches!(&v.op, Op::Source(SourceOp::Http { filename, checksum: Some(_), .. }) if filename == "tool.tar.gz")));
    assert!(def.vertices().any(|v| matches!(&v.op, Op::Source(SourceOp::Git { reference: Some(r), subdir: Some(s), .. }) if r == "v1" && s == "sub")));
    let e = err("FROM alpine\nCOPY https://example.com/x /x\n");
    assert!(matches!(*e.kind, ErrorKind::Unsupported(_)));
}

#[test]
fn shell_and_entrypoint_config() {
    let def = lower_ok("FROM alpine\nSHELL [\"/bin/bash\", \"-c\"]\nRUN echo\nENTRYPOINT run.sh\nHEALTHCHECK --interval=30s --retries=3 CMD curl -f localhost\nEXPOSE 80 443/tcp\nVOLUME /data\nSTOPSIGNAL SIGINT\n");
    assert_eq!(last_exec(&def).args, ["/bin/bash", "-c", "echo"]);
    let history: Vec<String> = def
        .chain(def.target().unwrap())
        .iter()
        .filter_map(|&v| def.vertex(v).unwrap().history.clone())
        .map(|h| h.created_by)
        .collect();
    assert_eq!(
        history,
        [
            "SHELL [/bin/bash -c]",
            "RUN /bin/bash -c echo # buildkit",
            "ENTRYPOINT [\"/bin/bash\" \"-c\" \"run.sh\"]",
            "HEALTHCHECK {Test:[CMD-SHELL curl -f localhost] Interval:30s Timeout:0s StartPeriod:0s StartInterval:0s Retries:3}",
            "EXPOSE [443/tcp 80/tcp]",
            "VOLUME [/data]",
            "STOPSIGNAL SIGINT",
        ]
    );
}

#[test]
fn network_and_run_history_with_args() {
    let def = with_args(
        "FROM alpine\nARG V=1\nRUN --network=none make\n",
        &[("V", "9")],
    );
    let run = last_exec(&def);
    assert_eq!(run.network, NetworkMode::None);
    assert_eq!(
        target(&def).history.as_ref().unwrap().created_by,
        "RUN |1 V=9 /bin/sh -c make # buildkit"
    );
}

#[test]
fn a_stage_built_on_another_inherits_its_args() {
    let def = with_args(
        "FROM alpine AS first\nARG A=1\nARG B\nARG C=c\nFROM first\nARG C=own\nRUN echo $A\n",
        &[("A", "cli")],
    );
    let run = last_exec(&def);
    assert_eq!(env_of(run, "A"), Some("cli"));
    assert_eq!(env_of(run, "B"), None);
    assert_eq!(env_of(run, "C"), Some("own"));
    assert_eq!(
        target(&def).history.as_ref().unwrap().created_by,
        "RUN |3 A=cli B= C=own /bin/sh -c echo $A # buildkit"
    );
}

#[test]
fn arg_history_shows_the_value_the_declaration_took() {
    let def = with_args(
        "ARG G=global\nARG N\nFROM alpine\nARG G\nARG N\nARG TARGETARCH\nARG TARGETVARIANT\nARG V=1\nARG B=default\n",
        &[("B", "cli")],
    );
    let history: Vec<String> = def
        .chain(def.target().unwrap())
        .iter()
        .filter_map(|&v| def.vertex(v).unwrap().history.clone())
        .map(|h| h.created_by)
        .collect();
    assert_eq!(
        history,
        [
            "ARG G=global",
            "ARG N",
            "ARG TARGETARCH=amd64",
            "ARG TARGETVARIANT=",
            "ARG V=1",
            "ARG B=cli",
        ]
    );
}

#[test]
fn a_named_chown_on_an_empty_scratch_filesystem_is_an_error() {
    for src in [
        "FROM scratch\nCOPY --chown=app a /a\n",
        "FROM scratch\nENV A=1\nCOPY --chown=0:staff a /a\n",
        "FROM scratch AS s\nLABEL x=1\nFROM s\nADD --chown=app a /a\n",
    ] {
        let text = rendered(src);
        assert!(
            text.contains("--chown cannot look up the name"),
            "{src}: {text}"
        );
    }
    for src in [
        "FROM scratch\nCOPY --chown=1000:50 a /a\n",
        "FROM scratch\nCOPY --chown=root a /a\n",
        "FROM scratch\nCOPY a /a\nCOPY --chown=app a /b\n",
        "FROM alpine\nCOPY --chown=app a /a\n",
    ] {
        lower_ok(src);
    }
}

#[test]
fn a_stage_name_given_twice_names_the_last_stage() {
    let def = lower_ok(
        "FROM alpine AS a\nRUN first\nFROM alpine AS A\nRUN second\nFROM alpine\nCOPY --from=a /x /y\n",
    );
    let copy_inputs = &target(&def).inputs;
    let from_runs: Vec<&str> = copy_inputs
        .iter()
        .filter_map(|&v| match &def.vertex(v).unwrap().op {
            Op::Exec(e) => Some(e.args[2].as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(from_runs, ["second"]);
}

#[test]
fn an_absolute_workdir_is_recorded_as_written() {
    let def = lower_ok("FROM alpine\nWORKDIR /srv/app/\nWORKDIR ./x/../y/\nRUN pwd\n");
    let history: Vec<String> = def
        .chain(def.target().unwrap())
        .iter()
        .filter_map(|&v| def.vertex(v).unwrap().history.clone())
        .map(|h| h.created_by)
        .filter(|c| c.starts_with("WORKDIR"))
        .collect();
    assert_eq!(history, ["WORKDIR /srv/app/", "WORKDIR /srv/app/y"]);
    assert_eq!(last_exec(&def).cwd, "/srv/app/y");
}

#[test]
fn copy_link_with_a_named_chown_is_an_error() {
    for chown in ["app", "app:app", "1000:staff", ":staff"] {
        let text = rendered(&format!("FROM alpine\nCOPY --link --chown={chown} a /a\n"));
        assert!(
            text.contains("COPY --link cannot look up the name"),
            "{chown}: {text}"
        );
    }
    for chown in ["1000", "1000:50", "root", ":50", "root:root"] {
        lower_ok(&format!("FROM alpine\nCOPY --link --chown={chown} a /a\n"));
    }
    // With --chmod the copy is not linked (as BuildKit): names resolve in the image.
    lower_ok("FROM alpine\nCOPY --link --chmod=644 --chown=app a /a\n");
}

fn rendered(src: &str) -> String {
    err(src).to_string()
}

#[test]
fn error_unknown_instruction() {
    let text = rendered("FROM alpine\nRUNN make\n");
    assert!(
        text.starts_with("Dockerfile:2:1: unknown instruction `RUNN`"),
        "{text}"
    );
    assert!(text.contains("\n 2 | RUNN make\n   | ^^^^"), "{text}");
    assert!(text.contains("help: did you mean `RUN`?"), "{text}");
}

#[test]
fn error_unknown_flag_with_suggestion() {
    let text = rendered("FROM alpine\nCOPY --chwon=app . .\n");
    assert!(
        text.starts_with("Dockerfile:2:6: unknown flag `--chwon` for COPY"),
        "{text}"
    );
    assert!(
        text.contains(" 2 | COPY --chwon=app . .\n   |      ^^^^^^^^^^^"),
        "{text}"
    );
    assert!(text.contains("did you mean `--chown`?"), "{text}");
}

#[test]
fn error_bad_flag_value() {
    let text = rendered("FROM alpine\nRUN --network=hots make\n");
    assert!(
        text.contains("Dockerfile:2:5: invalid value `hots` for `--network`"),
        "{text}"
    );
    assert!(text.contains("did you mean `--network=host`?"), "{text}");
    let text = rendered("FROM alpine\nRUN --mount=type=cahce,target=/c make\n");
    assert!(text.contains("did you mean `type=cache`?"), "{text}");
    let text = rendered("FROM alpine\nRUN --mount=type=cache,targte=/c make\n");
    assert!(text.contains("did you mean `target`?"), "{text}");
    let text = rendered("FROM alpine\nHEALTHCHECK --interval=5 CMD true\n");
    assert!(text.contains("missing unit"), "{text}");
    let text = rendered("FROM alpine\nSTOPSIGNAL SIGTREM\n");
    assert!(text.contains("did you mean `SIGTERM`?"), "{text}");
    let text = rendered("FROM alpine\nEXPOSE 80/tpc\n");
    assert!(text.contains("Dockerfile:2:8: invalid port"), "{text}");
    let text = rendered("FROM alpine\nCOPY --chmod=999 a b\n");
    assert!(text.contains("invalid value `999` for `--chmod`"), "{text}");
}

#[test]
fn error_stage_used_before_definition() {
    let text = rendered("FROM builder\nRUN x\nFROM alpine AS builder\n");
    assert!(
        text.starts_with("Dockerfile:1:6: stage `builder` is used before it is defined"),
        "{text}"
    );
    assert!(
        text.contains(" 1 | FROM builder\n   |      ^^^^^^^"),
        "{text}"
    );
}

#[test]
fn error_cycle_and_bad_index_and_self_reference() {
    let text =
        rendered("FROM alpine AS a\nCOPY --from=b /x /x\nFROM alpine AS b\nCOPY --from=a /y /y\n");
    assert!(
        text.contains("circular dependency between stages: a -> b -> a"),
        "{text}"
    );
    assert!(text.contains("^^^"), "{text}");
    let text = rendered("FROM alpine\nCOPY --from=3 /x /x\n");
    assert!(
        text.contains("Dockerfile:2:6: stage index 3 is out of range"),
        "{text}"
    );
    let text = rendered("FROM alpine AS a\nCOPY --from=a /x /x\n");
    assert!(text.contains("a stage can not refer to itself"), "{text}");
}

#[test]
fn error_unknown_target_and_no_stages() {
    let mut o = opts();
    o.target = Some("buidl".into());
    let e = lower_with("FROM alpine AS build\n", o).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Dockerfile: target stage `buidl` could not be found\n  = help: did you mean `build`?"
    );
    let text = rendered("ARG X=1\n");
    assert!(text.contains("no FROM instruction"), "{text}");
    let text = rendered("RUN x\nFROM alpine\n");
    assert!(
        text.starts_with("Dockerfile:1:1: RUN before the first FROM"),
        "{text}"
    );
}

#[test]
fn error_wrong_arguments_and_expansion() {
    let text = rendered("FROM alpine\nCOPY onlyone\n");
    assert!(
        text.contains("COPY requires at least two arguments"),
        "{text}"
    );
    let text = rendered("FROM alpine\nARG X\nWORKDIR ${X:?must be set}\n");
    assert!(text.contains("cannot expand"), "{text}");
    assert!(text.contains("must be set"), "{text}");
    let text = rendered("FROM alpine AS 1bad\n");
    assert!(text.contains("invalid stage name `1bad`"), "{text}");
}
