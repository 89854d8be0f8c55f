//! `RUN --mount=type=ssh`: a socket of the step's own that relays each connection to the SSH
//! agent given to the build, as BuildKit forwards the agent.
//!
//! The step never sees the agent's socket itself. The relay's socket carries the mount's owner
//! and mode (`uid=`, `gid=`, `mode=`, default root and 0600), so a step running as another user
//! can be given the agent; and the agent sees the build process as its peer, which OpenSSH's
//! agent requires (it answers only its own user and root). Keys stay in the agent.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A relay socket for one step, removed (and its threads stopped) when dropped.
pub(super) struct SshRelay {
    /// The private directory (0700) holding the socket; a short path under the temporary
    /// directory, as socket paths are limited to 108 bytes.
    _dir: tempfile::TempDir,
    path: PathBuf,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl SshRelay {
    /// Listens on a new socket owned by `uid:gid` with `mode` (ownership only when the build
    /// runs as root: a rootless build cannot give a file away, and its step's root is the
    /// build's user) and relays each connection to `agent`.
    pub(super) fn start(agent: &Path, uid: u32, gid: u32, mode: u32) -> io::Result<SshRelay> {
        let dir = tempfile::Builder::new().prefix("builder-ssh-").tempdir()?;
        let path = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o777))?;
        if !crate::executor::is_rootless() {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let stop = stop.clone();
            let agent = agent.to_path_buf();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(client) = conn {
                        let agent = agent.clone();
                        std::thread::spawn(move || relay(client, &agent));
                    }
                }
            })
        };
        Ok(SshRelay {
            _dir: dir,
            path,
            stop,
            accept: Some(accept),
        })
    }

    /// The socket to bind into the step.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SshRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees the flag.
        let _ = UnixStream::connect(&self.path);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Copies bytes both ways between a step's connection and a new connection to the agent,
/// until both sides are done.
fn relay(client: UnixStream, agent: &Path) {
    let Ok(upstream) = UnixStream::connect(agent) else {
        return;
    };
    let (Ok(mut client_read), Ok(mut upstream_write)) = (client.try_clone(), upstream.try_clone())
    else {
        return;
    };
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut client_read, &mut upstream_write);
        let _ = upstream_write.shutdown(std::net::Shutdown::Write);
    });
    let (mut upstream_read, mut client_write) = (upstream, client);
    let _ = io::copy(&mut upstream_read, &mut client_write);
    let _ = client_write.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn relays_both_ways_and_keeps_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let agent_path = dir.path().join("agent");
        let agent = UnixListener::bind(&agent_path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = agent.accept().unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&[buf[0] + 1, buf[1] + 1, buf[2] + 1, buf[3] + 1])
                .unwrap();
        });
        let me = (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        );
        let relay = SshRelay::start(&agent_path, me.0, me.1, 0o600).unwrap();
        let mode = std::fs::metadata(relay.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mut c = UnixStream::connect(relay.path()).unwrap();
        c.write_all(b"abcd").unwrap();
        let mut out = [0u8; 4];
        c.read_exact(&mut out).unwrap();
        assert_eq!(&out, b"bcde");
        server.join().unwrap();
        let path = relay.path().to_path_buf();
        drop(relay);
        assert!(!path.exists());
    }
}
