use super::*;

fn linux() -> Platform {
    "linux/amd64".parse().unwrap()
}

fn image(def: &mut Definition, r: &str) -> VertexId {
    def.add(
        Op::Source(SourceOp::Image {
            reference: normalize_image_reference(r).unwrap(),
            platform: linux(),
        }),
        vec![],
        linux(),
        VertexMeta::default(),
    )
    .unwrap()
}

fn exec(args: &[&str]) -> ExecOp {
    ExecOp {
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec![("PATH".into(), "/bin".into())],
        proxy_env: vec![],
        cwd: "/".into(),
        user: String::new(),
        network: NetworkMode::Default,
        security: SecurityMode::Sandbox,
        mounts: vec![],
        extra_hosts: vec![],
        shm_size: 0,
        ulimits: vec![],
    }
}

#[test]
fn identical_op_and_inputs_dedupe() {
    let mut def = Definition::new();
    let a = image(&mut def, "alpine");
    let b = image(&mut def, "docker.io/library/alpine:latest");
    assert_eq!(a, b);
    let r1 = def
        .add(
            Op::Exec(exec(&["make"])),
            vec![a],
            linux(),
            VertexMeta::default(),
        )
        .unwrap();
    let r2 = def
        .add(
            Op::Exec(exec(&["make"])),
            vec![a],
            linux(),
            VertexMeta::default(),
        )
        .unwrap();
    assert_eq!(r1, r2);
    assert_eq!(def.len(), 2);
}

#[test]
fn digest_is_stable_and_sensitive_to_every_exec_field() {
    let build = |e: ExecOp| {
        let mut def = Definition::new();
        let a = image(&mut def, "alpine:3.19");
        let ctx = def
            .add(
                Op::Source(SourceOp::Context {
                    name: "context".into(),
                    includes: vec![],
                    excludes: vec![],
                }),
                vec![],
                linux(),
                VertexMeta::default(),
            )
            .unwrap();
        let id = def
            .add(Op::Exec(e), vec![a, ctx], linux(), VertexMeta::default())
            .unwrap();
        def.vertex(id).unwrap().digest
    };
    let base = exec(&["make"]);
    let d0 = build(base.clone());
    assert_eq!(d0, build(base.clone()), "stable across runs");
    // Pinned value: changes only when the canonical form changes on purpose.
    assert_eq!(d0.to_string().len(), 71);
    let mut variants: Vec<ExecOp> = Vec::new();
    let mut v = base.clone();
    v.args.push("x".into());
    variants.push(v);
    let mut v = base.clone();
    v.env[0].1 = "/usr/bin".into();
    variants.push(v);
    let mut v = base.clone();
    v.cwd = "/src".into();
    variants.push(v);
    let mut v = base.clone();
    v.user = "nobody".into();
    variants.push(v);
    let mut v = base.clone();
    v.network = NetworkMode::None;
    variants.push(v);
    let mut v = base.clone();
    v.security = SecurityMode::Insecure;
    variants.push(v);
    let mount = |kind| MountSpec {
        input: Some(1),
        target: "/src".into(),
        kind,
    };
    let mut v = base.clone();
    v.mounts.push(mount(MountKind::Bind {
        source: "/".into(),
        readonly: true,
    }));
    variants.push(v.clone());
    let mut w = v.clone();
    w.mounts[0].target = "/other".into();
    variants.push(w);
    let mut w = v.clone();
    w.mounts[0].kind = MountKind::Bind {
        source: "/".into(),
        readonly: false,
    };
    variants.push(w);
    let mut w = v.clone();
    w.mounts[0].input = Some(0);
    variants.push(w);
    let cache = MountKind::Cache {
        id: "go".into(),
        sharing: CacheSharing::Shared,
        readonly: false,
        source: "/".into(),
        mode: 0o755,
        uid: 0,
        gid: 0,
    };
    let mut w = v.clone();
    w.mounts[0].kind = cache.clone();
    variants.push(w);
    for change in 0..5 {
        let mut k = cache.clone();
        if let MountKind::Cache {
            id,
            sharing,
            mode,
            uid,
            gid,
            ..
        } = &mut k
        {
            match change {
                0 => *id = "rust".into(),
                1 => *sharing = CacheSharing::Locked,
                2 => *mode = 0o700,
                3 => *uid = 1,
                _ => *gid = 1,
            }
        }
        let mut w = v.clone();
        w.mounts[0].kind = k;
        variants.push(w);
    }
    let mut seen = std::collections::HashSet::new();
    seen.insert(d0);
    for v in variants {
        assert!(
            seen.insert(build(v.clone())),
            "digest did not change for {v:?}"
        );
    }
}

#[test]
fn proxy_env_is_not_hashed() {
    let mut def = Definition::new();
    let a = image(&mut def, "alpine");
    let plain = def
        .add(
            Op::Exec(exec(&["make"])),
            vec![a],
            linux(),
            VertexMeta::default(),
        )
        .unwrap();
    let mut e = exec(&["make"]);
    e.proxy_env
        .push(("HTTP_PROXY".into(), "http://proxy:3128".into()));
    let proxied = def
        .add(Op::Exec(e), vec![a], linux(), VertexMeta::default())
        .unwrap();
    assert_eq!(plain, proxied);
}

#[test]
fn platform_and_inputs_change_the_digest() {
    let mut def = Definition::new();
    let a = image(&mut def, "alpine");
    let b = image(&mut def, "debian");
    let on_a = def
        .add(
            Op::Exec(exec(&["make"])),
            vec![a],
            linux(),
            VertexMeta::default(),
        )
        .unwrap();
    let on_b = def
        .add(
            Op::Exec(exec(&["make"])),
            vec![b],
            linux(),
            VertexMeta::default(),
        )
        .unwrap();
    let arm = def
        .add(
            Op::Exec(exec(&["make"])),
            vec![a],
            "linux/arm64".parse().unwrap(),
            VertexMeta::default(),
        )
        .unwrap();
    assert_ne!(on_a, on_b);
    assert_ne!(on_a, arm);
}

#[test]
fn config_vertices_keep_the_filesystem_digest() {
    let mut def = Definition::new();
    let a = image(&mut def, "alpine");
    let label = def
        .add(
            Op::Config(ConfigChange::Label(vec![("a".into(), "1".into())])),
            vec![a],
            linux(),
            VertexMeta::default(),
        )
        .unwrap();
    let run_after_label = def
        .add(
            Op::Exec(exec(&["make"])),
            vec![label],
            linux(),
            VertexMeta::default(),
        )
        .unwrap();
    let run_direct = def
        .add(
            Op::Exec(exec(&["make"])),
            vec![a],
            linux(),
            VertexMeta::default(),
        )
        .unwrap();
    let v1 = def.vertex(run_after_label).unwrap();
    let v2 = def.vertex(run_direct).unwrap();
    assert_ne!(v1.digest, v2.digest);
    assert_eq!(def.chain(run_after_label), vec![a, label, run_after_label]);
}

#[test]
fn rejects_bad_inputs() {
    let mut def = Definition::new();
    let a = image(&mut def, "alpine");
    let mut e = exec(&["x"]);
    e.mounts.push(MountSpec {
        input: Some(3),
        target: "/m".into(),
        kind: MountKind::Tmpfs { size: 0 },
    });
    assert!(matches!(
        def.add(Op::Exec(e), vec![a], linux(), VertexMeta::default()),
        Err(GraphError::BadInputIndex { index: 3, count: 1 })
    ));
    assert!(matches!(
        def.add(
            Op::Exec(exec(&["x"])),
            vec![VertexId(99)],
            linux(),
            VertexMeta::default()
        ),
        Err(GraphError::UnknownVertex(_))
    ));
}

#[test]
fn topological_order_and_ancestors() {
    let mut def = Definition::new();
    let a = image(&mut def, "alpine");
    let b = image(&mut def, "debian");
    let ra = def
        .add(
            Op::Exec(exec(&["a"])),
            vec![a],
            linux(),
            VertexMeta::default(),
        )
        .unwrap();
    let _rb = def
        .add(
            Op::Exec(exec(&["b"])),
            vec![b],
            linux(),
            VertexMeta::default(),
        )
        .unwrap();
    let order = def.topological_order();
    let pos = |v: VertexId| order.iter().position(|&x| x == v).unwrap();
    assert!(pos(a) < pos(ra));
    assert_eq!(def.ancestors(ra), vec![a, ra]);
    assert_eq!(def.dependents(a), vec![ra]);
}

#[test]
fn normalizes_references() {
    for (input, want) in [
        ("alpine", "docker.io/library/alpine:latest"),
        ("alpine:3.19", "docker.io/library/alpine:3.19"),
        ("user/app", "docker.io/user/app:latest"),
        ("ghcr.io/o/app:1", "ghcr.io/o/app:1"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
        ("alpine@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "docker.io/library/alpine@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        (
            "index.docker.io/library/busybox",
            "docker.io/library/busybox:latest",
        ),
    ] {
        assert_eq!(normalize_image_reference(input).unwrap(), want, "{input}");
    }
    assert!(normalize_image_reference("Bad Name").is_err());
}

#[test]
fn dot_is_accepted_by_graphviz() {
    let mut def = Definition::new();
    let a = image(&mut def, "alpine");
    let r = def
        .add(
            Op::Exec(exec(&["sh", "-c", "echo \"hi\" \\ done"])),
            vec![a],
            linux(),
            VertexMeta {
                name: "[build 2/2] RUN echo \"hi\"".into(),
                stage: Some(0),
                ..Default::default()
            },
        )
        .unwrap();
    def.add_stage(StageInfo {
        name: "build".into(),
        alias: Some("build".into()),
        index: 0,
        base: StageBase::Image {
            reference: "docker.io/library/alpine:latest".into(),
        },
        base_config_resolved: false,
        final_vertex: r,
        platform: linux(),
    });
    def.set_target(r, Some(0));
    let dot = def.to_dot();
    assert!(dot.contains("subgraph cluster_0"));
    let Ok(mut child) = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        panic!("graphviz `dot` must be installed for this test");
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dot.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "dot failed: {}\n{dot}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("<svg"));
    let json: serde_json::Value = serde_json::from_str(&def.to_json().unwrap()).unwrap();
    assert_eq!(json["vertices"].as_array().unwrap().len(), 2);
    assert_eq!(json["target"], serde_json::json!(1));
}
