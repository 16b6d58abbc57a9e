//! One watcher for every local program's exit: a single epoll set of their pidfds, waited on
//! by one thread of its own.
//!
//! Each program used to have its pidfd registered with tokio's reactor, which costs a
//! `ScheduledIo` (256 bytes, cache-line aligned) per idle session, and its session's pump
//! held a future waiting on that registration for the program's whole life. Here a program's
//! exit costs the daemon a kernel epoll entry, one token in a map and a small wake-up cell
//! that every waiter shares; the thread sets the cell when the pidfd becomes readable. The
//! session's reader polls the cell ([`ExitWatch::poll_exited`]) rather than holding a future
//! on it. The thread needs no runtime, so the same watch serves the relay, the request
//! runtime and unit tests' runtimes alike.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

use crate::signal::{Once, poll_for_one};

/// Events taken per `epoll_wait`: exits come one at a time, rarely many at once.
const EVENTS: usize = 32;

/// The epoll set and who is waiting on each of its entries.
struct Watcher {
    epoll: OwnedFd,
    /// The cell of each watched program, by the token its epoll entry carries.
    waiting: Mutex<HashMap<u64, Arc<Cell>>>,
    /// Tokens are never reused, so an event for an entry just removed finds nothing.
    next: AtomicU64,
    /// Set if its thread stopped: no new watch is taken (the backend then polls), and every
    /// cell was set, so that each waiter looks for itself (a reap that finds the program
    /// still running sends it back to polling).
    stopped: AtomicBool,
}

/// What a watched program's waiters wait on.
struct Cell {
    /// Set when the program has exited, waking the waiters on it.
    exited: Once<()>,
    /// The one poller's (the session's reader's).
    poller: AtomicWaker,
}

impl Cell {
    fn fire(&self) {
        self.exited.set(());
        self.poller.wake();
    }
}

/// The daemon's watcher, started by the first watch (or why it could not be).
static WATCHER: OnceLock<Result<&'static Watcher, String>> = OnceLock::new();

fn watcher() -> io::Result<&'static Watcher> {
    WATCHER
        .get_or_init(|| Watcher::start().map_err(|err| err.to_string()))
        .clone()
        .map_err(|reason| io::Error::other(format!("the exit watcher did not start: {reason}")))
}

impl Watcher {
    /// A watcher and its thread, for the life of the process.
    fn start() -> io::Result<&'static Self> {
        // SAFETY: epoll_create1 takes flags and returns a new descriptor or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor to us.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        let watcher: &'static Self = Box::leak(Box::new(Self {
            epoll,
            waiting: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        }));
        std::thread::Builder::new()
            .name("pulsar-exits".to_owned())
            .spawn(move || watcher.run())?;
        Ok(watcher)
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Cell>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The thread: sets the cell of every program whose pidfd became readable. Entries are
    /// one-shot: each reports once and stays in the set, silent, until unwatched.
    fn run(&self) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        loop {
            // SAFETY: `events` is valid for EVENTS entries; the descriptor lives as long as
            // the watcher, for the life of the process.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    EVENTS as i32,
                    -1,
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!("the exit watcher stopped: {err}; exits are found by polling");
                self.stop();
                return;
            }
            for event in &events[..n as usize] {
                // A copy: epoll_event is packed.
                let token = event.u64;
                if let Some(cell) = self.waiting().remove(&token) {
                    cell.fire();
                }
            }
        }
    }

    /// No more watching: every waiter is sent to look for itself, and new watches are
    /// refused.
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        for (_, cell) in self.waiting().drain() {
            cell.fire();
        }
    }
}

/// A program watched for its exit; unwatched when dropped.
pub(crate) struct ExitWatch {
    watcher: &'static Watcher,
    pidfd: OwnedFd,
    token: u64,
    cell: Arc<Cell>,
}

impl std::fmt::Debug for ExitWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExitWatch")
            .field("token", &self.token)
            .field("exited", &self.has_exited())
            .finish()
    }
}

impl ExitWatch {
    /// Watches process `pid` (a child of this process or not). Fails if it is gone already
    /// (`ESRCH`), or the kernel has no pidfds (before 5.3).
    pub fn new(pid: u32) -> io::Result<Self> {
        Self::new_in(watcher()?, pid)
    }

    fn new_in(watcher: &'static Watcher, pid: u32) -> io::Result<Self> {
        if watcher.stopped.load(Ordering::Acquire) {
            return Err(io::Error::other("the exit watcher has stopped"));
        }
        let pidfd = pidfd_open(pid)?;
        let token = watcher.next.fetch_add(1, Ordering::Relaxed);
        let cell = Arc::new(Cell {
            exited: Once::new(None),
            poller: AtomicWaker::new(),
        });
        watcher.waiting().insert(token, Arc::clone(&cell));
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLONESHOT) as u32,
            u64: token,
        };
        // SAFETY: both descriptors are open; `event` is a valid epoll_event.
        let added = unsafe {
            libc::epoll_ctl(
                watcher.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                pidfd.as_raw_fd(),
                &mut event,
            )
        };
        if added < 0 {
            let err = io::Error::last_os_error();
            watcher.waiting().remove(&token);
            return Err(err);
        }
        // Stopped while this one was added: its cell may have missed the drain.
        if watcher.stopped.load(Ordering::Acquire) {
            cell.fire();
        }
        Ok(Self {
            watcher,
            pidfd,
            token,
            cell,
        })
    }

    /// Whether the program is known to have exited (or the watcher stopped, and the caller
    /// must look for itself: a reap that finds the program running means it must poll).
    pub fn has_exited(&self) -> bool {
        self.cell.exited.get().is_some()
    }

    /// Resolves once the program has exited (at once if it has), or the watcher stopped.
    pub async fn exited(&self) {
        self.cell.exited.wait().await
    }

    /// Ready once the program has exited, or the watcher stopped. For one poller only (the
    /// session's reader): each poll replaces the waker of the one before.
    pub fn poll_exited(&self, cx: &mut Context<'_>) -> Poll<()> {
        poll_for_one(&self.cell.poller, cx, || self.has_exited())
    }
}

impl Drop for ExitWatch {
    fn drop(&mut self) {
        // SAFETY: both descriptors are open; a DEL ignores its event argument.
        unsafe {
            libc::epoll_ctl(
                self.watcher.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                self.pidfd.as_raw_fd(),
                std::ptr::null_mut(),
            );
        }
        self.watcher.waiting().remove(&self.token);
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

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use super::*;

    fn sleeper() -> std::process::Child {
        Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep")
    }

    #[tokio::test]
    async fn a_watch_wakes_its_waiters_when_the_program_exits() {
        let mut child = sleeper();
        let watch = ExitWatch::new(child.id()).unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(100), watch.exited()).await;
        assert!(waiting.is_err(), "no exit yet");
        assert!(!watch.has_exited());
        child.kill().unwrap();
        tokio::time::timeout(Duration::from_secs(10), watch.exited())
            .await
            .expect("the exit was seen");
        assert!(watch.has_exited());
        child.wait().unwrap();
    }

    #[tokio::test]
    async fn a_polled_watch_is_woken_when_the_program_exits() {
        let mut child = sleeper();
        let watch = ExitWatch::new(child.id()).unwrap();
        let first = std::future::poll_fn(|cx| Poll::Ready(watch.poll_exited(cx))).await;
        assert!(first.is_pending(), "no exit yet");
        child.kill().unwrap();
        tokio::time::timeout(
            Duration::from_secs(10),
            std::future::poll_fn(|cx| watch.poll_exited(cx)),
        )
        .await
        .expect("the poller was woken");
        child.wait().unwrap();
    }

    #[tokio::test]
    async fn a_program_that_exited_before_its_watch_is_seen_at_once() {
        let mut child = Command::new("true").spawn().unwrap();
        // Exited, not reaped: the pid is still there, and its pidfd readable from the start.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
            .is_ok_and(|stat| !stat.contains(") Z "))
        {
            assert!(std::time::Instant::now() < deadline, "true never exited");
            std::thread::sleep(Duration::from_millis(5));
        }
        let watch = ExitWatch::new(child.id()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), watch.exited())
            .await
            .expect("the exit was seen");
        child.wait().unwrap();
    }

    #[test]
    fn a_dropped_watch_leaves_nothing_in_the_watcher() {
        let mut child = sleeper();
        let watch = ExitWatch::new(child.id()).unwrap();
        let token = watch.token;
        assert!(watch.watcher.waiting().contains_key(&token));
        drop(watch);
        assert!(!watcher().unwrap().waiting().contains_key(&token));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[tokio::test]
    async fn a_stopped_watcher_sends_its_waiters_to_look_and_takes_no_more_watches() {
        // A watcher of the test's own: the daemon's stays as it is.
        let watcher = Watcher::start().unwrap();
        let mut child = sleeper();
        let watch = ExitWatch::new_in(watcher, child.id()).unwrap();
        assert!(!watch.has_exited());
        watcher.stop();
        tokio::time::timeout(Duration::from_secs(10), watch.exited())
            .await
            .expect("the waiter was sent to look");
        assert!(ExitWatch::new_in(watcher, child.id()).is_err());
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn a_gone_process_cannot_be_watched() {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(ExitWatch::new(pid).is_err());
    }
}
