//! A terminal for a step run with [`super::StepIo::Terminal`], as runc makes one: the step's
//! pid 1 opens a pty in its own `/dev/pts` (so `tty` names a device that exists inside), makes
//! it its controlling terminal and its standard streams, and sends the master side to the
//! runner over a socket; the runner relays the master to its own standard input and output.

use super::error::ExecError;
use super::sys::os_message;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use rustix::pty::OpenptFlags;
use rustix::termios::{tcgetattr, tcgetwinsize, tcsetattr, tcsetwinsize, OptionalActions, Termios};
use std::io::{IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
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
    // SAFETY: the caller passes the open socket to the runner; it outlives this call.
    let console = unsafe { BorrowedFd::borrow_raw(console_fd) };
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
            .map_err(|e| setup_error("open /dev/ptmx", os_message(e)))?;
    rustix::pty::grantpt(&master).map_err(|e| setup_error("grantpt", os_message(e)))?;
    rustix::pty::unlockpt(&master).map_err(|e| setup_error("unlockpt", os_message(e)))?;
    let name = rustix::pty::ptsname(&master, Vec::new())
        .map_err(|e| setup_error("ptsname", os_message(e)))?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| setup_error(&format!("open {}", name.to_string_lossy()), os_message(e)))?;
    let fds = [master.as_fd()];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    sendmsg(
        console,
        &[IoSlice::new(b"m")],
        &mut control,
        SendFlags::empty(),
    )
    .map_err(|e| setup_error("send the terminal to the runner", os_message(e)))?;
    drop(master);
    // The runner answers once it gave the terminal its size, so that the program finds it
    // sized from its first instruction (an early end of stream is no answer, and no error).
    let mut ack = [0u8; 1];
    while let Err(Errno::INTR) = rustix::io::read(console, &mut ack) {}
    rustix::process::ioctl_tiocsctty(&slave)
        .map_err(|e| setup_error("make the terminal controlling", os_message(e)))?;
    rustix::stdio::dup2_stdin(&slave)
        .and_then(|()| rustix::stdio::dup2_stdout(&slave))
        .and_then(|()| rustix::stdio::dup2_stderr(&slave))
        .map_err(|e| setup_error("attach the terminal", os_message(e)))?;
    if slave.as_raw_fd() <= 2 {
        // It is one of the standard streams now: leave it open.
        let _ = slave.into_raw_fd();
    }
    Ok(())
}

/// Receives the pty master from `socket`; `None` when the step ended before sending one.
fn receive_master(socket: &UnixStream) -> Option<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    recvmsg(socket, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC).ok()?;
    // Fds received beyond the first are closed as the buffer drops.
    let master = control.drain().find_map(|message| match message {
        RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
        _ => None,
    });
    master
}

/// This process's terminal in raw mode until dropped (nothing when stdin is no terminal).
struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    fn enter(stdin: BorrowedFd<'_>) -> RawMode {
        let Ok(saved) = tcgetattr(stdin) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        raw.make_raw();
        let _ = tcsetattr(stdin, OptionalActions::Now, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, saved);
        }
    }
}

/// Copies this process's terminal size (from stdin, else stdout) to the step's terminal.
fn copy_window_size(master: BorrowedFd<'_>) {
    for fd in [rustix::stdio::stdin(), rustix::stdio::stdout()] {
        if let Ok(size) = tcgetwinsize(fd) {
            let _ = tcsetwinsize(master, size);
            return;
        }
    }
}

/// How long the relay waits for input before it looks at the resize flag again.
const POLL_TIMEOUT: Timespec = Timespec {
    tv_sec: 0,
    tv_nsec: 100_000_000,
};

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
            let mut fds = vec![PollFd::new(&master, PollFlags::IN)];
            if stdin_open {
                fds.push(PollFd::new(&input, PollFlags::IN));
            }
            match poll(&mut fds, Some(&POLL_TIMEOUT)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(_) => break,
            }
            let ready = |fd: &PollFd<'_>| {
                fd.revents()
                    .intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR)
            };
            let master_ready = ready(&fds[0]);
            let stdin_ready = stdin_open && ready(&fds[1]);
            drop(fds);
            if master_ready {
                match rustix::io::read(&master, &mut buf) {
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
                match rustix::io::read(&input, &mut buf) {
                    Ok(0) | Err(_) => stdin_open = false,
                    Ok(n) => {
                        let mut rest = &buf[..n];
                        while !rest.is_empty() {
                            match rustix::io::write(&master, rest) {
                                Ok(written) => rest = &rest[written..],
                                Err(Errno::INTR) => {}
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
