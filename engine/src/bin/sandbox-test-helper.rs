//! Helper binary for the engine's sandbox tests and benchmarks.
//!
//! `sandbox-test-helper __sandbox-helper <fd>`: the sandbox helper, with a test in-process
//! handler `test.write-files` registered (payload: JSON map of path → contents, written under
//! the first overlay mount).
//! `sandbox-test-helper run-spec <spec.json>`: runs the spec with this binary as helper and prints
//! `{"exit_code":..,"lines":[..]}` or `{"error":".."}` as JSON (to run a spec as another user).
//! `sandbox-test-helper bench-start [runs]`: runs `true` in a fresh overlay over a busybox rootfs
//! `runs` times (default 50) and prints the median, minimum and maximum wall time.
//! `sandbox-test-helper tty-probe`: what a step could do to a terminal: prints one line per
//! attempt, `open /dev/tty: <result>` and `TIOCSTI fd N: <result>` for fds 0, 1 and 2 (a
//! successful TIOCSTI pushes a NUL byte into that terminal's input).
//! `sandbox-test-helper seccomp-probe`: system calls Docker's seccomp profile denies or limits;
//! prints `<call>: <result>` per line (`ok` or the error).

use engine::executor::{self, InProcessContext, InProcessError, Runner, SandboxSpec};
use engine::executor::{Action, ExecSpec, ExecUser, Network, OverlayMount, UpperDir};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why `test.write-files` failed.
#[derive(Debug, thiserror::Error)]
enum WriteFilesError {
    /// The payload is not a JSON map of path to contents.
    #[error("{0}")]
    Decode(#[from] serde_json::Error),
    /// The spec mounted no overlay.
    #[error("no overlay mounted")]
    NoMount,
    /// Writing a file failed.
    #[error("{}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn write_files(ctx: &InProcessContext, payload: &[u8]) -> Result<(), InProcessError> {
    let files: BTreeMap<String, String> =
        serde_json::from_slice(payload).map_err(WriteFilesError::Decode)?;
    let root = ctx.mounts.first().ok_or(WriteFilesError::NoMount)?;
    for (path, contents) in files {
        let target = root.join(path.trim_start_matches('/'));
        std::fs::write(&target, contents).map_err(|source| WriteFilesError::Write {
            path: target.clone(),
            source,
        })?;
    }
    Ok(())
}

fn main() {
    executor::register_in_process("test.write-files", write_files);
    executor::maybe_run_helper();
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("seccomp-probe") {
        seccomp_probe();
        return;
    }
    if args.get(1).map(String::as_str) == Some("tty-probe") {
        tty_probe();
        return;
    }
    if args.get(1).map(String::as_str) == Some("bench-start") {
        let runs = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(50);
        if let Err(e) = bench_start(runs) {
            eprintln!("bench-start: {e}");
            std::process::exit(1);
        }
        return;
    }
    if args.get(1).map(String::as_str) != Some("run-spec") || args.len() != 3 {
        eprintln!("usage: sandbox-test-helper run-spec <spec.json> | bench-start [runs]");
        std::process::exit(2);
    }
    let result = std::fs::read(&args[2])
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice::<SandboxSpec>(&b).map_err(|e| e.to_string()))
        .and_then(|spec| {
            let helper = std::env::current_exe().map_err(|e| e.to_string())?;
            let mut lines = Vec::new();
            let outcome = Runner::with_helper(helper)
                .run(&spec, &mut |l| lines.push(l.text.clone()))
                .map_err(|e| e.to_string())?;
            Ok(serde_json::json!({ "exit_code": outcome.exit_code, "lines": lines }))
        });
    let out = match result {
        Ok(v) => v,
        Err(e) => serde_json::json!({ "error": e }),
    };
    println!("{out}");
}

fn seccomp_probe() {
    // The error is read right after each call, before anything else can change errno.
    let report = |name: &str, rc: libc::c_long| {
        let result = if rc < 0 {
            std::io::Error::last_os_error().to_string()
        } else {
            "ok".to_string()
        };
        println!("{name}: {result}");
    };
    // SAFETY: plain system calls with integer arguments (clone3 with a null argument fails
    // before it could create anything); no memory is shared with them.
    unsafe {
        report("personality(query)", libc::personality(0xffff_ffff) as _);
        report("personality(0x4000000)", libc::personality(0x400_0000) as _);
        report(
            "unshare(CLONE_NEWUSER)",
            libc::unshare(libc::CLONE_NEWUSER) as _,
        );
        report("keyctl", libc::syscall(libc::SYS_keyctl, 0, 0, 0, 0, 0));
        report(
            "socket(AF_VSOCK)",
            libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0) as _,
        );
        report(
            "socket(AF_INET)",
            libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) as _,
        );
        report("clone3", libc::syscall(libc::SYS_clone3, 0, 0));
    }
    // Threads start although clone3 is refused: the C library falls back to clone.
    let thread = std::thread::spawn(|| 7).join();
    println!(
        "thread: {}",
        if matches!(thread, Ok(7)) {
            "ok"
        } else {
            "failed"
        }
    );
}

fn tty_probe() {
    let result = |rc: libc::c_int| {
        if rc < 0 {
            std::io::Error::last_os_error().to_string()
        } else {
            "ok".to_string()
        }
    };
    // SAFETY: open with a NUL-terminated path; ioctl TIOCSTI reads one byte from a valid pointer.
    unsafe {
        let fd = libc::open(c"/dev/tty".as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
        println!("open /dev/tty: {}", result(fd));
        let mut fds = vec![0, 1, 2];
        if fd >= 0 {
            fds.push(fd);
        }
        for fd in fds {
            let byte: libc::c_char = 0;
            let rc = libc::ioctl(fd, libc::TIOCSTI, &byte as *const libc::c_char);
            println!("TIOCSTI fd {fd}: {}", result(rc));
        }
    }
}

/// Times `runs` sandboxed `true` steps, each over a fresh upper and work directory.
fn bench_start(runs: usize) -> Result<(), String> {
    let err = |e: std::io::Error| e.to_string();
    let dir = tempfile::tempdir().map_err(err)?;
    let lower = dir.path().join("lower");
    std::fs::create_dir_all(lower.join("bin")).map_err(err)?;
    std::fs::copy("/usr/bin/busybox", lower.join("bin/busybox")).map_err(err)?;
    std::os::unix::fs::symlink("busybox", lower.join("bin/true")).map_err(err)?;
    // Like an image's rootfs: mount points exist, so no stubs are made.
    for dir in ["proc", "dev", "sys", "etc", "tmp"] {
        std::fs::create_dir(lower.join(dir)).map_err(err)?;
    }
    let runner = Runner::with_helper(std::env::current_exe().map_err(err)?);
    let mut times = Vec::with_capacity(runs);
    let mut cpu = Vec::with_capacity(runs);
    for i in 0..runs {
        let cpu_before = children_cpu();
        let step = dir.path().join(format!("step-{i}"));
        let spec = true_spec(&lower, &step);
        let outcome = runner.run(&spec, &mut |_| {}).map_err(|e| e.to_string())?;
        if !outcome.success() {
            return Err(format!("`true` exited {}", outcome.exit_code));
        }
        times.push(outcome.duration);
        cpu.push(children_cpu().saturating_sub(cpu_before));
    }
    times.sort();
    cpu.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "sandbox start (`true` over a busybox overlay, {} runs, {}): median {:.2} ms, min {:.2} ms, max {:.2} ms",
        runs,
        if executor::is_rootless() { "rootless" } else { "root" },
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1]),
    );
    // CPU time of the helper and the step, less sensitive to other load on the machine.
    println!(
        "sandbox CPU time (user+sys of helper and step): median {:.2} ms",
        ms(cpu[cpu.len() / 2])
    );
    Ok(())
}

/// User plus system time of all waited-for descendants so far.
fn children_cpu() -> Duration {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) != 0 {
            return Duration::ZERO;
        }
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn true_spec(lower: &Path, step: &Path) -> SandboxSpec {
    SandboxSpec {
        overlays: vec![OverlayMount {
            lower: vec![lower.to_path_buf()],
            upper: Some(UpperDir {
                upper: step.join("upper"),
                work: step.join("work"),
            }),
            target: step.join("root"),
        }],
        mounts: vec![],
        network: Network::None,
        hostname: "bench".to_string(),
        action: Action::Exec(ExecSpec {
            rootfs: step.join("root"),
            args: vec!["true".to_string()],
            env: vec!["PATH=/bin".to_string()],
            cwd: "/".into(),
            user: ExecUser::default().into(),
            insecure: false,
            shm_size_bytes: None,
            rlimits: Vec::new(),
        }),
    }
}
