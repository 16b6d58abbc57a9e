//! The keeper itself: a single-threaded `poll` loop over its listening socket, the connected
//! daemons and one pidfd per program it is the parent of. No async runtime: it does little,
//! and must never be the reason a session dies.
//!
//! It spawns programs in PTYs and keeps a copy of every master (and of every serial device a
//! daemon hands it), reaps its children through their pidfds (never `waitpid(-1)`, so no exit
//! status is ever lost to someone else) and keeps their exit statuses until a daemon asks, and
//! hands copies of the descriptors to whichever daemon connects. It is never on the output
//! path: daemons read and write the terminals themselves.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::{Signal, killpg};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, UnixAddr, accept4, bind, getsockopt, listen,
    socket, sockopt,
};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::wire::{self, Exit, Held, MAX_FDS, Reply, Request};

/// With nothing held and no daemon connected for this long, the keeper exits.
const IDLE_EXIT: Duration = Duration::from_secs(5);
/// How often children without a pidfd are looked at (and the longest wait of a turn).
const SWEEP_EVERY_MS: u16 = 1000;
/// The epoll token of the listener; a connection's is [`CONNECTION`] plus its descriptor, a
/// pidfd's its descriptor alone.
const LISTENER: u64 = 1 << 32;
/// See [`LISTENER`].
const CONNECTION: u64 = 1 << 33;

/// One session the keeper holds.
struct Kept {
    meta: String,
    /// The PTY master or serial device.
    fd: OwnedFd,
    /// The program, for PTY sessions.
    child: Option<Child>,
    /// The `cgroup.procs` files of the program's control groups, removed when the keeper
    /// ends everything (the daemon removes them when a session ends).
    groups: Vec<PathBuf>,
}

/// A program the keeper is the parent of.
struct Child {
    pid: u32,
    /// Readable once it exits; `None` after the reap (or where the kernel has no pidfds).
    pidfd: Option<OwnedFd>,
    exit: Option<Exit>,
}

impl Child {
    /// Reaps the program if it has exited (`waitpid` on its own pid only).
    fn reap(&mut self) -> Option<Exit> {
        if self.exit.is_some() {
            return self.exit;
        }
        let exit = match waitpid(Pid::from_raw(self.pid as i32), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => Exit {
                code: Some(code),
                signal: None,
            },
            Ok(WaitStatus::Signaled(_, signal, _)) => Exit {
                code: None,
                signal: Some(signal as i32),
            },
            Ok(_) => return None,
            Err(_) => Exit {
                code: None,
                signal: None,
            },
        };
        self.exit = Some(exit);
        self.pidfd = None;
        Some(exit)
    }
}

/// The keeper's state.
struct Keeper {
    /// Holds the listener, every connection and every live child's pidfd; a descriptor
    /// leaves it when it is closed.
    epoll: Epoll,
    listener: OwnedFd,
    connections: Vec<OwnedFd>,
    sessions: BTreeMap<String, Kept>,
    /// When it last held nothing with nobody connected.
    idle_since: Option<Instant>,
    /// When children without a pidfd were last looked at.
    last_sweep: Instant,
}

/// Runs the keeper on `socket` until it has been idle for a while (or is told to stop).
pub fn run(socket: &Path) -> io::Result<()> {
    // Two descriptors a session held, however the keeper was started (`pulsar-keeper`, or
    // `pulsar-standalone --keeper`); its programs start with the limit it started with.
    crate::pty::raise_open_files_limit();
    let listener = bind_private(socket)?;
    // A daemon writing to a keeper that vanished must get EPIPE, not die.
    // SAFETY: setting a signal's disposition to ignore is always sound.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    epoll.add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))?;
    let mut keeper = Keeper {
        epoll,
        listener,
        connections: Vec::new(),
        sessions: BTreeMap::new(),
        idle_since: Some(Instant::now()),
        last_sweep: Instant::now(),
    };
    eprintln!(
        "pulsar-keeper {} (pid {}) holding sessions on {}",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        socket.display()
    );
    while keeper.turn()? {}
    eprintln!("pulsar-keeper: nothing held and nobody connected; exiting");
    let _ = std::fs::remove_file(socket);
    Ok(())
}

/// Binds `path` as a private `SOCK_SEQPACKET` socket (0600 in its directory), replacing a
/// stale one; refuses if a live keeper answers there.
fn bind_private(path: &Path) -> io::Result<OwnedFd> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        if crate::client::Client::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("a keeper already serves {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // Created private: no other user may connect between bind and chmod.
    // SAFETY: umask only changes this process's file-creation mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = bind(fd.as_raw_fd(), &UnixAddr::new(path)?);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    bound?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listen(&fd, Backlog::new(16)?)?;
    Ok(fd)
}

impl Keeper {
    /// One round of the loop; false when it is time to exit.
    fn turn(&mut self) -> io::Result<bool> {
        if self.sessions.is_empty() && self.connections.is_empty() {
            let since = *self.idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= IDLE_EXIT {
                return Ok(false);
            }
        } else {
            self.idle_since = None;
        }
        // Every descriptor to wait on is in the epoll set already (the listener, each
        // connection, each live child's pidfd), so a turn costs the same with one session
        // held or thousands, and allocates nothing.
        let mut events = [EpollEvent::empty(); 32];
        let ready = match self
            .epoll
            .wait(&mut events, EpollTimeout::from(SWEEP_EVERY_MS))
        {
            Ok(n) => &events[..n],
            Err(nix::errno::Errno::EINTR) => return Ok(true),
            Err(err) => return Err(err.into()),
        };
        // Children first: a request served in this turn sees every exit seen in it.
        for event in ready.iter().filter(|e| e.data() < LISTENER) {
            self.child_exited(event.data() as RawFd);
        }
        // Children without a pidfd (old kernels) are reaped by a sweep each second.
        if self.last_sweep.elapsed() >= Duration::from_millis(SWEEP_EVERY_MS.into()) {
            self.last_sweep = Instant::now();
            for kept in self.sessions.values_mut() {
                if let Some(child) = kept.child.as_mut().filter(|c| c.pidfd.is_none()) {
                    child.reap();
                }
            }
        }
        let mut listen_ready = false;
        for event in ready.iter().filter(|e| e.data() >= LISTENER) {
            if event.data() == LISTENER {
                listen_ready = true;
                continue;
            }
            let fd = (event.data() - CONNECTION) as RawFd;
            // Gone already if an earlier request of this turn told everything to stop.
            let Some(i) = self.connections.iter().position(|c| c.as_raw_fd() == fd) else {
                continue;
            };
            let keep = match self.serve_one(i) {
                Ok(keep) => keep,
                Err(err) => {
                    eprintln!("pulsar-keeper: dropping a connection: {err}");
                    false
                }
            };
            if self.stopping() {
                return Ok(false);
            }
            if !keep {
                // Closing it takes it out of the epoll set.
                self.connections.remove(i);
            }
        }
        if listen_ready {
            self.accept();
        }
        Ok(true)
    }

    /// The child whose pidfd is `pidfd` has exited: reaps it (closing the pidfd, which takes
    /// it out of the epoll set). Rare, once per program, so found by a scan.
    fn child_exited(&mut self, pidfd: RawFd) {
        let child = self.sessions.values_mut().find_map(|kept| {
            kept.child
                .as_mut()
                .filter(|c| c.pidfd.as_ref().is_some_and(|p| p.as_raw_fd() == pidfd))
        });
        if let Some(child) = child
            && child.reap().is_none()
        {
            // Readable, yet not to be reaped (a tracer holds the exit): out of the epoll
            // set, or it would wake every turn; the once-a-second sweep reaps it.
            child.pidfd = None;
        }
    }

    /// Watches `pidfd` for the exit of its program; `None` if it cannot be (then the
    /// once-a-second sweep reaps the program).
    fn watch_exit(&self, pidfd: OwnedFd) -> Option<OwnedFd> {
        let token = pidfd.as_raw_fd() as u64;
        match self
            .epoll
            .add(&pidfd, EpollEvent::new(EpollFlags::EPOLLIN, token))
        {
            Ok(()) => Some(pidfd),
            Err(err) => {
                eprintln!("pulsar-keeper: cannot watch a program's exit ({err}); sweeping");
                None
            }
        }
    }

    fn stopping(&self) -> bool {
        self.sessions.is_empty() && self.connections.is_empty()
    }

    fn accept(&mut self) {
        let raw = match accept4(self.listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
            Ok(raw) => raw,
            Err(err @ (nix::errno::Errno::EMFILE | nix::errno::Errno::ENFILE)) => {
                // The connection waits in the backlog, and the listener stays readable:
                // without a pause the loop would spin until a descriptor is free.
                eprintln!("pulsar-keeper: cannot take a connection now: {err}");
                std::thread::sleep(Duration::from_millis(100));
                return;
            }
            Err(_) => return,
        };
        // SAFETY: accept4 just returned this descriptor.
        let conn = unsafe { OwnedFd::from_raw_fd(raw) };
        let me = nix::unistd::geteuid().as_raw();
        match getsockopt(&conn, sockopt::PeerCredentials) {
            Ok(cred) if cred.uid() == me => {
                let token = CONNECTION + conn.as_raw_fd() as u64;
                match self
                    .epoll
                    .add(&conn, EpollEvent::new(EpollFlags::EPOLLIN, token))
                {
                    Ok(()) => self.connections.push(conn),
                    Err(err) => eprintln!("pulsar-keeper: refused a connection: {err}"),
                }
            }
            Ok(cred) => eprintln!(
                "pulsar-keeper: refused a connection from uid {} (pid {})",
                cred.uid(),
                cred.pid()
            ),
            Err(err) => eprintln!("pulsar-keeper: refused a connection: {err}"),
        }
    }

    /// Answers one request on connection `i`; false when it closed.
    fn serve_one(&mut self, i: usize) -> io::Result<bool> {
        let socket = self.connections[i].as_raw_fd();
        let (request, fds) = match wire::recv::<Request>(socket) {
            Ok(Some(got)) => got,
            Ok(None) => return Ok(false),
            Err(err) if err.kind() == io::ErrorKind::InvalidData => {
                // An unknown version or shape: say why, then hang up.
                let _ = wire::send(
                    socket,
                    &Reply::Error {
                        message: err.to_string(),
                    },
                    &[],
                );
                return Ok(false);
            }
            Err(err) => return Err(err),
        };
        match request {
            Request::Hello => wire::send(
                socket,
                &Reply::Hello {
                    pid: std::process::id(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                },
                &[],
            )?,
            Request::Spawn(spawn) => match crate::pty::spawn(&spawn) {
                Ok((master, pid)) => {
                    // Held in full (its pidfd open) before the daemon hears of it: what a
                    // daemon sees after the reply is what the keeper holds.
                    let pidfd = pidfd_open(pid).ok().and_then(|fd| self.watch_exit(fd));
                    let groups = spawn
                        .limits
                        .as_ref()
                        .map(|l| l.cgroup_procs.clone())
                        .unwrap_or_default();
                    let reply = wire::send(
                        socket,
                        &Reply::Spawned {
                            pid,
                            limited: spawn.limits.is_some(),
                        },
                        &[master.as_raw_fd()],
                    );
                    self.sessions.insert(
                        spawn.id,
                        Kept {
                            meta: spawn.meta,
                            fd: master,
                            child: Some(Child {
                                pid,
                                pidfd,
                                exit: None,
                            }),
                            groups,
                        },
                    );
                    reply?;
                }
                Err(message) => wire::send(socket, &Reply::Error { message }, &[])?,
            },
            Request::Hold { id, meta } => {
                let reply = match fds.into_iter().next() {
                    Some(fd) => {
                        self.sessions.insert(
                            id,
                            Kept {
                                meta,
                                fd,
                                child: None,
                                groups: Vec::new(),
                            },
                        );
                        Reply::Done
                    }
                    None => Reply::Error {
                        message: "hold needs a descriptor".to_owned(),
                    },
                };
                wire::send(socket, &reply, &[])?;
            }
            Request::List => self.list(socket)?,
            Request::Status { id } => {
                let reply = match self.sessions.get_mut(&id) {
                    Some(kept) => Reply::Status {
                        exit: kept.child.as_mut().and_then(Child::reap),
                    },
                    None => Reply::Error {
                        message: format!("session {id} is not held"),
                    },
                };
                wire::send(socket, &reply, &[])?;
            }
            Request::Release { id } => {
                if let Some(mut kept) = self.sessions.remove(&id)
                    && let Some(child) = kept.child.as_mut()
                    && child.reap().is_none()
                {
                    // Released while running (an orphan nobody adopted): it must not outlive
                    // its last terminal unnoticed.
                    let _ = killpg(Pid::from_raw(child.pid as i32), Signal::SIGHUP);
                }
                wire::send(socket, &Reply::Done, &[])?;
            }
            Request::TerminateAll => {
                // Every process of each session's terminal, background jobs in their own
                // process groups included: nothing outlives an explicit shutdown.
                let leaders: Vec<u32> = self
                    .sessions
                    .values()
                    .filter_map(|kept| kept.child.as_ref())
                    .filter(|child| child.exit.is_none() || !pid_in_use(child.pid))
                    .map(|child| child.pid)
                    .collect();
                kill_sessions(leaders, Signal::SIGKILL);
                for kept in self.sessions.values_mut() {
                    if let Some(child) = kept.child.as_mut() {
                        child.reap();
                    }
                }
                // Before the answer: once it has it, nothing of the sessions is left.
                for kept in self.sessions.values() {
                    crate::limited::remove_groups(&kept.groups);
                }
                let _ = wire::send(socket, &Reply::Done, &[]);
                self.sessions.clear();
                self.connections.clear();
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Sends every held session in pages of at most [`MAX_FDS`].
    fn list(&mut self, socket: RawFd) -> io::Result<()> {
        let all: Vec<(Held, RawFd)> = self
            .sessions
            .iter_mut()
            .map(|(id, kept)| {
                let exit = kept.child.as_mut().and_then(Child::reap);
                (
                    Held {
                        id: id.clone(),
                        meta: kept.meta.clone(),
                        pid: kept.child.as_ref().map(|c| c.pid),
                        exit,
                    },
                    kept.fd.as_raw_fd(),
                )
            })
            .collect();
        let mut pages = all.chunks(MAX_FDS).peekable();
        if pages.peek().is_none() {
            return wire::send(
                socket,
                &Reply::Sessions {
                    sessions: Vec::new(),
                    more: false,
                },
                &[],
            );
        }
        while let Some(page) = pages.next() {
            let (sessions, fds): (Vec<Held>, Vec<RawFd>) = page.iter().cloned().unzip();
            wire::send(
                socket,
                &Reply::Sessions {
                    sessions,
                    more: pages.peek().is_some(),
                },
                &fds,
            )?;
        }
        Ok(())
    }
}

/// Sends `signal` to every process in the sessions whose leaders are `leaders` (each program
/// runs in a session of its own, made by the PTY spawn), found by their session ids in one
/// pass over `/proc/*/stat` (one pass for them all: a pass per session made ending 2000
/// sessions take minutes).
fn kill_sessions(mut leaders: Vec<u32>, signal: Signal) {
    for &leader in &leaders {
        let _ = killpg(Pid::from_raw(leader as i32), signal);
    }
    leaders.sort_unstable();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the command's closing parenthesis: state, ppid, pgrp, session, ...
        let session = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(3))
            .and_then(|sid| sid.parse::<u32>().ok());
        if session.is_some_and(|sid| leaders.binary_search(&sid).is_ok()) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
        }
    }
}

/// Whether a process `pid` exists. Asked of a leader already reaped: while its session has
/// members the kernel keeps its pid from being reused, so a process with that pid now is
/// someone else, whose group and session must not be signalled.
fn pid_in_use(pid: u32) -> bool {
    // SAFETY: signal 0 checks for the process without sending anything.
    let found = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
    found || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// `pidfd_open(2)`: a descriptor that becomes readable when `pid` exits (CLOEXEC).
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: the syscall takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// The default keeper socket beside a daemon socket.
pub fn default_socket(daemon_socket: &Path) -> PathBuf {
    daemon_socket
        .parent()
        .unwrap_or(Path::new("/"))
        .join("pulsar-keeper.sock")
}
