//! The network of a step: the name-resolution files it sees (`/etc/hosts` and
//! `/etc/resolv.conf`, as file mounts, so they never land in the layer, the way BuildKit provides
//! them to `RUN`), and the user-mode NAT that connects a [`Network::Nat`] namespace to the
//! outside.
//!
//! The NAT is `slirp4netns` (as rootless BuildKit and Podman use): a process in the host's
//! network namespace that gives the step's namespace a `tap0` interface (10.0.2.100/24, gateway
//! 10.0.2.2, DNS forwarder 10.0.2.3) and makes its connections from the host's side with
//! ordinary sockets. With `--disable-host-loopback` the gateway address does not lead to the
//! host's 127.0.0.1, and the step has no other way there: its own loopback is its own.

use super::error::ExecError;
use super::spec::{MountKind, MountSpec, Network};
use super::sys::os_message;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The DNS forwarder slirp4netns offers inside the namespace.
const SLIRP_DNS: &str = "10.0.2.3";

/// A running `slirp4netns` serving one step's network namespace; killed when dropped.
pub(crate) struct Slirp {
    /// `None` once handed to the reaper.
    child: Option<Child>,
    /// Closing it also ends slirp4netns (`--exit-fd`), should the build process die first.
    _exit: OwnedFd,
}

impl Slirp {
    /// Connects the network namespace of process `pid` (and, rootless, joins its user namespace
    /// to do so); returns once the interface is configured.
    pub(crate) fn start(pid: i32, rootless: bool) -> Result<Slirp, ExecError> {
        let fail = |message: String| ExecError::Setup {
            step: "start slirp4netns for the step's network (install slirp4netns, or use \
                   RUN --network=host or --network=none)"
                .to_string(),
            message,
        };
        let pipe = || {
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| fail(os_message(e)))
        };
        let (ready_read, ready_write) = pipe()?;
        let (exit_read, exit_write) = pipe()?;
        let (ready_fd, exit_fd) = (ready_write.as_raw_fd(), exit_read.as_raw_fd());
        let mut command = Command::new("slirp4netns");
        command
            .args(["--configure", "--mtu=65520", "--disable-host-loopback"])
            // slirp4netns parses the step's packets, as root in a rootful build: it confines
            // itself (an empty root, no capabilities, its own seccomp filter) once configured.
            .args(["--enable-sandbox", "--enable-seccomp"])
            .arg(format!("--ready-fd={ready_fd}"))
            .arg(format!("--exit-fd={exit_fd}"));
        if rootless {
            command.arg(format!("--userns-path=/proc/{pid}/ns/user"));
        }
        command
            .arg(pid.to_string())
            .arg("tap0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: only fcntl, which is async-signal-safe, runs between fork and exec: the two
        // pipe ends slirp4netns is told about must survive exec. Both are open in the child.
        unsafe {
            command.pre_exec(move || {
                for fd in [ready_fd, exit_fd] {
                    let fd = rustix::fd::BorrowedFd::borrow_raw(fd);
                    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(|e| fail(os_message(e)))?;
        drop((ready_write, exit_read));
        let mut byte = [0u8; 1];
        let ready = std::fs::File::from(ready_read).read(&mut byte);
        let slirp = Slirp {
            child: Some(child),
            _exit: exit_write,
        };
        match ready {
            Ok(1) => Ok(slirp),
            _ => {
                let mut message = String::new();
                let mut slirp = slirp;
                if let Some(child) = &mut slirp.child {
                    let _ = child.kill();
                    if let Some(mut err) = child.stderr.take() {
                        let _ = err.read_to_string(&mut message);
                    }
                }
                let mut message =
                    format!("it exited before the network was ready: {}", message.trim());
                if rootless && message.contains("/dev/net/tun") {
                    message.push_str(
                        " (a rootless build needs /dev/net/tun usable by the user: mode 0666, \
                         as Debian's udev rules set it)",
                    );
                }
                Err(fail(message))
            }
        }
    }
}

impl Drop for Slirp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            // A killed slirp4netns takes a while to go (its namespace's device goes with it):
            // it is reaped off the step's path.
            std::thread::spawn(move || child.wait());
        }
    }
}

/// Used when the host has no usable resolver configuration (Docker's fallback).
const FALLBACK_RESOLV_CONF: &str = "nameserver 8.8.8.8\nnameserver 8.8.4.4\n";

/// `/etc/hosts` and `/etc/resolv.conf` mounts for a step with `network` and `hostname`; add
/// them to [`super::SandboxSpec::mounts`].
pub fn network_files(network: Network, hostname: &str) -> Vec<MountSpec> {
    network_files_from(network, hostname, Path::new("/etc/resolv.conf"))
}

fn network_files_from(network: Network, hostname: &str, host_resolv: &Path) -> Vec<MountSpec> {
    let mut hosts = String::from("127.0.0.1\tlocalhost");
    if !hostname.is_empty() {
        hosts.push(' ');
        hosts.push_str(hostname);
    }
    hosts.push_str("\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let host = std::fs::read_to_string(host_resolv).unwrap_or_default();
    let resolv = match network {
        Network::Host if has_nameserver(&host, true) => host,
        // slirp4netns forwards DNS to the host's resolver; keep the search and options lines.
        Network::Nat => without_nameservers(&host) + &format!("nameserver {SLIRP_DNS}\n"),
        // Without the host's network, resolvers on the host's loopback are unreachable.
        Network::None if has_nameserver(&host, false) => without_loopback_nameservers(&host),
        _ => FALLBACK_RESOLV_CONF.to_string(),
    };
    [("/etc/hosts", hosts), ("/etc/resolv.conf", resolv)]
        .into_iter()
        .map(|(target, contents)| MountSpec {
            target: PathBuf::from(target),
            kind: MountKind::File {
                contents: contents.into_bytes(),
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
        })
        .collect()
}

fn nameserver(line: &str) -> Option<&str> {
    let mut words = line.split_whitespace();
    (words.next() == Some("nameserver"))
        .then(|| words.next())
        .flatten()
}

fn is_loopback(addr: &str) -> bool {
    addr.starts_with("127.") || addr == "::1"
}

fn has_nameserver(conf: &str, allow_loopback: bool) -> bool {
    conf.lines()
        .filter_map(nameserver)
        .any(|a| allow_loopback || !is_loopback(a))
}

fn without_nameservers(conf: &str) -> String {
    conf.lines()
        .filter(|l| nameserver(l).is_none())
        .map(|l| format!("{l}\n"))
        .collect()
}

fn without_loopback_nameservers(conf: &str) -> String {
    conf.lines()
        .filter(|l| !matches!(nameserver(l), Some(a) if is_loopback(a)))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(m: &MountSpec) -> String {
        match &m.kind {
            MountKind::File { contents, .. } => String::from_utf8(contents.clone()).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hosts_and_resolv_conf() {
        let dir = tempfile::tempdir().unwrap();
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(
            &resolv,
            "search lan\nnameserver 127.0.0.53\nnameserver 192.0.2.1\n",
        )
        .unwrap();
        let files = network_files_from(Network::Host, "sandbox", &resolv);
        assert_eq!(files[0].target, PathBuf::from("/etc/hosts"));
        assert!(contents(&files[0]).starts_with("127.0.0.1\tlocalhost sandbox\n"));
        assert_eq!(
            contents(&files[1]),
            "search lan\nnameserver 127.0.0.53\nnameserver 192.0.2.1\n"
        );
        let files = network_files_from(Network::None, "sandbox", &resolv);
        assert_eq!(contents(&files[1]), "search lan\nnameserver 192.0.2.1\n");
        let files = network_files_from(Network::Nat, "sandbox", &resolv);
        assert_eq!(contents(&files[1]), "search lan\nnameserver 10.0.2.3\n");
        std::fs::write(&resolv, "nameserver 127.0.0.53\n").unwrap();
        let files = network_files_from(Network::None, "", &resolv);
        assert_eq!(contents(&files[1]), FALLBACK_RESOLV_CONF);
        let files = network_files_from(Network::Host, "", &dir.path().join("missing"));
        assert_eq!(contents(&files[1]), FALLBACK_RESOLV_CONF);
    }
}
