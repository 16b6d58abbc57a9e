//! Local programs in a pseudo-terminal (portable-pty), read without a thread per session.
//!
//! portable-pty opens the PTY and spawns the child (setsid, controlling terminal, login shell
//! defaults). After that Pulsar drives the master through its own non-blocking duplicate
//! registered with tokio (`AsyncFd`), and learns of the child's exit through a pidfd, so a
//! thousand idle sessions cost a thousand epoll registrations, not a thousand threads.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use portable_pty::{CommandBuilder, MasterPty, PtySize, native_pty_system};
use pulsar_protocol::LocalSpec;
use tokio::io::unix::AsyncFd;
use tokio::sync::{Mutex as AsyncMutex, watch};

use super::{Backend, ExitStatus};

/// Why a local session could not start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The working directory does not exist or is not a directory.
    #[error("working directory {0} does not exist")]
    NoSuchCwd(PathBuf),
    /// The command line was empty.
    #[error("command is empty")]
    EmptyCommand,
    /// Opening the PTY or starting the program failed.
    #[error("cannot start {command}: {reason}")]
    Spawn {
        /// The program.
        command: String,
        /// What failed.
        reason: String,
    },
}

/// A program running in a PTY whose master this daemon holds.
pub struct LocalBackend {
    /// Non-blocking duplicate of the master, for reads and writes.
    io: AsyncFd<OwnedFd>,
    /// Serialises writers so one `write_all` is never interleaved with another.
    write_lock: AsyncMutex<()>,
    /// portable-pty's handle, kept for resizing (and so the PTY stays open).
    master: Mutex<Box<dyn MasterPty + Send>>,
    pid: u32,
    /// The exit status, once reaped; set by the first `wait` to see it.
    exit: watch::Sender<Option<ExitStatus>>,
    /// Held while reaping, so two waiters never both call waitpid (the loser would see
    /// ECHILD and report an unknown status).
    reap_lock: Mutex<()>,
    /// Becomes readable when the child exits (absent if the kernel has no pidfd_open).
    pidfd: Option<AsyncFd<OwnedFd>>,
    /// Held so the child is not reaped behind our back; we reap it with waitpid ourselves.
    _child: Box<dyn portable_pty::Child + Send + Sync>,
}

impl LocalBackend {
    /// Starts `spec` in a new PTY of `cols`×`rows`. `extra_env` is added last (e.g. the
    /// session id), after `TERM`'s default and the spec's own variables.
    pub fn spawn(
        spec: &LocalSpec,
        cols: u16,
        rows: u16,
        extra_env: &[(&str, String)],
    ) -> Result<Self, SpawnError> {
        let cwd = match &spec.cwd {
            Some(dir) => dir.clone(),
            None => std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/")),
        };
        if !cwd.is_dir() {
            return Err(SpawnError::NoSuchCwd(cwd));
        }
        let (mut cmd, shown) = match &spec.command {
            None => (
                CommandBuilder::new_default_prog(),
                "the login shell".to_owned(),
            ),
            Some(argv) if argv.is_empty() || argv[0].is_empty() => {
                return Err(SpawnError::EmptyCommand);
            }
            Some(argv) => {
                let mut cmd = CommandBuilder::new(&argv[0]);
                cmd.args(&argv[1..]);
                (cmd, format!("`{}`", argv[0]))
            }
        };
        cmd.cwd(&cwd);
        cmd.env("TERM", "xterm-256color");
        for (key, value) in &spec.env {
            cmd.env(key, value);
        }
        for (key, value) in extra_env {
            cmd.env(key, value);
        }
        let spawn_err = |reason: String| SpawnError::Spawn {
            command: shown.clone(),
            reason,
        };

        let pair = native_pty_system()
            .openpty(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .map_err(|err| spawn_err(format!("cannot open a pty: {err}")))?;
        let child = pair
            .slave
            .spawn_command(cmd)
            .map_err(|err| spawn_err(format!("{err:#}")))?;
        // Only the child may hold the slave: the master sees EOF once the child's side closes.
        drop(pair.slave);
        let pid = child
            .process_id()
            .ok_or_else(|| spawn_err("no process id".to_owned()))?;

        let master_fd = pair
            .master
            .as_raw_fd()
            .ok_or_else(|| spawn_err("pty master has no fd".to_owned()))?;
        let io = dup_nonblocking(master_fd)
            .and_then(register)
            .map_err(|err| spawn_err(format!("cannot watch the pty: {err}")))?;
        let pidfd = pidfd_open(pid).and_then(register).ok();

        Ok(Self {
            io,
            write_lock: AsyncMutex::new(()),
            master: Mutex::new(pair.master),
            pid,
            exit: watch::channel(None).0,
            reap_lock: Mutex::new(()),
            pidfd,
            _child: child,
        })
    }

    /// Reaps the child if it has exited.
    fn try_reap(&self) -> Option<ExitStatus> {
        let _reaping = self.reap_lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(status) = *self.exit.borrow() {
            return Some(status);
        }
        let status = match waitpid(Pid::from_raw(self.pid as i32), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => ExitStatus {
                code: Some(code),
                signal: None,
            },
            Ok(WaitStatus::Signaled(_, signal, _)) => ExitStatus {
                code: None,
                signal: Some(signal as i32),
            },
            Ok(_) => return None,
            // ECHILD: someone else reaped it; the exit is real but its status is unknown.
            Err(_) => ExitStatus {
                code: None,
                signal: None,
            },
        };
        self.exit.send_replace(Some(status));
        Some(status)
    }

    fn signal_groups(&self, signal: Signal) {
        let _ = killpg(Pid::from_raw(self.pid as i32), signal);
        // A shell's foreground job may be in a process group of its own.
        let foreground = self
            .master
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .process_group_leader();
        if let Some(pgrp) = foreground.filter(|&p| p > 0 && p as u32 != self.pid) {
            let _ = killpg(Pid::from_raw(pgrp), signal);
        }
    }
}

#[async_trait]
impl Backend for LocalBackend {
    async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.io.readable().await?;
            match guard.try_io(|fd| sys_read(fd.as_raw_fd(), buf)) {
                Ok(Ok(n)) => return Ok(n),
                // Linux reports EIO on the master once every slave fd is closed: the end.
                Ok(Err(err)) if err.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(Err(err)) => return Err(err),
                Err(_would_block) => continue,
            }
        }
    }

    async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        let _writer = self.write_lock.lock().await;
        while !data.is_empty() {
            let mut guard = self.io.writable().await?;
            match guard.try_io(|fd| sys_write(fd.as_raw_fd(), data)) {
                Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(err)) if err.raw_os_error() == Some(libc::EIO) => {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the terminal has closed",
                    ));
                }
                Ok(Err(err)) => return Err(err),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    fn resize(&self, cols: u16, rows: u16) -> io::Result<()> {
        self.master
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .resize(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .map_err(io::Error::other)
    }

    async fn wait(&self) -> ExitStatus {
        let mut exit = self.exit.subscribe();
        loop {
            if let Some(status) = self.try_reap() {
                return status;
            }
            match &self.pidfd {
                Some(pidfd) => {
                    tokio::select! {
                        ready = pidfd.readable() => match ready {
                            // Readable means exited; if the reap still found nothing, forget
                            // the readiness so the next round waits instead of spinning.
                            Ok(mut guard) => {
                                if self.try_reap().is_none() {
                                    guard.clear_ready();
                                }
                            }
                            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                        },
                        _ = exit.changed() => {}
                    }
                }
                // Without pidfds, poll: rare (kernels before 5.3) and cheap.
                None => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn terminate(&self, grace: Duration) {
        if self.try_reap().is_some() {
            return;
        }
        self.signal_groups(Signal::SIGHUP);
        // SIGHUP alone is ignored by some programs; SIGCONT wakes a stopped job so it sees it.
        self.signal_groups(Signal::SIGCONT);
        if tokio::time::timeout(grace, self.wait()).await.is_err() {
            tracing::info!(pid = self.pid, "process ignored SIGHUP; sending SIGKILL");
            self.signal_groups(Signal::SIGKILL);
        }
    }

    fn pid(&self) -> Option<u32> {
        Some(self.pid)
    }
}

impl Drop for LocalBackend {
    fn drop(&mut self) {
        // A backend dropped with its process alive (daemon stopping) must not leave a zombie
        // or an orphan holding the terminal.
        if self.try_reap().is_none() {
            self.signal_groups(Signal::SIGHUP);
        }
    }
}

/// Registers a descriptor this backend exclusively owns with the runtime's reactor.
fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: `fd` is a fresh descriptor (a dup or a pidfd) owned only by the returned
    // AsyncFd, which deregisters it before closing it.
    unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)
}

/// `fcntl(F_DUPFD_CLOEXEC)` + `O_NONBLOCK`: children spawned later must not inherit it.
fn dup_nonblocking(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: plain fcntl calls on a descriptor we own; the result is checked.
    unsafe {
        let dup = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0);
        if dup < 0 {
            return Err(io::Error::last_os_error());
        }
        let owned = OwnedFd::from_raw_fd(dup);
        let flags = libc::fcntl(dup, libc::F_GETFL);
        if flags < 0 || libc::fcntl(dup, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(owned)
    }
}

/// `pidfd_open(2)`: a descriptor that becomes readable when `pid` exits.
fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: the syscall takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn sys_read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes of writes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn sys_write(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    // SAFETY: `data` is valid for `data.len()` bytes of reads.
    let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
