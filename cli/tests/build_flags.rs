//! `docker build`'s flags, each doing what Docker's (BuildKit's) does: `--label`, `--network`,
//! `--add-host`, `--build-context`, `--call check`, `--shm-size`, `--ulimit`, `--ssh`.

mod common;

use common::{run_ok, Fixture};
use std::path::{Path, PathBuf};

/// The `Config` of the stored image `name`, as `builder inspect` shows it.
fn image_config(f: &Fixture, name: &str) -> serde_json::Value {
    let text = run_ok(f.cmd().args(["inspect", name]));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v[0]["Config"].clone()
}

/// Builds `ctx` with `args` plus a local output; returns the output directory.
fn build_to_dir(f: &Fixture, ctx: &Path, out: &str, args: &[&str]) -> PathBuf {
    let dest = f.dir.path().join(out);
    let o = format!("type=local,dest={}", dest.display());
    let mut all = vec!["-o", o.as_str()];
    all.extend_from_slice(args);
    f.build_ok(ctx, &all);
    dest
}

/// Runs a build expected to fail; returns its stderr.
fn build_err(f: &Fixture, ctx: &Path, args: &[&str]) -> String {
    let (out, _) = f.build(ctx, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the build should fail:\n{stderr}");
    stderr
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn label_sets_image_labels_over_the_dockerfiles() {
    common::require_build();
    let f = Fixture::new();
    let ctx = f.context(
        "label",
        &[(
            "Dockerfile",
            "FROM busybox:local\nLABEL keep=file over=file\nRUN true\n",
        )],
    );
    build_to_dir(
        &f,
        &ctx,
        "out",
        &["-t", "labelled", "--label", "over=flag", "--label=new=a=b"],
    );
    let labels = &image_config(&f, "labelled")["Labels"];
    assert_eq!(labels["keep"], "file", "{labels}");
    assert_eq!(labels["over"], "flag", "{labels}");
    assert_eq!(labels["new"], "a=b", "{labels}");
    let err = build_err(&f, &ctx, &["--label", "=x"]);
    assert!(err.contains("expected KEY=VALUE"), "{err}");
}

/// The interface names in a copy of `/proc/net/dev`.
fn interfaces(dev: &str) -> Vec<String> {
    let mut names: Vec<String> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_string())
        .collect();
    names.sort();
    names
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn network_sets_the_network_of_run_steps() {
    common::require_build();
    let f = Fixture::new();
    let ctx = f.context(
        "network",
        &[(
            "Dockerfile",
            "FROM busybox:local\nRUN cat /proc/net/dev > /net\n",
        )],
    );
    let none = build_to_dir(&f, &ctx, "none", &["--network", "none"]);
    let none = interfaces(&std::fs::read_to_string(none.join("net")).unwrap());
    assert_eq!(none, ["lo"]);

    // The network is part of the step's cache key: the default network is another step.
    let default = build_to_dir(&f, &ctx, "default", &[]);
    let default = interfaces(&std::fs::read_to_string(default.join("net")).unwrap());
    assert!(
        default.len() > 1,
        "the NAT network has an interface: {default:?}"
    );

    // The host's network is an entitlement, for the flag and for `RUN --network=host` alike.
    let err = build_err(&f, &ctx, &["--network", "host"]);
    assert!(err.contains("--allow network.host"), "{err}");
    let run_host = f.context(
        "run-host",
        &[(
            "Dockerfile",
            "FROM busybox:local\nRUN --network=host cat /proc/net/dev > /net\n",
        )],
    );
    let err = build_err(&f, &run_host, &[]);
    assert!(err.contains("network.host"), "{err}");
    // Also when the step is cached: the definition is refused before the solve.
    f.build_ok(&run_host, &["--allow", "network.host"]);
    let err = build_err(&f, &run_host, &[]);
    assert!(err.contains("network.host"), "{err}");

    let host = build_to_dir(
        &f,
        &ctx,
        "host",
        &["--network", "host", "--allow", "network.host"],
    );
    let host = interfaces(&std::fs::read_to_string(host.join("net")).unwrap());
    let mine = interfaces(&std::fs::read_to_string("/proc/net/dev").unwrap());
    assert_eq!(host, mine);

    // A step's own `--network=none` wins over the build's.
    let own = f.context(
        "own",
        &[(
            "Dockerfile",
            "FROM busybox:local\nRUN --network=none cat /proc/net/dev > /net\n",
        )],
    );
    let own = build_to_dir(
        &f,
        &own,
        "own-out",
        &["--network", "host", "--allow", "network.host"],
    );
    let own = interfaces(&std::fs::read_to_string(own.join("net")).unwrap());
    assert_eq!(own, ["lo"]);
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn add_host_is_in_each_steps_hosts_file_and_not_in_the_image() {
    common::require_build();
    let f = Fixture::new();
    let ctx = f.context(
        "add-host",
        &[(
            "Dockerfile",
            "FROM busybox:local\nRUN cat /etc/hosts > /seen\nRUN cp /etc/hosts /copy\n",
        )],
    );
    let out = build_to_dir(
        &f,
        &ctx,
        "one",
        &["--add-host", "db:10.1.2.3", "--add-host=cache=10.1.2.4"],
    );
    for file in ["seen", "copy"] {
        let seen = std::fs::read_to_string(out.join(file)).unwrap();
        assert!(seen.contains("10.1.2.3\tdb\n"), "{file}: {seen}");
        assert!(seen.contains("10.1.2.4\tcache\n"), "{file}: {seen}");
        assert!(seen.contains("localhost"), "{file}: {seen}");
    }
    // As BuildKit: the image's own /etc/hosts is not touched.
    let image_hosts = std::fs::read_to_string(out.join("etc/hosts")).unwrap_or_default();
    assert!(!image_hosts.contains("10.1.2.3"), "{image_hosts}");

    // As BuildKit: the names are in the cache key, the addresses are not.
    let meta = f.build_ok(
        &ctx,
        &["--add-host", "db:10.9.9.9", "--add-host=cache=10.1.2.4"],
    );
    assert!(
        common::step(&meta, "RUN cat")["cached"].as_bool().unwrap(),
        "{meta}"
    );
    let meta = f.build_ok(&ctx, &["--add-host", "other:10.1.2.3"]);
    assert!(
        !common::step(&meta, "RUN cat")["cached"].as_bool().unwrap(),
        "{meta}"
    );

    let err = build_err(&f, &ctx, &["--add-host", "db:nowhere"]);
    assert!(err.contains("not an IP address"), "{err}");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn shm_size_sizes_dev_shm_of_run_steps() {
    common::require_build();
    let f = Fixture::new();
    let ctx = f.context(
        "shm",
        &[(
            "Dockerfile",
            "FROM busybox:local\nRUN df -k /dev/shm | tail -n 1 > /shm\n",
        )],
    );
    let size_kib = |dir: &Path| -> u64 {
        let line = std::fs::read_to_string(dir.join("shm")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let default = build_to_dir(&f, &ctx, "default", &[]);
    assert_eq!(size_kib(&default), 64 * 1024);
    // A different size is a different step (it would be a cache hit with 64 MiB otherwise).
    let big = build_to_dir(&f, &ctx, "big", &["--shm-size", "128m"]);
    assert_eq!(size_kib(&big), 128 * 1024);
    let err = build_err(&f, &ctx, &["--shm-size", "lots"]);
    assert!(err.contains("--shm-size"), "{err}");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn ulimit_limits_the_step_process() {
    common::require_build();
    let f = Fixture::new();
    let ctx = f.context(
        "ulimit",
        &[(
            "Dockerfile",
            "FROM busybox:local\nRUN cat /proc/self/limits > /limits\n",
        )],
    );
    let limit = |dir: &Path, what: &str| -> Vec<String> {
        let text = std::fs::read_to_string(dir.join("limits")).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with(what))
            .unwrap_or_else(|| panic!("{what} in {text}"));
        line[what.len()..]
            .split_whitespace()
            .take(2)
            .map(str::to_string)
            .collect()
    };
    let out = build_to_dir(
        &f,
        &ctx,
        "limited",
        &["--ulimit", "nofile=100:200", "--ulimit=core=-1"],
    );
    assert_eq!(limit(&out, "Max open files"), ["100", "200"]);
    assert_eq!(
        limit(&out, "Max core file size"),
        ["unlimited", "unlimited"]
    );
    // Other limits are another step.
    let out = build_to_dir(&f, &ctx, "other", &["--ulimit", "nofile=300"]);
    assert_eq!(limit(&out, "Max open files"), ["300", "300"]);
    let err = build_err(&f, &ctx, &["--ulimit", "nofile=300:200"]);
    assert!(err.contains("above the hard limit"), "{err}");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn build_context_names_a_directory_or_an_image() {
    common::require_build();
    let f = Fixture::new();
    let extra = f.context(
        "extra",
        &[
            ("data.txt", "from the named context\n"),
            ("secret.txt", "ignored\n"),
            (".dockerignore", "secret.txt\n"),
        ],
    );
    let ctx = f.context(
        "main",
        &[(
            "Dockerfile",
            "FROM files AS copied\n\
             FROM base\n\
             COPY --from=files /data.txt /copied.txt\n\
             COPY --from=copied /data.txt /from-stage.txt\n\
             RUN --mount=from=files,target=/m cat /m/data.txt > /mounted.txt; \
                 ls /m > /listing.txt\n",
        )],
    );
    let extra_arg = format!("files={}", extra.display());
    let out = build_to_dir(
        &f,
        &ctx,
        "out",
        &[
            "--build-context",
            &extra_arg,
            "--build-context",
            "base=docker-image://busybox:local",
        ],
    );
    for file in ["copied.txt", "from-stage.txt", "mounted.txt"] {
        assert_eq!(
            std::fs::read_to_string(out.join(file)).unwrap(),
            "from the named context\n",
            "{file}"
        );
    }
    // The named directory's own .dockerignore applies.
    let listing = std::fs::read_to_string(out.join("listing.txt")).unwrap();
    assert!(!listing.contains("secret.txt"), "{listing}");
    assert!(out.join("bin/busybox").exists(), "FROM base is the image");

    // As BuildKit: names compare in their familiar form (`files:latest` is `files`), and a
    // stage named like a context is that context, its own instructions unused.
    let stage = f.context(
        "stage",
        &[(
            "Dockerfile",
            "FROM busybox:local AS base\n\
             RUN echo from-the-stage > /origin.txt\n\
             FROM base\n\
             COPY --from=files:latest /data.txt /copied.txt\n\
             RUN test ! -e /origin.txt && echo replaced > /stage.txt\n",
        )],
    );
    let out = build_to_dir(
        &f,
        &stage,
        "stage-out",
        &[
            "--build-context",
            &extra_arg,
            "--build-context",
            "base=docker-image://busybox:local",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(out.join("stage.txt")).unwrap(),
        "replaced\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("copied.txt")).unwrap(),
        "from the named context\n"
    );

    // Without the flag the names are images, which do not exist.
    let err = build_err(&f, &ctx, &[]);
    assert!(err.contains("files"), "{err}");
    let err = build_err(&f, &ctx, &["--build-context", "files=/no/such/dir"]);
    assert!(err.contains("not a directory"), "{err}");
}

#[test]
fn call_check_runs_the_build_checks_only() {
    let f = Fixture::new();
    let ctx = f.context(
        "check",
        &[("Dockerfile", "FROM busybox:local as base\nRUN false\n")],
    );
    for flag in [&["--call", "check"][..], &["--check"][..]] {
        let out = f.cmd().arg("build").args(flag).arg(&ctx).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        // As `docker build --check`: the count, each warning with its link and the source,
        // and exit status 1; nothing is built (the RUN would fail).
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        assert!(
            stdout.starts_with("Check complete, 1 warning has been found!\n"),
            "{stdout}"
        );
        assert!(
            stdout.contains(
                "WARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/"
            ),
            "{stdout}"
        );
        assert!(
            stdout.contains(
                "Dockerfile:1\n--------------------\n   1 | >>> FROM busybox:local as base\n"
            ),
            "{stdout}"
        );
    }
    let clean = f.context(
        "clean",
        &[("Dockerfile", "FROM busybox:local AS base\nRUN false\n")],
    );
    let out = f
        .cmd()
        .args(["build", "--call=check"])
        .arg(&clean)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Check complete, no warnings found.\n"
    );
}

/// Copies the host's `ssh-add` with its shared libraries and loader into `dir`, to run it in a
/// busybox step as `dir/ld.so --library-path dir dir/ssh-add`.
fn copy_ssh_add(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let ldd = run_ok(std::process::Command::new("ldd").arg("/usr/bin/ssh-add"));
    let mut files = vec![PathBuf::from("/usr/bin/ssh-add")];
    for line in ldd.lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or `/lib64/ld-linux-x86-64.so.2 (0x...)`
        let path = line
            .split("=>")
            .last()
            .and_then(|s| s.split_whitespace().next())
            .filter(|p| p.starts_with('/'));
        if let Some(p) = path {
            files.push(PathBuf::from(p));
        }
    }
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let name = if name.starts_with("ld-linux") {
            "ld.so".to_string()
        } else {
            name
        };
        std::fs::copy(&file, dir.join(name)).unwrap();
    }
}

/// An `ssh-agent` on a socket of its own, killed when dropped.
struct Agent {
    pid: String,
    socket: PathBuf,
}

impl Agent {
    fn start(dir: &Path) -> Agent {
        let socket = dir.join("agent.sock");
        let out = run_ok(
            std::process::Command::new("ssh-agent")
                .arg("-a")
                .arg(&socket)
                .arg("-s"),
        );
        let pid = out
            .split(';')
            .find_map(|s| s.trim().strip_prefix("SSH_AGENT_PID="))
            .expect("ssh-agent prints its pid")
            .to_string();
        Agent { pid, socket }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").arg(&self.pid).status();
    }
}

#[test]
#[cfg_attr(
    any(
        missing_root,
        missing_busybox,
        missing_slirp4netns,
        missing_openssh_client
    ),
    ignore = "needs root, /usr/bin/busybox, slirp4netns and openssh-client"
)]
fn ssh_forwards_the_agent_and_no_key_reaches_a_layer() {
    common::require(&[
        common::Need::Root,
        common::Need::Busybox,
        common::Need::Slirp4netns,
        common::Need::OpensshClient,
    ]);
    let f = Fixture::new();
    let keys = f.dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let key = keys.join("id_ed25519");
    run_ok(
        std::process::Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "builder-test-key",
                "-f",
            ])
            .arg(&key),
    );
    let agent = Agent::start(&keys);
    run_ok(
        std::process::Command::new("ssh-add")
            .env("SSH_AUTH_SOCK", &agent.socket)
            .arg(&key),
    );
    let fingerprint = run_ok(
        std::process::Command::new("ssh-keygen")
            .arg("-lf")
            .arg(&key),
    );
    let fingerprint = fingerprint.split_whitespace().nth(1).unwrap().to_string();

    let ctx = f.context(
        "ssh",
        &[(
            "Dockerfile",
            "FROM busybox:local\n\
             RUN --mount=type=bind,source=sshbin,target=/sshbin --mount=type=ssh \
                 echo \"$SSH_AUTH_SOCK\" > /sock && test -S \"$SSH_AUTH_SOCK\" && \
                 /sshbin/ld.so --library-path /sshbin /sshbin/ssh-add -l > /keys && \
                 ! chmod 666 \"$SSH_AUTH_SOCK\" 2>/dev/null\n\
             USER app\n\
             RUN --mount=type=bind,source=sshbin,target=/sshbin --mount=type=ssh,uid=1000 \
                 /sshbin/ld.so --library-path /sshbin /sshbin/ssh-add -l > /tmp/app-keys\n",
        )],
    );
    copy_ssh_add(&ctx.join("sshbin"));
    let ssh = format!("default={}", agent.socket.display());
    let out = build_to_dir(&f, &ctx, "out", &["--ssh", &ssh]);
    let listed = std::fs::read_to_string(out.join("keys")).unwrap();
    assert!(listed.contains(&fingerprint), "{listed}");
    // A step running as another user is given the agent by the mount's uid=, as in BuildKit
    // (OpenSSH's agent itself would refuse that user).
    let listed = std::fs::read_to_string(out.join("tmp/app-keys")).unwrap();
    assert!(listed.contains(&fingerprint), "{listed}");
    // The step could not change the host's socket.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&agent.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    assert_eq!(
        std::fs::read_to_string(out.join("sock")).unwrap(),
        "/run/buildkit/ssh_agent.0\n"
    );
    // Neither the socket nor the key is in the image: no file holds the private key's text.
    assert!(
        !out.join("run").exists(),
        "the mount point is not left in the layer"
    );
    let secret = std::fs::read_to_string(&key).unwrap();
    let secret_line = secret.lines().nth(1).unwrap();
    for entry in walk(&out) {
        if let Ok(bytes) = std::fs::read(&entry) {
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(secret_line),
                "{} holds the key",
                entry.display()
            );
        }
    }

    // `--ssh default` takes $SSH_AUTH_SOCK; a required ssh mount without an agent fails.
    let required = f.context(
        "required",
        &[(
            "Dockerfile",
            "FROM busybox:local\nRUN --mount=type=ssh,required=true true\n",
        )],
    );
    let err = build_err(&f, &required, &[]);
    assert!(err.contains("--ssh default"), "{err}");
    let (o, _) = {
        let meta = f.dir.path().join("m.json");
        let o = f
            .cmd()
            .env("SSH_AUTH_SOCK", &agent.socket)
            .args([
                "build",
                "--progress",
                "plain",
                "--ssh",
                "default",
                "--metadata-file",
            ])
            .arg(&meta)
            .arg(&required)
            .output()
            .unwrap();
        (o, meta)
    };
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A key file is not an agent.
    let err = build_err(
        &f,
        &required,
        &["--ssh", &format!("default={}", key.display())],
    );
    assert!(err.contains("not an agent socket"), "{err}");
}

/// Every regular file below `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn build_context_names_an_oci_layout() {
    common::require_build();
    // An image exported as an OCI layout by one root...
    let maker = Fixture::new();
    let ctx = maker.context(
        "made",
        &[(
            "Dockerfile",
            "FROM busybox:local\nRUN echo from-layout > /marker\n",
        )],
    );
    let tar = maker.dir.path().join("image.tar");
    maker.build_ok(
        &ctx,
        &[
            "-t",
            "made:1",
            "-o",
            &format!("type=oci,dest={}", tar.display()),
        ],
    );
    let layout = maker.dir.path().join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    run_ok(
        std::process::Command::new("tar")
            .arg("-xf")
            .arg(&tar)
            .arg("-C")
            .arg(&layout),
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();

    // ...is the base of another root's build, named by digest.
    let f = Fixture::new();
    let ctx = f.context(
        "uses",
        &[("Dockerfile", "FROM base\nRUN cat /marker > /seen\n")],
    );
    let arg = format!("base=oci-layout://{}@{digest}", layout.display());
    let out = build_to_dir(&f, &ctx, "out", &["--build-context", &arg]);
    assert_eq!(
        std::fs::read_to_string(out.join("seen")).unwrap(),
        "from-layout\n"
    );
    // As BuildKit, reading the layout names nothing in the store.
    let images = run_ok(f.cmd().args(["images", "--format", "{{.Repository}}"]));
    assert!(!images.contains("made"), "{images}");
    // --pull asks no registry for an image pinned by digest that the store holds.
    build_to_dir(&f, &ctx, "pulled", &["--pull", "--build-context", &arg]);
    let wrong = format!(
        "base=oci-layout://{}@sha256:{}",
        layout.display(),
        "0".repeat(64)
    );
    let err = build_err(&f, &ctx, &["--build-context", &wrong]);
    assert!(err.contains("no image with digest"), "{err}");
}
