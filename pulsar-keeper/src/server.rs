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
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
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
    listener: OwnedFd,
    connections: Vec<OwnedFd>,
    sessions: BTreeMap<String, Kept>,
    /// When it last held nothing with nobody connected.
    idle_since: Option<Instant>,
}

/// Runs the keeper on `socket` until it has been idle for a while (or is told to stop).
pub fn run(socket: &Path) -> io::Result<()> {
    let listener = bind_private(socket)?;
    // A daemon writing to a keeper that vanished must get EPIPE, not die.
    // SAFETY: setting a signal's disposition to ignore is always sound.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let mut keeper = Keeper {
        listener,
        connections: Vec::new(),
        sessions: BTreeMap::new(),
        idle_since: Some(Instant::now()),
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
        // What to wait on: the listener, each connection, each live child's pidfd.
        let pidfds: Vec<(String, RawFd)> = self
            .sessions
            .iter()
            .filter_map(|(id, kept)| {
                let child = kept.child.as_ref()?;
                Some((id.clone(), child.pidfd.as_ref()?.as_raw_fd()))
            })
            .collect();
        let (listen_ready, ready_connections, ready_children) = {
            let mut fds = vec![PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
            fds.extend(
                self.connections
                    .iter()
                    .map(|c| PollFd::new(c.as_fd(), PollFlags::POLLIN)),
            );
            // SAFETY: the pidfds are owned by `self.sessions`, which is not changed while
            // these borrows live.
            fds.extend(pidfds.iter().map(|(_, fd)| {
                PollFd::new(unsafe { BorrowedFd::borrow_raw(*fd) }, PollFlags::POLLIN)
            }));
            // Children without a pidfd (old kernels) are reaped by a sweep each second.
            match poll(&mut fds, PollTimeout::from(1000u16)) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => return Ok(true),
                Err(err) => return Err(err.into()),
            }
            let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
            let n = self.connections.len();
            (
                ready(&fds[0]),
                (0..n).filter(|&i| ready(&fds[1 + i])).collect::<Vec<_>>(),
                (0..pidfds.len())
                    .filter(|&i| ready(&fds[1 + n + i]))
                    .map(|i| pidfds[i].0.clone())
                    .collect::<Vec<_>>(),
            )
        };
        for id in ready_children {
            if let Some(child) = self.sessions.get_mut(&id).and_then(|k| k.child.as_mut()) {
                child.reap();
            }
        }
        for kept in self.sessions.values_mut() {
            if let Some(child) = kept.child.as_mut().filter(|c| c.pidfd.is_none()) {
                child.reap();
            }
        }
        let mut closed = Vec::new();
        for i in ready_connections {
            match self.serve_one(i) {
                Ok(true) => {}
                Ok(false) => closed.push(i),
                Err(err) => {
                    eprintln!("pulsar-keeper: dropping a connection: {err}");
                    closed.push(i);
                }
            }
            if self.stopping() {
                return Ok(false);
            }
        }
        for i in closed.into_iter().rev() {
            self.connections.remove(i);
        }
        if listen_ready {
            self.accept();
        }
        Ok(true)
    }

    fn stopping(&self) -> bool {
        self.sessions.is_empty() && self.connections.is_empty()
    }

    fn accept(&mut self) {
        let Ok(raw) = accept4(self.listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC) else {
            return;
        };
        // SAFETY: accept4 just returned this descriptor.
        let conn = unsafe { OwnedFd::from_raw_fd(raw) };
        let me = nix::unistd::geteuid().as_raw();
        match getsockopt(&conn, sockopt::PeerCredentials) {
            Ok(cred) if cred.uid() == me => self.connections.push(conn),
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
                    let pidfd = pidfd_open(pid).ok();
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
                for kept in self.sessions.values_mut() {
                    if let Some(child) = kept.child.as_mut() {
                        // Every process of the session's terminal, background jobs in their
                        // own process groups included: nothing outlives an explicit shutdown.
                        kill_session(child.pid, Signal::SIGKILL);
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

/// Sends `signal` to every process in the session whose leader is `leader` (each program
/// runs in a session of its own, made by the PTY spawn), found by the session id in
/// `/proc/*/stat`.
fn kill_session(leader: u32, signal: Signal) {
    let _ = killpg(Pid::from_raw(leader as i32), signal);
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
        if session == Some(leader) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
        }
    }
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
