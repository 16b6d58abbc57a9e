//! Local programs in a pseudo-terminal, read without a thread per session.
//!
//! The program's parent is the keeper (`keeper.rs`) when there is one, so that it outlives
//! this daemon: the keeper spawns it and hands back the PTY master, reaps it and reports its
//! exit. Without a keeper this daemon spawns it itself, the same way (`pulsar_keeper::pty`:
//! setsid, controlling terminal, login shell defaults), and reaps it. Either way Pulsar
//! drives the master through
//! its own non-blocking duplicate registered with tokio (`AsyncFd`), and learns of the exit
//! through a pidfd in the one set every program's is watched from (`exits.rs`), so a
//! thousand idle sessions cost a thousand epoll registrations, not a thousand threads. A
//! parked terminal (its session asleep, see [`Backend::park`]) gives up its tokio
//! registration for an entry in that same set, which wakes its session on the next output.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use pulsar_protocol::{AppliedLimits, LocalSpec, SessionUsage};
use tokio::io::unix::AsyncFd;
use tokio::sync::Mutex as AsyncMutex;

use super::exits::{ExitWatch, ReadyWatch};
use super::keeper::{Adoptable, Keeper};
use super::limits::{Confinement, usage_from_proc};
use super::{Backend, ExitStatus};
use crate::signal::Once;
use pulsar_keeper::wire::SpawnRequest;

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
    #[error("cannot start {command}: {reason}{}", limit_hint(reason))]
    Spawn {
        /// The program.
        command: String,
        /// What failed.
        reason: String,
    },
}

/// What to add to a spawn failure's reason when descriptors ran out (EMFILE for this
/// process or the keeper, ENFILE for the system), wherever on the way it happened: the
/// reasons come as text from the spawn, the keeper and the kernel alike.
fn limit_hint(reason: &str) -> &'static str {
    if reason.contains("(os error 24)") {
        " (the open-files limit is reached: end some sessions or raise `ulimit -n`)"
    } else if reason.contains("(os error 23)") {
        " (the system's open-files limit is reached)"
    } else {
        ""
    }
}

/// A program running in a PTY whose master this daemon holds (a copy of it, with a keeper).
pub struct LocalBackend {
    /// How `fd` is watched. Before `fd`: its registration and watch go before it closes.
    io: Mutex<Io>,
    /// Non-blocking duplicate of the master, for reads and writes.
    fd: OwnedFd,
    /// Serialises writers so one `write_all` is never interleaved with another.
    write_lock: AsyncMutex<()>,
    /// The master, for resizing and finding the foreground process group.
    master: OwnedFd,
    pid: u32,
    /// The exit status, once known; set by the first `wait` to learn it.
    exit: Once<ExitStatus>,
    /// Says when the program exits (absent if the kernel has no pidfds, or the program was
    /// gone already).
    exit_watch: Option<ExitWatch>,
    parent: Parent,
    /// Its limits and control groups, if it has any.
    confinement: Option<Arc<Confinement>>,
    /// The previous CPU reading, for the usage of a program without a group.
    cpu_sample: Mutex<(std::time::Instant, u64)>,
}

/// How the terminal is watched for output: registered with tokio's reactor while its
/// session's pump runs, or, parked, in the exit watcher's set while the session sleeps (a
/// `ScheduledIo` of 256 bytes, 128-aligned, given up per idle session).
///
/// The registration is for reads only. One that also watched for room would wake the relay
/// each time the program reads its input (the kernel says so on every read): once more per
/// keystroke, in the middle of its echo. A writer that finds the terminal full watches for
/// room on a registration of its own ([`LocalBackend::poll_write`]).
struct Io {
    registered: Option<AsyncFd<RawFd>>,
    parked: Option<ReadyWatch>,
}

/// Who the program's parent is, and so who reaps it.
enum Parent {
    /// This daemon: it reaps the child with waitpid on its pid.
    Daemon {
        /// Held while reaping, so two waiters never both call waitpid (the loser would see
        /// ECHILD and report an unknown status).
        reap_lock: Mutex<()>,
    },
    /// The keeper: it reaps the program and keeps its status for us.
    Keeper { keeper: Arc<Keeper>, id: String },
}

/// Where the session's program starts, as checked.
struct Start {
    command: Option<Vec<String>>,
    cwd: PathBuf,
    env: Vec<(String, String)>,
    shown: String,
}

impl Start {
    /// The program to start, as the keeper (or a daemon without one) takes it.
    fn request(
        self,
        id: String,
        (cols, rows): (u16, u16),
        confinement: Option<&Arc<Confinement>>,
    ) -> SpawnRequest {
        SpawnRequest {
            id,
            meta: String::new(),
            command: self.command,
            cwd: self.cwd,
            env: self.env,
            cols,
            rows,
            limits: confinement.map(|c| c.spawn_limits()),
        }
    }

    fn check(spec: &LocalSpec, extra_env: &[(&str, String)]) -> Result<Self, SpawnError> {
        let cwd = match &spec.cwd {
            Some(dir) => dir.clone(),
            None => std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/")),
        };
        if !cwd.is_dir() {
            return Err(SpawnError::NoSuchCwd(cwd));
        }
        let shown = match &spec.command {
            None => "the login shell".to_owned(),
            Some(argv) if argv.is_empty() || argv[0].is_empty() => {
                return Err(SpawnError::EmptyCommand);
            }
            Some(argv) => format!("`{}`", argv[0]),
        };
        let mut env = vec![("TERM".to_owned(), "xterm-256color".to_owned())];
        env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.extend(extra_env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        Ok(Self {
            command: spec.command.clone(),
            cwd,
            env,
            shown,
        })
    }
}

impl LocalBackend {
    /// Starts `spec` in a new PTY of `cols`×`rows`, this daemon its parent. `extra_env` is
    /// added last (e.g. the session id), after `TERM`'s default and the spec's own variables.
    pub fn spawn(
        spec: &LocalSpec,
        cols: u16,
        rows: u16,
        extra_env: &[(&str, String)],
        confinement: Option<Arc<Confinement>>,
    ) -> Result<Self, SpawnError> {
        let started = Self::spawn_confined(spec, (cols, rows), extra_env, confinement.clone());
        if started.is_err()
            && let Some(confinement) = &confinement
        {
            confinement.finish();
        }
        started
    }

    fn spawn_confined(
        spec: &LocalSpec,
        (cols, rows): (u16, u16),
        extra_env: &[(&str, String)],
        confinement: Option<Arc<Confinement>>,
    ) -> Result<Self, SpawnError> {
        let start = Start::check(spec, extra_env)?;
        let shown = start.shown.clone();
        let spawn_err = |reason: String| SpawnError::Spawn {
            command: shown.clone(),
            reason,
        };
        let request = start.request(String::new(), (cols, rows), confinement.as_ref());
        let (master, pid) = pulsar_keeper::pty::spawn(&request).map_err(spawn_err)?;
        Self::with_master(
            master,
            pid,
            None,
            Parent::Daemon {
                reap_lock: Mutex::new(()),
            },
            confinement,
        )
        .map_err(|err| spawn_err(format!("cannot watch the pty: {err}")))
    }

    /// Starts `spec` in a new PTY held by `keeper`, as session `id`, so that it outlives
    /// this daemon. Blocking (the checks touch the disk); the spawn itself is the keeper's.
    pub async fn spawn_kept(
        spec: &LocalSpec,
        size: (u16, u16),
        extra_env: &[(&str, String)],
        keeper: &Arc<Keeper>,
        id: String,
        confinement: Option<Arc<Confinement>>,
    ) -> Result<Self, SpawnError> {
        let started =
            Self::spawn_kept_confined(spec, size, extra_env, keeper, id, &confinement).await;
        if started.is_err()
            && let Some(confinement) = confinement
        {
            let _ = tokio::task::spawn_blocking(move || confinement.finish()).await;
        }
        started
    }

    async fn spawn_kept_confined(
        spec: &LocalSpec,
        (cols, rows): (u16, u16),
        extra_env: &[(&str, String)],
        keeper: &Arc<Keeper>,
        id: String,
        confinement: &Option<Arc<Confinement>>,
    ) -> Result<Self, SpawnError> {
        let start = {
            let spec = spec.clone();
            let extra: Vec<(String, String)> = extra_env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect();
            tokio::task::spawn_blocking(move || {
                let extra: Vec<(&str, String)> =
                    extra.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
                Start::check(&spec, &extra)
            })
            .await
            .map_err(|err| SpawnError::Spawn {
                command: "the program".to_owned(),
                reason: err.to_string(),
            })??
        };
        let shown = start.shown.clone();
        let spawn_err = |reason: String| SpawnError::Spawn {
            command: shown.clone(),
            reason,
        };
        let request = start.request(id.clone(), (cols, rows), confinement.as_ref());
        let spawned = keeper.spawn(request).await;
        let watched = match spawned {
            Ok((master, pid)) => Self::with_master(
                master,
                pid,
                None,
                Parent::Keeper {
                    keeper: Arc::clone(keeper),
                    id: id.clone(),
                },
                confinement.clone(),
            )
            .map_err(|err| spawn_err(format!("cannot watch the pty: {err}"))),
            Err(err) => Err(spawn_err(err.to_string())),
        };
        if watched.is_err() {
            // The keeper may have started the program even though its terminal never
            // arrived (out of descriptors): let it go, or it would run held by nobody's
            // session until the keeper ends.
            keeper.release(&id).await;
        }
        watched
    }

    /// Takes over a program an earlier daemon left with `keeper`: same pid, same terminal,
    /// and its exit status if it ended meanwhile.
    pub(crate) fn adopt(
        adoptable: Adoptable,
        keeper: &Arc<Keeper>,
        confinement: Option<Arc<Confinement>>,
    ) -> io::Result<Self> {
        let Adoptable { held, fd } = adoptable;
        let pid = held
            .pid
            .ok_or_else(|| io::Error::other("the keeper holds no program for this session"))?;
        let exit = held.exit.map(|exit| ExitStatus {
            code: exit.code,
            signal: exit.signal,
        });
        Self::with_master(
            fd,
            pid,
            exit,
            Parent::Keeper {
                keeper: Arc::clone(keeper),
                id: held.id,
            },
            confinement,
        )
    }

    fn with_master(
        master: OwnedFd,
        pid: u32,
        exit: Option<ExitStatus>,
        parent: Parent,
        confinement: Option<Arc<Confinement>>,
    ) -> io::Result<Self> {
        let fd = dup_nonblocking(master.as_raw_fd())?;
        let io = Mutex::new(Io {
            registered: Some(register(fd.as_raw_fd())?),
            parked: None,
        });
        let exit_watch = match exit {
            Some(_) => None,
            None => ExitWatch::new(pid).ok(),
        };
        Ok(Self {
            io,
            fd,
            write_lock: AsyncMutex::new(()),
            master,
            pid,
            exit: Once::new(exit),
            exit_watch,
            parent,
            confinement,
            cpu_sample: Mutex::new((std::time::Instant::now(), 0)),
        })
    }

    fn io(&self) -> MutexGuard<'_, Io> {
        self.io.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Polls `op` on the terminal's registration, registering it again if it was parked.
    ///
    /// Dropping a registration drops the wakers waiting on it unwoken, so it is dropped
    /// ([`Backend::park`]) only when nobody can be waiting on it: its one caller is the pump,
    /// the only reader, which is the one that parks (and so waits on nothing then).
    fn poll_io<T>(
        &self,
        cx: &mut Context<'_>,
        op: impl FnOnce(&AsyncFd<RawFd>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let mut io = self.io();
        let registered = match &mut io.registered {
            Some(registered) => registered,
            slot => slot.insert(register(self.fd.as_raw_fd())?),
        };
        op(registered, cx)
    }

    /// One read into `buf` once the terminal has output, drained (see [`drain`]) unless
    /// it was light; `Ok(0)` at its end. For the pump, the only reader.
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.poll_io(cx, |fd, cx| {
            loop {
                let mut guard = ready!(fd.poll_read_ready(cx))?;
                match guard.try_io(|fd| sys_read(fd.as_raw_fd(), buf)) {
                    Ok(Ok(0)) => return Poll::Ready(Ok(0)),
                    // Less than the line discipline holds when full: all there was. The
                    // readiness goes without a read that finds nothing (it was one more
                    // system call between a keystroke's echo and its client). Output that
                    // came after the read woke the registration again, with a newer tick,
                    // which clearing this event's readiness leaves in place.
                    Ok(Ok(n)) if n < LIGHT_READ.min(buf.len()) => {
                        guard.clear_ready();
                        return Poll::Ready(Ok(n));
                    }
                    Ok(Ok(n)) => {
                        let (n, drained) = drain(fd.as_raw_fd(), buf, n);
                        if drained {
                            guard.clear_ready();
                        }
                        return Poll::Ready(Ok(n));
                    }
                    // Linux reports EIO on the master once every slave fd is closed: the end.
                    Ok(Err(err)) if err.raw_os_error() == Some(libc::EIO) => {
                        return Poll::Ready(Ok(0));
                    }
                    Ok(Err(err)) => return Poll::Ready(Err(err)),
                    Err(_would_block) => continue,
                }
            }
        })
    }

    /// One write of `data`, at once if the terminal has room, else once it has: a full
    /// terminal is watched for room on `room`, a registration of a duplicate descriptor made
    /// for this `write_all` (the terminal's own registration is for reads, see [`Io`]).
    fn poll_write(
        &self,
        room: &mut Option<AsyncFd<OwnedFd>>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let Some(watch) = room else {
                match sys_write(self.fd.as_raw_fd(), data) {
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        *room = Some(register_for_room(&self.fd)?);
                        continue;
                    }
                    result => return Poll::Ready(result),
                }
            };
            let mut guard = ready!(watch.poll_write_ready(cx))?;
            if let Ok(result) = guard.try_io(|fd| sys_write(fd.as_raw_fd(), data)) {
                return Poll::Ready(result);
            }
        }
    }

    /// The exit status if known; for this daemon's own child, reaps it if it has exited.
    fn try_reap(&self) -> Option<ExitStatus> {
        let Parent::Daemon { reap_lock, .. } = &self.parent else {
            return self.exit.get();
        };
        let _reaping = reap_lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(status) = self.exit.get() {
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
        self.exit.set(status);
        Some(status)
    }

    fn signal_groups(&self, signal: Signal) {
        let _ = killpg(Pid::from_raw(self.pid as i32), signal);
        // A shell's foreground job may be in a process group of its own.
        // SAFETY: tcgetpgrp only reads the terminal's foreground group.
        let foreground = unsafe { libc::tcgetpgrp(self.master.as_raw_fd()) };
        if foreground > 0 && foreground as u32 != self.pid {
            let _ = killpg(Pid::from_raw(foreground), signal);
        }
    }
}

#[async_trait]
impl Backend for LocalBackend {
    async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_read(cx, buf)).await
    }

    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<()> {
        // The readiness stays set (the read that follows clears it); an error is left for
        // that read to report.
        self.poll_io(cx, |fd, cx| fd.poll_read_ready(cx).map_ok(drop))
            .map(drop)
    }

    async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        let _writer = self.write_lock.lock().await;
        // Made only if the terminal fills up; goes with this write.
        let mut room = None;
        while !data.is_empty() {
            let written = std::future::poll_fn(|cx| self.poll_write(&mut room, cx, data)).await;
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => data = &data[n..],
                Err(err) if err.raw_os_error() == Some(libc::EIO) => {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the terminal has closed",
                    ));
                }
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    fn parks(&self) -> bool {
        self.exit_watch.is_some()
    }

    fn park(&self, waker: &Waker) -> bool {
        // Without a watch on its exit, the pump waits on `wait` and cannot let go.
        let Some(exit_watch) = &self.exit_watch else {
            return false;
        };
        // The end wakes the session too; a program that has ended is not parked.
        if exit_watch
            .poll_exited(&mut Context::from_waker(waker))
            .is_ready()
        {
            return false;
        }
        let mut io = self.io();
        io.parked = None;
        match ReadyWatch::new(self.fd.as_raw_fd(), waker.clone()) {
            Ok(watch) => {
                // Watched from the set before the registration goes: output that comes in
                // between finds the watch (level-triggered), never neither.
                io.parked = Some(watch);
                io.registered = None;
                true
            }
            Err(err) => {
                tracing::debug!(pid = self.pid, "the terminal stays registered: {err}");
                false
            }
        }
    }

    fn unpark(&self) {
        self.io().parked = None;
        // The exit cell's waker is the parked pump's too: the next pump leaves its own.
        if let Some(exit_watch) = &self.exit_watch {
            exit_watch.forget_poller();
        }
    }

    fn resize(&self, cols: u16, rows: u16) -> io::Result<()> {
        let size = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer; the result is checked.
        if unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &size) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    // The future of `wait` is held (boxed) by an idle session's pump for the program's whole
    // life, so it waits in small states only: the timers and the keeper's call, each larger
    // than the rest of it, are boxed when they happen.
    async fn wait(&self) -> ExitStatus {
        match &self.parent {
            Parent::Keeper { keeper, id, .. } => self.wait_for_keeper(keeper, id).await,
            // Boxed apart: the keeper's programs (the usual case) need not hold its room.
            Parent::Daemon { .. } => Box::pin(self.wait_for_child()).await,
        }
    }

    fn poll_ended(&self, cx: &mut std::task::Context<'_>) -> Option<std::task::Poll<()>> {
        Some(self.exit_watch.as_ref()?.poll_exited(cx))
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

    fn outlives_daemon(&self) -> bool {
        matches!(self.parent, Parent::Keeper { .. })
    }

    async fn finished(&self) {
        // The session is over and its output drained: the keeper's copy of the terminal must
        // not keep it open.
        if let Parent::Keeper { keeper, id, .. } = &self.parent {
            keeper.release(id).await;
        }
        if let Some(confinement) = &self.confinement {
            let confinement = Arc::clone(confinement);
            let _ = tokio::task::spawn_blocking(move || confinement.finish()).await;
        }
    }

    fn end_reason(&self) -> Option<String> {
        self.confinement.as_ref()?.end_reason()
    }

    fn limits(&self) -> Option<AppliedLimits> {
        self.confinement.as_ref().map(|c| c.applied())
    }

    fn usage(&self) -> Option<SessionUsage> {
        if self.exit.get().is_some() {
            return None;
        }
        Some(match &self.confinement {
            Some(confinement) => confinement.usage(self.pid),
            None => usage_from_proc(self.pid, &self.cpu_sample),
        })
    }
}

impl LocalBackend {
    /// Waits for this daemon's own child to end, and reaps it.
    async fn wait_for_child(&self) -> ExitStatus {
        loop {
            if let Some(status) = self.try_reap() {
                return status;
            }
            match &self.exit_watch {
                Some(watch) if !watch.has_exited() => {
                    tokio::select! {
                        () = watch.exited() => {}
                        _ = self.exit.wait() => {}
                    }
                }
                // Without pidfds, poll: rare (kernels before 5.3) and cheap. Also if the
                // exit was seen and the reap still found nothing, which it should not.
                _ => Box::pin(tokio::time::sleep(Duration::from_millis(100))).await,
            }
        }
    }

    /// Waits for the keeper to report the exit: the pidfd says when, the keeper how.
    async fn wait_for_keeper(&self, keeper: &Arc<Keeper>, id: &str) -> ExitStatus {
        let mut pause = Duration::from_millis(20);
        loop {
            if let Some(status) = self.exit.get() {
                return status;
            }
            if let Some(watch) = &self.exit_watch {
                // Once it has exited, the keeper knows how (it reaps at once).
                watch.exited().await;
            }
            match Box::pin(keeper.status(id)).await {
                Ok(Some(exit)) => {
                    let status = ExitStatus {
                        code: exit.code,
                        signal: exit.signal,
                    };
                    self.exit.set(status);
                    return status;
                }
                Ok(None) => {}
                Err(err) => {
                    // No keeper to ask: once the program is gone, its status is unknown.
                    if !std::path::Path::new(&format!("/proc/{}", self.pid)).exists() {
                        tracing::warn!(
                            pid = self.pid,
                            "the keeper is gone ({err}); exit status unknown"
                        );
                        self.exit.set(ExitStatus::UNKNOWN);
                        return ExitStatus::UNKNOWN;
                    }
                }
            }
            Box::pin(tokio::time::sleep(pause)).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }
}

impl Drop for LocalBackend {
    fn drop(&mut self) {
        // This daemon's own child, dropped alive (daemon stopping), must not leave a zombie
        // or an orphan holding the terminal. A keeper's program lives on for the next daemon.
        if matches!(self.parent, Parent::Daemon { .. }) && self.try_reap().is_none() {
            self.signal_groups(Signal::SIGHUP);
        }
    }
}

/// Registers the backend's own descriptor with the relay's reactor (the pump that reads it
/// runs there), for reads (see [`Io`]). The backend holds one registration of it at a
/// time, dropped before the descriptor closes.
fn register(fd: RawFd) -> io::Result<AsyncFd<RawFd>> {
    // SAFETY: `fd` is the backend's own descriptor (a dup of the master), which outlives the
    // registration: `LocalBackend::io` drops before `LocalBackend::fd`, and nothing else
    // closes it.
    crate::relay::register(|| unsafe {
        AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
    })
    .map_err(io::Error::from)
}

/// A registration watching the terminal for room, on a duplicate of `fd` that it owns (one
/// descriptor cannot be registered twice with the same reactor). Edge-triggered, it sees the
/// room the terminal had already when it is made.
fn register_for_room(fd: &OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    let dup = fd.try_clone()?;
    // SAFETY: the descriptor is owned by the registration, which deregisters it before
    // closing it.
    crate::relay::register(|| unsafe {
        AsyncFd::register_with_interest(dup, tokio::io::Interest::WRITABLE)
    })
    .map_err(io::Error::from)
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

/// A first read below this is light output (the line discipline had less than it holds),
/// not drained: a keystroke's echo, a prompt.
const LIGHT_READ: usize = 2048;

/// Reads on after the first `n` bytes of `buf` while the terminal has more, up to a full
/// buffer. A PTY master hands out at most ~4 KiB a read (the line discipline's buffer), which
/// under a flood meant one pump turn, one published head and one event per 4 KiB; a drained
/// read takes what the kernel already holds (~64 KiB, measured) in one turn. Light output
/// (below [`LIGHT_READ`]) is not drained. Returns the bytes now in `buf` and whether the
/// terminal was found empty (its readiness may then be cleared); an error after the first
/// bytes is left for the next read to report.
fn drain(fd: RawFd, buf: &mut [u8], mut n: usize) -> (usize, bool) {
    while n < buf.len() {
        match sys_read(fd, &mut buf[n..]) {
            Ok(0) => return (n, false),
            Ok(more) => n += more,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return (n, true),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return (n, false),
        }
    }
    (n, false)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipe with `bytes` written into it and its read end non-blocking.
    fn pipe_holding(bytes: usize) -> (OwnedFd, OwnedFd) {
        let (read, write) = nix::unistd::pipe().unwrap();
        let written = nix::unistd::write(&write, &vec![b'a'; bytes]).unwrap();
        assert_eq!(written, bytes);
        let read = dup_nonblocking(read.as_raw_fd()).unwrap();
        (read, write)
    }

    #[test]
    fn a_drained_read_takes_all_the_kernel_holds_and_says_it_found_the_end() {
        let (read, _write) = pipe_holding(10_000);
        let mut buf = vec![0u8; 16 * 1024];
        let first = sys_read(read.as_raw_fd(), &mut buf[..4096]).unwrap();
        assert_eq!(first, 4096);
        assert_eq!(drain(read.as_raw_fd(), &mut buf, first), (10_000, true));
    }

    #[test]
    fn a_drained_read_stops_at_a_full_buffer_and_leaves_the_rest() {
        let (read, _write) = pipe_holding(20_000);
        let mut buf = vec![0u8; 8 * 1024];
        assert_eq!(drain(read.as_raw_fd(), &mut buf, 0), (8 * 1024, false));
        let mut rest = vec![0u8; 32 * 1024];
        assert_eq!(
            drain(read.as_raw_fd(), &mut rest, 0),
            (20_000 - 8 * 1024, true)
        );
    }

    #[test]
    fn a_drained_read_stops_at_the_end_of_the_output() {
        let (read, write) = pipe_holding(100);
        drop(write);
        let mut buf = vec![0u8; 1024];
        // Not "found empty": the next read reports the end itself.
        assert_eq!(drain(read.as_raw_fd(), &mut buf, 0), (100, false));
        assert_eq!(sys_read(read.as_raw_fd(), &mut buf).unwrap(), 0);
    }

    /// Reads `backend` until its output holds `needle` (or ends), within ten seconds.
    async fn read_until(backend: &LocalBackend, needle: &str) -> String {
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 4096];
        tokio::time::timeout(Duration::from_secs(10), async {
            while !String::from_utf8_lossy(&seen).contains(needle) {
                let n = backend.read(&mut buf).await.unwrap();
                assert!(n > 0, "the output ended before {needle:?}: {seen:?}");
                seen.extend_from_slice(&buf[..n]);
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {needle:?} in the output: {seen:?}"));
        String::from_utf8_lossy(&seen).into_owned()
    }

    #[tokio::test]
    async fn a_write_larger_than_the_terminal_holds_waits_for_room_and_arrives_whole() {
        // The program reads nothing for a while, so the write fills the terminal and waits.
        let spec = LocalSpec {
            command: Some(vec![
                "/bin/sh".into(),
                "-c".into(),
                "stty raw -echo; echo R; sleep 0.3; head -c 300000 | wc -c".into(),
            ]),
            cwd: None,
            env: Default::default(),
        };
        let backend = LocalBackend::spawn(&spec, 80, 24, &[], None).unwrap();
        read_until(&backend, "R").await;
        let written = tokio::time::timeout(
            Duration::from_secs(10),
            backend.write_all(&vec![b'a'; 300_000]),
        )
        .await;
        assert!(matches!(written, Ok(Ok(()))), "{written:?}");
        read_until(&backend, "300000").await;
        assert_eq!(backend.wait().await.code, Some(0));
    }

    #[tokio::test]
    async fn a_short_read_of_light_output_leaves_the_next_output_to_wake_the_reader() {
        // Each line is a light read that clears the readiness without a read finding
        // nothing: the next line must still wake the reader.
        let spec = LocalSpec {
            command: Some(vec![
                "/bin/sh".into(),
                "-c".into(),
                "for i in 1 2 3 4 5; do echo line$i; sleep 0.05; done".into(),
            ]),
            cwd: None,
            env: Default::default(),
        };
        let backend = LocalBackend::spawn(&spec, 80, 24, &[], None).unwrap();
        read_until(&backend, "line5").await;
        assert_eq!(backend.wait().await.code, Some(0));
    }

    #[test]
    fn a_spawn_failure_for_want_of_descriptors_names_the_open_files_limit() {
        let err = SpawnError::Spawn {
            command: "`/bin/cat`".to_owned(),
            reason: "cannot watch the pty: Too many open files (os error 24)".to_owned(),
        };
        let shown = err.to_string();
        assert!(shown.contains("open-files limit"), "{shown}");
        assert!(
            shown.starts_with("cannot start `/bin/cat`: cannot watch"),
            "{shown}"
        );
    }

    #[test]
    fn other_spawn_failures_carry_no_limit_hint() {
        let err = SpawnError::Spawn {
            command: "`nope`".to_owned(),
            reason: "No such file or directory (os error 2)".to_owned(),
        };
        assert!(!err.to_string().contains("limit"), "{err}");
    }
}
