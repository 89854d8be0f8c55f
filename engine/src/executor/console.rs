//! A terminal for a step run with [`super::StepIo::Terminal`], as runc makes one: the step's
//! pid 1 opens a pty in its own `/dev/pts` (so `tty` names a device that exists inside), makes
//! it its controlling terminal and its standard streams, and sends the master side to the
//! runner over a socket; the runner relays the master to its own standard input and output.

use super::error::ExecError;
use super::sys::os_message;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use std::io::{IoSlice, IoSliceMut, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

fn setup_error(step: &str, e: impl std::fmt::Display) -> ExecError {
    ExecError::Setup {
        step: step.to_string(),
        message: e.to_string(),
    }
}

/// In the step's pid 1, after `pivot_root` and `setsid`: makes a pty in the step's `/dev/pts`,
/// sends its master over `console_fd`, and makes the slave the controlling terminal and fds
/// 0, 1 and 2.
pub(crate) fn attach_terminal(console_fd: RawFd) -> Result<(), ExecError> {
    use nix::fcntl::OFlag;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| setup_error("open /dev/ptmx", os_message(e)))?;
    nix::pty::grantpt(&master).map_err(|e| setup_error("grantpt", os_message(e)))?;
    nix::pty::unlockpt(&master).map_err(|e| setup_error("unlockpt", os_message(e)))?;
    let name = nix::pty::ptsname_r(&master).map_err(|e| setup_error("ptsname", os_message(e)))?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| setup_error(&format!("open {name}"), os_message(e)))?;
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        console_fd,
        &[IoSlice::new(b"m")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| setup_error("send the terminal to the runner", os_message(e)))?;
    drop(master);
    // The runner answers once it gave the terminal its size, so that the program finds it
    // sized from its first instruction (an early end of stream is no answer, and no error).
    let mut ack = [0u8; 1];
    while let Err(nix::errno::Errno::EINTR) = nix::unistd::read(console_fd, &mut ack) {}
    // SAFETY: TIOCSCTTY on an open terminal fd, from a session leader without a terminal.
    if unsafe { libc::ioctl(slave, libc::TIOCSCTTY, 0) } < 0 {
        return Err(setup_error(
            "make the terminal controlling",
            os_message(std::io::Error::last_os_error()),
        ));
    }
    for fd in 0..=2 {
        nix::unistd::dup2(slave, fd)
            .map_err(|e| setup_error("attach the terminal", os_message(e)))?;
    }
    if slave > 2 {
        let _ = nix::unistd::close(slave);
    }
    Ok(())
}

/// Receives the pty master from `socket`; `None` when the step ended before sending one.
fn receive_master(socket: &UnixStream) -> Option<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ok()?;
    for cmsg in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            let mut fds = fds.into_iter();
            // SAFETY: the kernel just installed these fds in this process for us alone.
            let master = fds.next().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
            for extra in fds {
                let _ = nix::unistd::close(extra);
            }
            return master;
        }
    }
    None
}

/// This process's terminal in raw mode until dropped (nothing when stdin is no terminal).
struct RawMode {
    saved: Option<nix::sys::termios::Termios>,
}

impl RawMode {
    fn enter(stdin: BorrowedFd<'_>) -> RawMode {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let Ok(saved) = tcgetattr(stdin) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(stdin, SetArg::TCSANOW, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}

/// Copies this process's terminal size (from stdin, else stdout) to the step's terminal.
fn copy_window_size(master: BorrowedFd<'_>) {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    for fd in [0, 1] {
        // SAFETY: TIOCGWINSZ writes one winsize into `size`.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut size) } == 0 {
            // SAFETY: TIOCSWINSZ reads one winsize.
            unsafe {
                libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size);
            }
            return;
        }
    }
}

/// Starts the runner's side: once the step sends its terminal, relays this process's stdin
/// (when `stdin`) to it and its output to this process's stdout until the step's side closes.
/// `resize` asks for the window size to be copied again (on SIGWINCH).
pub(crate) fn relay(socket: UnixStream, stdin: bool, resize: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let Some(master) = receive_master(&socket) else {
            return;
        };
        copy_window_size(master.as_fd());
        let _ = (&socket).write_all(b"s");
        drop(socket);
        let input = std::io::stdin();
        let _raw = stdin.then(|| RawMode::enter(input.as_fd()));
        let mut stdin_open = stdin;
        let mut out = std::io::stdout();
        let mut buf = [0u8; 8192];
        loop {
            if resize.swap(false, Ordering::SeqCst) {
                copy_window_size(master.as_fd());
            }
            let mut fds = vec![PollFd::new(master.as_fd(), PollFlags::POLLIN)];
            if stdin_open {
                fds.push(PollFd::new(input.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::from(100u16)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
            let ready = |fd: &PollFd<'_>| {
                fd.revents().is_some_and(|r| {
                    r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
                })
            };
            let master_ready = ready(&fds[0]);
            let stdin_ready = stdin_open && ready(&fds[1]);
            drop(fds);
            if master_ready {
                match nix::unistd::read(master.as_raw_fd(), &mut buf) {
                    // EIO: every slave fd is closed, the step is gone.
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                            break;
                        }
                    }
                }
            }
            if stdin_ready {
                match nix::unistd::read(0, &mut buf) {
                    Ok(0) | Err(_) => stdin_open = false,
                    Ok(n) => {
                        let mut rest = &buf[..n];
                        while !rest.is_empty() {
                            match nix::unistd::write(&master, rest) {
                                Ok(written) => rest = &rest[written..],
                                Err(nix::errno::Errno::EINTR) => {}
                                Err(_) => {
                                    stdin_open = false;
                                    break;
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}
