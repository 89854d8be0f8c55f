//! Shared fixture of the CLI's end-to-end tests: a private root directory with the examples'
//! busybox base image loaded, and helpers to run `builder` and read `--metadata-file`.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use test_support::dockerd;
#[allow(unused_imports)]
pub use test_support::{require, Need};
pub mod hostile_tar;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The `builder` binary under test.
pub fn builder_bin() -> &'static str {
    env!("CARGO_BIN_EXE_builder")
}

/// What the end-to-end build tests need: root (overlay mounts), a static busybox for the base
/// image and slirp4netns (the default network of RUN steps). Such a test carries
/// `#[cfg_attr(any(missing_root, missing_busybox, missing_slirp4netns), ignore = "...")]`
/// and calls this first (see `test_support`).
pub const BUILD: &[Need] = &[Need::Root, Need::Busybox, Need::Slirp4netns];

/// Fails the test unless [`BUILD`]'s needs are met.
pub fn require_build() {
    require(BUILD);
}

/// Asserts that `f`'s root survived whatever the test did to it: `builder cache check` finds
/// nothing wrong and a normal build (with a RUN step) on the same root still works.
pub fn assert_store_intact(f: &Fixture) {
    let out = f.cmd().args(["cache", "check"]).output().unwrap();
    assert!(
        out.status.success(),
        "cache check after the attack: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ctx = f.context(
        "intact-after",
        &[(
            "Dockerfile",
            "FROM busybox:local\nRUN test -x /bin/busybox && echo intact > /ok\n",
        )],
    );
    f.build_ok(&ctx, &["--no-cache"]);
}

/// The repository's `examples/` directory.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// The example Dockerfiles that build on the base image: every directory of `examples/` with a
/// Dockerfile, but `base` (which [`base_archive`] builds), sorted by name.
pub fn example_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(examples_dir())
        .expect("examples/")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Dockerfile").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "base")
        .collect();
    names.sort();
    names
}

/// The `--secret` the examples need (`examples/mounts`).
pub fn example_secret_arg() -> String {
    format!(
        "id=token,src={}",
        examples_dir().join("mounts/token.txt").display()
    )
}

/// A docker-archive of the base image (`busybox:local`), built once per test process into
/// Cargo's per-target temporary directory (reused while the binary under test is unchanged).
pub fn base_archive() -> &'static Path {
    static ARCHIVE: OnceLock<PathBuf> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("builder-base-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("temp dir");
        let root = dir.path().join("root");
        let context = dir.path().join("context");
        std::fs::create_dir_all(&context).unwrap();
        std::fs::copy("/usr/bin/busybox", context.join("busybox")).unwrap();
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/base/Dockerfile");
        std::fs::copy(examples, context.join("Dockerfile")).unwrap();
        let out = Command::new(builder_bin())
            .args(["--root"])
            .arg(&root)
            .args(["build", "--progress", "plain", "-t", "busybox:local"])
            .arg(&context)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "base build failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // One archive per test process; the build root is removed with `dir`.
        let archive = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("busybox-base-{}.tar", std::process::id()));
        let out = Command::new(builder_bin())
            .arg("--root")
            .arg(&root)
            .args(["save", "-o"])
            .arg(&archive)
            .arg("busybox:local")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "save failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        archive
    })
}

/// A private builder root with the base image loaded.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("builder-e2e-")
            .tempdir()
            .unwrap();
        let f = Fixture { dir };
        let out = f
            .cmd()
            .args(["load", "-i"])
            .arg(base_archive())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "load failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        f
    }

    /// A private builder root with nothing loaded, for commands that need no image.
    pub fn empty() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("builder-e2e-")
            .tempdir()
            .unwrap();
        Fixture { dir }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A `builder` command on this fixture's root.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(builder_bin());
        c.arg("--root").arg(self.root());
        c
    }

    /// A fresh context directory with the given files.
    pub fn context(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.dir.path().join(name);
        for (path, content) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Runs `builder build` with `args` on `context`; returns the output and the metadata.
    pub fn build(&self, context: &Path, args: &[&str]) -> (Output, serde_json::Value) {
        let meta = self.dir.path().join("metadata.json");
        let _ = std::fs::remove_file(&meta);
        let out = self
            .cmd()
            .args(["build", "--progress", "plain", "--metadata-file"])
            .arg(&meta)
            .args(args)
            .arg(context)
            .output()
            .unwrap();
        let metadata = std::fs::read(&meta)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(serde_json::Value::Null);
        (out, metadata)
    }

    /// Like [`Fixture::build`], failing the test when the build fails.
    pub fn build_ok(&self, context: &Path, args: &[&str]) -> serde_json::Value {
        let (out, meta) = self.build(context, args);
        assert!(
            out.status.success(),
            "build failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        meta
    }
}

/// The steps of a metadata file as (name, cached, reason kind).
pub fn steps(meta: &serde_json::Value) -> Vec<(String, bool, String)> {
    let mut v: Vec<_> = meta["builder.steps"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or("").to_string(),
                s["cached"].as_bool().unwrap_or(false),
                s["reason"]["kind"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    v.sort_by_key(|s| s.0.clone());
    v
}

/// The step whose name contains `needle`.
pub fn step<'a>(meta: &'a serde_json::Value, needle: &str) -> &'a serde_json::Value {
    meta["builder.steps"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|s| s["name"].as_str().is_some_and(|n| n.contains(needle)))
        })
        .unwrap_or_else(|| panic!("no step named like {needle:?} in {meta:#}"))
}

/// Runs `cmd`, failing the test with its output unless it succeeds; returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
