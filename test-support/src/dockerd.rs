//! A private Docker engine for the end-to-end tests: its own socket, data root and exec root,
//! the `vfs` storage driver (works on any filesystem, needs no overlay support) and no bridge or
//! iptables changes, so it never touches the host's Docker setup. Stopped on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The Docker daemon under test.
pub const DOCKERD: &str = "/usr/sbin/dockerd";

/// The Docker client. The 20.10 client is used explicitly: it drives BuildKit builds itself
/// (`DOCKER_BUILDKIT=1`), where newer clients need the separate buildx plugin.
pub const DOCKER: &str = "/usr/bin/docker";

/// A running private dockerd.
pub struct Dockerd {
    child: Child,
    sock: String,
    dir: tempfile::TempDir,
}

impl Dockerd {
    /// Starts a dockerd and waits until it answers (panics with its log after 60 s).
    pub fn start() -> Dockerd {
        // Under /tmp: the socket path must stay short (108 bytes).
        let dir = tempfile::Builder::new()
            .prefix("dkr")
            .tempdir_in("/tmp")
            .expect("dockerd temp dir");
        let p = dir.path();
        let sock = format!("unix://{}/docker.sock", p.display());
        let log = std::fs::File::create(p.join("dockerd.log")).expect("dockerd log");
        let child = Command::new(DOCKERD)
            .arg("--host")
            .arg(&sock)
            .arg("--data-root")
            .arg(p.join("root"))
            .arg("--exec-root")
            .arg(p.join("exec"))
            .arg("--pidfile")
            .arg(p.join("pid"))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
                "--storage-driver=vfs",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn dockerd");
        let d = Dockerd { child, sock, dir };
        let start = Instant::now();
        loop {
            if d.docker(&["version"]).status.success() {
                return d;
            }
            if start.elapsed() > Duration::from_secs(60) {
                panic!("dockerd did not come up:\n{}", d.log());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The daemon's address, as `DOCKER_HOST` takes it (`unix:///tmp/.../docker.sock`).
    pub fn host(&self) -> &str {
        &self.sock
    }

    /// A client command talking to this daemon.
    pub fn command(&self) -> Command {
        let mut c = Command::new(DOCKER);
        c.env("DOCKER_HOST", &self.sock);
        c
    }

    /// Runs `docker ARGS` against this daemon.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run docker")
    }

    /// Runs `docker ARGS`, failing the test (with the daemon's log) when it fails; returns stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The tail of the daemon's log.
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// A scratch directory that lives as long as the daemon.
    pub fn scratch(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
