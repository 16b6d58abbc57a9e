//! Upgrading in place: the running daemon starts the new binary, and once it says it is
//! ready, stops (saving everything it read, leaving every program running in the keeper) and
//! hands it the listening socket itself, so no client is ever refused a connection.
//!
//! The channel is a `SOCK_SEQPACKET` pair, the new daemon's end inherited as a descriptor
//! named by `PULSAR_HANDOVER_FD`; messages use the keeper's versioned format, so a binary
//! speaking another hand-over version is refused with both versions named. Any failure before
//! the new daemon says it serves (missing or not executable, exits, times out, wrong version,
//! fails while taking over) leaves the old daemon serving.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pulsar_keeper::wire;
use serde::{Deserialize, Serialize};

/// The environment variable naming the new daemon's end of the channel.
pub const HANDOVER_FD_VAR: &str = "PULSAR_HANDOVER_FD";
/// The descriptor number the new daemon gets its end at.
const CHILD_FD: i32 = 3;
/// Longest the new daemon may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest the new daemon may take, once it has the socket, to say it serves.
const SERVING_TIMEOUT: Duration = Duration::from_secs(60);

/// What the two daemons say to each other, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
enum Message {
    /// New → old: started, configured, waiting for the socket.
    Ready {
        /// The new daemon's pid.
        pid: u32,
        /// Its version.
        version: String,
    },
    /// Old → new: everything is saved; the listening socket is attached.
    Take,
    /// New → old: serving; the old daemon may exit.
    Serving,
    /// New → old: taking over failed.
    Failed {
        /// Why.
        message: String,
    },
}

fn send(fd: &OwnedFd, message: &Message, fds: &[OwnedFd]) -> io::Result<()> {
    wire::send(fd.as_raw_fd(), message, &wire::raw(fds))
}

/// Receives one message within `timeout`.
fn recv(fd: &OwnedFd, timeout: Duration) -> io::Result<(Message, Vec<OwnedFd>)> {
    let tv = nix::sys::time::TimeVal::new(timeout.as_secs() as i64, timeout.subsec_micros() as i64);
    nix::sys::socket::setsockopt(fd, nix::sys::socket::sockopt::ReceiveTimeout, &tv)?;
    match wire::recv::<Message>(fd.as_raw_fd()) {
        Ok(Some(got)) => Ok(got),
        Ok(None) => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the new daemon exited",
        )),
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer within {} s", timeout.as_secs()),
        )),
        Err(err) => Err(err),
    }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(io::Error::other)
}

/// The new daemon's side.
pub(crate) struct Incoming {
    fd: std::sync::Arc<OwnedFd>,
}

impl Incoming {
    /// The channel at descriptor `raw` (inherited from the old daemon).
    pub fn from_fd(raw: i32) -> io::Result<Self> {
        // SAFETY: the old daemon put its end of the pair at this descriptor for us alone; we
        // take ownership once (the config value is consumed at start).
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // It must not leak into programs this daemon starts.
        nix::fcntl::fcntl(
            fd.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )?;
        Ok(Self {
            fd: std::sync::Arc::new(fd),
        })
    }

    /// Says ready, and waits for the listening socket.
    pub async fn take_listener(&self) -> io::Result<OwnedFd> {
        let fd = std::sync::Arc::clone(&self.fd);
        blocking(move || {
            send(
                &fd,
                &Message::Ready {
                    pid: std::process::id(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                },
                &[],
            )?;
            match recv(&fd, SERVING_TIMEOUT)? {
                (Message::Take, mut fds) if fds.len() == 1 => Ok(fds.pop().expect("one")),
                (other, _) => Err(io::Error::other(format!(
                    "unexpected hand-over message: {other:?}"
                ))),
            }
        })
        .await?
    }

    /// Tells the old daemon how taking over ended.
    pub async fn finish(&self, outcome: Result<(), String>) {
        let fd = std::sync::Arc::clone(&self.fd);
        let message = match outcome {
            Ok(()) => Message::Serving,
            Err(message) => Message::Failed { message },
        };
        let _ = blocking(move || send(&fd, &message, &[])).await;
    }
}

/// The old daemon's side: a new daemon that has said it is ready.
pub(crate) struct Outgoing {
    fd: std::sync::Arc<OwnedFd>,
    child: std::process::Child,
    /// The new daemon's pid.
    pub pid: u32,
}

impl Outgoing {
    /// Starts `binary` with `args` as the next daemon and waits for it to say it is ready.
    pub async fn start(binary: PathBuf, args: Vec<String>) -> Result<Self, String> {
        check_executable(&binary)?;
        blocking(move || Self::start_blocking(binary, args))
            .await
            .map_err(|err| err.to_string())?
    }

    fn start_blocking(binary: PathBuf, args: Vec<String>) -> Result<Self, String> {
        use std::os::unix::process::CommandExt as _;
        let shown = binary.display().to_string();
        let (ours, theirs) =
            wire::seqpacket_pair().map_err(|err| format!("cannot make a channel: {err}"))?;
        let theirs_raw = theirs.as_raw_fd();
        let mut command = std::process::Command::new(&binary);
        command
            .args(&args)
            .env(HANDOVER_FD_VAR, CHILD_FD.to_string())
            .stdin(std::process::Stdio::null());
        // SAFETY: dup2 and the limit's getrlimit/setrlimit are async-signal-safe; dup2 puts
        // the channel at a fixed number without CLOEXEC (dup2 clears it), which is all the
        // child inherits from us.
        unsafe {
            command.pre_exec(move || {
                // Already there, dup2 does nothing and the copy stays close-on-exec.
                if theirs_raw == CHILD_FD {
                    let flags = libc::fcntl(CHILD_FD, libc::F_GETFD);
                    if flags < 0
                        || libc::fcntl(CHILD_FD, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0
                    {
                        return Err(io::Error::last_os_error());
                    }
                } else if libc::dup2(theirs_raw, CHILD_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                // The new daemon starts as this one did, and raises its own.
                pulsar_keeper::pty::restore_open_files_limit();
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .map_err(|err| format!("cannot start {shown}: {err}"))?;
        drop(theirs);
        let pid = child.id();
        let ours = std::sync::Arc::new(ours);
        match recv(&ours, READY_TIMEOUT) {
            Ok((Message::Ready { .. }, _)) => Ok(Self {
                fd: ours,
                child,
                pid,
            }),
            outcome => {
                let _ = child.kill();
                let status = child.wait().ok();
                Err(match outcome {
                    Ok((other, _)) => format!("{shown} sent {other:?} instead of ready"),
                    Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => format!(
                        "{shown} exited before it was ready ({})",
                        status.map_or_else(|| "status unknown".to_owned(), |s| s.to_string())
                    ),
                    Err(err) => format!("{shown} did not get ready: {err}"),
                })
            }
        }
    }

    /// Hands over `listener` and waits for the new daemon to serve on it.
    pub async fn give(mut self, listener: OwnedFd) -> Result<(), String> {
        let fd = std::sync::Arc::clone(&self.fd);
        let outcome = blocking(move || {
            send(&fd, &Message::Take, &[listener])?;
            recv(&fd, SERVING_TIMEOUT)
        })
        .await
        .map_err(|err| err.to_string())
        .and_then(|received| received.map_err(|err| err.to_string()));
        match outcome {
            Ok((Message::Serving, _)) => {
                // It runs on by itself now; nobody waits for it here (it is re-parented when
                // this process exits).
                std::mem::forget(self.child);
                Ok(())
            }
            other => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                Err(match other {
                    Ok((Message::Failed { message }, _)) => {
                        format!("the new daemon failed while taking over: {message}")
                    }
                    Ok((other, _)) => format!("unexpected hand-over message: {other:?}"),
                    Err(err) => format!("the new daemon failed while taking over: {err}"),
                })
            }
        }
    }
}

/// Refuses a binary that is missing or not executable, before starting anything.
fn check_executable(binary: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(binary)
        .map_err(|err| format!("cannot use {}: {err}", binary.display()))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{} is not an executable file", binary.display()));
    }
    Ok(())
}

/// The binary an upgrade runs by default: this daemon's executable as it is on disk now (a
/// package upgrade may have replaced the file since this process started).
pub(crate) fn current_binary() -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let text = exe.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(path) => PathBuf::from(path),
        None => exe,
    })
}
